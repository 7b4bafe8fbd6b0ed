"""The live ACD items of one kind (an item id prefix), found by scanning their keys in Redis."""

from __future__ import annotations

from collections.abc import AsyncIterator

import redis.asyncio as aioredis

from acd.adapters.redis_state import AcdRedisState, ItemRecord

__all__ = ["FINISHED", "live_items"]

FINISHED = ("cancelled", "completed")


async def live_items(
    state: AcdRedisState, redis: aioredis.Redis, prefix: str
) -> AsyncIterator[ItemRecord]:
    """Each item whose id starts with ``prefix`` and that is not finished (``SCAN``: every
    node's items, also those queued before a restart)."""
    pattern = state.item_key(f"{prefix}*")
    key_prefix = len(state.item_key(""))
    async for key in redis.scan_iter(match=pattern, count=1000):
        raw = key.decode() if isinstance(key, bytes) else str(key)
        record = await state.item(raw[key_prefix:])
        if record is not None and record.state not in FINISHED:
            yield record
