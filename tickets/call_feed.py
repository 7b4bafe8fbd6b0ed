"""The IVR's path stream into the help desk: every finished IVR session becomes a call on a ticket.

Theory of operation
-------------------

The IVR publishes each step of a call as a path event on the Redis stream
``callcenter:events:ivr`` (``ivr.adapters.path_sink``). :class:`CallFold` (pure) collects one
call's events and, when the session ends (``IvrEnded``), folds them into one
:class:`~tickets.calls.CallEvent`: caller, start and end, the whole path, the ticket the caller
named (a successful ticket-status lookup), the queue the call was handed to, how the wait there
ended (``QueueLeft``: the agent, the wait, the talk time), and a disposition (answered,
self-service, voicemail, callback, abandoned, failed; in progress while Asterisk's own Queue()
has the call). A session that never ends (the
controller was killed mid-call) is folded anyway once it has been silent for ``stale_after``
seconds, with what is known and the disposition ``failed``: the call is never lost.

:class:`CallFeed` (adapter) reads the stream through a consumer group, so several nodes share
the work and each entry is handled once. An entry is acknowledged only when its call has been
stored (``CallTickets.record_call``), so a node that dies holding half a call leaves its entries
pending; they are claimed (``XAUTOCLAIM``) by whichever node runs next, after ``claim_idle``
seconds, and the call is folded again from the start. ``record_call`` is idempotent per
``call_id``, so a call folded twice is stored once. A database outage keeps the finished call in
memory and retries with back-off; an entry that cannot be decoded is logged, kept raw in the
``callcenter:events:ivr:dead`` stream and acknowledged, so one bad entry never blocks the rest.

After a call is stored the feed hands it to the help desk's hooks (:class:`CallHooks`, which
``tickets.hooks.HelpDeskHooks`` implements: the ticket's SLA clock and phone service level, the
survey flow's answers, cross-channel duplicates). The entries are acknowledged only after the
hooks ran too; a database outage there retries the whole call (both steps are idempotent).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol

import redis.asyncio as aioredis
from redis.exceptions import RedisError, ResponseError
from sqlalchemy.exc import InterfaceError, OperationalError

from callcenter.logmask import mask_number
from ivr.adapters.path_sink import IVR_EVENTS_STREAM, PathEventDecodeError, decode_path_event
from ivr.domain.flow import LookupKind
from ivr.domain.path import (
    CallbackRequested,
    IvrEnded,
    IvrStarted,
    LookupAnswered,
    LookupOutcome,
    Outcome,
    PathEvent,
    QueueLeft,
    QueueOutcome,
    VoicemailLeft,
)
from tickets.calls import CallEvent, CallTicketed, CallTickets, ivr_path_json
from tickets.errors import DatabaseUnavailable
from tickets.models import Disposition

__all__ = ["DEAD_LETTER_STREAM", "CallFeed", "CallFold", "CallHooks", "FoldedCall", "fold_call"]

log = logging.getLogger(__name__)

DEAD_LETTER_STREAM = f"{IVR_EVENTS_STREAM}:dead"
GROUP = "tickets"


class CallHooks(Protocol):
    """What the help desk does once a call is on its ticket (idempotent per call)."""

    async def call_ticketed(self, ticketed: CallTicketed, event: CallEvent) -> None: ...


@dataclass(frozen=True, slots=True)
class FoldedCall:
    """One call ready for the help desk, and the stream entries it was folded from."""

    event: CallEvent
    entry_ids: tuple[str, ...]


def fold_call(call_id: str, events: Iterable[PathEvent], *, ended: bool = True) -> CallEvent:
    """The help desk's view of one IVR session (``ended=False``: it never finished)."""
    path = list(events)
    started = next((e for e in path if isinstance(e, IvrStarted)), None)
    end = next((e for e in reversed(path) if isinstance(e, IvrEnded)), None)
    voicemail = next((e for e in reversed(path) if isinstance(e, VoicemailLeft)), None)
    named = next(
        (
            e.ticket
            for e in reversed(path)
            if isinstance(e, LookupAnswered)
            and e.kind is LookupKind.TICKET_STATUS
            and e.outcome is LookupOutcome.OK
            and e.ticket
        ),
        "",
    )
    left = next((e for e in reversed(path) if isinstance(e, QueueLeft)), None)
    first_at = started.at if started else (path[0].at if path else datetime.now().astimezone())
    last_at = end.at if end else (path[-1].at if path else first_at)
    queue = end.destination if end is not None and end.outcome is Outcome.QUEUED else ""
    if left is not None:
        queue = left.queue
    waited = talk = None
    answered_at = None
    if left is not None:
        waited = left.waited_ms / 1000
        if left.outcome is QueueOutcome.ANSWERED and left.talk_ms is not None:
            talk = left.talk_ms / 1000
            answered_at = left.at - timedelta(milliseconds=left.talk_ms)
    subject = ""
    if voicemail is not None:
        subject = voicemail.subject or "Voicemail"
    elif started is not None:
        subject = f"Call to {started.flow}"
    return CallEvent(
        call_id=call_id,
        caller=started.caller if started else (voicemail.caller if voicemail else ""),
        started_at=first_at,
        answered_at=answered_at,
        ended_at=None if queue and left is None else last_at,
        subject=subject,
        queue=queue,
        ivr_path=ivr_path_json(path),
        named_ticket=named,
        queue_wait_s=waited,
        talk_s=talk,
        agent=left.agent or None if left is not None else None,
        recording_url=voicemail.recording if voicemail else None,
        disposition=_disposition(path, end, voicemail, left, ended=ended),
    )


