"""The routing engine: waiting items, agent states and timers in memory; ``tick`` decides offers.

Theory of operation
-------------------

One engine holds the queues, the agents (profile + :class:`~acd.domain.agents.AgentStatus`)
and the live work items. Commands (``enqueue``, ``cancel``, ``login``, ``accept``, ``complete``,
...) change that state at once and never decide anything; :meth:`RoutingEngine.tick` fires the
timers that are due (relaxation steps, boosts, overflow, max wait, offer timeouts, wrap-up and
missed-offer cooldowns) and then makes offers, returning every :data:`Decision` taken since the
last tick. The same engine runs in the service (wall clock) and in the simulator (virtual
clock); time only comes from the injected ``clock``.

Indexes, so that a decision does not scan everything (10,000 agents, 20,000 waiting items):

* waiting items are grouped by (queue, requirement in force); each group is a heap in the fair
  order of :func:`~acd.domain.routing.fair_key`, with lazy deletion (a version per item);
  groups are indexed by (channel, first skill of each term);
* agents that can take a channel now are in the :class:`~acd.domain.agent_index.AgentIndex`:
  per (channel, skill, level), kept in longest-idle, fewest-busy-seconds and registration order,
  updated incrementally whenever an agent's availability or idle order changes. An agent that
  was in no bucket and becomes free is entered at the next match instead, unless that match
  reserves it straight away: when it is the only change and the item it nominates has a
  one-condition requirement no indexed agent meets, it is the choice
  (:meth:`~acd.domain.agent_index.AgentIndex.select_alone`, same decision and explanation), so a
  busy center does not add each freed agent to the index only to remove it again.

Matching: a newly free agent looks only at the groups indexed under its own skills and takes
the best head it matches; a new or widened item asks the index, which walks the agents of the
primary skill of each term in the queue's strategy order and stops at the first few that match
(near O(log n) instead of a scan; the same choice as the brute-force
:func:`~acd.domain.routing.select` over every agent, which the property tests check). Both
kinds of candidate go through one heap in the fair order. After a tick no waiting item has an
eligible free agent (:meth:`RoutingEngine.unmatched` checks it with the brute force).

Relaxation is re-evaluated, not frozen: each waiting item has one timer at its next boundary
(step, boost, overflow, max wait); when it fires, or when the queue is changed with
:meth:`RoutingEngine.set_queue`, the item's requirement and priority are recomputed from the
queue's current rules and it moves to the matching group.

Bad input: a command that does not fit the current state (duplicate events, an answer for an
offer that was already withdrawn, a second enqueue of a live or finished item, ...) is ignored
and counted in :attr:`RoutingEngine.counters`; the clock going backwards is clamped to the
latest time seen and counted. An agent who logs out while reserved releases the item back to its
queue at its old place; an item cancelled while offered frees the agent. :meth:`verify` checks
the cross-invariants (each item in exactly one place, reservations mirrored on both sides,
capacity respected, no logged-out agent holding anything); the property tests call it after
every step.
"""

from __future__ import annotations

import heapq
import logging
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, replace
from typing import TypeAlias

from acd.domain.agent_index import AgentIndex
from acd.domain.agents import (
    Accept,
    AgentCommand,
    AgentCommandRejected,
    AgentId,
    AgentProfile,
    AgentState,
    AgentStatus,
    Complete,
    Login,
    Logout,
    Miss,
    MissedEnd,
    Pause,
    Ready,
    Rescind,
    Reserve,
    WrapUpEnd,
    transition,
)
from acd.domain.queues import Queue, Requirement, RuleInForce
from acd.domain.routing import (
    EXPLANATION_LIMIT,
    Explanation,
    Selection,
    SelectionRequest,
    fair_key,
    select,
)
from acd.domain.work import Channel, ItemId, ItemState, QueueId, WorkItem
from acd.errors import AcdError

__all__ = [
    "AgentAutoPaused",
    "AgentStateChanged",
    "Decision",
    "EngineCounters",
    "EnginePolicy",
    "ItemExpired",
    "ItemOffered",
    "ItemOverflowed",
    "ItemRefused",
    "OfferMissed",
    "OfferRescinded",
    "RoutingEngine",
    "UnknownAgent",
    "UnknownQueue",
]

logger = logging.getLogger(__name__)

_CHANNELS = tuple(Channel)
#: Added to every measured wait, so that a timer set for a boundary sees that boundary passed
#: despite float rounding (epoch seconds have a resolution of about 2.4e-7 s).
_EPSILON = 1e-6


class UnknownAgent(AcdError):
    """A command names an agent the engine was never given."""

    error_id = "acd-unknown-agent"


