"""Chat tickets in the help desk over real WebSockets: SLA clock, first response, chat ratings.

The app runs on the `db` fixture's real databases (SQLite and PostgreSQL) with a settable clock;
visitors and agents talk only through /chat/ws and /agent/ws, the results are read through the
REST API (ticket, CSAT report).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy import func, select

from tests.integration.tickets.conftest import FakeClock
from tickets.db import Database
from tickets.models import Channel
from tickets.sla import SlaPolicy
from tickets.sla_records import ServiceLevels
from tickets.surveys import SurveyResponse
from tickets.users import Role

from .test_web_app import Web, add_users, start_web
from .test_web_chat import _origin, _until, leave_offline_message

M = timedelta(minutes=1)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def site(tmp_path: Path, db: Database, clock: FakeClock) -> AsyncIterator[Web]:
    """The app on a fake clock: chats answered within 5 minutes, then within 10 of each
    customer message; any other ticket within 2 hours."""
    async with db.sessions.begin() as session:
        levels = ServiceLevels(session, clock)
        await levels.add_policy(SlaPolicy(name="any", first_response=120 * M))
        await levels.add_policy(
            SlaPolicy(
                name="chat",
                channel=Channel.CHAT,
                first_response=5 * M,
                next_response=10 * M,
                resolution=60 * M,
            )
        )
    app, database = await start_web(tmp_path, database=db, run_webhooks=False, clock=clock)
    tokens = await add_users(database)
    async with TestClient(TestServer(app)) as client:
        yield Web(app, client, database, tokens)


async def _said(ws: aiohttp.ClientWebSocketResponse, body: str) -> None:
    """Wait until ``ws`` is shown the chat message ``body`` (stored and committed by then)."""
    while (await _until(ws, "message"))["body"] != body:
        pass


def _at(value: str | None) -> datetime | None:
    return None if value is None else datetime.fromisoformat(value)


@dataclass
class Chat:
    site: Web
    agent: aiohttp.ClientWebSocketResponse
    visitor: aiohttp.ClientWebSocketResponse
    chat_id: int
    ticket_id: int

    async def ticket(self) -> dict[str, Any]:
        response = await self.site.client.get(
            f"/api/tickets/{self.ticket_id}", headers=self.site.auth(Role.AGENT)
        )
        assert response.status == 200, await response.text()
        out: dict[str, Any] = await response.json()
        return out

    async def agent_says(self, text: str) -> None:
        await self.agent.send_json({"type": "message", "chat_id": self.chat_id, "text": text})
        await _said(self.visitor, text)

    async def visitor_says(self, text: str) -> None:
        await self.visitor.send_json({"type": "message", "text": text})
        await _said(self.agent, text)

    async def rate(self, score: object, comment: str = "") -> dict[str, Any]:
        """The visitor rates the ended chat: the ``rated`` or ``error`` frame it gets back."""
        await self.visitor.send_json({"type": "rate", "score": score, "comment": comment})
        async with asyncio.timeout(10):
            while True:
                frame: dict[str, Any] = await self.visitor.receive_json()
                if frame["type"] in ("rated", "error"):
                    return frame

    async def close(self) -> None:
        await self.visitor.close()
        await self.agent.close()


async def _chat(site: Web, first: str = "My router blinks red") -> Chat:
    """agent1 online, a visitor opens a chat and agent1 is assigned it."""
    agent = await site.client.ws_connect("/agent/ws", headers=site.auth(Role.AGENT))
    await _until(agent, "hello")
    visitor = await site.client.ws_connect("/chat/ws", headers=_origin(site))
    await visitor.send_json({"type": "hello", "name": "Vera"})
    await _until(visitor, "welcome")
    await visitor.send_json({"type": "message", "text": first})
    offered = await _until(agent, "chat.assigned")
    await _until(visitor, "assigned")
    return Chat(site, agent, visitor, offered["chat_id"], offered["ticket_id"])


async def _ended(chat: Chat) -> None:
    await chat.agent_says("Fixed: restart it once more.")
    await chat.visitor.send_json({"type": "end"})
    await _until(chat.visitor, "ended")


async def _csat(site: Web, by: str) -> list[tuple[str, int, float | None]]:
    response = await site.client.get(
        f"/api/reports/csat?by={by}", headers=site.auth(Role.SUPERVISOR)
    )
    assert response.status == 200, await response.text()
    return [(r["key"], r["responses"], r["csat"]) for r in (await response.json())["rows"]]


async def _answers(site: Web) -> int:
    async with site.database.sessions() as session:
        query = select(func.count(SurveyResponse.id))
        return int((await session.execute(query)).scalar_one())


async def test_given_a_chat_policy_when_a_visitor_opens_a_chat_then_its_ticket_has_an_sla_clock(
    site: Web, clock: FakeClock
) -> None:
    opened = clock.now
    chat = await _chat(site)
    ticket = await chat.ticket()
    assert (ticket["channel"], ticket["status"], ticket["assignee"]) == ("chat", "open", "agent1")
    assert _at(ticket["sla"]["first_response_due_at"]) == opened + 5 * M  # the chat policy
    assert _at(ticket["sla"]["resolution_due_at"]) == opened + 60 * M
    assert ticket["sla"]["first_response_at"] is None
    assert ticket["sla"]["next_response_due_at"] is None  # the visitor's first message is no reply
    assert "sla.started" in [event["action"] for event in ticket["history"]]
    await chat.close()


async def test_given_a_chat_when_the_agent_replies_then_first_response_recorded_and_next_due_moves(
    site: Web, clock: FakeClock
) -> None:
    opened = clock.now
    chat = await _chat(site)
    clock.advance(2 * M)
    await chat.agent_says("Hello Vera, let me look.")
    answered = (await chat.ticket())["sla"]
    assert _at(answered["first_response_at"]) == opened + 2 * M
    assert answered["next_response_due_at"] is None

    clock.advance(M)
    await chat.visitor_says("Still red.")
    waiting = (await chat.ticket())["sla"]
    assert _at(waiting["next_response_due_at"]) == opened + 3 * M + 10 * M

    clock.advance(M)
    await chat.agent_says("Unplug it for ten seconds.")
    again = await chat.ticket()
    assert again["sla"]["next_response_due_at"] is None
    assert _at(again["sla"]["first_response_at"]) == opened + 2 * M  # the first stays the first
    assert [e["action"] for e in again["history"]].count("sla.responded") == 2
    await chat.close()


async def test_given_an_ended_chat_when_rated_then_a_survey_answer_on_the_ticket_and_in_csat(
    site: Web,
) -> None:
    chat = await _chat(site)
    await _ended(chat)
    assert (await chat.rate(4, "Quick <b>and</b> kind"))["chat_id"] == chat.chat_id
    ticket = await chat.ticket()
    (survey,) = ticket["surveys"]
    assert (survey["source"], survey["channel"], survey["score"]) == ("chat", "chat", 4)
    assert (survey["agent"], survey["queue"]) == ("agent1", "chat")
    assert survey["comment"] == "Quick <b>and</b> kind"
    assert [c["rating"] for c in ticket["chats"]] == [4]
    assert ticket["status"] == "open"  # ending the chat leaves the ticket to the agent
    assert await _csat(site, "channel") == [("chat", 1, 100.0)]
    assert await _csat(site, "agent") == [("agent1", 1, 100.0)]
    await chat.close()


async def test_given_a_rated_chat_when_rated_again_then_refused_and_nothing_stored_twice(
    site: Web,
) -> None:
    chat = await _chat(site)
    await _ended(chat)
    assert (await chat.rate(2))["type"] == "rated"
    refused = await chat.rate(5, "changed my mind")
    assert (refused["type"], refused["error"]) == ("error", "survey-already-answered")
    ticket = await chat.ticket()
    assert [(s["score"], s["comment"]) for s in ticket["surveys"]] == [(2, "")]
    assert [c["rating"] for c in ticket["chats"]] == [2]
    assert await _answers(site) == 1
    assert await _csat(site, "channel") == [("chat", 1, 0.0)]
    await chat.close()


@pytest.mark.parametrize("score", [0, 6, "5", True, 4.5, None])
async def test_given_a_bad_rating_when_sent_then_clear_error_and_a_good_one_still_counts(
    site: Web, score: object
) -> None:
    chat = await _chat(site)
    early = await chat.rate(5)  # not ended yet: nothing to rate
    assert (early["type"], early["error"]) == ("error", "chat-rating-invalid")
    await _ended(chat)
    refused = await chat.rate(score)
    assert (refused["type"], refused["error"]) == ("error", "chat-rating-invalid")
    assert await _answers(site) == 0
    assert (await chat.rate(5))["type"] == "rated"
    assert [s["score"] for s in (await chat.ticket())["surveys"]] == [5]
    await chat.close()


async def test_given_nobody_online_when_an_offline_message_is_left_then_its_ticket_has_a_clock(
    site: Web, clock: FakeClock
) -> None:
    number = await leave_offline_message(site)
    response = await site.client.get("/api/tickets?channel=email", headers=site.auth(Role.AGENT))
    (ticket,) = (await response.json())["items"]
    assert ticket["number"] == number
    assert _at(ticket["sla"]["first_response_due_at"]) == clock.now + 120 * M  # "any" policy
