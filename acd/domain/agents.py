"""Agents: skills, per-channel capacity, and the agent state machine as a transition table.

Theory of operation
-------------------

An agent has a static :class:`AgentProfile` (skills with levels 1-5, languages, capacity per
channel, whether a call blocks the other channels) and a dynamic :class:`AgentStatus`. The status
is a record of facts (logged in, pause reason, the one pending reservation, the active work items
with their wrap-up timers, the missed-offer cooldown); the :class:`AgentState` is *derived* from
it by precedence, so the record can never say two contradictory things::

    not logged in            -> LOGGED_OUT
    a reservation            -> RESERVED   (an offer is ringing / pending acceptance)
    an item being worked     -> ON_WORK
    only items in wrap-up    -> WRAP_UP    (per item: ``Complete(wrap_up=s)`` starts its timer)
    a missed-offer cooldown  -> MISSED
    a pause reason           -> PAUSED
    otherwise                -> READY

Requests that cannot take effect at once are kept, never dropped and never applied early:
pausing or logging out while working (or while an offer is pending) takes effect when the
work, including its wrap-up, ends (a forced wrap-up is never cut short by a status change, the
Amazon Connect complaint in callcenter-anchors.md section d-3); ``Ready`` cancels such pending
requests. Logging out while *reserved* releases the reservation at once (the engine puts the item
back in its queue), so a logged-out agent is never left reserved.

:data:`TRANSITIONS` is the table of every allowed (state, command) pair and the states it may
lead to; :func:`transition` computes the new record and then checks it against the table, so the
table is both the documentation and an enforced invariant. A command that is not allowed in the
current state (a duplicate ``Accept``, a ``Complete`` for an unknown item, ...) raises
:class:`AgentCommandRejected` and leaves the status unchanged; the engine counts and ignores it.

Capacity follows Twilio TaskRouter's multitasking and Amazon Connect's ``MediaConcurrency``:
each channel has its own capacity (e.g. 1 call, 3 chats, 5 emails); items in wrap-up still use
capacity until their wrap-up ends; with ``call_blocks_others`` an agent with a call (offered,
active or wrapping) is offered nothing else.

Pure: times are plain floats passed in by the caller (the engine's injected clock).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from types import MappingProxyType
from typing import Any, ClassVar, NewType, TypeAlias

from acd.domain.work import MAX_SKILL_LEVEL, MIN_SKILL_LEVEL, Channel, ItemId, QueueId
from acd.errors import AcdError

__all__ = [
    "TRANSITIONS",
    "Accept",
    "ActiveWork",
    "AgentCommand",
    "AgentCommandRejected",
    "AgentId",
    "AgentProfile",
    "AgentState",
    "AgentStatus",
    "Capacity",
    "CommandKind",
    "Complete",
    "InvalidAgentProfile",
    "Login",
    "Logout",
    "Miss",
    "MissedEnd",
    "Pause",
    "Ready",
    "Rescind",
    "Reservation",
    "Reserve",
    "WrapUpEnd",
    "transition",
]

AgentId = NewType("AgentId", str)


class InvalidAgentProfile(AcdError):
    """An agent profile is malformed (skill level out of range, negative capacity)."""

    error_id = "acd-invalid-agent-profile"


class AgentCommandRejected(AcdError):
    """The command is not allowed in the agent's current state; the status is unchanged."""

    error_id = "acd-agent-command-rejected"


# Enum members as module constants (reading them off the enum class is slow on a hot path).
_CALL = Channel.CALL
_CHAT = Channel.CHAT
_EMAIL = Channel.EMAIL


@dataclass(frozen=True, slots=True)
class Capacity:
    """How many items of each channel an agent can hold at once."""

    call: int = 1
    chat: int = 0
    email: int = 0
    call_blocks_others: bool = True

    def __post_init__(self) -> None:
        if min(self.call, self.chat, self.email) < 0:
            raise InvalidAgentProfile(f"negative capacity in {self}")

    def of(self, channel: Channel) -> int:
        """The capacity for ``channel``."""
        if channel is _CALL:
            return self.call
        if channel is _CHAT:
            return self.chat
        return self.email


