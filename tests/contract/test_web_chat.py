"""The chat channel over real WebSockets: origin check, visitor tokens, agents, HTML, offline."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy import select

from agent_console.chat import HUB
from tickets.chat import ChatSession, ChatStatus
from tickets.db import Database
from tickets.models import Channel, Message, Ticket
from tickets.users import Role

from .test_web_app import Web, add_users, start_web

HTML = '<img src=x onerror="alert(1)"><script>alert(2)</script>'


@pytest.fixture
async def site(tmp_path: Path, db: Database) -> AsyncIterator[Web]:
    """The app with one user per role, on SQLite and on PostgreSQL (the `db` fixture)."""
    app, database = await start_web(tmp_path, database=db, run_webhooks=False)
    tokens = await add_users(database)
    async with TestClient(TestServer(app)) as client:
        yield Web(app, client, database, tokens)
    await database.close()


def _origin(site: Web) -> dict[str, str]:
    return {"Origin": str(site.client.make_url("")).rstrip("/")}


async def _until(ws: aiohttp.ClientWebSocketResponse, kind: str) -> dict[str, Any]:
    async with asyncio.timeout(10):
        while True:
            frame: dict[str, Any] = await ws.receive_json()
            if frame["type"] == kind:
                return frame


async def test_given_other_origin_when_chat_socket_opened_then_rejected(site: Web) -> None:
    with pytest.raises(aiohttp.WSServerHandshakeError) as caught:
        await site.client.ws_connect("/chat/ws", headers={"Origin": "https://evil.example"})
    assert caught.value.status == 403
    with pytest.raises(aiohttp.WSServerHandshakeError):
        await site.client.ws_connect("/chat/ws")  # no Origin at all


async def test_given_agent_online_when_visitor_sends_html_then_stored_as_text_and_answered(
    site: Web,
) -> None:
    agent = await site.client.ws_connect("/agent/ws", headers=site.auth(Role.AGENT))
    await _until(agent, "hello")
    visitor = await site.client.ws_connect("/chat/ws", headers=_origin(site))
    await visitor.send_json({"type": "hello", "name": "Vera"})
    welcome = await _until(visitor, "welcome")
    assert welcome["online"] is True
    await visitor.send_json({"type": "message", "text": HTML})
    offered = await _until(agent, "chat.assigned")
    assert offered["transcript"][0]["body"] == HTML
    await visitor.send_json({"type": "typing"})
    assert (await _until(agent, "typing"))["chat_id"] == offered["chat_id"]
    await agent.send_json({"type": "message", "chat_id": offered["chat_id"], "text": "Hello Vera"})
    answer = await _until(visitor, "message")
    while answer["body"] != "Hello Vera":
        answer = await _until(visitor, "message")
    assert answer["author"] == "agent1"
    await visitor.send_json({"type": "end"})
    await _until(visitor, "ended")
    await visitor.send_json({"type": "rate", "score": 5})
    await _until(visitor, "rated")
    async with site.database.sessions() as session:
        ticket = (await session.execute(select(Ticket))).scalar_one()
        bodies = list((await session.execute(select(Message.body).order_by(Message.id))).scalars())
        chat = (await session.execute(select(ChatSession))).scalar_one()
    assert ticket.channel == Channel.CHAT
    assert bodies == [HTML, "Hello Vera"]
    assert (chat.status, chat.rating, chat.agent) == (ChatStatus.ENDED, 5, "agent1")
    await visitor.close()
    await agent.close()


async def test_given_supervisor_when_agent_socket_opened_then_refused(site: Web) -> None:
    with pytest.raises(aiohttp.WSServerHandshakeError) as caught:
        await site.client.ws_connect("/agent/ws", headers=site.auth(Role.SUPERVISOR))
    assert caught.value.status == 403


async def test_given_visitor_when_too_long_or_too_fast_then_error_frames_and_nothing_lost(
    site: Web,
) -> None:
    await (await site.client.ws_connect("/agent/ws", headers=site.auth(Role.AGENT))).receive_json()
    visitor = await site.client.ws_connect("/chat/ws", headers=_origin(site))
    await visitor.send_json({"type": "hello"})
    await _until(visitor, "welcome")
    await visitor.send_json({"type": "message", "text": "x" * 4001})
    assert (await _until(visitor, "error"))["error"] == "chat-message-invalid"
    errors: list[str] = []
    for n in range(12):
        await visitor.send_json({"type": "message", "text": f"m{n}"})
    async with asyncio.timeout(10):
        while len(errors) < 1:
            frame = await visitor.receive_json()
            if frame["type"] == "error":
                errors.append(frame["error"])
    assert errors == ["rate-limited"]
    await visitor.close()


async def test_given_token_when_visitor_reconnects_then_same_visitor_and_forged_token_replaced(
    site: Web,
) -> None:
    first = await site.client.ws_connect("/chat/ws", headers=_origin(site))
    await first.send_json({"type": "hello"})
    token = (await _until(first, "welcome"))["token"]
    await first.close()
    again = await site.client.ws_connect("/chat/ws", headers=_origin(site))
    await again.send_json({"type": "hello", "token": token})
    assert (await _until(again, "welcome"))["token"] == token
    await again.send_json({"type": "hello", "token": token[:-2] + "00"})
    assert (await _until(again, "welcome"))["token"] != token
    await again.close()


async def leave_offline_message(site: Web) -> str:
    """With nobody online, a visitor's chat goes offline and they leave a message: its number."""
    visitor = await site.client.ws_connect("/chat/ws", headers=_origin(site))
    await visitor.send_json({"type": "hello", "name": "Olga"})
    await _until(visitor, "welcome")
    await visitor.send_json({"type": "message", "text": "anyone?"})
    await _until(visitor, "offline")
    await visitor.send_json(
        {"type": "offline_message", "email": "olga@example.org", "text": "Call me back"}
    )
    number: str = (await _until(visitor, "offline_stored"))["ticket_number"]
    await visitor.close()
    return number


