"""A reconciliation pass run every interval, with jittered back-off while Redis or SQL is down."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Awaitable, Callable

import redis.asyncio as aioredis
from sqlalchemy.exc import SQLAlchemyError

from acd.adapters.redis_state import RedisStateError

__all__ = ["OUTAGES", "run_passes"]

log = logging.getLogger(__name__)

#: What a pass may meet when Redis or the records database is away: logged, then retried.
OUTAGES = (RedisStateError, SQLAlchemyError, aioredis.RedisError, OSError)


async def run_passes(
    one_pass: Callable[[], Awaitable[object]],
    *,
    interval: float,
    max_delay: float,
    what: str,
    closing: asyncio.Event | None = None,
    rng: random.Random | None = None,
) -> None:
    """Run ``one_pass`` every ``interval`` seconds until cancelled (or ``closing`` is set, after
    the pass in progress); after n failures in a row wait ``min(max_delay, interval * 2**n)``,
    times a jitter of 0.5-1.5."""
    rng = rng or random.Random()
    stop = closing or asyncio.Event()
    failures = 0
    while True:
        try:
            await one_pass()
            failures = 0
            delay = interval
        except OUTAGES as err:
            # A cancel landing inside a database call can come out as the driver's error
            # (SQLAlchemy wraps asyncpg's): the task still counts the request, so honour it.
            task = asyncio.current_task()
            if task is not None and task.cancelling():
                raise asyncio.CancelledError from err
            failures += 1
            delay = min(max_delay, interval * 2**failures) * (0.5 + rng.random())
            log.warning("%s failed (%s); retrying in %.1f s", what, err, delay)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(delay):
                await stop.wait()
        if stop.is_set():
            return