@dataclass(frozen=True, slots=True)
class AgentProfile:
    """What an agent can do: skills with levels 1-5, languages, capacity per channel.

    A missing skill is not level 0: it matches no requirement at any relaxation step.
    """

    agent_id: AgentId
    skills: Mapping[str, int] = field(default_factory=dict, hash=False)
    languages: frozenset[str] = frozenset()
    capacity: Capacity = Capacity()

    def __post_init__(self) -> None:
        if not self.agent_id:
            raise InvalidAgentProfile("an agent has an empty id")
        for skill, level in self.skills.items():
            if not skill or not MIN_SKILL_LEVEL <= level <= MAX_SKILL_LEVEL:
                raise InvalidAgentProfile(
                    f"agent {self.agent_id!r}: skill {skill!r} level {level} is outside "
                    f"{MIN_SKILL_LEVEL}..{MAX_SKILL_LEVEL}"
                )
        object.__setattr__(self, "skills", MappingProxyType(dict(self.skills)))

    def level(self, skill: str) -> int | None:
        """The agent's level in ``skill``, or None if the agent does not have it."""
        return self.skills.get(skill)


class AgentState(StrEnum):
    """The agent's state, derived from :class:`AgentStatus` by precedence."""

    LOGGED_OUT = "logged_out"
    READY = "ready"
    RESERVED = "reserved"
    ON_WORK = "on_work"
    WRAP_UP = "wrap_up"
    PAUSED = "paused"
    MISSED = "missed"


_LO = AgentState.LOGGED_OUT
_RD = AgentState.READY
_RS = AgentState.RESERVED
_OW = AgentState.ON_WORK
_WU = AgentState.WRAP_UP
_PA = AgentState.PAUSED
_MI = AgentState.MISSED


@dataclass(frozen=True, slots=True)
class Reservation:
    """The one item currently offered to the agent, awaiting acceptance."""

    item_id: ItemId
    channel: Channel
    queue: QueueId
    at: float


@dataclass(frozen=True, slots=True)
class ActiveWork:
    """An item the agent is working on; ``wrap_until`` is set once it is in wrap-up."""

    item_id: ItemId
    channel: Channel
    queue: QueueId
    since: float
    wrap_until: float | None = None