def _disposition(
    path: list[PathEvent],
    end: IvrEnded | None,
    voicemail: VoicemailLeft | None,
    left: QueueLeft | None,
    *,
    ended: bool,
) -> Disposition:
    """The queue's outcome, then voicemail and callback; then by how the session ended."""
    if left is not None and left.outcome is not QueueOutcome.REFUSED:
        return {
            QueueOutcome.ANSWERED: Disposition.ANSWERED,
            QueueOutcome.CALLBACK: Disposition.CALLBACK,
            QueueOutcome.ABANDONED: Disposition.ABANDONED,
        }[left.outcome]
    if not ended or end is None:
        return Disposition.FAILED
    if voicemail is not None:
        return Disposition.VOICEMAIL
    if any(isinstance(e, CallbackRequested) for e in path):
        return Disposition.CALLBACK
    served = any(isinstance(e, LookupAnswered) and e.outcome is LookupOutcome.OK for e in path)
    return {
        Outcome.QUEUED: Disposition.IN_PROGRESS,  # the ACD and the agent's wrap-up add the rest
        Outcome.TRANSFERRED: Disposition.ANSWERED,
        Outcome.HUNG_UP: Disposition.SELF_SERVICE,  # the flow ran to its end
        Outcome.CALLER_HUNG_UP: Disposition.SELF_SERVICE if served else Disposition.ABANDONED,
        Outcome.FAILED: Disposition.FAILED,
    }[end.outcome]


@dataclass
class _Open:
    events: list[PathEvent] = field(default_factory=list)
    entry_ids: list[str] = field(default_factory=list)
    last_seen: float = 0.0


class CallFold:
    """Collects path events per call; hands back each call once it ended (or went stale)."""

    def __init__(self, *, stale_after: float = 3600.0, max_open: int = 100_000) -> None:
        self.stale_after = stale_after
        self.max_open = max_open
        self._open: dict[str, _Open] = {}

    @property
    def open_calls(self) -> int:
        return len(self._open)

    def add(self, entry_id: str, event: PathEvent, now: float) -> FoldedCall | None:
        """Add one event; the folded call when this event ended its session."""
        call = self._open.setdefault(event.call_id, _Open())
        if entry_id in call.entry_ids:
            return None  # the same entry delivered twice (a claim after a slow ack)
        call.events.append(event)
        call.entry_ids.append(entry_id)
        call.last_seen = now
        if isinstance(event, IvrEnded):
            del self._open[event.call_id]
            return FoldedCall(fold_call(event.call_id, call.events), tuple(call.entry_ids))
        return None

    def stale(self, now: float) -> list[FoldedCall]:
        """Calls silent for ``stale_after`` seconds (or beyond ``max_open``), folded as failed."""
        by_age = sorted(self._open.items(), key=lambda item: item[1].last_seen)
        excess = max(0, len(by_age) - self.max_open)
        out: list[FoldedCall] = []
        for index, (call_id, call) in enumerate(by_age):
            if index >= excess and now - call.last_seen < self.stale_after:
                break
            del self._open[call_id]
            out.append(
                FoldedCall(fold_call(call_id, call.events, ended=False), tuple(call.entry_ids))
            )
        return out