class UnknownQueue(AcdError):
    """An item names a queue the engine was never given."""

    error_id = "acd-unknown-queue"


@dataclass(frozen=True, slots=True)
class EnginePolicy:
    """Engine-wide settings.

    ``pause_after_misses``: consecutive missed offers before the agent is paused (0: never);
    ``missed_cooldown``: seconds an agent is not offered anything after a missed offer;
    ``report_agent_states``: emit :class:`AgentStateChanged` for every change (the simulator
    turns it off); ``finished_memory``: how many finished item ids are remembered to recognise
    duplicate events; ``brute_force``: choose agents by scanning the candidates with
    :func:`~acd.domain.routing.select` instead of walking the ordered index (the reference the
    tests and benchmarks compare the index with; same decisions, slower).
    """

    pause_after_misses: int = 3
    missed_cooldown: float = 10.0
    missed_pause_reason: str = "missed-offers"
    explanation_limit: int = EXPLANATION_LIMIT
    report_agent_states: bool = True
    finished_memory: int = 100_000
    brute_force: bool = False


# -- decisions ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ItemOffered:
    """The agent is reserved for the item: ring the agent / show the chat."""

    item_id: ItemId
    agent_id: AgentId
    queue: QueueId
    channel: Channel
    at: float
    explanation: Explanation


@dataclass(frozen=True, slots=True)
class OfferRescinded:
    """An offer was withdrawn (``agent-logged-out`` or ``item-cancelled``); stop ringing."""

    item_id: ItemId
    agent_id: AgentId
    at: float
    reason: str


@dataclass(frozen=True, slots=True)
class OfferMissed:
    """The agent did not take the offer (``timeout``, ``no-answer``, ``rejected``).

    The item is back in its queue at its old place; the agent is MISSED or auto-paused.
    """

    item_id: ItemId
    agent_id: AgentId
    at: float
    reason: str


@dataclass(frozen=True, slots=True)
class AgentAutoPaused:
    """The agent missed ``misses`` offers in a row and was paused."""

    agent_id: AgentId
    misses: int
    reason: str
    at: float


@dataclass(frozen=True, slots=True)
class AgentStateChanged:
    """The agent's derived state changed."""

    agent_id: AgentId
    previous: AgentState
    current: AgentState
    at: float


@dataclass(frozen=True, slots=True)
class ItemOverflowed:
    """The item moved to another queue (``overflow`` after a wait, or ``closed``)."""

    item_id: ItemId
    from_queue: QueueId
    to_queue: QueueId
    at: float
    reason: str


@dataclass(frozen=True, slots=True)
class ItemExpired:
    """The item reached its queue's maximum wait and left the engine."""

    item_id: ItemId
    queue: QueueId
    waited: float
    at: float


@dataclass(frozen=True, slots=True)
class ItemRefused:
    """The item was not queued (``closed`` with nowhere to go)."""

    item_id: ItemId
    queue: QueueId
    reason: str
    at: float


Decision: TypeAlias = (
    ItemOffered
    | OfferRescinded
    | OfferMissed
    | AgentAutoPaused
    | AgentStateChanged
    | ItemOverflowed
    | ItemExpired
    | ItemRefused
)


@dataclass(slots=True)
class EngineCounters:
    """What the engine tolerated: ignored commands by reason, clock regressions, totals."""

    clock_regressions: int = 0
    ignored: dict[str, int] = field(default_factory=dict)
    offers: int = 0
    enqueued: int = 0

    @property
    def ignored_total(self) -> int:
        """All ignored commands."""
        return sum(self.ignored.values())


# -- internal records ---------------------------------------------------------------------------


class _AgentRecord:
    __slots__ = ("indexed", "ordinal", "profile", "status")

    def __init__(self, profile: AgentProfile, ordinal: int) -> None:
        self.profile = profile
        self.status = AgentStatus()
        self.ordinal = ordinal
        self.indexed: tuple[Channel, ...] = ()


_Key = tuple[int, float, int]


class _Group:
    __slots__ = ("heap", "live", "queue_id", "requirement")

    def __init__(self, queue_id: QueueId, requirement: Requirement) -> None:
        self.queue_id = queue_id
        self.requirement = requirement
        self.heap: list[tuple[_Key, int, ItemId]] = []
        self.live = 0