@dataclass(frozen=True, slots=True)
class AgentStatus:
    """The agent's dynamic facts; :attr:`state` is derived from them."""

    logged_in: bool = False
    logout_pending: bool = False
    pause_reason: str | None = None
    reservation: Reservation | None = None
    active: tuple[ActiveWork, ...] = ()
    missed_until: float | None = None
    consecutive_misses: int = 0
    logged_in_at: float = 0.0
    idle_since: float = 0.0
    last_assigned_at: float = 0.0
    busy_since: float | None = None
    busy_seconds: float = 0.0
    #: The derived state (computed once, when the record is made).
    state: AgentState = field(init=False, repr=False, compare=False)
    #: True if the agent may be offered something now, capacity permitting.
    routable: bool = field(init=False, repr=False, compare=False)
    #: Longest-idle order: (0, idle_since) when READY, else (1, last_assigned_at).
    idle_key: tuple[float, float] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # One pass over the facts for the three derived fields (this runs for every transition).
        working = False
        for work in self.active:
            if work.wrap_until is None:
                working = True
                break
        if not self.logged_in:
            state = _LO
        elif self.reservation is not None:
            state = _RS
        elif self.active:
            state = _OW if working else _WU
        elif self.missed_until is not None:
            state = _MI
        elif self.pause_reason is not None:
            state = _PA
        else:
            state = _RD
        routable = (
            self.logged_in
            and not self.logout_pending
            and self.pause_reason is None
            and self.reservation is None
            and self.missed_until is None
            and (working or not self.active)
        )
        _set = object.__setattr__
        _set(self, "state", state)
        _set(self, "routable", routable)
        _set(
            self,
            "idle_key",
            (0.0, self.idle_since) if state is _RD else (1.0, self.last_assigned_at),
        )

    def load(self, channel: Channel) -> int:
        """Items of ``channel`` the agent holds: active, wrapping and reserved."""
        count = sum(1 for work in self.active if work.channel is channel)
        if self.reservation is not None and self.reservation.channel is channel:
            count += 1
        return count

    def can_take(self, capacity: Capacity, channel: Channel) -> bool:
        """True if an item of ``channel`` may be offered now."""
        if not self.routable:
            return False
        limit = capacity.of(channel)
        if limit <= 0 or self.load(channel) >= limit:
            return False
        return not (capacity.call_blocks_others and channel is not _CALL and self.load(_CALL) > 0)

    def open_channels(self, capacity: Capacity) -> tuple[Channel, ...]:
        """The channels :meth:`can_take` is true for, in :class:`Channel` order, in one pass."""
        if not self.routable:
            return ()
        calls = chats = emails = 0
        for work in self.active:
            channel = work.channel
            if channel is _CALL:
                calls += 1
            elif channel is _CHAT:
                chats += 1
            else:
                emails += 1
        # a routable agent holds no reservation: the active items are the whole load
        open_: list[Channel] = []
        if calls < capacity.call:
            open_.append(_CALL)
        if calls and capacity.call_blocks_others:
            return tuple(open_)
        if chats < capacity.chat:
            open_.append(_CHAT)
        if emails < capacity.email:
            open_.append(_EMAIL)
        return tuple(open_)

    def occupancy(self, now: float) -> float:
        """Share of the time since login spent busy (reserved or working, wrap-up included)."""
        busy = self.busy_seconds
        if self.busy_since is not None:
            busy += max(0.0, now - self.busy_since)
        logged = now - self.logged_in_at
        return busy / logged if logged > 0 else 0.0

    def utilisation(self, capacity: Capacity) -> float:
        """Current load as a share of the total capacity (0 when no capacity)."""
        total = capacity.call + capacity.chat + capacity.email
        held = len(self.active) + (1 if self.reservation is not None else 0)
        return held / total if total else 0.0

    @property
    def busy(self) -> bool:
        """True while the agent holds a reservation or any work item."""
        return self.reservation is not None or bool(self.active)


class CommandKind(StrEnum):
    """The kinds of command the agent state machine understands."""

    LOGIN = "login"
    LOGOUT = "logout"
    READY = "ready"
    PAUSE = "pause"
    RESERVE = "reserve"
    ACCEPT = "accept"
    MISS = "miss"
    RESCIND = "rescind"
    COMPLETE = "complete"
    WRAP_UP_END = "wrap_up_end"
    MISSED_END = "missed_end"


@dataclass(frozen=True, slots=True)
class Login:
    """The agent logs in; cancels a pending logout."""

    kind: ClassVar[CommandKind] = CommandKind.LOGIN


@dataclass(frozen=True, slots=True)
class Logout:
    """The agent logs out: at once if free or reserved, after the work if working."""

    kind: ClassVar[CommandKind] = CommandKind.LOGOUT


@dataclass(frozen=True, slots=True)
class Ready:
    """The agent wants work: clears a pause, a missed cooldown, wrap-ups and pending requests."""

    kind: ClassVar[CommandKind] = CommandKind.READY


@dataclass(frozen=True, slots=True)
class Pause:
    """The agent pauses with a reason: at once if free, after the work if working."""

    reason: str
    kind: ClassVar[CommandKind] = CommandKind.PAUSE


@dataclass(frozen=True, slots=True)
class Reserve:
    """The engine offers an item to the agent (the agent must be routable with capacity)."""

    item_id: ItemId
    channel: Channel
    queue: QueueId
    kind: ClassVar[CommandKind] = CommandKind.RESERVE


