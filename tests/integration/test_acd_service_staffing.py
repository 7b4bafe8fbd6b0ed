"""The ACD service on real Redis: who counts as staffed, wrap-up per item, mid-cycle wake-ups.

Staffed agents are the logged-in, unpaused agents whose skills match the item *and* who have
capacity on the queue's channel; a chat in wrap-up holds its own slot only, so its agent takes
another chat meanwhile; a wake-up that comes while a cycle runs is not lost until the next poll.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
import redis.asyncio as aioredis

from acd.adapters.redis_calls import CallFacts
from acd.adapters.redis_state import AcdRedisState, Snapshot
from acd.config import AcdConfig, parse_acd_config
from acd.service import AcdService, WorkHandle, WorkRequest
from tests.polling import eventually_true

pytestmark = pytest.mark.timeout(60)

WAIT = 20.0


def config() -> AcdConfig:
    return parse_acd_config(
        {
            "service": {"site": f"s{uuid.uuid4().hex[:8]}", "ring_timeout": 5},
            "queues": [
                {"id": "phone", "skills": "support", "wrap_up": 0},
                {"id": "web", "skills": "support", "channel": "chat", "wrap_up": 0},
                {"id": "notes", "skills": "notes", "channel": "chat", "wrap_up": 600},
            ],
            "agents": [
                {
                    "id": "call-only",
                    "endpoint": "Local/1@agents",
                    "skills": {"support": 3},
                    "capacity": {"call": 1, "chat": 0},
                },
                {
                    "id": "chatter",
                    "endpoint": "Local/2@agents",
                    "skills": {"support": 3},
                    "capacity": {"call": 0, "chat": 1},
                },
                {
                    "id": "duo",
                    "endpoint": "Local/3@agents",
                    "skills": {"notes": 2},
                    "capacity": {"call": 0, "chat": 2},
                },
            ],
        }
    )


class HookedState(AcdRedisState):
    """The real Redis state; an armed ``after_snapshot`` runs once, right after a snapshot was
    read, standing in for a command of this node that lands in the middle of a cycle."""

    after_snapshot: Callable[[], Awaitable[None]] | None = None

    async def snapshot(self, max_items: int = 1000, max_agents: int = 1000) -> Snapshot:
        snap = await super().snapshot(max_items, max_agents)
        hook, self.after_snapshot = self.after_snapshot, None
        if hook is not None:
            await hook()
        return snap


Factory = Callable[..., Awaitable[tuple[AcdService, HookedState]]]


@pytest.fixture
async def node(redis_url: str) -> AsyncIterator[Factory]:
    client = aioredis.Redis.from_url(redis_url)
    tasks: list[asyncio.Task[None]] = []

    async def make(**options: Any) -> tuple[AcdService, HookedState]:
        cfg = config()
        state = HookedState(client, cfg.service.site)
        service = AcdService(state, CallFacts(client, state), cfg, **options)
        tasks.append(asyncio.create_task(service.run()))
        async with asyncio.timeout(WAIT):
            await service.started.wait()
        return service, state

    try:
        yield make
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await client.aclose()


async def offered_to(handle: WorkHandle) -> str:
    offer = await handle.reserved(timeout=WAIT)
    assert offer is not None, f"{handle.item_id} was never offered"
    return offer.agent_id


async def test_given_a_call_only_agent_with_the_skills_when_a_chat_waits_then_it_is_not_staffed(
    node: Factory,
) -> None:
    service, _ = await node(poll_interval=0.02)
    await service.login("call-only")  # ready, support 3, but no chat capacity
    first = await service.enqueue(WorkRequest("chat-1", "web"))

    await eventually_true(lambda: service.wait_status("chat-1") is not None, WAIT, "positioned")
    alone = service.wait_status("chat-1")
    assert alone is not None
    assert alone.staffed == 0  # nobody can take it: the unknown wait (the offline path)
    assert alone.seconds is None

    await service.login("chatter")
    assert await offered_to(first) == "chatter"
    second = await service.enqueue(WorkRequest("chat-2", "web"))  # chatter is full (1 chat)
    await eventually_true(lambda: service.wait_status("chat-2") is not None, WAIT, "positioned")
    behind = service.wait_status("chat-2")
    assert behind is not None
    assert behind.staffed == 1  # the chat agent, reserved; never the call-only one
    assert behind.seconds is not None

    call = await service.enqueue(WorkRequest("call-1", "phone"))
    assert await offered_to(call) == "call-only"  # the call-only agent does take calls
    assert not second.assigned


async def test_given_a_wake_up_during_a_cycle_then_the_next_cycle_runs_without_waiting_the_poll(
    node: Factory,
) -> None:
    # the poll is far longer than the test may last: only the wake-up can bring the next cycle
    service, state = await node(poll_interval=600)
    await eventually_true(lambda: service._quiet is not None, WAIT, "the first cycle settled")
    handles: list[WorkHandle] = []

    async def enqueue_mid_cycle() -> None:  # after this cycle's snapshot: it cannot see the call
        handles.append(await service.enqueue(WorkRequest("call-1", "phone")))

    state.after_snapshot = enqueue_mid_cycle
    await service.login("call-only")  # wakes a cycle, which reads the snapshot, then the hook
    await eventually_true(lambda: bool(handles), WAIT, "enqueued during a cycle")
    assert await offered_to(handles[0]) == "call-only"


async def test_given_a_chat_in_wrap_up_then_its_agent_takes_another_chat_meanwhile(
    node: Factory,
) -> None:
    service, state = await node(poll_interval=0.02)
    await service.login("duo")  # two chat slots; the queue wraps up for 10 minutes
    first = await service.enqueue(WorkRequest("n1", "notes"))
    assert await offered_to(first) == "duo"
    assert await service.answered("n1")
    await service.hung_up("n1")  # n1 wraps up, holding one slot

    second = await service.enqueue(WorkRequest("n2", "notes"))
    assert await offered_to(second) == "duo"  # the other slot, long before n1's wrap-up ends
    assert await service.answered("n2")
    third = await service.enqueue(WorkRequest("n3", "notes"))
    await eventually_true(lambda: service.wait_status("n3") is not None, WAIT, "n3 waits")
    await service.cycle(full=True)
    assert third.offer is None  # both slots taken: n2 on work, n1 wrapping up
    agent = await state.agent("duo")
    assert agent is not None
    assert (agent.state, list(agent.wraps), agent.load["chat"]) == ("on_work", ["n1"], 1)

    await service.wrap_up_done("duo")  # n1's wrap-up ends: its slot is free for n3
    assert await offered_to(third) == "duo"
