"""The ACD service: one orchestrator of the routing engine and the shared Redis state.

Theory of operation
-------------------

Redis decides; the engine proposes. Every cycle of :meth:`AcdService.run`:

1. ``expire_offers`` ends offers whose controller died (agent freed, item requeued);
2. the stream tail (``events`` after the last id seen) updates this node's view: its own items
   (offered, requeued, cancelled, assigned, completed, by whichever node), the staffed agents and
   the recent handle times per queue (ItemAssigned -> ItemCompleted + wrap-up);
3. ``snapshot`` (the head of the waiting set in the fair order and the agents that can take
   something now) is replayed into a fresh :class:`~acd.domain.engine.RoutingEngine` on a
   virtual clock at Redis server time: agents log in at their ``idle_since`` (longest idle stays
   longest idle), items enter at their enqueue time (relaxation, boosts, overflow and max wait
   measured over the whole wait, not from the rebuild), each agent's capacity is what it has
   left; then one ``tick`` at server time gives the decisions. The engine in each controller is
   thus a cache rebuilt from ``snapshot()`` + the stream tail; there is no second routing
   implementation here;
4. each ``ItemOffered`` becomes a ``reserve`` with the versions of the snapshot: the atomic
   compare-and-set. A refusal means another controller (or a change since the snapshot) won;
   the next cycle starts at once from a fresh snapshot. ``ItemExpired`` (max wait) cancels the
   item in Redis; ``ItemOverflowed`` moves it to the target queue in Redis (``overflow``, one
   script, the item keeps its place in the fair order), so every node, the statistics and
   queue_log see the queue it is in; the rebuild then enters it in the target queue at the time
   it moved (``queue_since``).

A cycle runs on every command of this node (a wake-up), when the engine's ``next_due`` (the next
relaxation step, boost, overflow or max wait) comes, and at least every ``poll_interval`` to see
other controllers' changes. A cycle that finds no new stream entry since a cycle that decided
everything it could, before that cycle's next timer, before the next agent becomes ready by
Redis's clock (a wrap-up or missed cooldown ending writes no event) and within
``service.quiet_limit`` seconds, skips steps 3-4: nothing that the decisions depend on has
changed (every change of the Redis state is a script that writes events), so the snapshot and
the rebuild would decide nothing new. A busy center still rebuilds on every change; a quiet one
costs an ``expire_offers`` and a stream read per poll instead of a 20,000-item snapshot.
Redis outages are logged and retried with back-off; nothing is lost
because nothing lives only here: an offer this node made and could not follow up expires in
Redis and the item is requeued at its old place.

The API the telephony glue and the agent console call: :meth:`enqueue` (-> :class:`WorkHandle`,
whose :meth:`WorkHandle.reserved` resolves when an agent is reserved), :meth:`wait_status`
(position and expected wait, :mod:`acd.domain.wait`), :meth:`cancel`, :meth:`login`,
:meth:`ready`, :meth:`pause`, :meth:`logout`, :meth:`answered`, :meth:`no_answer`,
:meth:`hung_up` (-> wrap-up, timed by Redis), :meth:`wrap_up_done` and :meth:`request_callback`.
Calls, chats and emails go through the same API (the channel is the queue's).

Misses: a no-answer or busy requeues the item at its old place (``reject``) and marks the agent
missed for ``missed_cooldown`` seconds of Redis's clock (``missed_until``: the agent is ready
again by itself, whether or not the node that saw the miss is still alive); after
``pause_after_misses`` in a row the agent is paused (reason ``missed-offers``).

Answers: the AGI session reports the answer when its Dial returns; the node that owns the AMI
link learns it earlier from ``DialEnd`` (``acd.adapters.ami_answers``), through
:meth:`AcdService.answered_channel` (the caller channel's Uniqueid -> the item).

Abandon and resume: a caller who hangs up while waiting leaves a memo (queue + SHA-256 of the
number -> enqueue time) for ``resume_window`` seconds; the same caller queued again in that
window gets the old enqueue time back, i.e. the old place in the fair order.

Callbacks are agent-first: :meth:`request_callback` replaces the waiting item by a callback item
with the *same* enqueue time (the place is kept); when an agent is reserved for it, the node that
won the reservation asks its :class:`CallbackDialer` to ring the agent, which then dials the
customer (AMI Originate, :mod:`acd.adapters.ami_callback`).

Call facts go to the same events stream (names and fields in :mod:`acd.adapters.redis_calls`):
CallQueued, CallOffered, CallAnswered (wait), CallAbandoned (wait, position), CallCompleted
(talk, wrap-up), CallbackRequested.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

from acd.adapters.redis_calls import CallFacts
from acd.adapters.redis_state import (
    AcdEvent,
    AcdRedisState,
    AgentSpec,
    Availability,
    ItemSpec,
    Missed,
    Offer,
    RedisStateError,
    Refusal,
    Refused,
    Snapshot,
    counts_field,
)
from acd.config import AcdConfig, QueueConfig
from acd.domain.agents import AgentId, AgentProfile, Capacity
from acd.domain.call_events import (
    CallAbandoned,
    CallAnswered,
    CallbackRequested,
    CallCompleted,
    CallOffered,
    CallQueued,
    LeaveReason,
)
from acd.domain.engine import ItemExpired, ItemOffered, ItemOverflowed, RoutingEngine
from acd.domain.wait import HandleTimes, WaitEstimate, expected_wait
from acd.domain.work import Channel, ItemId, QueueId, SkillNeed, WorkItem
from acd.errors import AcdError
from callcenter.logmask import mask_number

__all__ = [
    "AcdService",
    "AgentReserved",
    "CallbackDialer",
    "CallbackJob",
    "ItemEnded",
    "UnknownItem",
    "WorkHandle",
    "WorkRequest",
]

_log = logging.getLogger(__name__)

MISSED_PAUSE_REASON = "missed-offers"


class ItemEnded(AcdError):
    """The work item left the queue (cancelled, expired, turned into a callback)."""

    error_id = "acd-item-ended"


class UnknownItem(AcdError):
    """The item is not live in the ACD (never queued, or already finished)."""

    error_id = "acd-unknown-item"


@dataclass(frozen=True, slots=True)
class WorkRequest:
    """A call, chat or email to queue. ``customer`` (a number or address) is only used for the
    abandon-resume memo, hashed; ``callback`` is the number to call back (callback items);
    ``unique_id`` the caller channel's Asterisk Uniqueid (queue_log's callid)."""

    item_id: str
    queue: str
    priority: int = 0
    needs: Mapping[str, int] = field(default_factory=dict)
    language: str | None = None
    customer: str = ""
    callback: str = ""
    unique_id: str = ""


@dataclass(frozen=True, slots=True)
class AgentReserved:
    """An agent is reserved for the item: ring ``endpoint`` for at most ``ring_timeout`` s."""

    item_id: str
    agent_id: str
    offer_id: str
    endpoint: str
    ring_timeout: float


@dataclass(frozen=True, slots=True)
class CallbackJob:
    """Ring the reserved agent, then dial the customer (agent-first callback)."""

    item_id: str
    agent_id: str
    endpoint: str
    number: str
    ring_timeout: float
    language: str


class CallbackDialer(Protocol):
    """Places agent-first callbacks (the AMI adapter: ``acd.adapters.ami_callback``)."""

    async def call_back(self, job: CallbackJob) -> bool:
        """Ring the agent; True once the agent answered (the customer is then dialled)."""
        ...


class WorkHandle:
    """This node's view of one queued item; :meth:`reserved` waits for an agent."""

    def __init__(
        self, item_id: str, queue: str, enqueued_ms: int, resumed: bool, customer: str = ""
    ) -> None:
        self.item_id = item_id
        self.customer = customer
        self.queue = queue
        self.enqueued_ms = enqueued_ms
        self.resumed = resumed
        self.offer: AgentReserved | None = None
        self.assigned = False
        self.ended: str | None = None
        self._version = 0  # the item version last applied: older stream facts are ignored
        self._changed = asyncio.Event()

    def _set_offer(self, offer: AgentReserved | None, version: int) -> None:
        if version <= self._version:
            return
        self._version = version
        self.offer = offer
        self._changed.set()

    def _end(self, reason: str) -> None:
        if self.ended is None:
            self.ended = reason
        self.offer = None
        self._changed.set()

    async def reserved(self, timeout: float | None = None) -> AgentReserved | None:
        """The reservation once an agent is reserved; None when ``timeout`` passes first.

        Raises :class:`ItemEnded` if the item left the queue meanwhile.
        """
        try:
            async with asyncio.timeout(timeout):
                while True:
                    if self.ended is not None:
                        raise ItemEnded(f"item {self.item_id} ended: {self.ended}")
                    if self.offer is not None and not self.assigned:
                        return self.offer
                    self._changed.clear()
                    await self._changed.wait()
        except TimeoutError:
            return None


