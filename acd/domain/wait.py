"""Expected wait of a queued item, from recent handle times and the agents actually staffed.

Theory of operation
-------------------

The caller at position ``k`` (1 = next) of a queue is served when ``k`` of the agents who can
take the item have freed up. With ``n`` such agents staffed and all busy, and handle times
roughly exponential with mean ``h`` (the M/M/n model behind Erlang C), each agent frees up at
rate ``1/h``, so the pool frees up at rate ``n/h`` and the wait until the ``k``-th departure is
Erlang(k, n/h) distributed with mean

    E[W | position k] = k * h / n

(Gross, Shortle, Thompson and Harris, *Fundamentals of Queueing Theory*, 4th ed., section 2.3,
the conditional waiting time of an M/M/c queue given the number ahead). Agents that are free
right now serve the first positions at once: with ``r`` of them ready the caller at position
``k <= r`` waits about nothing, and one at ``k > r`` waits ``(k - r) * h / n``.

``h`` is the mean of the most recent handle times of the queue (talk plus wrap-up, at most
``window`` of them, see :class:`HandleTimes`), not an exponentially smoothed hold time (the
Asterisk app_queue ``holdtime`` announcement, which lags and ignores staffing); before any call
has been handled the queue's configured ``default_handle_time`` is used. ``n`` counts the agents
logged in, not paused, whose skills match the item and who have capacity on its channel
(:meth:`~acd.domain.queues.Requirement.staffed_by`; ready, reserved, on work or in wrap-up): a
call-only agent with the right skills does not staff a chat queue.
With nobody staffed the wait is unknown (``None``): the announcement then says so instead of
promising a time.

Pure: no clock, no I/O; the service passes the numbers in.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass

from acd.errors import AcdError

__all__ = ["HandleTimes", "InvalidWaitInput", "WaitEstimate", "expected_wait", "rounded_minutes"]


class InvalidWaitInput(AcdError):
    """A wait estimate was asked with impossible numbers (position < 1, negative counts)."""

    error_id = "acd-invalid-wait-input"


@dataclass(frozen=True, slots=True)
class WaitEstimate:
    """Where an item stands: its 1-based position and the expected wait in seconds.

    ``seconds`` is None when no agent who could take the item is staffed.
    """

    position: int
    seconds: float | None
    staffed: int
    handle_time: float


class HandleTimes:
    """The last ``window`` handle times (seconds) of one queue, and their mean."""

    __slots__ = ("_total", "_values")

    def __init__(self, window: int = 50, values: Iterable[float] = ()) -> None:
        if window < 1:
            raise InvalidWaitInput(f"the handle-time window must be >= 1, got {window}")
        self._values: deque[float] = deque(maxlen=window)
        self._total = 0.0
        for value in values:
            self.add(value)

    def add(self, seconds: float) -> None:
        """Record one handled item; negative or non-finite times are ignored."""
        if not math.isfinite(seconds) or seconds < 0:
            return
        values = self._values
        if len(values) == values.maxlen:
            self._total -= values[0]
        values.append(seconds)
        self._total += seconds

    def __len__(self) -> int:
        return len(self._values)

    def mean(self, default: float) -> float:
        """The mean of the recorded times, or ``default`` when there are none."""
        if not self._values:
            return default
        return max(0.0, self._total / len(self._values))


def expected_wait(
    position: int, *, handle_time: float, staffed: int, ready: int = 0
) -> WaitEstimate:
    """The expected wait of the item at ``position``; see the module docstring for the formula."""
    if position < 1:
        raise InvalidWaitInput(f"position must be >= 1, got {position}")
    if staffed < 0 or ready < 0:
        raise InvalidWaitInput(f"agent counts must be >= 0, got {staffed} staffed, {ready} ready")
    if not math.isfinite(handle_time) or handle_time < 0:
        raise InvalidWaitInput(f"handle time must be a finite number >= 0, got {handle_time}")
    if staffed == 0:
        return WaitEstimate(position, None, 0, handle_time)
    ahead_of_free = max(0, position - min(ready, staffed))
    seconds = ahead_of_free * handle_time / staffed
    return WaitEstimate(position, seconds, staffed, handle_time)


def rounded_minutes(seconds: float) -> int:
    """Minutes to announce: rounded up, at least 1 (nobody is promised "zero minutes")."""
    return max(1, math.ceil(seconds / 60.0))
