"""Chats routed by the real ACD on real Redis, through the web app's real WebSockets.

Two agents with chat capacity 2 and different skills (billing, tech) connect to /agent/ws; the
visitors name a topic (the ACD chat queue) in their hello. Each chat goes to the agent with the
skill, a chat beyond the agent's capacity waits (the visitor sees its position) until a chat
ends, a visitor who disappears while waiting abandons the item, and an ended chat frees the
agent's capacity.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import redis.asyncio as aioredis
from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy import select

from acd.adapters.chat_routing import AcdChatRouting, NoChatQueue
from acd.adapters.redis_calls import CallFacts
from acd.adapters.redis_state import AcdRedisState
from acd.config import AcdConfig, parse_acd_config
from acd.service import AcdService
from agent_console.chat import HUB
from tests.contract.test_web_app import PASSWORD, start_web
from tests.integration.acd_rig import running_acd
from tests.polling import eventually
from tickets.chat import ChatSession, ChatStatus
from tickets.db import Database
from tickets.models import Ticket
from tickets.users import Role, UserDirectory

pytestmark = pytest.mark.timeout(60)


def config() -> AcdConfig:
    chat_agent = {"capacity": {"call": 0, "chat": 2, "email": 0}}
    return parse_acd_config(
        {
            "service": {"site": f"t{uuid.uuid4().hex[:8]}"},
            "queues": [
                {"id": "billing", "channel": "chat", "skills": "billing", "wrap_up": 0},
                {"id": "tech", "channel": "chat", "skills": "tech", "wrap_up": 0},
                {"id": "phones", "channel": "call", "skills": "*"},
            ],
            "agents": [
                {"id": "ann", "skills": {"billing": 3}, **chat_agent},
                {"id": "bob", "skills": {"tech": 3}, **chat_agent},
                {"id": "cat", "skills": {"billing": 2}, **chat_agent},
            ],
        }
    )


@dataclass
class Center:
    acd: AcdService
    client: TestClient[Any, Any]
    database: Database
    tokens: dict[str, str]

    async def agent(self, name: str) -> aiohttp.ClientWebSocketResponse:
        headers = {"Authorization": f"Bearer {self.tokens[name]}"}
        ws = await self.client.ws_connect("/agent/ws", headers=headers)
        assert (await ws.receive_json())["type"] == "hello"
        return ws

    async def visitor(self, topic: str, name: str) -> aiohttp.ClientWebSocketResponse:
        origin = str(self.client.make_url("")).rstrip("/")
        ws = await self.client.ws_connect("/chat/ws", headers={"Origin": origin})
        await ws.send_json({"type": "hello", "name": name, "topic": topic})
        await until(ws, "welcome")
        return ws

    async def load(self, agent: str) -> int:
        record = await self.acd.state.agent(agent)
        assert record is not None
        return record.load["chat"]


async def until(ws: aiohttp.ClientWebSocketResponse, kind: str) -> dict[str, Any]:
    async with asyncio.timeout(15):
        while True:
            frame: dict[str, Any] = await ws.receive_json()
            if frame["type"] == kind:
                return frame


@pytest.fixture
async def center(redis_url: str, tmp_path: Path) -> AsyncIterator[Center]:
    async with running_acd(redis_url, "chats", config()) as (acd, _client):
        routing = AcdChatRouting(acd)
        app, database = await start_web(tmp_path, run_webhooks=False, chat_routing=routing)
        app[HUB].visitor_grace = 0.05
        routing.present = app[HUB].connected  # as the node wires it
        tokens = {}
        async with database.sessions.begin() as session:
            users = UserDirectory(session)
            for name in ("ann", "bob", "cat"):
                user = await users.add(name, PASSWORD, Role.AGENT, actor="test")
                tokens[name] = (await users.issue_token(user, "test", actor="test")).value
        for name in ("ann", "bob"):
            await acd.login(name)
        try:
            async with TestClient(TestServer(app)) as web_client:
                yield Center(acd, web_client, database, tokens)
        finally:
            await database.close()


async def test_given_two_skilled_agents_when_chats_arrive_then_each_goes_to_the_skilled_agent_and_the_overflow_waits(  # noqa: E501
    center: Center,
) -> None:
    ann, bob = await center.agent("ann"), await center.agent("bob")
    first = await center.visitor("billing", "Vera")
    await first.send_json({"type": "message", "text": "my invoice is wrong"})
    to_ann = await until(ann, "chat.assigned")
    assert (await until(first, "assigned"))["agent"] == "ann"
    second = await center.visitor("tech", "Walt")
    await second.send_json({"type": "message", "text": "the router blinks"})
    to_bob = await until(bob, "chat.assigned")
    assert to_bob["transcript"][0]["body"] == "the router blinks"
    third = await center.visitor("billing", "Xena")
    await third.send_json({"type": "message", "text": "refund please"})
    assert (await until(ann, "chat.assigned"))["visitor_name"] == "Xena"
    assert await center.load("ann") == 2

    fourth = await center.visitor("billing", "Yves")  # ann is full: the chat waits
    await fourth.send_json({"type": "message", "text": "hello?"})
    waiting = await until(fourth, "waiting")
    assert waiting["position"] == 1
    await fourth.send_json({"type": "message", "text": "still there?"})  # typed while waiting
    await ann.send_json({"type": "end", "chat_id": to_ann["chat_id"]})
    await until(first, "ended")
    offered = await until(ann, "chat.assigned")
    assert offered["visitor_name"] == "Yves"
    assert [m["body"] for m in offered["transcript"]] == ["hello?", "still there?"]
    assert (await until(fourth, "assigned"))["agent"] == "ann"

    async with center.database.sessions() as session:
        tickets = {t.id: t for t in (await session.execute(select(Ticket))).scalars()}
        chats = list((await session.execute(select(ChatSession))).scalars())
    by_name = {c.visitor_name: c for c in chats}
    assert {n: c.agent for n, c in by_name.items()} == {
        "Vera": "ann",
        "Walt": "bob",
        "Xena": "ann",
        "Yves": "ann",
    }
    assert tickets[by_name["Walt"].ticket_id].assignee == "bob"
    assert by_name["Vera"].status == ChatStatus.ENDED
    kinds = [
        (e.kind, e.fields.get("item"), e.fields.get("agent"))
        for e in await center.acd.state.all_events()
    ]
    assert ("ItemCompleted", f"chat-{to_ann['chat_id']}", "ann") in kinds
    for ws in (first, second, third, fourth, ann, bob):
        await ws.close()


async def test_given_a_waiting_chat_when_its_visitor_disconnects_then_the_item_is_abandoned(
    center: Center,
) -> None:
    bob = await center.agent("bob")
    busy = [await center.visitor("tech", f"busy{n}") for n in range(2)]
    for n, ws in enumerate(busy):
        await ws.send_json({"type": "message", "text": f"first {n}"})
        await until(bob, "chat.assigned")
    leaver = await center.visitor("tech", "Zoe")
    await leaver.send_json({"type": "message", "text": "anyone?"})
    frame = await until(leaver, "waiting")
    chat_id = frame["chat_id"]
    await leaver.close()

    async def abandoned() -> bool:
        record = await center.acd.state.item(f"chat-{chat_id}")
        return record is not None and record.state == "cancelled"

    await eventually(abandoned, 10, "the waiting chat's item cancelled")
    reasons = [
        e.fields.get("reason")
        for e in await center.acd.state.all_events()
        if e.kind == "ItemCancelled" and e.fields.get("item") == f"chat-{chat_id}"
    ]
    assert reasons == ["abandoned"]
    async with center.database.sessions() as session:
        chat = await session.get(ChatSession, chat_id)
        assert chat is not None
        assert (chat.status, chat.agent) == (ChatStatus.ENDED, None)
    assert await center.load("bob") == 2  # the two chats bob has are untouched
    for ws in (*busy, bob):
        await ws.close()


async def test_given_an_answered_chat_when_it_ends_then_the_agent_is_free_again(
    center: Center,
) -> None:
    ann = await center.agent("ann")
    visitor = await center.visitor("billing", "Uma")
    await visitor.send_json({"type": "message", "text": "hi"})
    offered = await until(ann, "chat.assigned")
    assert await center.load("ann") == 1
    record = await center.acd.state.item(f"chat-{offered['chat_id']}")
    assert record is not None
    assert record.state == "assigned"
    await visitor.send_json({"type": "end"})
    await until(ann, "ended")

    async def freed() -> bool:
        return await center.load("ann") == 0

    await eventually(freed, 10, "ann's chat capacity released")
    done = await center.acd.state.item(f"chat-{offered['chat_id']}")
    assert done is not None
    assert done.state == "completed"
    await visitor.send_json({"type": "rate", "score": 4})
    await until(visitor, "rated")
    await visitor.close()
    await ann.close()


async def test_given_nobody_staffed_for_the_topic_when_visitor_writes_then_offline_path(
    center: Center,
) -> None:
    await center.acd.logout("bob")
    visitor = await center.visitor("tech", "Olga")
    await visitor.send_json({"type": "message", "text": "anyone for tech?"})
    offline = await until(visitor, "offline")
    record = await center.acd.state.item(f"chat-{offline['chat_id']}")
    assert record is not None
    assert record.state == "cancelled"
    await visitor.send_json(
        {"type": "offline_message", "email": "olga@example.org", "text": "Call me back"}
    )
    assert (await until(visitor, "offline_stored"))["ticket_number"]
    await visitor.close()


async def test_given_unknown_topic_when_visitor_writes_then_the_default_chat_queue_takes_it(
    center: Center,
) -> None:
    ann = await center.agent("ann")
    visitor = await center.visitor("no-such-queue", "Ida")
    await visitor.send_json({"type": "message", "text": "hello"})
    assert (await until(visitor, "assigned"))["agent"] == "ann"  # billing is the first queue
    await visitor.send_json({"type": "hello", "topic": "<script>"})
    assert (await until(visitor, "error"))["error"] == "console-error"
    await visitor.close()
    await ann.close()


def test_given_acd_without_chat_queue_when_routing_built_then_clear_error() -> None:
    only_calls = parse_acd_config({"queues": [{"id": "phones"}]})
    client = aioredis.Redis()  # never connected: nothing is asked of Redis
    state = AcdRedisState(client, "none")
    acd = AcdService(state, CallFacts(client, state), only_calls)
    with pytest.raises(NoChatQueue, match="channel: chat"):
        AcdChatRouting(acd)


async def test_given_an_agent_without_a_console_when_reserved_then_missed_and_the_chat_waits_for_one_at_a_console(  # noqa: E501
    center: Center,
) -> None:
    await center.acd.logout("ann")
    await center.acd.login("cat")  # logged in to the ACD, but no console socket open
    visitor = await center.visitor("billing", "Hal")
    await visitor.send_json({"type": "message", "text": "invoice?"})

    async def cat_missed() -> bool:
        events = await center.acd.state.all_events()
        return any(e.kind == "OfferMissed" and e.fields.get("agent") == "cat" for e in events)

    await eventually(cat_missed, 15, "the offer to cat counted as not answered")
    ann = await center.agent("ann")
    await center.acd.login("ann")
    assert (await until(visitor, "assigned"))["agent"] == "ann"
    assert (await until(ann, "chat.assigned"))["visitor_name"] == "Hal"
    await visitor.close()
    await ann.close()


async def test_given_chats_going_on_when_the_web_app_stops_then_their_items_are_released(
    center: Center,
) -> None:
    ann = await center.agent("ann")
    answered = await center.visitor("billing", "Ada")
    await answered.send_json({"type": "message", "text": "one"})
    chat_id = (await until(ann, "chat.assigned"))["chat_id"]
    bob = await center.agent("bob")
    busy = [await center.visitor("tech", f"busy{n}") for n in range(2)]
    for ws in busy:  # bob is at his capacity of two chats
        await ws.send_json({"type": "message", "text": "first"})
        await until(bob, "chat.assigned")
    waiting = await center.visitor("tech", "Bea")
    await waiting.send_json({"type": "message", "text": "two"})
    waiting_id = (await until(waiting, "waiting"))["chat_id"]
    await center.client.close()  # the node stops its web app
    done = await center.acd.state.item(f"chat-{chat_id}")
    left = await center.acd.state.item(f"chat-{waiting_id}")
    assert done is not None
    assert left is not None
    assert (done.state, left.state) == ("completed", "cancelled")
    record = await center.acd.state.agent("ann")
    assert record is not None
    assert record.load["chat"] == 0
