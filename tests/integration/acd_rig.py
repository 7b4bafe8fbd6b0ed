"""A running AcdService on real Redis for the tests that drive it through adapters."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import redis.asyncio as aioredis

from acd.adapters.redis_calls import CallFacts
from acd.adapters.redis_state import AcdRedisState
from acd.config import AcdConfig
from acd.service import AcdService


@asynccontextmanager
async def running_acd(
    redis_url: str, site: str, config: AcdConfig
) -> AsyncIterator[tuple[AcdService, aioredis.Redis]]:
    """The service (polling every 20 ms) running and started; cancelled and closed on exit."""
    client = aioredis.Redis.from_url(redis_url)
    state = AcdRedisState(client, site)
    acd = AcdService(state, CallFacts(client, state), config, poll_interval=0.02)
    runner = asyncio.create_task(acd.run())
    try:
        await acd.started.wait()
        yield acd, client
    finally:
        runner.cancel()
        await asyncio.gather(runner, return_exceptions=True)
        await client.aclose()
