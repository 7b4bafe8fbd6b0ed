"""Runs the main coroutine until SIGINT/SIGTERM or a deadline, then stops it cleanly."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Coroutine
from typing import Any


async def run_until_stopped(main: Coroutine[Any, Any, None], duration: float | None = None) -> None:
    """Run `main` until it ends, a signal arrives or `duration` seconds pass; then cancel it.

    An exception raised by `main` propagates; the cancellation we asked for does not.
    """
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    task = asyncio.create_task(main)
    stopper = asyncio.create_task(stop.wait())
    try:
        await asyncio.wait({task, stopper}, timeout=duration, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
        stopper.cancel()
        if not task.done():
            task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                if not task.cancelled():
                    raise
                # the cancellation we asked for: a clean stop, unless we are being cancelled too
                current = asyncio.current_task()
                if current is not None and current.cancelling():
                    raise
    if task.done() and not task.cancelled():
        task.result()
