"""Ownership lease in Redis: exactly one controller node owns (drives the AMI link of) an Asterisk.

Theory of operation
-------------------

* The lease of Asterisk ``<id>`` is the key ``callcenter:lease:{asterisk:<id>}`` holding
  ``<node_id>:<token>`` with a PX time-to-live. ``<token>`` is a fencing token from
  ``INCR callcenter:lease:{asterisk:<id>}:epoch`` (same hash tag, same Cluster slot): each
  acquisition starts a new term with a
  higher token, so whatever the owner does on the PBX can be tagged with it and a stale owner's
  late actions told apart. The epoch key has no TTL (a flushed Redis starts again at 1).
* The key is only changed by the versioned Lua scripts in ``lua/`` (acquire, renew, release),
  run with EVALSHA and loaded on NOSCRIPT (redis-py ``register_script``). Renew and release are
  compare-and-set on the whole ``<node_id>:<token>`` value, so a node can never extend or drop
  a lease of another node, or of one of its own earlier terms.
* :meth:`AsteriskLease.run` loops: acquire (poll every ``retry_every`` with jitter while
  another node holds it); once acquired, start ``on_acquired(token)`` as a task and renew every
  ``renew_every``. The lease is considered held until ``sent_at + ttl`` of the last successful
  acquire/renew, measured on the local monotonic clock from *before* the request was sent;
  Redis starts its TTL later than that, so the local deadline is never later than the real one.
* Safety first (zero owners for a moment beats two): the task is cancelled at once when a renew
  says the lease is not ours any more, and when Redis has been unreachable so long that the
  lease may expire, i.e. at ``deadline - guard`` with ``guard = ttl / 5`` to leave the task time
  to stop. Only after the task has finished does the node try to acquire again.
* If ``on_acquired`` returns, the lease is released and the loop tries again; if it raises,
  the lease is released and the error propagates. Cancelling :meth:`run` cancels the task,
  waits for it and releases the lease (bounded by a timeout; otherwise it expires by itself).
  A cancel that lands while an acquire is in flight may leave a lease nobody renews: it
  expires after ``ttl``.
* Every Redis call has a timeout. Connection errors and timeouts are logged once per outage
  and retried with capped exponential back-off and jitter; other Redis errors (a broken
  script) propagate.
* Redis Cluster is not supported: the two keys have no common hash tag.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis
import redis.exceptions

from acd.errors import AcdError

__all__ = ["AsteriskLease", "LeaseError", "MalformedLeaseError", "lease_key"]

log = logging.getLogger(__name__)

_LUA_DIR = Path(__file__).parent / "lua"
ACQUIRE_SCRIPT = "lease_acquire.v1.lua"
RENEW_SCRIPT = "lease_renew.v1.lua"
RELEASE_SCRIPT = "lease_release.v1.lua"

#: Errors that mean "Redis is not reachable right now"; anything else is a bug and propagates.
_OUTAGE_ERRORS: tuple[type[Exception], ...] = (
    redis.exceptions.ConnectionError,
    redis.exceptions.TimeoutError,
    redis.exceptions.ReadOnlyError,
    TimeoutError,
    OSError,
)


class LeaseError(AcdError):
    """Base of the ownership lease's errors."""

    error_id = "lease-error"


class MalformedLeaseError(LeaseError):
    """The lease key holds a value that is not ``<node_id>:<token>``."""

    error_id = "lease-malformed"


def lease_key(asterisk_id: str) -> str:
    """The Redis key of the ownership lease of one Asterisk."""
    # The hash tag keeps the lease and its epoch counter in one Redis Cluster slot.
    return f"callcenter:lease:{{asterisk:{asterisk_id}}}"


def _load_script(name: str) -> str:
    return (_LUA_DIR / name).read_text(encoding="utf-8")


async def _await(awaitable: Awaitable[None]) -> None:
    await awaitable


def _text(value: str | bytes) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else value