@dataclass(frozen=True, slots=True)
class Accept:
    """The agent answered the offered item: it becomes active work."""

    item_id: ItemId
    kind: ClassVar[CommandKind] = CommandKind.ACCEPT


@dataclass(frozen=True, slots=True)
class Miss:
    """The offer was not answered (ring timeout, rejected).

    The agent gets a cooldown of ``cooldown`` seconds, or is paused with ``pause_reason`` once
    ``pause_after`` offers in a row were missed (0 never auto-pauses).
    """

    item_id: ItemId
    cooldown: float = 0.0
    pause_after: int = 0
    pause_reason: str = "missed-offers"
    kind: ClassVar[CommandKind] = CommandKind.MISS


@dataclass(frozen=True, slots=True)
class Rescind:
    """The offer is withdrawn through no fault of the agent (the customer left)."""

    item_id: ItemId
    kind: ClassVar[CommandKind] = CommandKind.RESCIND


@dataclass(frozen=True, slots=True)
class Complete:
    """The work on an item ended; with ``wrap_up`` > 0 it stays held in wrap-up that long."""

    item_id: ItemId
    wrap_up: float = 0.0
    kind: ClassVar[CommandKind] = CommandKind.COMPLETE


@dataclass(frozen=True, slots=True)
class WrapUpEnd:
    """The wrap-up timer of an item ran out."""

    item_id: ItemId
    kind: ClassVar[CommandKind] = CommandKind.WRAP_UP_END


@dataclass(frozen=True, slots=True)
class MissedEnd:
    """The missed-offer cooldown ran out."""

    kind: ClassVar[CommandKind] = CommandKind.MISSED_END


AgentCommand: TypeAlias = (
    Login
    | Logout
    | Ready
    | Pause
    | Reserve
    | Accept
    | Miss
    | Rescind
    | Complete
    | WrapUpEnd
    | MissedEnd
)

_K = CommandKind

#: Every allowed (state, command) pair and the states it may lead to. A pair that is absent is
#: rejected. Where a command has several possible outcomes the record decides (e.g. ``Miss`` is
#: MISSED with a cooldown, PAUSED after too many misses, ON_WORK if other work is active).
TRANSITIONS: Mapping[tuple[AgentState, CommandKind], frozenset[AgentState]] = MappingProxyType(
    {
        (_LO, _K.LOGIN): frozenset({_RD}),
        (_RD, _K.LOGOUT): frozenset({_LO}),
        (_RD, _K.PAUSE): frozenset({_PA}),
        (_RD, _K.RESERVE): frozenset({_RS}),
        (_RS, _K.LOGOUT): frozenset({_LO, _OW}),
        (_RS, _K.READY): frozenset({_RS}),
        (_RS, _K.PAUSE): frozenset({_RS}),
        (_RS, _K.ACCEPT): frozenset({_OW}),
        (_RS, _K.MISS): frozenset({_MI, _PA, _OW, _WU, _RD}),
        (_RS, _K.RESCIND): frozenset({_RD, _OW, _WU, _PA}),
        (_RS, _K.COMPLETE): frozenset({_RS}),
        (_RS, _K.WRAP_UP_END): frozenset({_RS}),
        (_OW, _K.LOGIN): frozenset({_OW}),
        (_OW, _K.LOGOUT): frozenset({_OW}),
        (_OW, _K.READY): frozenset({_OW}),
        (_OW, _K.PAUSE): frozenset({_OW}),
        (_OW, _K.RESERVE): frozenset({_RS}),
        (_OW, _K.COMPLETE): frozenset({_OW, _WU, _MI, _PA, _RD, _LO}),
        (_OW, _K.WRAP_UP_END): frozenset({_OW}),
        (_OW, _K.MISSED_END): frozenset({_OW}),
        (_WU, _K.LOGIN): frozenset({_WU}),
        (_WU, _K.LOGOUT): frozenset({_LO}),
        (_WU, _K.READY): frozenset({_RD}),
        (_WU, _K.PAUSE): frozenset({_WU}),
        (_WU, _K.WRAP_UP_END): frozenset({_WU, _MI, _PA, _RD, _LO}),
        (_WU, _K.MISSED_END): frozenset({_WU}),
        (_PA, _K.LOGOUT): frozenset({_LO}),
        (_PA, _K.READY): frozenset({_RD}),
        (_PA, _K.PAUSE): frozenset({_PA}),
        (_MI, _K.LOGOUT): frozenset({_LO}),
        (_MI, _K.READY): frozenset({_RD}),
        (_MI, _K.PAUSE): frozenset({_PA}),
        (_MI, _K.MISSED_END): frozenset({_RD, _PA}),
    }
)

