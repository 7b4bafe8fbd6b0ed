"""The ACD service under faults, on a private redis-server: Redis restarting mid-reservation,
agents logging out while reserved, items cancelled while offered, duplicate reports, a node clock
going backwards, a node dying after a miss, and overflow seen by every node through Redis.

Every test ends with no item lost and no agent left reserved.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis

from acd.adapters.redis_calls import CallFacts
from acd.adapters.redis_state import AcdRedisState, RedisStateUnavailable
from acd.config import AcdConfig, parse_acd_config
from acd.service import AcdService, AgentReserved, ItemEnded, WorkHandle, WorkRequest
from tests.integration.test_acd_call_wait import RedisServer, start_redis, until_async

pytestmark = pytest.mark.timeout(90)

WAIT = 20.0


def config(
    agents: dict[str, dict[str, int]] | None = None,
    queues: list[dict[str, Any]] | None = None,
    **service: object,
) -> AcdConfig:
    agents = agents or {"a1": {"support": 3}, "a2": {"support": 2}}
    return parse_acd_config(
        {
            "service": {
                "site": f"f{uuid.uuid4().hex[:8]}",
                "missed_cooldown": 0.3,
                "ring_timeout": 1,
                "offer_margin": 0.5,
                **service,
            },
            "queues": queues or [{"id": "support", "skills": "support", "wrap_up": 0}],
            "agents": [
                {"id": agent_id, "endpoint": f"Local/{agent_id}@agents", "skills": skills}
                for agent_id, skills in agents.items()
            ],
        }
    )


@dataclass
class Node:
    """One running ACD service (a controller) on the private Redis."""

    service: AcdService
    task: asyncio.Task[None]

    async def stop(self) -> None:
        self.task.cancel()
        await asyncio.gather(self.task, return_exceptions=True)


@dataclass
class Center:
    server: RedisServer
    client: aioredis.Redis
    config: AcdConfig
    nodes: list[Node] = field(default_factory=list)

    @property
    def state(self) -> AcdRedisState:
        return self.nodes[0].service.state

    async def node(self, **options: Any) -> AcdService:
        state = AcdRedisState(self.client, self.config.service.site, attempts=2)
        service = AcdService(
            state,
            CallFacts(self.client, state),
            self.config,
            poll_interval=0.02,
            **options,
        )
        self.nodes.append(Node(service, asyncio.create_task(service.run())))
        async with asyncio.timeout(WAIT):
            await service.started.wait()
        return service

    async def kinds(self) -> list[str]:
        return [e.kind for e in await self.state.all_events()]

    async def no_agent_reserved(self) -> None:
        for agent_id in self.config.agents:
            agent = await self.state.agent(agent_id)
            assert agent is None or agent.offer_id is None, agent
        assert await self.state.pending_offers() == {}


@pytest.fixture
async def center_factory(tmp_path: Path) -> AsyncIterator[Callable[..., Awaitable[Center]]]:
    centers: list[Center] = []

    async def make(cfg: AcdConfig | None = None) -> Center:
        server = await start_redis(tmp_path)
        client = aioredis.Redis.from_url(server.url, socket_timeout=1, socket_connect_timeout=1)
        center = Center(server, client, cfg or config())
        centers.append(center)
        return center

    try:
        yield make
    finally:
        for center in centers:
            for node in center.nodes:
                await node.stop()
            await center.client.aclose()
            await center.server.stop()


async def offered(handle: WorkHandle, other_than: str = "") -> AgentReserved:
    async with asyncio.timeout(WAIT):
        while True:
            offer = await handle.reserved(timeout=WAIT)
            assert offer is not None, f"{handle.item_id} was never offered"
            if offer.offer_id != other_than:
                return offer
            handle._changed.clear()
            await handle._changed.wait()


async def one_offer(center: Center, **node: Any) -> tuple[AcdService, WorkHandle, AgentReserved]:
    """A node, agent a1 logged in, item c1 queued and offered to a1."""
    service = await center.node(**node)
    await service.login("a1")
    handle = await service.enqueue(WorkRequest("c1", "support"))
    first = await offered(handle)
    assert first.agent_id == "a1"
    return service, handle, first


async def kill(server: RedisServer) -> None:
    """A crash: SIGKILL (the append-only file is fsynced on every write)."""
    assert server.process is not None
    server.process.kill()
    await server.process.wait()


async def test_given_an_offer_pending_when_redis_restarts_then_it_expires_and_nothing_is_lost(
    center_factory: Callable[..., Awaitable[Center]],
) -> None:
    center = await center_factory()
    service, handle, first = await one_offer(center)

    await kill(center.server)
    with pytest.raises(RedisStateUnavailable):  # a clear error while Redis is down ...
        await service.enqueue(WorkRequest("c2", "support"))
    await center.server.start()
    second_handle = await service.enqueue(WorkRequest("c2", "support"))  # ... and a retry works

    # The ring outcome of the first offer was lost with the outage: the offer expires on Redis's
    # clock, the agent is freed without a miss, the item comes back at its place and is offered
    # again, by the service on its own.
    again = await offered(handle, other_than=first.offer_id)
    assert again.agent_id == "a1"
    kinds = await center.kinds()
    assert "OfferTimedOut" in kinds
    assert "OfferMissed" not in kinds
    agent = await center.state.agent("a1")
    assert agent is not None
    assert agent.consecutive_misses == 0
    assert await service.answered("c1")
    await service.hung_up("c1")
    await offered(second_handle)
    assert await service.answered("c2")
    await service.hung_up("c2")
    for item_id in ("c1", "c2"):
        record = await center.state.item(item_id)
        assert record is not None
        assert record.state == "completed"
    await center.no_agent_reserved()


async def test_given_a_no_answer_after_a_redis_restart_then_the_item_goes_to_the_next_agent(
    center_factory: Callable[..., Awaitable[Center]],
) -> None:
    center = await center_factory(config(missed_cooldown=30, offer_margin=30))
    service, handle, first = await one_offer(center)
    assert service.offer_margin == 30  # from the configuration's service.offer_margin
    await kill(center.server)
    await center.server.start()
    await service.login("a2")
    await service.no_answer("c1")
    again = await offered(handle, other_than=first.offer_id)
    assert again.agent_id == "a2"
    missed = await center.state.agent("a1")
    assert missed is not None
    assert (missed.state, missed.offer_id) == ("missed", None)
    assert await service.answered("c1")
    await service.hung_up("c1")
    await center.no_agent_reserved()


async def test_given_a_reserved_agent_when_it_logs_out_then_the_item_goes_to_another_agent(
    center_factory: Callable[..., Awaitable[Center]],
) -> None:
    center = await center_factory()
    service, handle, first = await one_offer(center)
    await service.login("a2")
    await service.logout("a1")
    again = await offered(handle, other_than=first.offer_id)
    assert again.agent_id == "a2"
    gone = await center.state.agent("a1")
    assert gone is not None
    assert (gone.logged_in, gone.offer_id, gone.consecutive_misses) == (False, None, 0)
    assert "OfferRescinded" in await center.kinds()
    assert await service.answered("c1")
    await service.hung_up("c1")
    await center.no_agent_reserved()


async def test_given_an_offered_item_when_the_caller_leaves_then_the_agent_is_free_without_a_miss(
    center_factory: Callable[..., Awaitable[Center]],
) -> None:
    center = await center_factory()
    service, handle, _ = await one_offer(center)
    await service.cancel("c1")
    with pytest.raises(ItemEnded):
        await handle.reserved(timeout=1)
    agent = await center.state.agent("a1")
    assert agent is not None
    assert (agent.state, agent.missed, agent.offer_id) == ("ready", False, None)
    assert not await service.answered("c1")  # a late answer for the gone item changes nothing
    record = await center.state.item("c1")
    assert record is not None
    assert record.state == "cancelled"
    later = await service.enqueue(WorkRequest("c2", "support"))
    assert (await offered(later)).agent_id == "a1"
    await service.cancel("c2")
    await center.no_agent_reserved()


async def test_given_duplicate_reports_then_each_fact_happens_once(
    center_factory: Callable[..., Awaitable[Center]],
) -> None:
    center = await center_factory()
    service = await center.node()
    await service.login("a1")
    await service.login("a1")
    handle = await service.enqueue(WorkRequest("c1", "support"))
    assert await service.enqueue(WorkRequest("c1", "support")) is handle
    first = await offered(handle)
    await service.no_answer("c1")
    await service.no_answer("c1")  # the same ring outcome reported twice
    await service.ready("a1")
    await offered(handle, other_than=first.offer_id)
    assert await service.answered("c1")
    assert await service.answered("c1")  # DialEnd and the AGI session both report the answer
    await service.hung_up("c1")
    await service.hung_up("c1")
    await service.cancel("c1")  # a hang-up event arriving after completion
    kinds = await center.kinds()
    counts = {k: kinds.count(k) for k in ("ItemEnqueued", "OfferMissed", "ItemAssigned")}
    assert counts == {"ItemEnqueued": 1, "OfferMissed": 1, "ItemAssigned": 1}
    assert kinds.count("ItemCompleted") == 1
    assert kinds.count("AgentLoggedIn") == 1
    agent = await center.state.agent("a1")
    assert agent is not None
    assert (agent.consecutive_misses, agent.missed_total) == (0, 1)
    await center.no_agent_reserved()


async def test_given_the_node_clock_goes_backwards_then_routing_and_timers_follow_redis(
    center_factory: Callable[..., Awaitable[Center]],
) -> None:
    skew = [0.0]
    center = await center_factory()
    service, handle, first = await one_offer(center, clock=lambda: time.time() - skew[0])
    skew[0] = 3600.0  # the node's clock jumps an hour back mid-reservation
    await service.no_answer("c1")
    # the miss ends on Redis's clock (0.3 s), not the node's: the item comes back to a1
    again = await offered(handle, other_than=first.offer_id)
    assert again.agent_id == "a1"
    assert await service.answered("c1")
    await service.hung_up("c1")
    facts = {e.kind: e.fields for e in await center.state.all_events()}
    assert int(facts["CallAnswered"]["wait_ms"]) >= 0
    assert int(facts["CallCompleted"]["talk_ms"]) >= 0
    await center.no_agent_reserved()


async def test_given_the_node_that_saw_a_miss_dies_then_the_agent_is_ready_by_itself(
    center_factory: Callable[..., Awaitable[Center]],
) -> None:
    center = await center_factory()
    witness, _, _ = await one_offer(center)
    await witness.no_answer("c1")
    await center.nodes[0].stop()  # the node that saw the miss is gone
    await witness.cancel("c1")
    other = await center.node()

    async def ready() -> bool:
        agent = await center.state.agent("a1")
        return agent is not None and agent.state == "ready" and not agent.missed

    await until_async(ready, "a1 ready again without any node making it ready")
    assert "AgentMadeReady" not in await center.kinds()
    later = await other.enqueue(WorkRequest("c2", "support"))
    assert (await offered(later)).agent_id == "a1"
    assert await other.answered("c2")
    await other.hung_up("c2")
    await center.no_agent_reserved()


async def test_given_an_overflowing_queue_then_redis_moves_the_item_and_every_node_sees_it(
    center_factory: Callable[..., Awaitable[Center]],
) -> None:
    cfg = config(
        agents={"a1": {"billing": 2}},
        queues=[
            {"id": "sales", "skills": "sales", "overflow": {"after": 0.3, "to": "billing"}},
            {"id": "billing", "skills": "billing", "wrap_up": 0},
        ],
    )
    center = await center_factory(cfg)
    owner = await center.node()
    other = await center.node()
    await owner.login("a1", paused="lunch")
    handle = await owner.enqueue(WorkRequest("c1", "sales"))

    async def moved() -> bool:
        record = await center.state.item("c1")
        return record is not None and record.queue == "billing"

    await until_async(moved, "c1 moved to billing in Redis")
    overflowed = [e for e in await center.state.all_events() if e.kind == "ItemOverflowed"]
    assert len(overflowed) == 1  # two controllers, one move
    assert (overflowed[0].fields["from"], overflowed[0].fields["to"]) == ("sales", "billing")
    assert handle.queue == "billing"

    async def seen_by_other() -> bool:
        status = other.wait_status("c1")
        return status is not None and status.position == 1

    await until_async(seen_by_other, "the other node counts c1 in billing")
    await owner.ready("a1")
    assert (await offered(handle)).agent_id == "a1"
    assert await owner.answered("c1")
    await owner.hung_up("c1")
    await center.no_agent_reserved()


async def test_given_no_event_when_a_wrap_up_ends_by_redis_clock_then_the_quiet_node_offers_on_time(
    center_factory: Callable[..., Awaitable[Center]],
) -> None:
    # quiet_limit is long: only the next-ready time read from Redis can end the quiet period
    queues = [{"id": "support", "skills": "support", "wrap_up": 1.5}]
    center = await center_factory(config(queues=queues, quiet_limit=600))
    service, _, _ = await one_offer(center)
    assert await service.answered("c1")
    await service.hung_up("c1")  # a1 wraps up for 1.5 s of Redis time: no event when it ends
    second = await service.enqueue(WorkRequest("c2", "support"))
    quiet_before = service.quiet_cycles
    offer = await offered(second)  # within WAIT, far less than quiet_limit
    assert offer.agent_id == "a1"
    assert service.quiet_cycles > quiet_before  # polls during the wrap-up skipped the snapshot
    record = await center.state.agent("a1")
    assert record is not None
    assert record.offer_id == offer.offer_id


async def test_given_the_ready_sets_then_the_next_ready_time_is_the_earliest_future_score(
    center_factory: Callable[..., Awaitable[Center]],
) -> None:
    center = await center_factory()
    service, _, _ = await one_offer(center)
    snap = await center.state.snapshot()
    assert await center.state.next_ready_ms(snap.server_ms) is None  # a1 is reserved
    assert await service.answered("c1")
    await center.state.complete("c1", wrap_up=30)
    ready_at = await center.state.next_ready_ms(snap.server_ms)
    assert ready_at is not None
    assert snap.server_ms + 29_000 <= ready_at <= snap.server_ms + 31_000 + 5_000
    await center.no_agent_reserved()
