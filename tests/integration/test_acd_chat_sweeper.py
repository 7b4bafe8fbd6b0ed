"""Chats left in the ACD by a node that died, ended by another node's sweeper (Redis, SQLite).

"Node A" routes chats through the ACD with its owners recorded, then stops beating (it was
killed: no clean stop ends its chats). "Node B"'s sweeper sees A's presence expire and ends
A's chats: the answered one completed (the agent's chat capacity is free again), the waiting
one cancelled, both chat sessions ended in the records. While A is alive its chats are left
alone, and a chat ended in the records whose item lingers is ended whoever owns it.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from acd.adapters.chat_routing import AcdChatRouting
from acd.adapters.chat_sweeper import ChatOwners, ChatSweeper, chat_of
from acd.service import AcdService
from tests.integration.acd_rig import running_acd
from tests.integration.test_acd_chat_routing import config
from tests.polling import eventually, eventually_true
from tickets.chat import ChatRecords, ChatSession, ChatStatus, ChatWorkItem
from tickets.db import Database, open_database
from tickets.migrate import upgrade

pytestmark = pytest.mark.timeout(60)


@dataclass
class Nodes:
    acd: AcdService
    database: Database
    redis: aioredis.Redis
    a: ChatOwners
    routing_a: AcdChatRouting

    def sweeper(self, node_id: str) -> ChatSweeper:
        owners = ChatOwners(self.redis, self.acd.config.service.site, node_id, ttl=0.5)
        return ChatSweeper(self.acd, self.database.sessions, self.redis, owners, interval=0.05)

    async def chat(self, text: str) -> ChatWorkItem:
        async with self.database.sessions.begin() as session:
            chat, ticket, _ = await ChatRecords(session).start(f"v-{text}", text, name=text)
        return ChatWorkItem(chat.id, ticket.id, ticket.number, queue="billing")

    async def status(self, chat_id: int) -> ChatStatus:
        async with self.database.sessions() as session:
            chat = await session.get(ChatSession, chat_id)
            assert chat is not None
            return chat.status

    async def item_state(self, item: ChatWorkItem) -> str:
        record = await self.acd.state.item(AcdChatRouting.item_id(item))
        assert record is not None
        return record.state


@pytest.fixture
async def nodes(redis_url: str, tmp_path: Path) -> AsyncIterator[Nodes]:
    url = f"sqlite+aiosqlite:///{tmp_path / 'records.db'}"
    await upgrade(url)
    database = open_database(url)
    async with running_acd(redis_url, "sweep", config()) as (acd, client):
        a = ChatOwners(client, acd.config.service.site, "node-a", ttl=0.5)
        try:
            yield Nodes(acd, database, client, a, AcdChatRouting(acd, owners=a))
        finally:
            await database.close()


async def test_given_a_chat_answered_on_node_a_when_a_dies_then_node_bs_sweeper_frees_the_agent(
    nodes: Nodes,
) -> None:
    await nodes.acd.login("ann")  # chat capacity 2, billing
    await nodes.a.beat()
    answered = await nodes.chat("answered")
    assert await nodes.routing_a.offer(answered) == "ann"
    full = await nodes.chat("second")
    assert await nodes.routing_a.offer(full) == "ann"  # ann is at her capacity of two
    waiting = await nodes.chat("waiting")
    offer = asyncio.create_task(nodes.routing_a.offer(waiting))  # waits: ann is full

    async def queued() -> bool:
        record = await nodes.acd.state.item(AcdChatRouting.item_id(waiting))
        return record is not None and record.state == "waiting"

    await eventually(queued, 10, "the third chat waiting")
    ann = await nodes.acd.state.agent("ann")
    assert ann is not None
    assert ann.load["chat"] == 2

    alive = asyncio.create_task(_beating(nodes.a))
    b = nodes.sweeper("node-b")
    sweeping = asyncio.create_task(b.run())
    try:
        await eventually_true(lambda: b.passes >= 3, 10, "three sweeps by B while A is alive")
        assert b.ended == 0  # A is alive: B leaves its chats alone
        assert await nodes.item_state(answered) == "assigned"

        for task in (alive, offer):  # node A is killed: no beat, no chat ended, no clean stop
            task.cancel()
        await asyncio.gather(alive, offer, return_exceptions=True)

        async def freed() -> bool:
            record = await nodes.acd.state.agent("ann")
            return record is not None and record.load["chat"] == 0

        await eventually(freed, 10, "ann's chat capacity released by node B")
        assert await nodes.item_state(answered) == "completed"
        assert await nodes.item_state(full) == "completed"
        assert await nodes.item_state(waiting) == "cancelled"
        for item in (answered, full, waiting):
            assert await nodes.status(item.chat_id) == ChatStatus.ENDED
        cancelled = [
            e.fields.get("reason")
            for e in await nodes.acd.state.all_events()
            if e.kind == "ItemCancelled" and e.fields.get("item") == f"chat-{waiting.chat_id}"
        ]
        assert cancelled == ["cancelled"]  # the node left, not the visitor
        await eventually(
            lambda: _owners_empty(nodes.a), 10, "A's owner entries removed with its chats"
        )
    finally:
        sweeping.cancel()
        await asyncio.gather(sweeping, return_exceptions=True)


async def test_given_a_chat_ended_in_the_records_when_its_item_lingers_then_the_sweeper_ends_it(
    nodes: Nodes,
) -> None:
    await nodes.acd.login("ann")
    await nodes.a.beat()
    chat = await nodes.chat("lingering")
    assert await nodes.routing_a.offer(chat) == "ann"
    async with nodes.database.sessions.begin() as session:  # ended here, ended() never called
        record = await session.get(ChatSession, chat.chat_id)
        assert record is not None
        await ChatRecords(session).end(record, actor="test")
    b = nodes.sweeper("node-b")
    await nodes.a.beat()  # A is alive: only the records say the chat is over
    assert await b.sweep() == 1
    assert await nodes.item_state(chat) == "completed"
    assert await b.sweep() == 0  # a repeat changes nothing


def test_given_item_ids_when_parsed_then_only_chat_items_have_a_chat() -> None:
    assert chat_of("chat-12") == 12
    assert chat_of("chat-x") is None
    assert chat_of("email-12") is None


def test_given_an_interval_not_shorter_than_the_ttl_when_built_then_refused() -> None:
    client = aioredis.Redis()  # never connected
    owners = ChatOwners(client, "s", "n", ttl=1.0)
    with pytest.raises(ValueError, match="ttl"):
        ChatSweeper(None, None, client, owners, interval=1.0)  # type: ignore[arg-type]


async def _beating(owners: ChatOwners) -> None:
    while True:
        await owners.beat()
        await asyncio.sleep(0.05)


async def _owners_empty(owners: ChatOwners) -> bool:
    return not await owners.all()
