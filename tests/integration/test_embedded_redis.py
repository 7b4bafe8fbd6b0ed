"""The embedded Redis the demo uses is a real redis-server that starts, answers and goes away."""

from __future__ import annotations

import redis.asyncio as aioredis

from callcenter.embedded_redis import embedded_redis


async def test_given_no_redis_url_when_embedded_redis_runs_then_it_serves_lua_and_stops() -> None:
    async with embedded_redis() as url:
        client = aioredis.Redis.from_url(url)
        try:
            assert await client.eval("return redis.call('INCR', KEYS[1])", 1, "k") == 1
        finally:
            await client.aclose()
    client = aioredis.Redis.from_url(url, socket_timeout=1.0)
    try:
        try:
            await client.ping()
            alive = True
        except (OSError, aioredis.ConnectionError):
            alive = False
        assert not alive
    finally:
        await client.aclose()
