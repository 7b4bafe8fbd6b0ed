"""Queue statistics folded from the ACD event stream: per queue and interval, and right now.

Theory of operation
-------------------

:class:`QueueStatistics` consumes stream entries (anything with ``event_id``, ``kind``,
``at_ms`` and string ``fields``: the ACD's own facts from :mod:`acd.adapters.redis_state` and the
call facts of :mod:`acd.domain.call_events`). It keeps one record per work item and one per agent
and derives every figure from those records when asked, so:

* a repeated stream entry (same id) is dropped, and the same fact written twice (a retried
  script, a replayed AMI event) changes nothing: every per-item fact is a set or a minimum;
* entries may arrive in any order: an abandon seen before its enqueue is counted once the
  enqueue time is known, a late enqueue moves the item to the interval it really arrived in;
* a malformed entry is rejected with its reason (:attr:`QueueStatistics.rejected`) and nothing
  else is lost.

An item counts in the interval (``interval`` seconds from ``origin_ms``) in which it was enqueued,
like Asterisk reporting tools that key calls by ENTERQUEUE. Definitions, with ``T`` the service
level threshold and short abandons those within ``short_abandon`` seconds (not counted as
offered or abandoned in the rates below, as Genesys and Connect do; 0 disables them):

* offered: items that entered the queue; answered: connected to an agent (a call at
  ``CallAnswered``, other items at ``ItemAssigned``); abandoned: the caller left
  (``CallAbandoned`` or a cancel with reason ``abandoned``); timed out: left for a timeout, an
  empty queue, the engine's max wait or a refusal (Asterisk's ``record_abandoned`` counts these as
  abandons too); callbacks: left for a callback (not abandoned, as in Connect);
* ``service_level`` = answered within T / (answered + abandoned - short abandons + timed out):
  abandons in the denominator (Genesys "Service Level %", Connect "service level");
* ``service_level_answered`` = answered within T / answered: Asterisk's ``ServicelevelPerf``,
  abandons left out;
* ``service_level_asterisk2`` = (answered within T + abandoned within T) / (answered +
  abandoned): Asterisk's ``ServicelevelPerf2``, which counts quick abandons as met;
* ASA = mean wait of answered items; AHT = mean (talk + hold + wrap-up) of items whose handling
  ended (talk and wrap from ``CallCompleted`` when present, else ``ItemCompleted`` and its
  ``wrap_until``; hold from ``CallHeld``/``CallRetrieved`` pairs);
* abandon rate = (abandoned - short abandons) / (offered - short abandons).

Overflow (``ItemOverflowed``: from, to) splits an item into one *leg* per queue it waited in,
as Asterisk reporting sees a caller that leaves one ``Queue()`` with EXITWITHTIMEOUT and enters
the next with ENTERQUEUE: the source queue counts it offered and ``overflowed`` (out; an
outcome of its own, outside the service level's denominator, like a callback), in the interval
it entered that queue; the target queue counts it offered and ``overflowed_in``, in the interval
of the move, with the item's final outcome, its waits (ASA, abandon wait, service level)
measured from the move, as each ``Queue()`` starts its own clock. The legs are ordered by the
moves' times, so the moves may arrive in any order; a repeated move is one move.

Live figures (:meth:`QueueStatistics.now`) are the items still waiting per queue with the
longest wait, and the agents by state with the precedence of the Redis scripts (logged out,
reserved, on work, wrap-up, missed, paused, ready); an agent's availability facts are applied
last-writer-wins by (``at``, entry id), its holds are derived from the items.

:meth:`QueueStatistics.prune` folds finished items older than a horizon into fixed interval
tallies to bound memory; a fact that arrives later for a pruned item is counted in
:attr:`QueueStatistics.late` and ignored.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Protocol

from acd.domain.call_events import LeaveReason

__all__ = [
    "Applied",
    "IntervalStats",
    "LiveQueue",
    "LiveStats",
    "QueueStatistics",
    "StatsConfig",
    "StreamEntry",
    "leave_kind",
]


class StreamEntry(Protocol):
    """One stream entry (``acd.adapters.redis_state.AcdEvent`` is one)."""

    @property
    def event_id(self) -> str: ...
    @property
    def kind(self) -> str: ...
    @property
    def at_ms(self) -> int: ...
    @property
    def fields(self) -> Mapping[str, str]: ...


class Applied(StrEnum):
    """What :meth:`QueueStatistics.apply` did with an entry."""

    APPLIED = "applied"
    DUPLICATE = "duplicate"
    IGNORED = "ignored"  # a kind the statistics do not use
    REJECTED = "rejected"  # malformed: see QueueStatistics.rejected
    LATE = "late"  # about an item already pruned


@dataclass(frozen=True, slots=True)
class StatsConfig:
    """Reporting settings: interval length, SL threshold and short-abandon threshold, seconds."""

    interval: float = 900.0
    threshold: float = 20.0
    short_abandon: float = 5.0
    origin_ms: int = 0

    def __post_init__(self) -> None:
        if self.interval <= 0:
            raise ValueError(f"interval must be > 0, got {self.interval}")
        if self.threshold < 0 or self.short_abandon < 0:
            raise ValueError("threshold and short_abandon must be >= 0")


class _Outcome(StrEnum):
    WAITING = "waiting"
    ANSWERED = "answered"
    ABANDONED = "abandoned"
    TIMED_OUT = "timed_out"
    CALLBACK = "callback"
    OTHER = "other"


_TIMED_OUT = frozenset({LeaveReason.TIMEOUT, LeaveReason.EXPIRED, LeaveReason.EMPTY})


def leave_kind(reason: str) -> str:
    """The :class:`_Outcome` value of a cancel reason or abandon cause."""
    if reason == LeaveReason.ABANDONED:
        return _Outcome.ABANDONED.value
    if reason in _TIMED_OUT or reason == LeaveReason.REFUSED:
        return _Outcome.TIMED_OUT.value
    if reason == LeaveReason.CALLBACK or reason.startswith("key:"):
        return _Outcome.CALLBACK.value
    return _Outcome.OTHER.value


@dataclass(slots=True)
class _Acc:
    offered: int = 0
    answered: int = 0
    answered_in_sl: int = 0
    abandoned: int = 0
    abandoned_in_sl: int = 0
    short_abandoned: int = 0
    timed_out: int = 0
    callbacks: int = 0
    other_exits: int = 0
    overflowed: int = 0
    overflowed_in: int = 0
    wait_sum: float = 0.0
    max_wait: float = 0.0
    abandon_wait_sum: float = 0.0
    handled: int = 0
    talk_sum: float = 0.0
    hold_sum: float = 0.0
    wrap_sum: float = 0.0

    def add(self, other: _Acc) -> None:
        for name in _Acc.__slots__:
            if name == "max_wait":
                self.max_wait = max(self.max_wait, other.max_wait)
            else:
                setattr(self, name, getattr(self, name) + getattr(other, name))


@dataclass(frozen=True, slots=True)
class IntervalStats:
    """The figures of one queue over one interval (or a whole run); times in seconds."""

    queue: str
    index: int
    offered: int = 0
    answered: int = 0
    answered_in_sl: int = 0
    abandoned: int = 0
    abandoned_in_sl: int = 0
    short_abandoned: int = 0
    timed_out: int = 0
    callbacks: int = 0
    other_exits: int = 0
    #: Items that left this queue for another (overflow out).
    overflowed: int = 0
    #: Items that entered this queue from another (overflow in; counted in ``offered`` too).
    overflowed_in: int = 0
    wait_sum: float = 0.0
    max_wait: float = 0.0
    abandon_wait_sum: float = 0.0
    handled: int = 0
    talk_sum: float = 0.0
    hold_sum: float = 0.0
    wrap_sum: float = 0.0

    @property
    def ended(self) -> int:
        """The service level's denominator: answered + abandoned - short + timed out."""
        return self.answered + self.abandoned - self.short_abandoned + self.timed_out

    @property
    def service_level(self) -> float:
        """Answered within T / (answered + abandoned - short abandons + timed out); 1 if none."""
        return self.answered_in_sl / self.ended if self.ended else 1.0

    @property
    def service_level_answered(self) -> float:
        """Answered within T / answered (Asterisk ServicelevelPerf); 1 if none answered."""
        return self.answered_in_sl / self.answered if self.answered else 1.0

    @property
    def service_level_asterisk2(self) -> float:
        """(Answered + abandoned within T) / (answered + abandoned) (Asterisk ServicelevelPerf2)."""
        total = self.answered + self.abandoned
        return (self.answered_in_sl + self.abandoned_in_sl) / total if total else 1.0

    @property
    def asa(self) -> float:
        """Average speed of answer, 0 if nothing was answered."""
        return self.wait_sum / self.answered if self.answered else 0.0

    @property
    def aht(self) -> float:
        """Average handle time (talk + hold + wrap-up) of the items whose handling ended."""
        return (
            (self.talk_sum + self.hold_sum + self.wrap_sum) / self.handled if self.handled else 0.0
        )

    @property
    def average_abandon_wait(self) -> float:
        """Mean wait of the callers who abandoned (short abandons included)."""
        return self.abandon_wait_sum / self.abandoned if self.abandoned else 0.0

    @property
    def abandon_rate(self) -> float:
        """(Abandoned - short) / (offered - short)."""
        offered = self.offered - self.short_abandoned
        return (self.abandoned - self.short_abandoned) / offered if offered > 0 else 0.0