@dataclass(slots=True)
class _AgentView:
    logged_in: bool = False
    paused: bool = False
    skills: Mapping[str, int] = field(default_factory=dict)
    #: Capacity per channel as last logged in (Redis); None: not known, the configured one.
    capacity: Mapping[str, int] | None = None


@dataclass(slots=True)
class _ItemInfo:
    queue: str
    language: str | None
    callback: str
    enq_ms: int = 0
    assigned_ms: int | None = None
    unique_id: str = ""


@dataclass(frozen=True, slots=True)
class _Quiet:
    """A cycle that decided everything it could: until ``until_ms`` (Redis time) nothing changes
    unless an event is written, so later cycles that find no new event skip the snapshot.

    ``until_ms`` is the earliest of the engine's next timer, the next agent that becomes ready
    by Redis's clock alone and ``quiet_limit`` after the snapshot; elapsed time is measured with
    the monotonic clock from the snapshot's server time, so a wall clock that jumps changes
    nothing.
    """

    server_ms: int
    monotonic: float
    until_ms: int

    def left_ms(self, monotonic: float) -> float:
        """Milliseconds until a full cycle is needed again (<= 0: now)."""
        now_ms = self.server_ms + (monotonic - self.monotonic) * 1000
        return self.until_ms - now_ms