#: The table as a plain dict: the lookup on every transition.
_TABLE: dict[tuple[AgentState, CommandKind], frozenset[AgentState]] = dict(TRANSITIONS)


def transition(
    profile: AgentProfile, status: AgentStatus, command: AgentCommand, now: float
) -> AgentStatus:
    """Apply ``command`` at ``now``; raise :class:`AgentCommandRejected` if not allowed."""
    before = status.state
    allowed = _TABLE.get((before, command.kind))
    if allowed is None:
        raise AgentCommandRejected(f"{command.kind} is not allowed while {before}")
    after = _settle(status, _apply(profile, status, command, now), now)
    if after.state not in allowed:  # pragma: no cover - guarded by the property tests
        raise AgentCommandRejected(
            f"{command.kind} while {before} led to {after.state}, outside the table"
        )
    return after


def _apply(
    profile: AgentProfile, status: AgentStatus, command: AgentCommand, now: float
) -> AgentStatus:
    match command:
        case Login():
            if status.logged_in:
                if not status.logout_pending:
                    raise AgentCommandRejected("already logged in")
                return _with(status, logout_pending=False)
            return AgentStatus(logged_in=True, logged_in_at=now, idle_since=now)
        case Logout():
            if any(work.wrap_until is None for work in status.active):
                return _with(status, reservation=None, logout_pending=True)
            return AgentStatus(idle_since=now)
        case Ready():
            if status.state is _WU:
                status = _with(status, active=())
            return _with(status, pause_reason=None, missed_until=None, logout_pending=False)
        case Pause(reason=reason):
            if not reason:
                raise AgentCommandRejected("a pause needs a reason")
            return _with(status, pause_reason=reason, missed_until=None)
        case Reserve(item_id=item_id, channel=channel, queue=queue):
            if not status.can_take(profile.capacity, channel):
                raise AgentCommandRejected(f"no {channel} capacity to offer {item_id!r}")
            if any(work.item_id == item_id for work in status.active):
                raise AgentCommandRejected(f"{item_id!r} is already active")
            # built field by field (the hot path): last assigned now, and what _settle would
            # add, the busy period starts, so that one record is made, not two
            return AgentStatus(
                status.logged_in,
                status.logout_pending,
                status.pause_reason,
                Reservation(item_id, channel, queue, now),
                status.active,
                status.missed_until,
                status.consecutive_misses,
                status.logged_in_at,
                status.idle_since,
                now,
                now if status.busy_since is None else status.busy_since,
                status.busy_seconds,
            )
        case Accept(item_id=item_id):
            reservation = _reservation_for(status, item_id)
            work = ActiveWork(item_id, reservation.channel, reservation.queue, now)
            return AgentStatus(
                status.logged_in,
                status.logout_pending,
                status.pause_reason,
                None,
                (*status.active, work),
                status.missed_until,
                0,
                status.logged_in_at,
                status.idle_since,
                status.last_assigned_at,
                status.busy_since,
                status.busy_seconds,
            )
        case Miss(item_id=item_id, cooldown=cooldown, pause_after=pause_after):
            _reservation_for(status, item_id)
            misses = status.consecutive_misses + 1
            if pause_after > 0 and misses >= pause_after:
                return _with(
                    status,
                    reservation=None,
                    consecutive_misses=misses,
                    pause_reason=status.pause_reason or command.pause_reason,
                )
            return _with(
                status,
                reservation=None,
                consecutive_misses=misses,
                missed_until=now + cooldown if cooldown > 0 else None,
            )
        case Rescind(item_id=item_id):
            _reservation_for(status, item_id)
            return _with(status, reservation=None)
        case Complete(item_id=item_id, wrap_up=wrap_up):
            work = _active_for(status, item_id)
            if work.wrap_until is not None:
                raise AgentCommandRejected(f"{item_id!r} is already in wrap-up")
            rest = tuple(w for w in status.active if w.item_id != item_id)
            if wrap_up > 0:
                rest = (
                    *rest,
                    ActiveWork(work.item_id, work.channel, work.queue, work.since, now + wrap_up),
                )
            busy_since, busy_seconds, idle_since = (
                status.busy_since,
                status.busy_seconds,
                status.idle_since,
            )
            if not rest and status.reservation is None and busy_since is not None:
                # what _settle would add (one record made, not two): the busy period ends, and
                # an agent left with no pause, cooldown or work is READY, idle from now
                busy_seconds += max(0.0, now - busy_since)
                busy_since = None
                if status.missed_until is None and status.pause_reason is None:
                    idle_since = now
            return AgentStatus(
                status.logged_in,
                status.logout_pending,
                status.pause_reason,
                status.reservation,
                rest,
                status.missed_until,
                status.consecutive_misses,
                status.logged_in_at,
                idle_since,
                status.last_assigned_at,
                busy_since,
                busy_seconds,
            )
        case WrapUpEnd(item_id=item_id):
            work = _active_for(status, item_id)
            if work.wrap_until is None:
                raise AgentCommandRejected(f"{item_id!r} is not in wrap-up")
            return _with(status, active=tuple(w for w in status.active if w.item_id != item_id))
        case MissedEnd():
            if status.missed_until is None:
                raise AgentCommandRejected("no missed-offer cooldown is running")
            return _with(status, missed_until=None)