@dataclass(frozen=True, slots=True)
class LiveQueue:
    """A queue right now."""

    queue: str
    waiting: int
    longest_wait: float


@dataclass(frozen=True, slots=True)
class LiveStats:
    """Right now: waiting items per queue and agents by state."""

    at_ms: int
    queues: Mapping[str, LiveQueue]
    agents_by_state: Mapping[str, int]


@dataclass(slots=True)
class _Item:
    queue: str = ""
    channel: str = ""
    enq_ms: int | None = None
    first_seen_ms: int = 0
    assigned_ms: int | None = None
    answered_ms: int | None = None
    answer_wait_ms: int | None = None
    agent: str = ""
    leave: str = ""  # the first leave reason seen
    leave_ms: int | None = None
    leave_wait_ms: int | None = None
    completed_ms: int | None = None
    wrap_until_ms: int | None = None
    talk_ms: int | None = None
    call_wrap_ms: int | None = None
    holds: set[int] = field(default_factory=set)
    retrieves: set[int] = field(default_factory=set)
    offers: dict[str, str] = field(default_factory=dict)  # pending offer id -> agent
    ended_offers: set[str] = field(default_factory=set)
    entry_queue: str = ""  # the queue of ItemEnqueued, whatever arrives first
    moves: set[tuple[int, str, str]] = field(default_factory=set)  # (at, from, to)

    def legs(self) -> list[tuple[str, int | None]]:
        """(queue, entered at; None for the first: its enqueue time) in the order waited in."""
        first = self.entry_queue or self.queue
        legs: list[tuple[str, int | None]] = [(first, None)]
        for at, source, target in sorted(self.moves):
            if source == legs[-1][0] and target != source:
                legs.append((target, at))
        return legs

    def answer_ms(self) -> int | None:
        if self.answered_ms is not None:
            return self.answered_ms
        return self.assigned_ms

    def outcome(self) -> _Outcome:
        if self.answer_ms() is not None:
            return _Outcome.ANSWERED
        if self.leave:
            return _Outcome(leave_kind(self.leave))
        return _Outcome.WAITING

    def finished(self) -> bool:
        outcome = self.outcome()
        if outcome is _Outcome.WAITING:
            return False
        return outcome is not _Outcome.ANSWERED or self.completed_ms is not None

    def hold_ms(self) -> int:
        total = 0
        retrieves = sorted(self.retrieves)
        for start in sorted(self.holds):
            end = next((r for r in retrieves if r >= start), None)
            if end is not None:
                total += end - start
                retrieves.remove(end)
        return total