async def test_given_no_agent_when_visitor_writes_then_offline_message_becomes_email_ticket(
    site: Web,
) -> None:
    number = await leave_offline_message(site)
    async with site.database.sessions() as session:
        ticket = (await session.execute(select(Ticket).where(Ticket.number == number))).scalar_one()
    assert ticket.channel == Channel.EMAIL


async def test_given_a_live_chat_when_the_visitor_reloads_then_the_new_socket_rejoins_it(
    site: Web,
) -> None:
    agent = await site.client.ws_connect("/agent/ws", headers=site.auth(Role.AGENT))
    await _until(agent, "hello")
    first = await site.client.ws_connect("/chat/ws", headers=_origin(site))
    await first.send_json({"type": "hello", "name": "Rita"})
    token = (await _until(first, "welcome"))["token"]
    await first.send_json({"type": "message", "text": "hello"})
    offered = await _until(agent, "chat.assigned")
    await first.close()  # a page reload: the chat outlives the socket for the grace period
    again = await site.client.ws_connect("/chat/ws", headers=_origin(site))
    await again.send_json({"type": "hello", "token": token})
    assert (await _until(again, "welcome"))["chat_id"] == offered["chat_id"]
    await agent.send_json({"type": "message", "chat_id": offered["chat_id"], "text": "Still here"})
    assert (await _until(again, "message"))["body"] == "Still here"
    await again.close()
    await agent.close()


async def test_given_a_live_chat_when_the_visitor_is_gone_for_good_then_it_ends_for_the_agent(
    site: Web,
) -> None:
    site.app[HUB].visitor_grace = 0.05
    agent = await site.client.ws_connect("/agent/ws", headers=site.auth(Role.AGENT))
    await _until(agent, "hello")
    visitor = await site.client.ws_connect("/chat/ws", headers=_origin(site))
    await visitor.send_json({"type": "hello"})
    await _until(visitor, "welcome")
    await visitor.send_json({"type": "message", "text": "brb"})
    offered = await _until(agent, "chat.assigned")
    await visitor.close()
    assert (await _until(agent, "ended"))["chat_id"] == offered["chat_id"]
    async with site.database.sessions() as session:
        chat = await session.get(ChatSession, offered["chat_id"])
    assert chat is not None
    assert chat.status == ChatStatus.ENDED
    await agent.close()


async def test_given_an_agent_with_chats_when_their_socket_reconnects_then_the_chats_come_back(
    site: Web,
) -> None:
    agent = await site.client.ws_connect("/agent/ws", headers=site.auth(Role.AGENT))
    await _until(agent, "hello")
    visitor = await site.client.ws_connect("/chat/ws", headers=_origin(site))
    await visitor.send_json({"type": "hello", "name": "Sid"})
    await _until(visitor, "welcome")
    await visitor.send_json({"type": "message", "text": "my order"})
    offered = await _until(agent, "chat.assigned")
    await agent.close()
    back = await site.client.ws_connect("/agent/ws", headers=site.auth(Role.AGENT))
    again = await _until(back, "chat.assigned")
    assert (again["chat_id"], again["transcript"][0]["body"]) == (offered["chat_id"], "my order")
    await visitor.close()
    await back.close()