def _settle(before: AgentStatus, after: AgentStatus, now: float) -> AgentStatus:
    """Finish a pending logout, and keep the busy and idle bookkeeping."""
    if after.logged_in and after.logout_pending and not after.busy:
        return AgentStatus(idle_since=now)
    if not after.logged_in:
        return after
    changes: dict[str, Any] = {}
    busy = after.busy
    if busy and after.busy_since is None:
        changes["busy_since"] = now
    elif not busy and after.busy_since is not None:
        changes["busy_seconds"] = after.busy_seconds + max(0.0, now - after.busy_since)
        changes["busy_since"] = None
    if after.state is _RD and before.state is not _RD and after.idle_since != now:
        changes["idle_since"] = now
    return _with(after, **changes) if changes else after


def _with(status: AgentStatus, **changes: Any) -> AgentStatus:
    """A copy of ``status`` with ``changes`` (faster than dataclasses.replace on a hot path)."""
    get = changes.get
    return AgentStatus(
        get("logged_in", status.logged_in),
        get("logout_pending", status.logout_pending),
        get("pause_reason", status.pause_reason),
        get("reservation", status.reservation),
        get("active", status.active),
        get("missed_until", status.missed_until),
        get("consecutive_misses", status.consecutive_misses),
        get("logged_in_at", status.logged_in_at),
        get("idle_since", status.idle_since),
        get("last_assigned_at", status.last_assigned_at),
        get("busy_since", status.busy_since),
        get("busy_seconds", status.busy_seconds),
    )


def _reservation_for(status: AgentStatus, item_id: ItemId) -> Reservation:
    if status.reservation is None or status.reservation.item_id != item_id:
        raise AgentCommandRejected(f"{item_id!r} is not the item offered to this agent")
    return status.reservation


def _active_for(status: AgentStatus, item_id: ItemId) -> ActiveWork:
    for work in status.active:
        if work.item_id == item_id:
            return work
    raise AgentCommandRejected(f"{item_id!r} is not active for this agent")
