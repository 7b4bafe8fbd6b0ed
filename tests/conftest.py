"""Shared fixtures: real Redis (and later PostgreSQL) for integration tests."""

from __future__ import annotations

import os
import socket
from collections.abc import AsyncIterator, Iterator

import pytest
import redis
import redis.asyncio as aioredis

REDIS_URL_ENV = "CALLCENTER_TEST_REDIS_URL"
REDIS_BASE = "redis://127.0.0.1:6379"
# Test sessions on one machine each claim one of these databases (a lock key in database 0),
# so two suites running at once never flush each other's keys.
TEST_DATABASES = range(15, 7, -1)
CLAIM_TTL_S = 3 * 3600


def _claim_database() -> tuple[str, redis.Redis | None, str]:
    """The Redis URL this session uses, the db-0 client holding the claim, and the claim key."""
    explicit = os.environ.get(REDIS_URL_ENV)
    if explicit:
        return explicit, None, ""
    client = redis.Redis.from_url(f"{REDIS_BASE}/0", socket_timeout=5)
    me = f"{socket.gethostname()}:{os.getpid()}"
    try:
        for db in TEST_DATABASES:
            key = f"callcenter:test-claim:{db}"
            holder = client.get(key)
            if isinstance(holder, bytes) and _dead(holder.decode()):
                client.delete(key)  # a run that was killed before it could let go
            if client.set(key, me, nx=True, ex=CLAIM_TTL_S):
                return f"{REDIS_BASE}/{db}", client, key
    except (OSError, redis.ConnectionError):
        client.close()
        return f"{REDIS_BASE}/15", None, ""  # unreachable: `redis_url` skips or fails with why
    client.close()
    raise RuntimeError(f"every test Redis database {list(TEST_DATABASES)} is claimed by a run")


def _dead(holder: str) -> bool:
    """Whether the claim's holder (``host:pid``) is a process of this host that has ended."""
    host, _, pid = holder.rpartition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


@pytest.fixture(scope="session")
def test_redis_url() -> Iterator[str]:
    """The Redis database of this test session, claimed for the session's length."""
    url, client, key = _claim_database()
    try:
        yield url
    finally:
        if client is not None:
            client.delete(key)
            client.close()


@pytest.fixture
async def redis_url(test_redis_url: str) -> AsyncIterator[str]:
    """A real Redis database, emptied before and after the test.

    In CI (CI=true) an unreachable Redis is an error; on a developer machine the test is skipped
    with the reason, because `.ci/run` is what starts Redis.
    """
    client = aioredis.Redis.from_url(test_redis_url)
    try:
        await client.ping()
    except (OSError, aioredis.ConnectionError) as err:
        await client.aclose()
        if os.environ.get("CI"):
            raise
        pytest.skip(
            f"Redis not reachable at {test_redis_url}: {err} (run .ci/run, which starts it)"
        )
    await client.flushdb()
    try:
        yield test_redis_url
    finally:
        await client.flushdb()
        await client.aclose()