class _ItemRecord:
    __slots__ = (
        "agent_id",
        "entered_at",
        "group",
        "item",
        "key",
        "queue_id",
        "rule",
        "seq",
        "state",
        "timer",
        "version",
    )

    def __init__(self, item: WorkItem, seq: int, now: float) -> None:
        self.item = item
        self.queue_id = item.queue
        self.entered_at = now
        self.seq = seq
        self.state = ItemState.WAITING
        self.agent_id: AgentId | None = None
        self.group: _Group | None = None
        self.key: _Key = (0, 0.0, 0)
        self.rule: RuleInForce | None = None
        self.version = 0
        self.timer = 0


# timer kinds
_ITEM, _OFFER, _WRAP, _MISSED = 0, 1, 2, 3
_Timer = tuple[float, int, int, str, str, float]


class RoutingEngine:
    """The pure in-memory ACD; see the module docstring."""

    def __init__(
        self,
        queues: Iterable[Queue] = (),
        *,
        clock: Callable[[], float],
        policy: EnginePolicy | None = None,
    ) -> None:
        self._clock = clock
        self.policy = policy or EnginePolicy()
        self.counters = EngineCounters()
        self._last = float("-inf")
        self._queues: dict[QueueId, Queue] = {}
        self._agents: dict[AgentId, _AgentRecord] = {}
        self._items: dict[ItemId, _ItemRecord] = {}
        self._finished: dict[ItemId, None] = {}
        self._groups: dict[tuple[QueueId, Requirement], _Group] = {}
        self._groups_by_skill: dict[tuple[Channel, str], set[_Group]] = {}
        self._groups_any: dict[Channel, set[_Group]] = {}
        self._members: dict[QueueId, set[ItemId]] = {}
        self._index = AgentIndex()
        self._timers: list[_Timer] = []
        self._dirty_items: set[ItemId] = set()
        self._dirty_agents: set[AgentId] = set()
        #: Agents free since the last match but not yet entered in the index (see _reindex).
        self._pending: dict[AgentId, _AgentRecord] = {}
        self._rr: dict[QueueId, int] = {}
        self._out: list[Decision] = []
        self._seq = 0
        for queue in queues:
            self.set_queue(queue)

    # -- time ------------------------------------------------------------------------------------

    def _observe(self, now: float | None = None) -> float:
        value = self._clock() if now is None else now
        if value < self._last:
            self.counters.clock_regressions += 1
            return self._last
        self._last = value
        return value

    @property
    def now(self) -> float:
        """The latest time the engine has seen (never goes back)."""
        return self._last

    def _next_seq(self) -> int:
        self._seq += 1
        return self._seq

    def _ignore(self, reason: str) -> bool:
        self.counters.ignored[reason] = self.counters.ignored.get(reason, 0) + 1
        logger.debug("ignored command: %s", reason)
        return False

    # -- configuration ---------------------------------------------------------------------------

    def set_queue(self, queue: Queue) -> None:
        """Add or replace a queue; items already waiting in it are re-evaluated at once."""
        now = self._observe()
        self._queues[queue.queue_id] = queue
        self._members.setdefault(queue.queue_id, set())
        for item_id in list(self._members[queue.queue_id]):
            self._refresh(self._items[item_id], now)

    def queue(self, queue_id: QueueId) -> Queue:
        """The queue's current definition."""
        try:
            return self._queues[queue_id]
        except KeyError:
            raise UnknownQueue(f"unknown queue {queue_id!r}") from None

    @property
    def queues(self) -> tuple[QueueId, ...]:
        """The queue ids, in the order they were added."""
        return tuple(self._queues)

    def set_agent(self, profile: AgentProfile) -> None:
        """Add an agent (logged out) or replace its profile (skills, capacity) keeping state."""
        record = self._agents.get(profile.agent_id)
        if record is None:
            self._agents[profile.agent_id] = _AgentRecord(profile, len(self._agents))
            return
        self._unindex(record)
        record.profile = profile
        self._reindex(record)

    def agent_ids(self) -> tuple[AgentId, ...]:
        """Every agent id, in registration order."""
        return tuple(self._agents)

    # -- agent commands --------------------------------------------------------------------------

    def _agent(self, agent_id: AgentId) -> _AgentRecord:
        try:
            return self._agents[agent_id]
        except KeyError:
            raise UnknownAgent(f"unknown agent {agent_id!r}") from None

    def _apply(self, record: _AgentRecord, command: AgentCommand, now: float) -> bool:
        before = record.status
        try:
            after = transition(record.profile, before, command, now)
        except AgentCommandRejected:
            return self._ignore(f"agent-{command.kind}")
        record.status = after
        self._reindex(record)
        if after.missed_until is not None and after.missed_until != before.missed_until:
            self._push_timer(after.missed_until, _MISSED, record.profile.agent_id, "", 0.0)
        if self.policy.report_agent_states and before.state is not after.state:
            self._out.append(
                AgentStateChanged(record.profile.agent_id, before.state, after.state, now)
            )
        return True

    def login(self, agent_id: AgentId) -> bool:
        """The agent logs in and becomes READY (or cancels a pending logout)."""
        return self._apply(self._agent(agent_id), Login(), self._observe())

    def logout(self, agent_id: AgentId) -> bool:
        """The agent logs out; a pending offer goes back to its queue at once."""
        record = self._agent(agent_id)
        now = self._observe()
        reservation = record.status.reservation
        if not self._apply(record, Logout(), now):
            return False
        if reservation is not None:
            self._return_item(reservation.item_id, now)
            self._out.append(OfferRescinded(reservation.item_id, agent_id, now, "agent-logged-out"))
        return True

    def ready(self, agent_id: AgentId) -> bool:
        """The agent is ready: ends a pause, a missed cooldown or its wrap-ups."""
        return self._apply(self._agent(agent_id), Ready(), self._observe())

    def pause(self, agent_id: AgentId, reason: str) -> bool:
        """The agent pauses with ``reason`` (after the current work, if any)."""
        return self._apply(self._agent(agent_id), Pause(reason), self._observe())

    def accept(self, agent_id: AgentId, item_id: ItemId) -> bool:
        """The agent answered the item offered to it."""
        record = self._agent(agent_id)
        item = self._items.get(item_id)
        if item is None or item.state is not ItemState.OFFERED or item.agent_id != agent_id:
            return self._ignore("accept-not-offered")
        if not self._apply(record, Accept(item_id), self._observe()):
            return False
        item.state = ItemState.ASSIGNED
        return True

    def no_answer(self, agent_id: AgentId, item_id: ItemId, reason: str = "no-answer") -> bool:
        """The agent did not take the offer: the item goes back, the agent is MISSED."""
        item = self._items.get(item_id)
        if item is None or item.state is not ItemState.OFFERED or item.agent_id != agent_id:
            return self._ignore("miss-not-offered")
        return self._miss(self._agent(agent_id), item, self._observe(), reason)

    def _miss(self, record: _AgentRecord, item: _ItemRecord, now: float, reason: str) -> bool:
        policy = self.policy
        command = Miss(
            item.item.item_id,
            cooldown=policy.missed_cooldown,
            pause_after=policy.pause_after_misses,
            pause_reason=policy.missed_pause_reason,
        )
        was_paused = record.status.pause_reason is not None
        if not self._apply(record, command, now):
            return False
        agent_id = record.profile.agent_id
        self._out.append(OfferMissed(item.item.item_id, agent_id, now, reason))
        self._return_item(item.item.item_id, now)
        status = record.status
        if not was_paused and status.pause_reason == policy.missed_pause_reason:
            self._out.append(
                AgentAutoPaused(agent_id, status.consecutive_misses, status.pause_reason, now)
            )
        return True

    def complete(self, agent_id: AgentId, item_id: ItemId) -> bool:
        """The work on the item ended; the agent wraps up for the queue's ``wrap_up``."""
        record = self._agent(agent_id)
        item = self._items.get(item_id)
        if item is None or item.state is not ItemState.ASSIGNED or item.agent_id != agent_id:
            return self._ignore("complete-not-assigned")
        now = self._observe()
        wrap_up = self._queues[item.queue_id].wrap_up
        if not self._apply(record, Complete(item_id, wrap_up), now):  # pragma: no cover
            return False
        if wrap_up > 0:
            self._push_timer(now + wrap_up, _WRAP, agent_id, item_id, now + wrap_up)
        self._finish(item)
        return True

    # -- item commands ---------------------------------------------------------------------------

    def enqueue(self, item: WorkItem) -> bool:
        """Queue a work item (checks the queue's hours); False for a duplicate."""
        if item.item_id in self._items:
            return self._ignore("enqueue-duplicate")
        if item.item_id in self._finished:
            return self._ignore("enqueue-finished")
        queue = self.queue(item.queue)
        now = self._observe()
        if item.enqueued_at > now:
            item = replace(item, enqueued_at=now)
        self.counters.enqueued += 1
        record = _ItemRecord(item, self._next_seq(), now)
        if queue.hours is not None and not queue.hours.is_open(now):
            target = queue.closed_to
            if target is None or target not in self._queues:
                self._out.append(ItemRefused(item.item_id, item.queue, "closed", now))
                self._remember(item.item_id)
                return True
            record.queue_id = target
            self._out.append(ItemOverflowed(item.item_id, item.queue, target, now, "closed"))
        self._items[item.item_id] = record
        self._refresh(record, now)
        return True

    def cancel(self, item_id: ItemId, reason: str = "item-cancelled") -> bool:
        """The customer left: remove a waiting or offered item (an offer is withdrawn).

        An item already being worked is ended with :meth:`complete`, not here.
        """
        item = self._items.get(item_id)
        if item is None:
            return self._ignore("cancel-unknown")
        if item.state is ItemState.ASSIGNED:
            return self._ignore("cancel-assigned")
        now = self._observe()
        if item.state is ItemState.OFFERED and item.agent_id is not None:
            record = self._agents[item.agent_id]
            self._apply(record, Rescind(item_id), now)
            self._out.append(OfferRescinded(item_id, item.agent_id, now, reason))
        self._finish(item)
        return True

    # -- queries ---------------------------------------------------------------------------------

    def agent_status(self, agent_id: AgentId) -> AgentStatus:
        """The agent's status record (its ``state`` is derived)."""
        return self._agent(agent_id).status

    def agent_profile(self, agent_id: AgentId) -> AgentProfile:
        """The agent's profile."""
        return self._agent(agent_id).profile

    def item_state(self, item_id: ItemId) -> ItemState | None:
        """WAITING, OFFERED or ASSIGNED; None once the item left the engine."""
        record = self._items.get(item_id)
        return None if record is None else record.state

    def item_queue(self, item_id: ItemId) -> QueueId | None:
        """The queue the item is in now (after overflows); None once it left."""
        record = self._items.get(item_id)
        return None if record is None else record.queue_id

    def item_agent(self, item_id: ItemId) -> AgentId | None:
        """The agent the item is offered or assigned to, if any."""
        record = self._items.get(item_id)
        return None if record is None else record.agent_id

    def waiting_count(self, queue: QueueId | None = None) -> int:
        """Waiting items in ``queue`` (all queues if None)."""
        if queue is None:
            return sum(len(members) for members in self._members.values())
        return len(self._members.get(queue, ()))

    def live_items(self) -> Iterator[tuple[ItemId, ItemState]]:
        """Every live item and its state."""
        for item_id, record in self._items.items():
            yield item_id, record.state

    def waiting_items(self, queue: QueueId) -> list[ItemId]:
        """The queue's waiting items in the fair order (O(n log n); for consoles)."""
        members = [self._items[item_id] for item_id in self._members.get(queue, ())]
        members.sort(key=lambda record: record.key)
        return [record.item.item_id for record in members]

    def position(self, item_id: ItemId) -> int | None:
        """1-based place of a waiting item in its queue's fair order (O(n)); None otherwise."""
        record = self._items.get(item_id)
        if record is None or record.state is not ItemState.WAITING:
            return None
        key = record.key
        ahead = sum(1 for other in self._members[record.queue_id] if self._items[other].key < key)
        return ahead + 1

    def next_due(self) -> float | None:
        """When the earliest pending timer fires (None if none): call :meth:`tick` then."""
        timers = self._timers
        while timers and not self._timer_live(timers[0]):
            heapq.heappop(timers)
        return timers[0][0] if timers else None

    # -- tick ------------------------------------------------------------------------------------

    def tick(self, now: float | None = None) -> list[Decision]:
        """Fire due timers, make every possible offer, return the decisions since last tick."""
        now = self._observe(now)
        self._fire_timers(now)
        if self._dirty_items or self._dirty_agents:
            self._match(now)
        out, self._out = self._out, []
        return out

    def _fire_timers(self, now: float) -> None:
        timers = self._timers
        while timers and timers[0][0] <= now:
            timer = heapq.heappop(timers)
            if not self._timer_live(timer):
                continue
            _, _, kind, first, second, _ = timer
            if kind == _ITEM:
                self._refresh(self._items[ItemId(first)], now)
            elif kind == _OFFER:
                item = self._items[ItemId(first)]
                assert item.agent_id is not None
                self._miss(self._agents[item.agent_id], item, now, "timeout")
            elif kind == _WRAP:
                self._apply(self._agents[AgentId(first)], WrapUpEnd(ItemId(second)), now)
            else:
                self._apply(self._agents[AgentId(first)], MissedEnd(), now)

    def _timer_live(self, timer: _Timer) -> bool:
        _, _, kind, first, second, stamp = timer
        if kind == _ITEM:
            item = self._items.get(ItemId(first))
            return item is not None and item.state is ItemState.WAITING and item.timer == stamp
        if kind == _OFFER:
            item = self._items.get(ItemId(first))
            if item is None or item.state is not ItemState.OFFERED or item.agent_id is None:
                return False
            reservation = self._agents[item.agent_id].status.reservation
            return reservation is not None and reservation.at == stamp
        record = self._agents.get(AgentId(first))
        if record is None:
            return False
        if kind == _WRAP:
            return any(
                work.item_id == second and work.wrap_until == stamp for work in record.status.active
            )
        return record.status.missed_until == timer[0]

    def _push_timer(self, due: float, kind: int, first: str, second: str, stamp: float) -> None:
        heapq.heappush(self._timers, (due, self._next_seq(), kind, first, second, stamp))

    # -- items in groups -------------------------------------------------------------------------

    def _refresh(self, record: _ItemRecord, now: float) -> None:
        """Re-evaluate a waiting item against its queue's current rules."""
        hops = 0
        while True:
            queue = self._queues[record.queue_id]
            waited = now - record.entered_at + _EPSILON
            if queue.max_wait is not None and waited >= queue.max_wait:
                self._out.append(ItemExpired(record.item.item_id, record.queue_id, waited, now))
                self._finish(record)
                return
            overflow = queue.overflow
            if overflow is None or waited < overflow.after:
                break
            hops += 1
            if hops > len(self._queues):
                self._ignore("overflow-loop")
                break
            if overflow.to_queue not in self._queues:
                self._ignore("overflow-to-unknown-queue")
                break
            self._out.append(
                ItemOverflowed(
                    record.item.item_id, record.queue_id, overflow.to_queue, now, "overflow"
                )
            )
            self._unplace(record)
            record.queue_id = overflow.to_queue
            record.entered_at = now
        rule = queue.rule_at(record.item, waited)
        key = fair_key(record.item.priority + rule.boost, record.item.enqueued_at, record.seq)
        group = record.group
        if group is None or group.requirement != rule.requirement or record.key != key:
            self._unplace(record)
            self._place(record, rule, key)
        else:
            record.rule = rule
        change = queue.next_change(waited)
        record.timer += 1
        if change is not None:
            self._push_timer(
                record.entered_at + change, _ITEM, record.item.item_id, "", record.timer
            )

    def _place(self, record: _ItemRecord, rule: RuleInForce, key: _Key) -> None:
        group_key = (record.queue_id, rule.requirement)
        group = self._groups.get(group_key)
        if group is None:
            group = _Group(record.queue_id, rule.requirement)
            self._groups[group_key] = group
            for index_key in _group_index_keys(rule.requirement):
                if index_key[1] is None:
                    self._groups_any.setdefault(index_key[0], set()).add(group)
                else:
                    self._groups_by_skill.setdefault((index_key[0], index_key[1]), set()).add(group)
        record.version += 1
        record.group = group
        record.rule = rule
        record.key = key
        group.live += 1
        heapq.heappush(group.heap, (key, record.version, record.item.item_id))
        self._members[record.queue_id].add(record.item.item_id)
        self._dirty_items.add(record.item.item_id)

    def _unplace(self, record: _ItemRecord) -> None:
        group = record.group
        if group is None:
            return
        record.group = None
        record.version += 1
        self._members[record.queue_id].discard(record.item.item_id)
        group.live -= 1
        if group.live == 0:
            del self._groups[(group.queue_id, group.requirement)]
            for index_key in _group_index_keys(group.requirement):
                if index_key[1] is None:
                    self._groups_any[index_key[0]].discard(group)
                else:
                    self._groups_by_skill[(index_key[0], index_key[1])].discard(group)

    def _head(self, group: _Group) -> tuple[_Key, int, ItemId] | None:
        heap = group.heap
        items = self._items
        while heap:
            entry = heap[0]
            record = items.get(entry[2])
            if record is not None and record.version == entry[1] and record.group is group:
                return entry
            heapq.heappop(heap)
        return None

    def _return_item(self, item_id: ItemId, now: float) -> None:
        """An offer ended without work: the item waits again at its old place."""
        record = self._items[item_id]
        record.state = ItemState.WAITING
        record.agent_id = None
        self._refresh(record, now)

    def _finish(self, record: _ItemRecord) -> None:
        self._unplace(record)
        item_id = record.item.item_id
        del self._items[item_id]
        self._dirty_items.discard(item_id)
        self._remember(item_id)

    def _remember(self, item_id: ItemId) -> None:
        finished = self._finished
        finished[item_id] = None
        if len(finished) > self.policy.finished_memory:
            del finished[next(iter(finished))]

    # -- agents in the availability index --------------------------------------------------------

    def _reindex(self, record: _AgentRecord) -> None:
        channels = record.status.open_channels(record.profile.capacity)
        if channels == record.indexed and not channels:
            return
        agent_id = record.profile.agent_id
        if not record.indexed and not self.policy.brute_force:
            # In no bucket until now: enter it at the next match, which can often reserve it
            # for a waiting item without adding it to the index and removing it at once.
            record.indexed = channels
            self._pending[agent_id] = record
            self._dirty_agents.add(agent_id)
            return
        self._pending.pop(agent_id, None)  # entered now, in its current order
        if self._index.update(record, channels):
            self._dirty_agents.add(agent_id)
        record.indexed = channels

    def _unindex(self, record: _AgentRecord) -> None:
        self._pending.pop(record.profile.agent_id, None)
        self._index.remove(record)
        record.indexed = ()

    def _enter_pending(self) -> None:
        for record in self._pending.values():
            self._index.update(record, record.indexed)
        self._pending.clear()

    # -- matching --------------------------------------------------------------------------------

    def _match(self, now: float) -> None:
        alone = self._alone()
        if alone is None and self._pending:
            self._enter_pending()
        candidates: list[tuple[_Key, int, ItemId, AgentId | None]] = []
        for item_id in self._dirty_items:
            record = self._items.get(item_id)
            if record is not None and record.group is not None:
                candidates.append((record.key, self._next_seq(), item_id, None))
        heapq.heapify(candidates)
        for agent_id in self._dirty_agents:
            self._nominate(self._agents[agent_id], candidates)
        self._dirty_items.clear()
        self._dirty_agents.clear()
        if alone is not None and not self._reserve_alone(alone, candidates, now):
            self._enter_pending()
        while candidates:
            key, _, item_id, nominator = heapq.heappop(candidates)
            record = self._items.get(item_id)
            if record is None or record.group is None or record.key != key:
                if nominator is not None:
                    self._nominate(self._agents[nominator], candidates)
                continue
            selection = self._select_for(record, now)
            if selection is None:
                continue
            self._reserve(record, selection, now)
            if nominator is not None and nominator != selection.agent_id:
                self._nominate(self._agents[nominator], candidates)

    def _alone(self) -> _AgentRecord | None:
        """The one agent that changed since the last match when it is not in the index yet and no
        item changed (an agent frees in a busy center), else None."""
        if len(self._pending) != 1 or self._dirty_items or len(self._dirty_agents) != 1:
            return None
        (record,) = self._pending.values()
        return record

    def _reserve_alone(
        self,
        record: _AgentRecord,
        candidates: list[tuple[_Key, int, ItemId, AgentId | None]],
        now: float,
    ) -> bool:
        """Reserve the item ``record`` nominated for it without entering it in the index, when
        :meth:`AgentIndex.select_alone` can tell the choice; False if it cannot (or nothing
        was nominated): the caller then enters the agent and matches as usual."""
        if len(candidates) != 1:
            return False
        item = self._items[candidates[0][2]]
        selection = self._index.select_alone(self._request(item, now), record)
        if selection is None:
            return False
        candidates.clear()
        self._pending.clear()
        self._reserve(item, selection, now)
        return True

    def _nominate(
        self, record: _AgentRecord, candidates: list[tuple[_Key, int, ItemId, AgentId | None]]
    ) -> None:
        if not record.indexed:
            return
        profile = record.profile
        best: tuple[_Key, int, ItemId] | None = None
        for channel in record.indexed:
            groups: list[set[_Group]] = []
            any_groups = self._groups_any.get(channel)
            if any_groups:
                groups.append(any_groups)
            by_skill = self._groups_by_skill
            for skill in profile.skills:
                found = by_skill.get((channel, skill))
                if found:
                    groups.append(found)
            items = self._items
            for group_set in groups:
                for group in group_set:
                    heap = group.heap
                    head: tuple[_Key, int, ItemId] | None = heap[0] if heap else None
                    if head is not None:  # _head's check inlined: the head is usually live
                        live = items.get(head[2])
                        if live is None or live.version != head[1] or live.group is not group:
                            head = self._head(group)
                    if head is None or (best is not None and head[0] >= best[0]):
                        continue
                    if group.requirement.matches(profile):
                        best = head
        if best is not None:
            heapq.heappush(candidates, (best[0], self._next_seq(), best[2], profile.agent_id))

    def _select_for(self, record: _ItemRecord, now: float) -> Selection | None:
        request = self._request(record, now)
        if self.policy.brute_force:
            candidates = self._index.candidates(request.rule.requirement)
            return select(request, candidates, check_capacity=False)
        return self._index.select(request)

    def _request(self, record: _ItemRecord, now: float) -> SelectionRequest:
        rule = record.rule
        assert rule is not None
        return SelectionRequest(
            item_id=record.item.item_id,
            queue=record.queue_id,
            strategy=self._queues[record.queue_id].strategy,
            rule=rule,
            priority=-record.key[0],
            waited=now - record.entered_at,
            now=now,
            rr_cursor=self._rr.get(record.queue_id, -1),
            limit=self.policy.explanation_limit,
        )

    def _reserve(self, record: _ItemRecord, selection: Selection, now: float) -> None:
        agent = self._agents[selection.agent_id]
        item = record.item
        applied = self._apply(agent, Reserve(item.item_id, item.channel, record.queue_id), now)
        assert applied, "select() returned an agent that cannot take the item"
        self._unplace(record)
        record.state = ItemState.OFFERED
        record.agent_id = selection.agent_id
        self._rr[record.queue_id] = selection.ordinal
        self.counters.offers += 1
        timeout = self._queues[record.queue_id].offer_timeout
        if timeout is not None:
            self._push_timer(now + timeout, _OFFER, item.item_id, selection.agent_id, now)
        self._out.append(
            ItemOffered(
                item.item_id,
                selection.agent_id,
                record.queue_id,
                item.channel,
                now,
                selection.explanation,
            )
        )

    # -- invariants ------------------------------------------------------------------------------

    def unmatched(self) -> list[ItemId]:
        """Waiting items that a free agent could take now; empty right after :meth:`tick`.

        O(items x agents), with the brute-force :func:`~acd.domain.routing.select` over every
        agent rather than the index, so that it checks the index too: for tests and diagnostics,
        not for the hot path.
        """
        now = self._last
        unmatched = []
        for item_id, record in self._items.items():
            if record.state is not ItemState.WAITING or record.rule is None:
                continue
            selection = select(self._request(record, now), self._agents.values())
            if selection is not None:
                unmatched.append(item_id)
        return unmatched

    def verify(self) -> list[str]:
        """Check the cross-invariants; returns the violations (empty when all hold)."""
        problems: list[str] = []
        for item_id, record in self._items.items():
            if record.state is ItemState.WAITING:
                if record.group is None or item_id not in self._members[record.queue_id]:
                    problems.append(f"waiting item {item_id} is in no group")
                if record.agent_id is not None:
                    problems.append(f"waiting item {item_id} names agent {record.agent_id}")
            else:
                agent = self._agents.get(record.agent_id) if record.agent_id else None
                if agent is None:
                    problems.append(f"{record.state} item {item_id} has no agent")
                elif record.state is ItemState.OFFERED:
                    reservation = agent.status.reservation
                    if reservation is None or reservation.item_id != item_id:
                        problems.append(f"offered item {item_id} not reserved by its agent")
                elif not any(
                    w.item_id == item_id and w.wrap_until is None for w in agent.status.active
                ):
                    problems.append(f"assigned item {item_id} not active for its agent")
        live_groups: dict[int, int] = {}
        for record in self._items.values():
            if record.group is not None:
                live_groups[id(record.group)] = live_groups.get(id(record.group), 0) + 1
        for group in self._groups.values():
            if live_groups.get(id(group), 0) != group.live:
                problems.append(f"group {group.queue_id} live count {group.live} is wrong")
        for agent_id, agent in self._agents.items():
            status = agent.status
            capacity = agent.profile.capacity
            if not status.logged_in and (status.reservation or status.active):
                problems.append(f"logged-out agent {agent_id} holds work")
            if status.reservation is not None:
                item = self._items.get(status.reservation.item_id)
                if item is None or item.state is not ItemState.OFFERED or item.agent_id != agent_id:
                    problems.append(f"agent {agent_id} reserved for a non-offered item")
            for channel in _CHANNELS:
                if status.load(channel) > capacity.of(channel):
                    problems.append(f"agent {agent_id} over {channel} capacity")
            expected = tuple(ch for ch in _CHANNELS if status.can_take(capacity, ch))
            if expected != agent.indexed:
                problems.append(f"agent {agent_id} index {agent.indexed} != {expected}")
            indexed = () if agent_id in self._pending else expected
            problems.extend(self._index.check(agent, indexed))
            for work in status.active:
                if work.wrap_until is None and work.item_id not in self._items:
                    problems.append(f"agent {agent_id} works on unknown item {work.item_id}")
        return problems


def _group_index_keys(requirement: Requirement) -> set[tuple[Channel, str | None]]:
    keys: set[tuple[Channel, str | None]] = set()
    for term in requirement.alternatives:
        keys.add((requirement.channel, term[0][0] if term else None))
    return keys