class AcdService:
    """See the module docstring. ``clock`` is wall-clock seconds (only used for wake-ups)."""

    def __init__(
        self,
        state: AcdRedisState,
        facts: CallFacts,
        config: AcdConfig,
        *,
        dialer: CallbackDialer | None = None,
        poll_interval: float = 0.25,
        offer_margin: float | None = None,
        clock: Callable[[], float] = time.time,
        rng: random.Random | None = None,
    ) -> None:
        if offer_margin is None:
            offer_margin = config.service.offer_margin
        if offer_margin <= 0 or poll_interval <= 0:
            raise ValueError("offer_margin and poll_interval must be positive")
        #: Seconds an offer outlives the ring timeout in Redis: room for the answer to be
        #: reported (``service.offer_margin`` of the configuration unless given here).
        self.offer_margin = offer_margin
        self.state = state
        self.facts = facts
        self.config = config
        self.dialer = dialer
        self.poll_interval = poll_interval
        self._clock = clock
        self._rng = rng or random.Random()
        self._wake = asyncio.Event()
        self._handles: dict[str, WorkHandle] = {}
        self._items: dict[str, _ItemInfo] = {}
        self._by_channel: dict[str, str] = {}  # caller channel Uniqueid -> item id
        self._agents: dict[str, _AgentView] = {}
        self._ready: dict[str, set[str]] = {}
        self._handle_times: dict[str, HandleTimes] = {}
        self._positions: dict[str, int] = {}
        self._after = "0-0"
        self._offset_ms = 0
        self._tasks: set[asyncio.Task[None]] = set()
        self.cycles = 0
        self.quiet_cycles = 0
        self._quiet: _Quiet | None = None
        self.refused = 0
        self.engine: RoutingEngine | None = None
        self.started = asyncio.Event()

    # -- the loop ----------------------------------------------------------------------------

    async def run(self) -> None:
        """Cycle until cancelled; Redis outages are retried with back-off and jitter."""
        failures = 0
        try:
            while True:
                # Cleared before the cycle reads anything: a wake-up that comes while the cycle
                # runs (a command after the snapshot was read) runs the next cycle at once.
                self._wake.clear()
                try:
                    if not self.started.is_set():
                        await self._start()
                        self.started.set()
                    delay = await self.cycle()
                    failures = 0
                except RedisStateError as err:
                    failures += 1
                    delay = min(5.0, 0.1 * 2**failures) * (0.5 + self._rng.random())
                    _log.warning("ACD cycle failed (%s); retrying in %.2f s", err, delay)
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(delay):
                        await self._wake.wait()
                # Python 3.11: a cancel() landing as the timeout expires comes out as the
                # TimeoutError suppressed above; the task still counts the request, so honour it.
                task = asyncio.current_task()
                if task is not None and task.cancelling():
                    raise asyncio.CancelledError
        finally:
            for task in list(self._tasks):
                task.cancel()

    def wake(self) -> None:
        """Run a cycle now (after a command of this node)."""
        self._wake.set()

    async def _start(self) -> None:
        """Read the configured agents' state; the stream is then replayed from its start (what
        is left of it), which also gives the recent handle times."""
        for agent_id, agent in self.config.agents.items():
            record = await self.state.agent(agent_id)
            view = _AgentView(skills=dict(agent.profile.skills))
            if record is not None:
                view.logged_in = record.logged_in
                view.paused = record.pause_reason is not None
                view.capacity = dict(record.capacity)
            self._agents[agent_id] = view

    async def cycle(self, *, full: bool = False) -> float:
        """One cycle (see the module docstring); returns the seconds until the next one.
        ``full`` reads the snapshot even when the last decisions still stand (benchmarks)."""
        self.cycles += 1
        await self.state.expire_offers()
        seen = self._after
        await self._follow_stream()
        quiet = self._quiet
        if quiet is not None and self._after == seen and not full:
            left_ms = quiet.left_ms(time.monotonic())
            if left_ms > 0:  # nothing happened and nothing is due: the last decisions stand
                self.quiet_cycles += 1
                return min(self.poll_interval, left_ms / 1000)
        self._quiet = None
        snap = await self.state.snapshot(max_items=self.config.service.snapshot_items)
        self._offset_ms = snap.server_ms - round(self._clock() * 1000)
        await self._learn_items(snap)
        engine = self._rebuild(snap)
        decisions = engine.tick(snap.server_ms / 1000)
        self.engine = engine
        self._positions = self._queue_positions(snap)
        self._ready = {ch: set(ids) for ch, ids in snap.ready.items()}
        versions = {w.item_id: w.version for w in snap.waiting}
        again = False
        for decision in decisions:
            if isinstance(decision, ItemOffered):
                won = await self._reserve(decision, versions, snap)
                again = again or not won
            elif isinstance(decision, ItemExpired):
                await self._expire(decision.item_id, decision.waited)
                again = True
            elif isinstance(decision, ItemOverflowed):
                moved = await self._overflow(decision)
                if moved is None:
                    again = True
                else:
                    versions[decision.item_id] = moved
        if again:
            return 0.0
        due = engine.next_due()
        delay = self.poll_interval
        if due is not None:
            delay = min(delay, max(0.0, due - snap.server_ms / 1000))
        await self._settle(snap, due)
        return delay

    async def _settle(self, snap: Snapshot, due: float | None) -> None:
        """Remember until when this cycle's outcome holds if no event comes (see _Quiet)."""
        marks = [snap.server_ms + round(self.config.service.quiet_limit * 1000)]
        if due is not None:
            marks.append(round(due * 1000))
        ready = await self.state.next_ready_ms(snap.server_ms)
        if ready is not None:
            marks.append(ready)
        self._quiet = _Quiet(snap.server_ms, time.monotonic(), min(marks))

    def _rebuild(self, snap: Snapshot) -> RoutingEngine:
        now = snap.server_ms / 1000
        profiles: list[AgentProfile] = []
        steps: list[tuple[float, int, str]] = []
        for agent_id, agent in snap.agents.items():
            channels = {ch for ch, ids in snap.ready.items() if agent_id in ids}
            caps = {
                ch: max(0, agent.capacity.get(ch, 0) - agent.load.get(ch, 0))
                if ch in channels
                else 0
                for ch in ("call", "chat", "email")
            }
            configured = self.config.agents.get(agent_id)
            profiles.append(
                AgentProfile(
                    agent_id=AgentId(agent_id),
                    skills=dict(agent.skills),
                    languages=configured.profile.languages if configured else frozenset(),
                    capacity=Capacity(caps["call"], caps["chat"], caps["email"], False),
                )
            )
            steps.append((min(now, agent.idle_since_ms / 1000), 0, agent_id))
        for item in snap.waiting:
            if item.queue in self.config.queues and item.item_id in self._items:
                entered = max(item.enqueued_at_ms, item.queue_since_ms)
                steps.append((min(now, entered / 1000), 1, item.item_id))
        steps.sort()
        # The virtual clock starts at the earliest fact so the replay never goes backwards.
        moment = [steps[0][0] if steps else now]
        engine = RoutingEngine(
            [q.queue for q in self.config.queues.values()],
            clock=lambda: moment[0],
            policy=self.config.service.engine_policy(),
        )
        for profile in profiles:
            engine.set_agent(profile)
        by_id = {w.item_id: w for w in snap.waiting}
        for at, kind, ident in steps:
            moment[0] = at
            if kind == 0:
                engine.login(AgentId(ident))
                continue
            waiting = by_id[ident]
            info = self._items[ident]
            engine.enqueue(
                WorkItem(
                    item_id=ItemId(ident),
                    channel=Channel(waiting.channel),
                    queue=QueueId(waiting.queue),
                    enqueued_at=waiting.enqueued_at_ms / 1000,
                    priority=waiting.priority,
                    needs=tuple(SkillNeed(s, lv) for s, lv in sorted(waiting.skills.items())),
                    language=info.language,
                )
            )
        moment[0] = now
        return engine

    async def _learn_items(self, snap: Snapshot) -> None:
        """Language and callback number of items queued by other nodes (read once per item)."""
        for waiting in snap.waiting:
            if waiting.item_id in self._items:
                continue
            record = await self.state.item(waiting.item_id)
            if record is None:
                continue
            attrs = record.attrs
            unique_id = str(attrs.get("unique_id", ""))
            self._items[waiting.item_id] = _ItemInfo(
                queue=record.queue,
                language=str(attrs["language"]) if attrs.get("language") else None,
                callback=str(attrs.get("callback", "")),
                enq_ms=record.enqueued_at_ms,
                unique_id=unique_id,
            )
            if unique_id:
                self._by_channel[unique_id] = waiting.item_id
        for waiting in snap.waiting:
            info = self._items.get(waiting.item_id)
            if info is not None and info.queue != waiting.queue:
                self._moved(waiting.item_id, waiting.queue)

    def _queue_positions(self, snap: Snapshot) -> dict[str, int]:
        counts: dict[str, int] = {}
        positions: dict[str, int] = {}
        for waiting in snap.waiting:  # the fair order; the position counts the item's queue
            counts[waiting.queue] = counts.get(waiting.queue, 0) + 1
            positions[waiting.item_id] = counts[waiting.queue]
        return positions

    async def _reserve(
        self, decision: ItemOffered, versions: Mapping[str, int], snap: Snapshot
    ) -> bool:
        item_id, agent_id = decision.item_id, decision.agent_id
        agent = snap.agents.get(agent_id)
        ring = self.config.service.ring_timeout
        result = await self.state.reserve(
            item_id,
            agent_id,
            item_version=versions.get(item_id),
            agent_version=agent.version if agent else None,
            offer_ttl=ring + self.offer_margin,
        )
        if isinstance(result, Refused):
            self.refused += 1
            _log.debug("reserve %s -> %s lost: %s", item_id, agent_id, result.reason)
            return False
        _log.info(
            "agent %s reserved for %s (%s)", agent_id, item_id, decision.explanation.step_label
        )
        reserved = self._reservation(result)
        info = self._items.get(item_id)
        await self.facts.emit(
            CallOffered(item_id, info.queue if info else "", agent_id, result.offer_id)
        )
        handle = self._handles.get(item_id)
        if handle is not None:
            handle._set_offer(reserved, result.item_version)
        elif info is not None and info.callback:
            self._spawn(self._call_back(reserved, info))
        return True

    def _reservation(self, offer: Offer) -> AgentReserved:
        return AgentReserved(
            offer.item_id,
            offer.agent_id,
            offer.offer_id,
            self.config.endpoint(offer.agent_id),
            self.config.service.ring_timeout,
        )

    async def _overflow(self, decision: ItemOverflowed) -> int | None:
        """Move the item to the overflow queue in Redis; its new version, None if refused."""
        item_id = decision.item_id
        result = await self.state.overflow(
            item_id, decision.from_queue, decision.to_queue, decision.reason
        )
        if isinstance(result, Refused):
            _log.debug("overflow of %s refused: %s", item_id, result.reason)
            return None
        if not result.already:
            _log.info(
                "item %s overflowed %s -> %s (%s)",
                item_id,
                decision.from_queue,
                decision.to_queue,
                decision.reason,
            )
        self._moved(item_id, decision.to_queue)
        return result.version

    def _forget(self, item_id: str) -> _ItemInfo | None:
        info = self._items.pop(item_id, None)
        if info is not None and info.unique_id:
            self._by_channel.pop(info.unique_id, None)
        return info

    def _moved(self, item_id: str, queue: str) -> None:
        info = self._items.get(item_id)
        if info is not None:
            info.queue = queue
        handle = self._handles.get(item_id)
        if handle is not None:
            handle.queue = queue

    async def _expire(self, item_id: str, waited: float) -> None:
        info = self._items.get(item_id)
        await self.facts.emit(
            CallAbandoned(
                item_id,
                info.queue if info else "",
                round(waited * 1000),
                self._positions.get(item_id, 0),
                LeaveReason.EXPIRED.value,
            )
        )
        result = await self.state.cancel(item_id, LeaveReason.EXPIRED.value)
        if isinstance(result, Refused):
            return
        self._forget(item_id)
        handle = self._handles.pop(item_id, None)
        if handle is not None:
            handle._end(LeaveReason.EXPIRED.value)

    # -- the stream --------------------------------------------------------------------------

    async def _follow_stream(self) -> None:
        while True:
            events = await self.state.events(self._after, count=1000)
            if not events:
                return
            for event in events:
                self._apply(event)
            self._after = events[-1].event_id

    def _apply(self, event: AcdEvent) -> None:
        f = event.fields
        kind = event.kind
        item_id = f.get("item", "")
        handle = self._handles.get(item_id)
        version = int(f.get("ver", "0") or 0)
        if kind == "ItemOffered" and handle is not None:
            handle._set_offer(
                AgentReserved(
                    item_id,
                    f["agent"],
                    f["offer"],
                    self.config.endpoint(f["agent"]),
                    self.config.service.ring_timeout,
                ),
                version,
            )
        elif kind == "ItemRequeued" and handle is not None:
            handle._set_offer(None, version)
        elif kind == "ItemAssigned":
            info = self._items.get(item_id)
            if info is not None:
                info.assigned_ms = event.at_ms
            if handle is not None:
                handle.assigned = True
        elif kind == "ItemCompleted":
            info = self._forget(item_id)
            if info is not None and info.assigned_ms is not None:
                talk = event.at_ms - info.assigned_ms
                wrap = max(0, int(f.get("wrap_until", "0") or 0) - event.at_ms)
                self._times(f.get("queue", info.queue)).add((talk + wrap) / 1000)
            if handle is not None:
                del self._handles[item_id]
                handle._end("completed")
        elif kind == "ItemCancelled":
            self._forget(item_id)
            if handle is not None:
                del self._handles[item_id]
                handle._end(f.get("reason", "cancelled"))
        elif kind == "ItemOverflowed":
            self._moved(item_id, f.get("to", ""))
        elif kind.startswith("Agent"):
            self._apply_agent(kind, f)

    def _apply_agent(self, kind: str, f: Mapping[str, str]) -> None:
        agent_id = f.get("agent", "")
        if not agent_id:
            return
        view = self._agents.setdefault(agent_id, _AgentView())
        if kind in ("AgentLoggedIn", "AgentProfileChanged"):
            view.capacity = counts_field(f.get("caps", ""))
            configured = self.config.agents.get(agent_id)
            if configured is not None:
                view.skills = dict(configured.profile.skills)
            if kind == "AgentLoggedIn":
                view.logged_in = True
                view.paused = bool(f.get("pause"))
        elif kind == "AgentLoggedOut":
            view.logged_in = False
        elif kind == "AgentPaused":
            view.paused = True
        elif kind == "AgentMadeReady":
            view.paused = False

    def _times(self, queue: str) -> HandleTimes:
        times = self._handle_times.get(queue)
        if times is None:
            times = HandleTimes(self.config.service.handle_time_window)
            self._handle_times[queue] = times
        return times

    # -- items -------------------------------------------------------------------------------

    def _queue(self, queue_id: str) -> QueueConfig:
        return self.config.queue(queue_id)

    def server_ms(self) -> int:
        """Redis server time now, as last measured against the local clock."""
        return round(self._clock() * 1000) + self._offset_ms

    async def enqueue(self, request: WorkRequest) -> WorkHandle:
        """Queue the item (a repeat of a live id returns its handle); wakes the loop."""
        queue = self._queue(request.queue)
        existing = self._handles.get(request.item_id)
        if existing is not None:
            return existing
        enq_ms: int | None = None
        memo = self._memo(request)
        if memo is not None:
            enq_ms = await self.facts.take_memo(memo)
        attrs: dict[str, Any] = {}
        if request.language:
            attrs["language"] = request.language
        if request.callback:
            attrs["callback"] = request.callback
        if request.unique_id:
            attrs["unique_id"] = request.unique_id
        spec = ItemSpec(
            request.item_id,
            queue.channel.value,
            request.queue,
            priority=request.priority,
            skills=dict(request.needs),
            enqueued_at_ms=enq_ms,
            attrs=attrs,
        )
        result = await self.state.enqueue(spec)
        if isinstance(result, Refused):
            raise ItemEnded(f"item {request.item_id} already finished ({result.reason})")
        record = await self.state.item(request.item_id)
        enqueued = record.enqueued_at_ms if record else self.server_ms()
        self._items[request.item_id] = _ItemInfo(
            request.queue, request.language, request.callback, enqueued, None, request.unique_id
        )
        if request.unique_id:
            self._by_channel[request.unique_id] = request.item_id
        handle = WorkHandle(
            request.item_id, request.queue, enqueued, enq_ms is not None, request.customer
        )
        if not request.callback:
            self._handles[request.item_id] = handle
        await self.facts.emit(
            CallQueued(
                request.item_id,
                request.queue,
                queue.channel.value,
                request.priority,
                enq_ms is not None,
                enqueued,
                request.unique_id,
            )
        )
        if enq_ms is not None:
            _log.info(
                "caller %s resumed an old place in %s", mask_number(request.customer), request.queue
            )
        self.wake()
        return handle

    def _memo(self, request: WorkRequest) -> str | None:
        if not request.customer or self.config.service.resume_window <= 0:
            return None
        return CallFacts.memo_suffix(request.queue, request.customer)

    def wait_status(self, item_id: str) -> WaitEstimate | None:
        """Position in its queue and expected wait of a waiting item (None if not waiting)."""
        info = self._items.get(item_id)
        position = self._positions.get(item_id)
        handle = self._handles.get(item_id)
        if info is None or position is None or (handle is not None and handle.offer is not None):
            return None
        queue = self._queue(info.queue)
        waited = max(0.0, (self.server_ms() - info.enq_ms) / 1000)
        probe = WorkItem(
            ItemId(item_id), queue.channel, QueueId(info.queue), 0.0, language=info.language
        )
        requirement = queue.queue.rule_at(probe, waited).requirement
        ready_ids = self._ready.get(queue.channel.value, set())
        staffed = ready = 0
        for agent_id, view in self._agents.items():
            if not view.logged_in or view.paused:
                continue
            if requirement.staffed_by(self._staffing_profile(agent_id, view)):
                staffed += 1
                ready += agent_id in ready_ids
        aht = self._times(info.queue).mean(queue.default_handle_time)
        return expected_wait(position, handle_time=aht, staffed=staffed, ready=ready)

    def _staffing_profile(self, agent_id: str, view: _AgentView) -> AgentProfile:
        """The agent's skills and languages as configured, its capacity as logged in."""
        configured = self.config.agents.get(agent_id)
        if configured is not None and view.capacity is None:
            return configured.profile
        caps = view.capacity or {}
        capacity = Capacity(caps.get("call", 0), caps.get("chat", 0), caps.get("email", 0))
        if configured is not None:
            return replace(configured.profile, capacity=capacity)
        return AgentProfile(AgentId(agent_id), skills=dict(view.skills), capacity=capacity)

    async def cancel(self, item_id: str, reason: str = LeaveReason.ABANDONED.value) -> None:
        """The customer left: cancel a waiting or offered item (the agent is freed); an item
        already being worked is completed instead (wrap-up follows)."""
        info = self._items.get(item_id)
        handle = self._handles.get(item_id)
        if info is not None and (handle is None or not handle.assigned):
            enq = info.enq_ms
            memo = None
            customer = handle.customer if handle is not None else ""
            if customer and reason == LeaveReason.ABANDONED and self.config.service.resume_window:
                suffix = CallFacts.memo_suffix(info.queue, customer)
                memo = (suffix, enq, self.config.service.resume_window)
            abandoned = CallAbandoned(
                item_id,
                info.queue,
                max(0, self.server_ms() - enq),
                self._positions.get(item_id, 0),
                reason,
            )
            await self.facts.emit(abandoned, memo=memo)
        result = await self.state.cancel(item_id, reason)
        if isinstance(result, Refused):
            if result.reason is Refusal.ITEM_ASSIGNED:
                await self.hung_up(item_id)
            return
        handle = self._handles.pop(item_id, None)
        if handle is not None:
            handle._end(reason)
        self._forget(item_id)
        self.wake()

    async def request_callback(self, item_id: str, number: str, key: str = "") -> str:
        """Turn a waiting item into a callback item keeping its place; returns the new item id."""
        info = self._items.get(item_id)
        if info is None:
            raise UnknownItem(f"item {item_id} is not waiting here")
        await self.facts.emit(CallbackRequested(item_id, info.queue, key))
        result = await self.state.cancel(item_id, LeaveReason.CALLBACK.value)
        if isinstance(result, Refused):
            raise ItemEnded(f"item {item_id} cannot become a callback: {result.reason}")
        handle = self._handles.pop(item_id, None)
        if handle is not None:
            handle._end("callback")
        self._forget(item_id)
        record = await self.state.item(item_id)
        callback_id = f"{item_id}-cb"
        spec = ItemSpec(
            callback_id,
            self._queue(info.queue).channel.value,
            info.queue,
            priority=record.priority if record else 0,
            skills=dict(record.skills) if record else {},
            enqueued_at_ms=info.enq_ms,
            attrs={"callback": number, **({"language": info.language} if info.language else {})},
        )
        await self.state.enqueue(spec)
        self._items[callback_id] = _ItemInfo(info.queue, info.language, number, info.enq_ms)
        _log.info("callback to %s requested for %s", mask_number(number), item_id)
        self.wake()
        return callback_id

    async def _call_back(self, reserved: AgentReserved, info: _ItemInfo) -> None:
        dialer = self.dialer
        if dialer is None:
            _log.error(
                "no callback dialer: callback %s waits for the offer to expire", reserved.item_id
            )
            return
        job = CallbackJob(
            reserved.item_id,
            reserved.agent_id,
            reserved.endpoint,
            info.callback,
            reserved.ring_timeout,
            info.language or "en",
        )
        try:
            answered = await dialer.call_back(job)
        except Exception:
            _log.exception("callback %s could not be placed", reserved.item_id)
            answered = False
        if not answered:
            await self.no_answer(reserved.item_id)

    def _spawn(self, coro: Any) -> None:
        task: asyncio.Task[None] = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- offers ------------------------------------------------------------------------------

    async def _offer_of(self, item_id: str) -> tuple[str, str, str]:
        """(offer id, agent id, queue) of the item's current offer or assignment, from Redis."""
        record = await self.state.item(item_id)
        if record is None or record.offer_id is None or record.agent_id is None:
            raise UnknownItem(f"item {item_id} has no offer")
        return record.offer_id, record.agent_id, record.queue

    async def answered(self, item_id: str) -> bool:
        """The agent answered: the item is assigned, the agent on work (idempotent)."""
        record = await self.state.item(item_id)
        if record is None or record.agent_id is None or record.offer_id is None:
            return False
        if record.state == "assigned":
            return True
        info = self._items.get(item_id)
        enq = info.enq_ms if info else record.enqueued_at_ms
        wait = max(0, self.server_ms() - enq)
        await self.facts.emit(CallAnswered(item_id, record.queue, record.agent_id, wait))
        result = await self.state.accept(item_id, record.offer_id)
        if isinstance(result, Refused):
            _log.warning("answer of %s by %s refused: %s", item_id, record.agent_id, result.reason)
            return False
        handle = self._handles.get(item_id)
        if handle is not None:
            handle.assigned = True
        if info is not None and info.assigned_ms is None:
            info.assigned_ms = self.server_ms()
        return True

    def item_of_channel(self, unique_id: str) -> str | None:
        """The live item whose caller channel has this Asterisk Uniqueid, if this node knows it
        (it queued the item, or saw it waiting in a snapshot)."""
        item_id = self._by_channel.get(unique_id)
        if item_id is None or item_id not in self._items:
            return None
        return item_id

    async def answered_channel(self, unique_id: str) -> bool:
        """The agent dialled by the caller channel ``unique_id`` answered (AMI ``DialEnd``
        ANSWER): :meth:`answered` for its item; False when no live item has that channel."""
        item_id = self.item_of_channel(unique_id)
        if item_id is None:
            return False
        return await self.answered(item_id)

    async def no_answer(self, item_id: str, *, busy: bool = False) -> None:
        """The agent did not answer (or was busy): the item goes back to the head of the queue,
        the agent is missed, and paused after ``pause_after_misses`` misses in a row."""
        try:
            offer_id, agent_id, _ = await self._offer_of(item_id)
        except UnknownItem:
            return
        result = await self.state.reject(
            item_id, offer_id, no_answer=not busy, missed_for=self.config.service.missed_cooldown
        )
        if not isinstance(result, Missed) or result.already:
            return
        handle = self._handles.get(item_id)
        if handle is not None:
            handle._set_offer(None, result.item_version)
        limit = self.config.service.pause_after_misses
        if limit and result.consecutive_misses >= limit:
            await self.state.set_state(agent_id, Availability.PAUSED, reason=MISSED_PAUSE_REASON)
            _log.info("agent %s paused after %d missed offers", agent_id, result.consecutive_misses)
        self.wake()

    async def hung_up(self, item_id: str, ended_by: str = "") -> None:
        """The work on the item ended: complete it; the agent wraps up for the queue's wrap-up."""
        record = await self.state.item(item_id)
        if record is None:
            return
        wrap = self._queue(record.queue).queue.wrap_up if record.queue in self.config.queues else 0
        result = await self.state.complete(item_id, wrap_up=wrap)
        if isinstance(result, Refused) or result.already:
            return
        info = self._items.get(item_id)
        now = self.server_ms()
        assigned = info.assigned_ms if info and info.assigned_ms else now
        await self.facts.emit(
            CallCompleted(
                item_id,
                record.queue,
                record.agent_id or "",
                max(0, assigned - record.enqueued_at_ms),
                max(0, now - assigned),
                round(wrap * 1000),
                ended_by,
            )
        )
        self.wake()

    # -- agents ------------------------------------------------------------------------------

    async def login(self, agent_id: str, *, paused: str | None = None) -> None:
        """Log the agent in with its configured skills and capacity (ready unless ``paused``)."""
        configured = self.config.agents.get(agent_id)
        if configured is None:
            raise UnknownItem(f"agent {agent_id} is not configured")
        profile = configured.profile
        cap = profile.capacity
        await self.state.agent_login(
            AgentSpec(
                agent_id,
                {"call": cap.call, "chat": cap.chat, "email": cap.email},
                dict(profile.skills),
                call_blocks_others=cap.call_blocks_others,
                pause_reason=paused,
            )
        )
        self.wake()

    async def ready(self, agent_id: str) -> None:
        """Ready: ends a pause, a missed mark or the wrap-up."""
        await self.state.set_state(agent_id, Availability.READY)
        self.wake()

    async def pause(self, agent_id: str, reason: str) -> None:
        """Pause with a reason (a pending offer is not touched)."""
        await self.state.set_state(agent_id, Availability.PAUSED, reason=reason)
        self.wake()

    async def logout(self, agent_id: str) -> None:
        """Log out; a pending offer is rescinded and its item requeued at its place."""
        await self.state.agent_logout(agent_id)
        self.wake()

    async def wrap_up_done(self, agent_id: str) -> None:
        """The agent finished wrap-up early: ready now."""
        await self.ready(agent_id)
