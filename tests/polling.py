"""Bounded polling for tests: wait for a condition, fail naming what was awaited."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest


async def eventually(
    check: Callable[[], Awaitable[bool]], timeout: float, what: str, every: float = 0.01
) -> None:
    """Poll the async ``check`` until it is true; fail the test with ``what`` after ``timeout``."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not await check():
        if loop.time() > deadline:
            pytest.fail(f"not within {timeout} s: {what}")
        await asyncio.sleep(every)


async def eventually_true(
    check: Callable[[], bool], timeout: float, what: str, every: float = 0.02
) -> None:
    """:func:`eventually` for a plain predicate."""

    async def holds() -> bool:
        return check()

    await eventually(holds, timeout, what, every)
