"""Two ACD services (controllers) on one Redis: calls routed with zero double offers."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from acd.adapters.redis_calls import CallFacts
from acd.adapters.redis_state import AcdRedisState
from acd.config import parse_acd_config
from acd.service import AcdService, WorkHandle, WorkRequest
from tests.integration.test_acd_call_wait import start_redis
from tests.integration.test_acd_redis_state import Replay

pytestmark = pytest.mark.timeout(90)

AGENTS = 6
ITEMS = 40


async def test_given_two_controllers_on_one_redis_when_calls_flow_then_no_double_offer(
    tmp_path: Path,
) -> None:
    server = await start_redis(tmp_path)
    client = aioredis.Redis.from_url(server.url)
    config = parse_acd_config(
        {
            "service": {"site": "two", "missed_cooldown": 0.05},
            "queues": [{"id": "support", "skills": "support", "wrap_up": 0}],
            "agents": [
                {"id": f"a{n}", "endpoint": f"Local/{n}@agents", "skills": {"support": 2}}
                for n in range(AGENTS)
            ],
        }
    )
    services = []
    for _ in range(2):
        state = AcdRedisState(client, "two")
        services.append(AcdService(state, CallFacts(client, state), config, poll_interval=0.02))
    tasks = [asyncio.create_task(s.run()) for s in services]
    try:
        for n in range(AGENTS):
            await services[n % 2].login(f"a{n}")

        missed: set[int] = set()

        async def one_call(index: int) -> str:
            service = services[index % 2]
            handle: WorkHandle = await service.enqueue(WorkRequest(f"c{index}", "support"))
            while True:
                offer = await handle.reserved(timeout=30)
                assert offer is not None
                if index % 7 == 0 and index not in missed:  # some rings go unanswered
                    missed.add(index)
                    await service.no_answer(handle.item_id)
                    continue
                await service.answered(handle.item_id)
                await asyncio.sleep(0.01)
                await service.hung_up(handle.item_id)
                return offer.agent_id

        async with asyncio.timeout(60):
            served = await asyncio.gather(*(one_call(i) for i in range(ITEMS)))
        assert len(served) == ITEMS
        replay = Replay()
        state = services[0].state
        for event in await state.all_events():
            replay.apply(event)  # fails on the first double offer or over-capacity offer
        assert replay.offers >= ITEMS
        assert sum(s.refused for s in services) >= 0
        for n in range(AGENTS):
            agent = await state.agent(f"a{n}")
            assert agent is not None
            assert agent.offer_id is None
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await client.aclose()
        await server.stop()
