"""Agents set their own ACD state through the web app, against the real ACD on real Redis.

Through the aiohttp test client and the app's real routes: an agent who goes ready is offered a
chat, one paused with a reason is not, one who logs out while reserved puts the item back in
its queue (no item lost, no agent left reserved), wrap-up ends early on request, a supervisor
sets another agent's state while an agent cannot, and bad input and missing credentials are
refused with clear errors.
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

from acd.adapters.chat_routing import AcdChatRouting
from acd.adapters.redis_calls import CallFacts
from acd.adapters.redis_state import AcdRedisState
from acd.config import AcdConfig, parse_acd_config
from acd.service import AcdService, WorkRequest
from agent_console.chat import HUB
from callcenter.demo_agents import BotStats, ChatVisitor, DigitalAgent
from tests.contract.test_web_app import PASSWORD, start_web
from tests.integration.acd_rig import running_acd
from tests.integration.test_acd_chat_routing import until
from tests.polling import eventually
from tickets.db import Database
from tickets.users import Role, UserDirectory

pytestmark = pytest.mark.timeout(60)


def config() -> AcdConfig:
    capacity = {"call": 1, "chat": 2, "email": 0, "call_blocks_others": False}
    return parse_acd_config(
        {
            "service": {"site": f"s{uuid.uuid4().hex[:8]}"},
            "queues": [
                {"id": "billing", "channel": "chat", "skills": "billing", "wrap_up": 0},
                {"id": "phones", "channel": "call", "skills": "*", "wrap_up": 60},
            ],
            "agents": [
                {"id": "ann", "skills": {"billing": 3}, "capacity": capacity},
                {"id": "bob", "skills": {"billing": 2}, "capacity": capacity},
            ],
        }
    )


@dataclass
class Center:
    acd: AcdService
    client: TestClient[Any, Any]
    tokens: dict[str, str]

    def auth(self, user: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[user]}"}

    async def state(self, user: str) -> dict[str, Any]:
        response = await self.client.get("/api/agent/state", headers=self.auth(user))
        assert response.status == 200
        body: dict[str, Any] = await response.json()
        return body

    async def set(self, user: str, body: dict[str, Any], status: int = 200) -> dict[str, Any]:
        response = await self.client.post("/api/agent/state", json=body, headers=self.auth(user))
        out: dict[str, Any] = await response.json()
        assert response.status == status, out
        return out

    async def console(self, user: str) -> aiohttp.ClientWebSocketResponse:
        ws = await self.client.ws_connect("/agent/ws", headers=self.auth(user))
        assert (await ws.receive_json())["type"] == "hello"
        return ws

    async def visitor(self, text: str) -> aiohttp.ClientWebSocketResponse:
        origin = str(self.client.make_url("")).rstrip("/")
        ws = await self.client.ws_connect("/chat/ws", headers={"Origin": origin})
        await ws.send_json({"type": "hello", "name": "Vera", "topic": "billing"})
        await until(ws, "welcome")
        await ws.send_json({"type": "message", "text": text})
        return ws


async def token(database: Database, name: str, role: Role = Role.AGENT) -> str:
    """A web user and an API token for them."""
    async with database.sessions.begin() as session:
        users = UserDirectory(session)
        user = await users.add(name, PASSWORD, role, actor="test")
        return (await users.issue_token(user, "test", actor="test")).value


@pytest.fixture
async def center(redis_url: str, tmp_path: Path) -> AsyncIterator[Center]:
    async with running_acd(redis_url, "agents", config()) as (acd, _client):
        routing = AcdChatRouting(acd)
        app, database = await start_web(tmp_path, run_webhooks=False, chat_routing=routing, acd=acd)
        routing.present = app[HUB].connected
        tokens = {
            name: await token(database, name) for name in ("ann", "bob", "dan")
        }  # no agent: dan
        tokens["sue"] = await token(database, "sue", Role.SUPERVISOR)
        try:
            async with TestClient(TestServer(app)) as web_client:
                yield Center(acd, web_client, tokens)
        finally:
            await database.close()


async def test_given_an_agent_who_goes_ready_when_a_chat_arrives_then_it_is_offered_to_them(
    center: Center,
) -> None:
    before = await center.state("ann")
    assert (before["state"], before["channels"]["chat"]) == (
        "logged_out",
        {"load": 0, "capacity": 2},
    )
    ann = await center.console("ann")
    ready = await center.set("ann", {"state": "ready"})
    assert (ready["state"], ready["pause_reason"]) == ("ready", None)
    visitor = await center.visitor("my invoice is wrong")
    assert (await until(ann, "chat.assigned"))["visitor_name"] == "Vera"
    assert (await until(visitor, "assigned"))["agent"] == "ann"
    now = await center.state("ann")
    assert (now["state"], now["channels"]["chat"]) == ("on_work", {"load": 1, "capacity": 2})
    await visitor.close()
    await ann.close()


async def test_given_an_agent_paused_with_a_reason_when_a_chat_arrives_then_it_is_not_offered(
    center: Center,
) -> None:
    ann = await center.console("ann")
    paused = await center.set("ann", {"state": "paused", "reason": "lunch"})
    assert (paused["state"], paused["pause_reason"]) == ("paused", "lunch")
    assert (await center.state("ann"))["pause_reason"] == "lunch"
    visitor = await center.visitor("anyone?")
    offline = await until(visitor, "offline")  # nobody who is not paused could take it
    events = await center.acd.state.all_events()
    assert not [e for e in events if e.kind == "ItemOffered"]
    item = await center.acd.state.item(f"chat-{offline['chat_id']}")
    assert item is not None
    assert (item.state, item.agent_id) == ("cancelled", None)
    await visitor.close()

    await center.set("ann", {"state": "ready"})  # back from lunch: the next chat is hers
    second = await center.visitor("now?")
    assert (await until(second, "assigned"))["agent"] == "ann"
    await second.close()
    await ann.close()


async def test_given_a_reserved_agent_when_they_log_out_then_the_item_goes_back_to_the_queue(
    center: Center,
) -> None:
    await center.set("ann", {"state": "ready"})
    handle = await center.acd.enqueue(WorkRequest("call-1", "phones"))
    reserved = await handle.reserved(timeout=15)
    assert reserved is not None
    assert reserved.agent_id == "ann"
    assert (await center.state("ann"))["state"] == "reserved"

    out = await center.set("ann", {"state": "logged_out"})
    assert out["state"] == "logged_out"
    record = await center.acd.state.agent("ann")
    assert record is not None
    assert (record.offer_id, record.load["call"]) == (None, 0)
    item = await center.acd.state.item("call-1")
    assert item is not None
    assert (item.state, item.agent_id) == ("waiting", None)
    kinds = [
        e.kind for e in await center.acd.state.all_events() if e.fields.get("item") == "call-1"
    ]
    assert "ItemRequeued" in kinds
    rescinded = [e for e in await center.acd.state.all_events() if e.kind == "OfferRescinded"]
    assert [e.fields.get("agent") for e in rescinded] == ["ann"]

    await center.set("bob", {"state": "ready"})  # the item was not lost: bob gets it

    async def to_bob() -> bool:
        found = await center.acd.state.item("call-1")
        return found is not None and found.agent_id == "bob"

    await eventually(to_bob, 15, "call-1 offered to bob")


async def test_given_an_agent_in_wrap_up_when_they_say_done_then_ready_and_a_repeat_is_refused(
    center: Center,
) -> None:
    await center.set("ann", {"state": "ready"})
    handle = await center.acd.enqueue(WorkRequest("call-2", "phones"))
    assert await handle.reserved(timeout=15) is not None
    assert await center.acd.answered("call-2")
    await center.acd.hung_up("call-2")
    wrapping = await center.state("ann")
    assert wrapping["state"] == "wrap_up"
    assert 0 < wrapping["wrap_up_seconds"] <= 60
    done = await center.client.post("/api/agent/wrap-up-done", headers=center.auth("ann"))
    assert done.status == 200
    assert (await done.json())["state"] == "ready"
    again = await center.client.post("/api/agent/wrap-up-done", headers=center.auth("ann"))
    assert again.status == 409
    assert (await again.json())["error"] == "acd-agent-state-conflict"


async def test_given_an_agent_when_they_try_to_set_another_agents_state_then_refused(
    center: Center,
) -> None:
    other = await center.client.post(
        "/api/agents/bob/state", json={"state": "ready"}, headers=center.auth("ann")
    )
    assert other.status == 403
    assert (await other.json())["error"] == "forbidden"
    smuggled = await center.set("ann", {"state": "ready", "agent": "bob"}, status=400)
    assert smuggled["field"] == "agent"
    assert (await center.state("bob"))["state"] == "logged_out"
    assert (await center.state("ann"))["state"] == "logged_out"

    by_supervisor = await center.client.post(
        "/api/agents/bob/state",
        json={"state": "paused", "reason": "coaching"},
        headers=center.auth("sue"),
    )
    assert by_supervisor.status == 200
    assert (await by_supervisor.json())["pause_reason"] == "coaching"
    seen = await center.client.get("/api/agents/bob/state", headers=center.auth("sue"))
    assert (await seen.json())["state"] == "paused"


async def test_given_no_credentials_when_agent_state_called_then_401(center: Center) -> None:
    for method, path in (
        ("GET", "/api/agent/state"),
        ("POST", "/api/agent/state"),
        ("POST", "/api/agent/wrap-up-done"),
        ("GET", "/api/agents/ann/state"),
    ):
        response = await center.client.request(method, path, json={"state": "ready"})
        assert response.status == 401, (method, path)
        assert (await response.json())["error"] == "not-authenticated"
    assert (await center.state("ann"))["state"] == "logged_out"


async def test_given_bad_input_when_state_set_then_clear_errors_and_nothing_changes(
    center: Center,
) -> None:
    no_reason = await center.set("ann", {"state": "paused"}, status=400)
    assert no_reason["field"] == "reason"
    blank = await center.set("ann", {"state": "paused", "reason": "   "}, status=400)
    assert blank["field"] == "reason"
    extra = await center.set("ann", {"state": "ready", "reason": "why"}, status=400)
    assert extra["field"] == "reason"
    unknown = await center.set("ann", {"state": "dancing"}, status=400)
    assert unknown["field"] == "state"
    assert (await center.state("ann"))["state"] == "logged_out"

    stranger = await center.set("dan", {"state": "ready"}, status=404)
    assert stranger["error"] == "acd-agent-unknown"
    nobody = await center.client.get("/api/agents/nobody/state", headers=center.auth("sue"))
    assert nobody.status == 404
    odd = await center.client.get("/api/agents/%3Cb%3E/state", headers=center.auth("sue"))
    assert odd.status == 400
    assert (await odd.json())["field"] == "agent_id"


async def test_given_a_node_without_acd_when_agent_state_asked_then_503(tmp_path: Path) -> None:
    app, database = await start_web(tmp_path, run_webhooks=False)
    auth = {"Authorization": f"Bearer {await token(database, 'ann')}"}
    try:
        async with TestClient(TestServer(app)) as client:
            response = await client.get("/api/agent/state", headers=auth)
            assert response.status == 503
            assert (await response.json())["error"] == "no-acd"
    finally:
        await database.close()


async def test_given_redis_unreachable_when_state_set_then_503_from_the_acd_error(
    tmp_path: Path,
) -> None:
    dead = aioredis.Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.2)
    state = AcdRedisState(dead, "down")
    acd = AcdService(state, CallFacts(dead, state), config())  # never run: no loop needed
    app, database = await start_web(tmp_path, run_webhooks=False, acd=acd)
    auth = {"Authorization": f"Bearer {await token(database, 'ann')}"}
    try:
        async with TestClient(TestServer(app)) as client:
            response = await client.post(
                "/api/agent/state",
                json={"state": "ready"},
                headers=auth,
            )
            assert response.status == 503
            assert (await response.json())["error"] == "acd-redis-state-unavailable"
    finally:
        await database.close()
        await dead.aclose()


async def test_given_the_demos_digital_agent_when_it_signs_in_then_it_goes_ready_over_rest_and_serves_a_chat(  # noqa: E501
    center: Center,
) -> None:
    stats = BotStats()
    base = str(center.client.make_url("")).rstrip("/")
    bot = DigitalAgent(base, "ann", PASSWORD, stats, think=0.01, email_every=0.1)
    running = asyncio.create_task(bot.run())
    try:

        async def ready() -> bool:
            record = await center.acd.state.agent("ann")
            return record is not None and record.state == "ready"

        await eventually(ready, 15, "the bot went ready through POST /api/agent/state")
        visitor = ChatVisitor(base, stats, name="Nina", email="nina@example.org", topic="billing")
        await visitor.run()
        assert (stats.visitors_served, stats.chats_answered, stats.errors) == (1, 1, 0)
    finally:
        running.cancel()
        await asyncio.gather(running, return_exceptions=True)
