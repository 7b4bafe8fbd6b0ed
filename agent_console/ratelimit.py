"""Per-key token buckets (logins per user name and per client address, chat messages per visitor).

In memory, per node: behind a load balancer each node limits on its own, which bounds an
attacker at (nodes x rate). The clock is injected so tests need no sleeping.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from agent_console.errors import RateLimited


@dataclass(slots=True)
class _Bucket:
    tokens: float
    updated: float


class RateLimiter:
    """`burst` requests at once, refilled at `per_second`; at most `max_keys` remembered."""

    def __init__(
        self,
        *,
        burst: int,
        per_second: float,
        clock: Callable[[], float] = time.monotonic,
        max_keys: int = 100_000,
    ) -> None:
        self.burst = burst
        self.per_second = per_second
        self.clock = clock
        self.max_keys = max_keys
        self._buckets: dict[str, _Bucket] = {}

    def hit(self, key: str, what: str = "requests") -> None:
        """Take one token for `key`, or raise `RateLimited` with the wait until the next one."""
        now = self.clock()
        bucket = self._buckets.get(key)
        if bucket is None:
            if len(self._buckets) >= self.max_keys:
                self._forget_full(now)
            bucket = self._buckets[key] = _Bucket(float(self.burst), now)
        bucket.tokens = min(self.burst, bucket.tokens + (now - bucket.updated) * self.per_second)
        bucket.updated = now
        if bucket.tokens < 1:
            wait = (1 - bucket.tokens) / self.per_second
            raise RateLimited(f"too many {what}: try again in {wait:.0f} s", retry_after=wait)
        bucket.tokens -= 1

    def _forget_full(self, now: float) -> None:
        for key, bucket in list(self._buckets.items()):
            if bucket.tokens + (now - bucket.updated) * self.per_second >= self.burst:
                del self._buckets[key]
        if len(self._buckets) >= self.max_keys:
            self._buckets.clear()