class CallFeed:
    """Consumes the IVR path stream into ``CallTickets`` (see the module docstring)."""

    def __init__(
        self,
        redis: aioredis.Redis,
        calls: CallTickets,
        *,
        consumer: str,
        stream: str = IVR_EVENTS_STREAM,
        group: str = GROUP,
        block_ms: int = 1000,
        batch: int = 200,
        claim_idle: float = 60.0,
        stale_after: float = 3600.0,
        backoff_max: float = 30.0,
        clock: Callable[[], float] | None = None,
        hooks: CallHooks | None = None,
    ) -> None:
        self.redis = redis
        self.calls = calls
        self.hooks = hooks
        self.consumer = consumer
        self.stream = stream
        self.group = group
        self.block_ms = block_ms
        self.batch = batch
        self.claim_idle = claim_idle
        self.backoff_max = backoff_max
        self.fold = CallFold(stale_after=stale_after)
        self._clock = clock or asyncio.get_running_loop().time
        self._unstored: list[FoldedCall] = []
        self.stored = 0
        self.dead = 0

    async def run(self) -> None:
        """Consume until cancelled; reconnects to Redis with back-off and jitter."""
        delay = 0.5
        while True:
            try:
                await self._ensure_group()
                await self._claim()
                while True:
                    await self.step()
                    delay = 0.5
            except (RedisError, OSError) as err:
                log.warning("IVR call feed: Redis unavailable (%s); retrying in %.1f s", err, delay)
                await asyncio.sleep(delay * random.uniform(0.5, 1.0))
                delay = min(delay * 2, self.backoff_max)

    async def step(self) -> int:
        """Read one batch (blocking up to ``block_ms``), store what finished; entries read."""
        reply: Any = await self.redis.xreadgroup(
            self.group, self.consumer, {self.stream: ">"}, count=self.batch, block=self.block_ms
        )
        count = 0
        for _stream, entries in reply or ():
            for entry_id, fields in entries:
                count += 1
                await self._take(_text(entry_id), fields)
        for folded in self.fold.stale(self._clock()):
            log.warning("IVR session %s never ended; ticketed as failed", folded.event.call_id)
            self._unstored.append(folded)
        await self._store_finished()
        return count

    async def _ensure_group(self) -> None:
        with contextlib.suppress(ResponseError):  # BUSYGROUP: it exists already
            await self.redis.xgroup_create(self.stream, self.group, id="0", mkstream=True)

    async def _claim(self) -> None:
        """Take over entries other consumers read and never acknowledged (they died)."""
        start = "0-0"
        while True:
            reply: Any = await self.redis.xautoclaim(
                self.stream,
                self.group,
                self.consumer,
                min_idle_time=int(self.claim_idle * 1000),
                start_id=start,
                count=self.batch,
            )
            start, entries = _text(reply[0]), reply[1]
            for entry_id, fields in entries:
                if fields:  # a deleted entry comes back without fields
                    await self._take(_text(entry_id), fields)
            if start == "0-0" or not entries:
                break
        # and what this consumer itself had read before a restart
        reply = await self.redis.xreadgroup(
            self.group, self.consumer, {self.stream: "0"}, count=10_000
        )
        for _stream, entries in reply or ():
            for entry_id, fields in entries:
                if fields:
                    await self._take(_text(entry_id), fields)

    async def _take(self, entry_id: str, fields: dict[Any, Any]) -> None:
        raw = fields.get(b"json", fields.get("json"))
        try:
            event = decode_path_event(raw if raw is not None else b"")
        except PathEventDecodeError as err:
            self.dead += 1
            log.error(
                "IVR path entry %s cannot be decoded (%s); kept in %s",
                entry_id,
                err,
                DEAD_LETTER_STREAM,
            )
            await self.redis.xadd(
                DEAD_LETTER_STREAM, {"entry": entry_id, "raw": raw or b"", "error": str(err)}
            )
            await self.redis.xack(self.stream, self.group, entry_id)
            return
        folded = self.fold.add(entry_id, event, self._clock())
        if folded is not None:
            self._unstored.append(folded)

    async def _store_finished(self) -> None:
        waiting, self._unstored = self._unstored, []
        for index, folded in enumerate(waiting):
            try:
                ticketed = await self.calls.record_call(folded.event)
                if self.hooks is not None:
                    await self.hooks.call_ticketed(ticketed, folded.event)
            except (DatabaseUnavailable, OSError, OperationalError, InterfaceError) as err:
                log.warning("call %s not stored yet (%s); will retry", folded.event.call_id, err)
                self._unstored = waiting[index:] + self._unstored
                await asyncio.sleep(1.0)
                return
            self.stored += 1
            log.info(
                "call %s from %s is on ticket %s (%s)",
                folded.event.call_id,
                mask_number(folded.event.caller),
                ticketed.ticket_number,
                ticketed.outcome,
            )
            await self.redis.xack(self.stream, self.group, *folded.entry_ids)


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