class AsteriskLease:
    """The ownership lease of one Asterisk, held on behalf of one controller node."""

    def __init__(
        self,
        redis: aioredis.Redis,
        asterisk_id: str,
        node_id: str,
        *,
        ttl: float = 5.0,
        renew_every: float | None = None,
        retry_every: float | None = None,
    ) -> None:
        if ttl <= 0.0:
            raise ValueError(f"lease ttl must be positive, got {ttl}")
        if not asterisk_id or not node_id:
            raise ValueError("asterisk_id and node_id must not be empty")
        self._redis = redis
        self.asterisk_id = asterisk_id
        self.node_id = node_id
        self.ttl = ttl
        self.renew_every = renew_every if renew_every is not None else ttl / 3
        self.retry_every = retry_every if retry_every is not None else ttl / 3
        if not 0.0 < self.renew_every < ttl or self.retry_every <= 0.0:
            raise ValueError("renew_every must be in (0, ttl) and retry_every positive")
        self._ttl_ms = max(1, round(ttl * 1000))
        self._guard = ttl / 5
        self._call_timeout = max(self.renew_every, 0.05)
        self._max_backoff = max(self.retry_every, ttl)
        self.key = lease_key(asterisk_id)
        self._epoch_key = f"{self.key}:epoch"
        self._acquire = redis.register_script(_load_script(ACQUIRE_SCRIPT))
        self._renew = redis.register_script(_load_script(RENEW_SCRIPT))
        self._release = redis.register_script(_load_script(RELEASE_SCRIPT))
        self._outage = False
        self._random = random.Random()
        #: The fencing token of the current term while this node owns the lease, else None.
        self.token: int | None = None

    # --- one Redis operation each (also used by tests) ------------------------------------

    async def try_acquire(self, timeout: float | None = None) -> int | None:
        """Take the lease (or re-take it if ours); the new fencing token, or None if not free."""
        token = await self._call(
            self._acquire([self.key, self._epoch_key], [self.node_id, self._ttl_ms]), timeout
        )
        return int(token) or None

    async def renew(self, token: int, timeout: float | None = None) -> bool:
        """Extend the lease if it is still ours with this token; False if it is not."""
        done = await self._call(
            self._renew([self.key], [self.node_id, token, self._ttl_ms]), timeout
        )
        return int(done) == 1

    async def release(self, token: int, timeout: float | None = None) -> bool:
        """Give the lease up if it is still ours with this token; False if it was not."""
        done = await self._call(self._release([self.key], [self.node_id, token]), timeout)
        return int(done) == 1

    async def owner(self, timeout: float | None = None) -> tuple[str, int] | None:
        """Who holds the lease now: (node_id, fencing token), or None if nobody does."""
        raw = await self._call(self._redis.get(self.key), timeout)
        if raw is None:
            return None
        value = _text(raw)
        node, sep, token = value.rpartition(":")
        if not sep or not node or not token.isdigit():
            raise MalformedLeaseError(f"lease {self.key} holds {value!r}, not <node_id>:<token>")
        return node, int(token)

    async def _call(self, op: Awaitable[Any], timeout: float | None) -> Any:
        # wait_for, not asyncio.timeout: on Python 3.11 the latter turns its own expiry into
        # CancelledError while the task is being cancelled (e.g. the release in run()'s cleanup).
        return await asyncio.wait_for(op, self._call_timeout if timeout is None else timeout)

    # --- the loop -------------------------------------------------------------------------

    async def run(self, on_acquired: Callable[[int], Awaitable[None]]) -> None:
        """Acquire, run `on_acquired(token)` while the lease is held, and start over when lost.

        Runs until cancelled (then the task is cancelled and the lease released) or until
        `on_acquired` raises (the lease is released and the error propagates).
        """
        while True:
            token, deadline = await self._acquire_until_owned()
            await self._own(token, deadline, on_acquired)
            await asyncio.sleep(self._jitter(self.retry_every))

    async def _acquire_until_owned(self) -> tuple[int, float]:
        """The fencing token and the local time until which the lease is surely held."""
        loop = asyncio.get_running_loop()
        failures = 0
        while True:
            sent_at = loop.time()
            try:
                token = await self.try_acquire()
            except _OUTAGE_ERRORS as err:
                self._note_outage(err)
                failures += 1
                delay = min(self.retry_every * 2 ** (failures - 1), self._max_backoff)
            else:
                self._note_reachable()
                failures = 0
                if token is not None:
                    log.info(
                        "node %s owns Asterisk %s (fencing token %d)",
                        self.node_id,
                        self.asterisk_id,
                        token,
                    )
                    return token, sent_at + self.ttl
                delay = self.retry_every
            await asyncio.sleep(self._jitter(delay))

    async def _own(
        self, token: int, deadline: float, on_acquired: Callable[[int], Awaitable[None]]
    ) -> None:
        self.token = token
        task = asyncio.create_task(
            _await(on_acquired(token)), name=f"lease-owner-{self.asterisk_id}-{token}"
        )
        try:
            lost = await self._hold(token, task, deadline)
        except (asyncio.CancelledError, Exception):
            # run() cancelled (or a Redis bug): stop the owner first, then give the lease up.
            failure = await self._stop(task)
            if failure is not None:
                log.error(
                    "owner of Asterisk %s failed while stopping", self.asterisk_id, exc_info=failure
                )
            await self._release_quietly(token)
            raise
        failure = await self._stop(task)
        if not lost:
            await self._release_quietly(token)
        if failure is not None:
            raise failure

    async def _stop(self, task: asyncio.Task[None]) -> BaseException | None:
        """Cancel `task` (if still running), wait until it has finished, return its error."""
        self.token = None
        task.cancel()
        await asyncio.wait({task})
        return None if task.cancelled() else task.exception()

    async def _hold(self, token: int, task: asyncio.Task[None], deadline: float) -> bool:
        """Renew while `task` runs; True when the lease was lost (task must stop), False when
        the task ended by itself."""
        loop = asyncio.get_running_loop()
        next_renew = loop.time() + self.renew_every
        while True:
            fence_at = deadline - self._guard
            wake = min(next_renew, fence_at)
            await asyncio.wait({task}, timeout=max(0.0, wake - loop.time()))
            if task.done():
                return False
            now = loop.time()
            if now >= fence_at:
                log.error(
                    "node %s: Redis unreachable too long, may lose Asterisk %s: stopping its "
                    "owner (fencing token %d)",
                    self.node_id,
                    self.asterisk_id,
                    token,
                )
                return True
            if now < next_renew:
                continue
            try:
                still_ours = await self.renew(
                    token, timeout=min(self._call_timeout, fence_at - now)
                )
            except _OUTAGE_ERRORS as err:
                self._note_outage(err)
                next_renew = loop.time() + self._jitter(self.retry_every)
                continue
            self._note_reachable()
            if not still_ours:
                log.warning(
                    "node %s lost Asterisk %s (fencing token %d): stopping its owner",
                    self.node_id,
                    self.asterisk_id,
                    token,
                )
                return True
            deadline = now + self.ttl
            next_renew = now + self.renew_every

    async def _release_quietly(self, token: int) -> None:
        try:
            released = await self.release(token)
        except _OUTAGE_ERRORS as err:
            log.warning(
                "node %s could not release Asterisk %s (it expires in %.1f s): %r",
                self.node_id,
                self.asterisk_id,
                self.ttl,
                err,
            )
            return
        if released:
            log.info("node %s released Asterisk %s", self.node_id, self.asterisk_id)

    # --- helpers --------------------------------------------------------------------------

    def _jitter(self, delay: float) -> float:
        return delay * self._random.uniform(0.8, 1.0)

    def _note_outage(self, err: Exception) -> None:
        if not self._outage:
            self._outage = True
            log.warning(
                "node %s: Redis unreachable for lease of Asterisk %s, retrying: %r",
                self.node_id,
                self.asterisk_id,
                err,
            )

    def _note_reachable(self) -> None:
        if self._outage:
            self._outage = False
            log.info(
                "node %s: Redis reachable again for lease of Asterisk %s",
                self.node_id,
                self.asterisk_id,
            )