@dataclass(slots=True)
class _Agent:
    logged_in: bool = False
    pause: str = ""
    missed: bool = False
    wrap_until_ms: int = 0
    last: tuple[int, str] = (-1, "")


_AGENT_KINDS = frozenset(
    {
        "AgentLoggedIn",
        "AgentLoggedOut",
        "AgentMadeReady",
        "AgentPaused",
        "AgentWrapUpStarted",
        "AgentMarkedMissed",
    }
)
_MAX_REJECTED = 100
_NUMERIC = ("enq", "wait_ms", "talk_ms", "wrap_ms", "wrap_until")


class QueueStatistics:
    """Folds stream entries into per-queue, per-interval and live figures (see the module doc)."""

    def __init__(self, config: StatsConfig | None = None) -> None:
        self.config = config or StatsConfig()
        self._items: dict[str, _Item] = {}
        self._agents: dict[str, _Agent] = {}
        self._seen: set[str] = set()
        self._folded: dict[tuple[str, int], _Acc] = {}
        self._pruned: set[str] = set()
        self.rejected: list[tuple[str, str]] = []
        self.rejected_total = 0
        self.duplicates = 0
        self.late = 0

    # --- input -------------------------------------------------------------------------------

    def apply_all(self, entries: Iterable[StreamEntry]) -> None:
        """Apply entries in the given order."""
        for entry in entries:
            self.apply(entry)

    def apply(self, entry: StreamEntry) -> Applied:
        """Fold one entry in; see :class:`Applied` for the outcomes."""
        if entry.event_id in self._seen:
            self.duplicates += 1
            return Applied.DUPLICATE
        try:
            for name in _NUMERIC:
                if entry.fields.get(name):
                    _int(entry.fields[name])
            outcome = self._apply(entry.kind, entry.at_ms, entry.fields, entry.event_id)
        except (KeyError, ValueError) as err:
            self.rejected_total += 1
            self.rejected.append((entry.event_id, f"{entry.kind}: {err}"))
            del self.rejected[:-_MAX_REJECTED]
            return Applied.REJECTED
        if outcome is not Applied.IGNORED:
            self._seen.add(entry.event_id)
        return outcome

    def _item(self, fields: Mapping[str, str], at_ms: int) -> _Item | None:
        item_id = fields["item"]
        if not item_id:
            raise ValueError("empty item id")
        if item_id in self._pruned:
            return None
        item = self._items.get(item_id)
        if item is None:
            item = self._items[item_id] = _Item(first_seen_ms=at_ms)
        else:
            item.first_seen_ms = min(item.first_seen_ms, at_ms)
        queue = fields.get("queue")
        if queue and not item.queue:
            item.queue = queue
        return item

    def _apply(self, kind: str, at: int, f: Mapping[str, str], event_id: str) -> Applied:
        if kind in _AGENT_KINDS:
            self._agent_fact(kind, at, f, event_id)
            return Applied.APPLIED
        if not (kind.startswith("Item") or kind.startswith("Call") or kind.startswith("Offer")):
            return Applied.IGNORED
        if kind == "OfferRescinded":
            return Applied.IGNORED  # its ItemRequeued carries the item
        item = self._item(f, at)
        if item is None:
            self.late += 1
            return Applied.LATE
        if kind in ("ItemEnqueued", "CallQueued"):
            if kind == "ItemEnqueued":
                item.entry_queue = f["queue"]
            enq = _int(f["enq"]) if f.get("enq") else at
            item.enq_ms = enq if item.enq_ms is None else min(item.enq_ms, enq)
            item.channel = (
                f.get("channel", item.channel) if kind == "ItemEnqueued" else item.channel
            )
        elif kind == "ItemOffered":
            offer = f["offer"]
            if offer not in item.ended_offers:
                item.offers[offer] = f["agent"]
        elif kind in ("ItemRequeued", "OfferMissed", "OfferTimedOut"):
            offer = f.get("offer", "")
            item.ended_offers.add(offer)
            item.offers.pop(offer, None)
            if kind == "OfferMissed":
                self._agent_fact("AgentMarkedMissed", at, {"agent": f["agent"]}, event_id)
        elif kind == "ItemAssigned":
            item.assigned_ms = at if item.assigned_ms is None else min(item.assigned_ms, at)
            item.agent = f.get("agent", item.agent)
            item.ended_offers.add(f.get("offer", ""))
            item.offers.pop(f.get("offer", ""), None)
        elif kind == "CallAnswered":
            item.answered_ms = at if item.answered_ms is None else min(item.answered_ms, at)
            if f.get("wait_ms"):
                item.answer_wait_ms = _int(f["wait_ms"])
            item.agent = f.get("agent") or item.agent
        elif kind in ("ItemCancelled", "CallAbandoned", "CallbackRequested"):
            self._leave(item, kind, at, f)
        elif kind == "ItemCompleted":
            item.completed_ms = at if item.completed_ms is None else min(item.completed_ms, at)
            if f.get("wrap_until"):
                item.wrap_until_ms = _int(f["wrap_until"])
            agent = f.get("agent", "")
            if agent and item.wrap_until_ms:
                self._agent_fact(
                    "ItemCompleted", at, {"agent": agent, "wrap_until": f["wrap_until"]}, event_id
                )
        elif kind == "CallCompleted":
            item.talk_ms = _int(f.get("talk_ms", "0"))
            if f.get("wrap_ms"):
                item.call_wrap_ms = _int(f["wrap_ms"])
            if item.completed_ms is None:
                item.completed_ms = at
        elif kind == "CallHeld":
            item.holds.add(at)
        elif kind == "CallRetrieved":
            item.retrieves.add(at)
        elif kind == "ItemOverflowed":
            source, target = f["from"], f["to"]
            if not source or not target or source == target:
                raise ValueError(f"bad overflow {source!r} -> {target!r}")
            item.moves.add((at, source, target))
        else:
            return Applied.IGNORED
        return Applied.APPLIED

    def _leave(self, item: _Item, kind: str, at: int, f: Mapping[str, str]) -> None:
        if kind == "CallbackRequested":
            reason = LeaveReason.CALLBACK.value
        elif kind == "CallAbandoned":
            reason = f.get("cause") or LeaveReason.ABANDONED.value
            if f.get("wait_ms"):
                item.leave_wait_ms = _int(f["wait_ms"])
        else:
            reason = f.get("reason") or LeaveReason.CANCELLED.value
        # A specific reason from the call side wins over the ACD's generic "cancelled".
        if not item.leave or (item.leave == LeaveReason.CANCELLED and reason != item.leave):
            item.leave = reason
        item.leave_ms = at if item.leave_ms is None else min(item.leave_ms, at)
        item.offers.clear()

    def _agent_fact(self, kind: str, at: int, f: Mapping[str, str], event_id: str) -> None:
        agent_id = f["agent"]
        if not agent_id:
            raise ValueError("empty agent id")
        agent = self._agents.setdefault(agent_id, _Agent())
        key = (at, event_id)
        if key < agent.last:
            return  # an older fact arriving late: the newer one stands
        agent.last = key
        if kind == "AgentLoggedIn":
            agent.logged_in, agent.pause, agent.missed = True, f.get("pause", ""), False
        elif kind == "AgentLoggedOut":
            agent.logged_in = False
        elif kind == "AgentMadeReady":
            agent.pause, agent.missed, agent.wrap_until_ms = "", False, 0
        elif kind == "AgentPaused":
            agent.pause = f.get("reason", "") or "paused"
        elif kind in ("AgentWrapUpStarted", "ItemCompleted"):
            agent.wrap_until_ms = max(agent.wrap_until_ms, _int(f.get("wrap_until", "0")))
        elif kind == "AgentMarkedMissed":
            agent.missed = True

    # --- output ------------------------------------------------------------------------------

    def _index(self, at_ms: int) -> int:
        return int((at_ms - self.config.origin_ms) // (self.config.interval * 1000))

    def _contributions(self, item: _Item) -> list[tuple[tuple[str, int], _Acc]]:
        """What the item adds to each (queue, interval): one leg per queue it waited in."""
        if not item.queue and not item.entry_queue:
            return []
        enq = item.enq_ms if item.enq_ms is not None else item.first_seen_ms
        legs = item.legs()
        out = []
        for queue, entered in legs[:-1]:
            start = enq if entered is None else entered
            out.append(((queue, self._index(start)), _Acc(offered=1, overflowed=1)))
        queue, entered = legs[-1]
        start = enq if entered is None else entered
        acc = _Acc(offered=1, overflowed_in=int(entered is not None))
        self._outcome(item, acc, start, moved=entered is not None)
        out.append(((queue, self._index(start)), acc))
        return out

    def _outcome(self, item: _Item, acc: _Acc, start: int, *, moved: bool) -> None:
        """The item's outcome in the queue it ended in, waits counted from ``start``."""
        threshold_ms = self.config.threshold * 1000
        outcome = item.outcome()
        if outcome is _Outcome.ANSWERED:
            answer = item.answer_ms()
            assert answer is not None
            given = None if moved else item.answer_wait_ms
            wait_ms = max(0, given if given is not None else answer - start)
            acc.answered = 1
            acc.answered_in_sl = int(wait_ms <= threshold_ms)
            acc.wait_sum = wait_ms / 1000
            acc.max_wait = acc.wait_sum
            handled = self._handle(item, answer)
            if handled is not None:
                acc.handled = 1
                acc.talk_sum, acc.hold_sum, acc.wrap_sum = handled
        elif outcome is _Outcome.ABANDONED:
            assert item.leave_ms is not None
            given = None if moved else item.leave_wait_ms
            wait_ms = max(0, given if given is not None else item.leave_ms - start)
            acc.abandoned = 1
            acc.abandoned_in_sl = int(wait_ms <= threshold_ms)
            short = self.config.short_abandon
            acc.short_abandoned = int(short > 0 and wait_ms <= short * 1000)  # 0: none are short
            acc.abandon_wait_sum = wait_ms / 1000
        elif outcome is _Outcome.TIMED_OUT:
            acc.timed_out = 1
        elif outcome is _Outcome.CALLBACK:
            acc.callbacks = 1
        elif outcome is _Outcome.OTHER:
            acc.other_exits = 1

    @staticmethod
    def _handle(item: _Item, answer: int) -> tuple[float, float, float] | None:
        if item.completed_ms is None:
            return None
        hold = item.hold_ms()
        if item.talk_ms is not None:
            talk = item.talk_ms
        else:
            talk = max(0, item.completed_ms - answer - hold)
        if item.call_wrap_ms is not None:
            wrap = item.call_wrap_ms
        elif item.wrap_until_ms is not None:
            wrap = max(0, item.wrap_until_ms - item.completed_ms)
        else:
            wrap = 0
        return talk / 1000, hold / 1000, wrap / 1000

    def _accumulators(self) -> dict[tuple[str, int], _Acc]:
        out: dict[tuple[str, int], _Acc] = {}
        for key, acc in self._folded.items():
            out[key] = _Acc()
            out[key].add(acc)
        for item in self._items.values():
            for key, acc in self._contributions(item):
                if key in out:
                    out[key].add(acc)
                else:
                    out[key] = acc
        return out

    def intervals(self) -> dict[tuple[str, int], IntervalStats]:
        """Figures per (queue, interval index), sorted by queue then interval."""
        return {
            key: _frozen(key[0], key[1], acc) for key, acc in sorted(self._accumulators().items())
        }

    def totals(self) -> dict[str, IntervalStats]:
        """Figures per queue over everything seen (index -1)."""
        by_queue: dict[str, _Acc] = {}
        for (queue, _), acc in self._accumulators().items():
            by_queue.setdefault(queue, _Acc()).add(acc)
        return {queue: _frozen(queue, -1, acc) for queue, acc in sorted(by_queue.items())}

    def interval_start_ms(self, index: int) -> int:
        """Where interval ``index`` starts, in ms."""
        return self.config.origin_ms + round(index * self.config.interval * 1000)

    def now(self, now_ms: int) -> LiveStats:
        """Waiting items per queue with the longest wait, and agents by state, at ``now_ms``."""
        waiting: dict[str, list[int]] = {}
        reserved: set[str] = set()
        on_work: set[str] = set()
        for item in self._items.values():
            outcome = item.outcome()
            if outcome is _Outcome.WAITING and (item.queue or item.entry_queue):
                queue, entered = item.legs()[-1]
                enq = item.enq_ms if item.enq_ms is not None else item.first_seen_ms
                waiting.setdefault(queue, []).append(enq if entered is None else entered)
                reserved.update(item.offers.values())
            elif outcome is _Outcome.ANSWERED and item.completed_ms is None and item.agent:
                on_work.add(item.agent)
        queues = {
            queue: LiveQueue(queue, len(enqs), max(0.0, (now_ms - min(enqs)) / 1000))
            for queue, enqs in sorted(waiting.items())
        }
        counts: dict[str, int] = {}
        for agent_id, agent in self._agents.items():
            state = _agent_state(agent, agent_id in reserved, agent_id in on_work, now_ms)
            counts[state] = counts.get(state, 0) + 1
        return LiveStats(now_ms, queues, dict(sorted(counts.items())))

    def prune(self, before_ms: int) -> int:
        """Fold finished items last touched before ``before_ms`` into fixed tallies; how many."""
        done = [
            item_id
            for item_id, item in self._items.items()
            if item.finished() and _last_ms(item) < before_ms
        ]
        for item_id in done:
            contributions = self._contributions(self._items.pop(item_id))
            self._pruned.add(item_id)
            for key, acc in contributions:
                self._folded.setdefault(key, _Acc()).add(acc)
        return len(done)


def _agent_state(agent: _Agent, reserved: bool, on_work: bool, now_ms: int) -> str:
    if not agent.logged_in:
        return "logged_out"
    if reserved:
        return "reserved"
    if on_work:
        return "on_work"
    if agent.wrap_until_ms > now_ms:
        return "wrap_up"
    if agent.missed:
        return "missed"
    if agent.pause:
        return "paused"
    return "ready"


def _last_ms(item: _Item) -> int:
    times = [item.first_seen_ms, item.leave_ms, item.completed_ms, item.wrap_until_ms]
    times += [at for at, _, _ in item.moves]
    return max(t for t in times if t is not None)


def _frozen(queue: str, index: int, acc: _Acc) -> IntervalStats:
    return IntervalStats(queue, index, **{name: getattr(acc, name) for name in _Acc.__slots__})


def _int(text: str) -> int:
    try:
        return int(float(text))
    except ValueError:
        raise ValueError(f"{text!r} is not a number") from None
