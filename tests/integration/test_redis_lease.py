"""The Asterisk ownership lease against a real Redis: one owner at a time, fast takeover, fencing.

Waits are bounded polls or futures with a deadline. The deadlines are correctness bounds
(e.g. "a dead owner is replaced within ttl plus a margin"), not speed measurements.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import suppress
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest
import redis.asyncio as aioredis

from acd.adapters.redis_lease import AsteriskLease, MalformedLeaseError, lease_key
from tests.polling import eventually

pytestmark = pytest.mark.integration

TTL = 1.0
ROOT = Path(__file__).resolve().parents[2]
NODE_SCRIPT = Path(__file__).with_name("lease_node.py")
PROCESS_START = 15.0  # a fresh interpreter importing redis and acd, on a loaded CI machine
TAKEOVER = TTL + 3.0  # expiry + one retry period + scheduling slack


@pytest.fixture
async def client(redis_url: str) -> AsyncIterator[aioredis.Redis]:
    # decode_responses=True here, False for the proxied client: the lease works with both.
    c = aioredis.Redis.from_url(redis_url, socket_timeout=5.0, decode_responses=True)
    try:
        yield c
    finally:
        await c.aclose()


class Owners:
    """Records which in-process node runs its owner task, and checks there is never two."""

    def __init__(self) -> None:
        self.active: set[str] = set()
        self.max_active = 0
        self.log: list[tuple[str, int, str]] = []
        self.started: dict[str, asyncio.Queue[int]] = {}

    def callback(self, node: str) -> Callable[[int], Awaitable[None]]:
        queue: asyncio.Queue[int] = asyncio.Queue()
        self.started[node] = queue

        async def own(token: int) -> None:
            self.active.add(node)
            self.max_active = max(self.max_active, len(self.active))
            self.log.append((node, token, "started"))
            queue.put_nowait(token)
            try:
                await asyncio.Event().wait()
            finally:
                self.active.discard(node)
                self.log.append((node, token, "stopped"))

        return own

    async def next_start(self, node: str, timeout: float) -> int:
        return await asyncio.wait_for(self.started[node].get(), timeout)


async def cancel(task: asyncio.Task[None]) -> None:
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


# --- the Lua scripts ----------------------------------------------------------------------


async def test_given_a_lease_taken_over_then_the_old_token_can_neither_renew_nor_release(
    client: aioredis.Redis,
) -> None:
    a = AsteriskLease(client, "pbx-1", "node-a", ttl=TTL)
    b = AsteriskLease(client, "pbx-1", "node-b", ttl=TTL)

    t1 = await a.try_acquire()
    assert t1 is not None
    assert await b.try_acquire() is None
    assert await b.renew(t1) is False
    assert await b.release(t1) is False
    assert await a.owner() == ("node-a", t1)

    assert await a.release(t1) is True
    t2 = await b.try_acquire()
    assert t2 is not None
    assert t2 > t1
    assert await a.renew(t1) is False
    assert await a.release(t1) is False
    assert await b.renew(t2) is True
    assert await a.owner() == ("node-b", t2)


async def test_given_a_node_retakes_its_own_lease_then_its_previous_term_is_fenced_off(
    client: aioredis.Redis,
) -> None:
    lease = AsteriskLease(client, "pbx-1", "node-a", ttl=TTL)
    first = await lease.try_acquire()
    again = await lease.try_acquire()
    assert first is not None
    assert again is not None
    assert again > first
    assert await lease.renew(first) is False
    assert await lease.renew(again) is True
    assert await lease.owner() == ("node-a", again)


async def test_given_a_lease_expired_then_its_token_cannot_renew_it(
    client: aioredis.Redis,
) -> None:
    lease = AsteriskLease(client, "pbx-1", "node-a", ttl=TTL)
    token = await lease.try_acquire()
    assert token is not None
    await client.pexpire(lease_key("pbx-1"), 1)

    async def gone() -> bool:
        return await client.exists(lease_key("pbx-1")) == 0

    await eventually(gone, 5.0, "the lease key expired")
    assert await lease.renew(token) is False
    assert await lease.owner() is None


async def test_given_a_node_id_with_colons_then_another_node_with_its_prefix_cannot_take_it(
    client: aioredis.Redis,
) -> None:
    owner = AsteriskLease(client, "pbx-1", "host:1234", ttl=TTL)
    prefix = AsteriskLease(client, "pbx-1", "host", ttl=TTL)
    token = await owner.try_acquire()
    assert token is not None
    assert await prefix.try_acquire() is None
    assert await prefix.owner() == ("host:1234", token)


async def test_given_a_garbage_lease_value_then_owner_reports_it(
    client: aioredis.Redis,
) -> None:
    await client.set(lease_key("pbx-1"), "no-token-here")
    with pytest.raises(MalformedLeaseError):
        await AsteriskLease(client, "pbx-1", "node-a").owner()


async def test_given_the_scripts_were_flushed_then_they_are_loaded_again(
    client: aioredis.Redis,
) -> None:
    lease = AsteriskLease(client, "pbx-1", "node-a", ttl=TTL)
    assert await lease.try_acquire() is not None
    await client.script_flush()
    token = await lease.try_acquire()
    assert token is not None
    assert await lease.renew(token) is True


# --- run(): in one process ----------------------------------------------------------------


async def test_given_two_nodes_then_exactly_one_owns_and_the_other_takes_over_on_cancel(
    client: aioredis.Redis,
) -> None:
    owners = Owners()
    leases = {n: AsteriskLease(client, "pbx-1", n, ttl=TTL) for n in ("node-a", "node-b")}
    tasks = {n: asyncio.create_task(lease.run(owners.callback(n))) for n, lease in leases.items()}
    try:

        async def someone_owns() -> bool:
            return bool(owners.log)

        await eventually(someone_owns, 5.0, "one node owns the lease")
        first, token, _ = owners.log[0]
        other = "node-b" if first == "node-a" else "node-a"
        assert await leases[other].owner() == (first, token)
        assert leases[first].token == token
        assert leases[other].token is None

        await cancel(tasks[first])
        assert (first, token, "stopped") in owners.log
        new_token = await owners.next_start(other, TAKEOVER)
        assert new_token > token
        assert await leases[other].owner() == (other, new_token)
        assert owners.max_active == 1
    finally:
        for task in tasks.values():
            task.cancel()
        await asyncio.gather(*tasks.values(), return_exceptions=True)
    assert await client.exists(lease_key("pbx-1")) == 0, "cancelled run() releases the lease"


async def test_given_the_lease_was_taken_by_another_node_then_the_owner_stops_at_its_next_renew(
    client: aioredis.Redis,
) -> None:
    owners = Owners()
    a = AsteriskLease(client, "pbx-1", "node-a", ttl=TTL)
    intruder = AsteriskLease(client, "pbx-1", "node-b", ttl=TTL)
    task = asyncio.create_task(a.run(owners.callback("node-a")))
    try:
        token_a = await owners.next_start("node-a", 5.0)
        await client.delete(lease_key("pbx-1"))  # as if it had expired in a long pause
        token_b = await intruder.try_acquire()
        assert token_b is not None

        async def a_stopped() -> bool:
            return ("node-a", token_a, "stopped") in owners.log

        await eventually(a_stopped, TTL + 2.0, "node-a stopped its owner task")
        assert await intruder.owner() == ("node-b", token_b), "the loser does not release it"
        # node-b never renews, so node-a gets the lease back after it expires, in a new term.
        assert await owners.next_start("node-a", TAKEOVER) > token_b
    finally:
        await cancel(task)


async def test_given_the_owner_task_returns_then_the_lease_is_released_and_taken_again(
    client: aioredis.Redis,
) -> None:
    tokens: asyncio.Queue[int] = asyncio.Queue()

    async def short_lived(token: int) -> None:
        tokens.put_nowait(token)

    lease = AsteriskLease(client, "pbx-1", "node-a", ttl=TTL)
    task = asyncio.create_task(lease.run(short_lived))
    try:
        first = await asyncio.wait_for(tokens.get(), 5.0)
        second = await asyncio.wait_for(tokens.get(), 5.0)
        assert second > first
    finally:
        await cancel(task)


async def test_given_the_owner_task_fails_then_run_releases_the_lease_and_raises(
    client: aioredis.Redis,
) -> None:
    class Boom(Exception):
        pass

    async def failing(token: int) -> None:
        raise Boom(token)

    lease = AsteriskLease(client, "pbx-1", "node-a", ttl=TTL)
    with pytest.raises(Boom):
        await asyncio.wait_for(lease.run(failing), 5.0)
    assert await lease.owner() is None


async def test_given_the_owner_is_cut_off_from_redis_then_it_stops_before_another_takes_over(
    client: aioredis.Redis, redis_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    parts = urlsplit(redis_url)
    if parts.scheme != "redis" or parts.hostname is None:
        pytest.skip(f"the cut-off proxy needs a TCP Redis URL, not {redis_url}")
    proxy = FreezableProxy(parts.hostname, parts.port or 6379)
    port = await proxy.start()
    userinfo = parts.netloc.rpartition("@")[0]
    netloc = f"{userinfo}@127.0.0.1:{port}" if userinfo else f"127.0.0.1:{port}"
    cut_off_client = aioredis.Redis.from_url(urlunsplit(parts._replace(netloc=netloc)))

    owners = Owners()
    a = AsteriskLease(cut_off_client, "pbx-1", "node-a", ttl=TTL)
    b = AsteriskLease(client, "pbx-1", "node-b", ttl=TTL)
    task_a = asyncio.create_task(a.run(owners.callback("node-a")))
    task_b: asyncio.Task[None] | None = None
    try:
        token_a = await owners.next_start("node-a", 5.0)
        task_b = asyncio.create_task(b.run(owners.callback("node-b")))
        caplog.set_level(logging.WARNING, logger="acd.adapters.redis_lease")
        proxy.freeze()

        token_b = await owners.next_start("node-b", TAKEOVER)
        assert token_b > token_a
        assert owners.log.index(("node-a", token_a, "stopped")) < owners.log.index(
            ("node-b", token_b, "started")
        ), owners.log
        assert owners.max_active == 1
        outage_reports = [
            r for r in caplog.records if "node-a: Redis unreachable for lease" in r.getMessage()
        ]
        assert len(outage_reports) == 1, "an outage is logged once"
    finally:
        for task in (task_a, task_b):
            if task is not None:
                task.cancel()
        await asyncio.gather(*(t for t in (task_a, task_b) if t), return_exceptions=True)
        await cut_off_client.aclose()
        await proxy.close()


class FreezableProxy:
    """A TCP relay to Redis that can be frozen: then it swallows every byte, like a partition."""

    def __init__(self, host: str, port: int) -> None:
        self._upstream = (host, port)
        self._frozen = False
        self._server: asyncio.Server | None = None
        self._pumps: set[asyncio.Task[None]] = set()
        self._writers: list[asyncio.StreamWriter] = []

    async def start(self) -> int:
        self._server = await asyncio.start_server(self._relay, "127.0.0.1", 0)
        port: int = self._server.sockets[0].getsockname()[1]
        return port

    def freeze(self) -> None:
        self._frozen = True

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for pump in self._pumps:
            pump.cancel()
        await asyncio.gather(*self._pumps, return_exceptions=True)
        for writer in self._writers:
            writer.close()
        if self._server is not None:
            await asyncio.wait_for(self._server.wait_closed(), 5.0)

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.append(writer)
        up_reader, up_writer = await asyncio.wait_for(asyncio.open_connection(*self._upstream), 5.0)
        self._writers.append(up_writer)
        for src, dst in ((reader, up_writer), (up_reader, writer)):
            pump = asyncio.create_task(self._pump(src, dst))
            self._pumps.add(pump)

    async def _pump(self, src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
        # No read timeout: a pump lives as long as its connection, and close() cancels it.
        with suppress(OSError):
            while data := await src.read(65536):
                if not self._frozen:
                    dst.write(data)
                    await asyncio.wait_for(dst.drain(), 5.0)


# --- run(): separate processes ------------------------------------------------------------


async def start_node(redis_url: str, asterisk_id: str, node_id: str) -> asyncio.subprocess.Process:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
    return await asyncio.create_subprocess_exec(
        sys.executable,
        str(NODE_SCRIPT),
        redis_url,
        asterisk_id,
        node_id,
        str(TTL),
        cwd=ROOT,
        env=env,
    )


async def stop_all(procs: list[asyncio.subprocess.Process]) -> None:
    for proc in procs:
        if proc.returncode is None:
            proc.kill()
    for proc in procs:
        await asyncio.wait_for(proc.wait(), 10.0)


async def test_given_an_owner_process_is_killed_then_another_node_takes_over_within_the_ttl(
    client: aioredis.Redis, redis_url: str
) -> None:
    survivor = AsteriskLease(client, "pbx-1", "node-alive", ttl=TTL)
    proc = await start_node(redis_url, "pbx-1", "node-doomed")
    owners = Owners()
    task: asyncio.Task[None] | None = None
    try:

        async def doomed_owns() -> bool:
            current = await survivor.owner()
            return current is not None and current[0] == "node-doomed"

        await eventually(doomed_owns, PROCESS_START, "the node process owns the lease")
        doomed = await survivor.owner()
        assert doomed is not None
        task = asyncio.create_task(survivor.run(owners.callback("node-alive")))

        proc.send_signal(signal.SIGKILL)
        await asyncio.wait_for(proc.wait(), 10.0)
        token = await owners.next_start("node-alive", TAKEOVER)
        assert token > doomed[1]
        assert await survivor.owner() == ("node-alive", token)
    finally:
        if task is not None:
            await cancel(task)
        await stop_all([proc])


async def test_given_racing_node_processes_then_their_ownership_terms_never_overlap(
    client: aioredis.Redis, redis_url: str
) -> None:
    """Each node adds its term to a Redis set when its owner task starts and removes it when it
    stops (see lease_node.py), so an overlap is caught by Redis itself, not by sampling. Owners
    are stopped one after another with SIGTERM, so ownership changes hands under contention."""
    claims = "callcenter:test:lease:pbx-race"
    nodes = {f"node-{i}": await start_node(redis_url, "pbx-race", f"node-{i}") for i in range(3)}
    observer = AsteriskLease(client, "pbx-race", "observer", ttl=TTL)
    try:
        previous: tuple[str, int] | None = None
        for _ in range(len(nodes)):

            async def new_owner(previous: tuple[str, int] | None = previous) -> bool:
                current = await observer.owner()
                if current is None or current == previous:
                    return False
                last = await client.lindex(f"{claims}:history", -1)
                return bool(last == f"{current[0]}:{current[1]}:acquired")

            await eventually(new_owner, PROCESS_START + TAKEOVER, "a node owns the lease")
            current = await observer.owner()
            assert current is not None
            if previous is not None:
                assert current[1] > previous[1]
            proc = nodes[current[0]]
            proc.send_signal(signal.SIGTERM)
            assert await asyncio.wait_for(proc.wait(), 10.0) == 0
            previous = current
    finally:
        await stop_all(list(nodes.values()))

    assert await client.get(f"{claims}:overlap") is None
    assert await client.scard(f"{claims}:active") == 0
    history = [str(h) for h in await client.lrange(f"{claims}:history", 0, -1)]
    assert len(history) == 2 * len(nodes), history
    terms = list(zip(history[0::2], history[1::2], strict=True))
    for started, stopped in terms:
        node, token, what = started.rsplit(":", 2)
        assert what == "acquired", history
        assert stopped == f"{node}:{token}:stopped", history
    tokens = [int(started.rsplit(":", 2)[1]) for started, _ in terms]
    assert tokens == sorted(set(tokens)), history
