"""The call facts the telephony glue appends to the ACD events stream, and their serialisation.

The ACD's own facts (ItemEnqueued, ItemOffered, ItemAssigned, ItemCancelled, ItemCompleted, the
agent facts) are written by the Lua scripts of :mod:`acd.adapters.redis_state`. What only the
telephony side knows is written beside them on the same stream, with the same conventions
(``type`` = the class name, ``at`` = server ms, then string fields); the names and fields of
``CallQueued`` .. ``CallbackRequested`` are those :mod:`acd.adapters.redis_calls` already writes.
Queue statistics (:mod:`acd.domain.stats`) and the Asterisk ``queue_log``
(:mod:`acd.queue_log`) read them. Optional fields are written only when known (empty = unknown).

Contract for the emitter, so that readers never need to guess:

* ``CallQueued`` is appended before (or right after) the item's ``ItemEnqueued``; ``unique_id`` is
  the caller channel's Asterisk ``Uniqueid`` (the ``callid`` of queue_log lines).
* ``CallAnswered`` is appended when the agent's leg is bridged, before ``ItemAssigned``;
  ``peer_unique_id`` is the agent channel's ``Uniqueid``.
* ``CallAbandoned`` / ``CallbackRequested`` precede the ``ItemCancelled`` of the same item; the
  ``cause`` of an abandon and the ``reason`` of the cancel use :class:`LeaveReason` values.
* ``CallHeld`` / ``CallRetrieved`` bracket each hold; ``CallTransferred`` ends the agent's part
  (``kind`` blind or attended) and ``CallCompleted`` carries who hung up (``ended_by``).

Caller numbers never go on the stream (see :mod:`acd.adapters.redis_calls`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import MISSING, dataclass, fields
from enum import StrEnum
from typing import ClassVar

__all__ = [
    "CALL_EVENT_TYPES",
    "CallAbandoned",
    "CallAnswered",
    "CallCompleted",
    "CallEvent",
    "CallHeld",
    "CallOffered",
    "CallQueued",
    "CallRetrieved",
    "CallTransferred",
    "CallbackRequested",
    "EndedBy",
    "LeaveReason",
    "TransferKind",
    "decode_call_event",
    "encode_call_event",
]


class LeaveReason(StrEnum):
    """Why a waiting item left its queue unanswered (``ItemCancelled.reason``, abandon cause).

    ``key:<digits>`` (the caller pressed a key to leave) is accepted beside these values.
    """

    ABANDONED = "abandoned"  # the caller hung up while waiting
    TIMEOUT = "timeout"  # the queue's or the application's maximum wait
    EXPIRED = "expired"  # the routing engine's max wait (simulator, chats, emails)
    EMPTY = "empty"  # nobody logged in who could take it (Asterisk leavewhenempty)
    REFUSED = "refused"  # no queue could ever serve it
    CALLBACK = "callback"  # the caller asked to be called back (not an abandon, as in Connect)
    CANCELLED = "cancelled"  # anything else (the default of AcdRedisState.cancel)


class EndedBy(StrEnum):
    """Who ended a connected call."""

    CALLER = "caller"
    AGENT = "agent"


class TransferKind(StrEnum):
    """How the agent transferred the call."""

    BLIND = "blind"
    ATTENDED = "attended"


@dataclass(frozen=True, slots=True)
class CallEvent:
    """Base of the call facts: the work item the call is."""

    kind: ClassVar[str] = ""
    item: str


@dataclass(frozen=True, slots=True)
class CallQueued(CallEvent):
    """The call became a work item of ``queue``."""

    kind: ClassVar[str] = "CallQueued"
    queue: str
    channel: str = ""
    priority: int = 0
    resumed: bool = False
    enq: int = 0
    unique_id: str = ""


@dataclass(frozen=True, slots=True)
class CallOffered(CallEvent):
    """The agent's endpoint is being rung for the call."""

    kind: ClassVar[str] = "CallOffered"
    queue: str
    agent: str
    offer: str = ""


@dataclass(frozen=True, slots=True)
class CallAnswered(CallEvent):
    """The agent answered; ``wait_ms`` is enqueue to answer."""

    kind: ClassVar[str] = "CallAnswered"
    queue: str
    agent: str
    wait_ms: int = 0
    peer_unique_id: str = ""


@dataclass(frozen=True, slots=True)
class CallAbandoned(CallEvent):
    """The call left the queue unanswered after ``wait_ms``; ``position`` when it left."""

    kind: ClassVar[str] = "CallAbandoned"
    queue: str
    wait_ms: int = 0
    position: int = 0
    cause: str = LeaveReason.ABANDONED.value


@dataclass(frozen=True, slots=True)
class CallCompleted(CallEvent):
    """The connected call ended: talk (hold excluded when known), wrap-up and who hung up."""

    kind: ClassVar[str] = "CallCompleted"
    queue: str
    agent: str
    wait_ms: int = 0
    talk_ms: int = 0
    wrap_ms: int = 0
    ended_by: str = ""


@dataclass(frozen=True, slots=True)
class CallbackRequested(CallEvent):
    """The caller asked for a callback (pressed ``key``) and left the line."""

    kind: ClassVar[str] = "CallbackRequested"
    queue: str
    key: str = ""


@dataclass(frozen=True, slots=True)
class CallHeld(CallEvent):
    """The agent put the caller on hold."""

    kind: ClassVar[str] = "CallHeld"
    agent: str = ""


@dataclass(frozen=True, slots=True)
class CallRetrieved(CallEvent):
    """The agent took the caller back from hold."""

    kind: ClassVar[str] = "CallRetrieved"
    agent: str = ""


@dataclass(frozen=True, slots=True)
class CallTransferred(CallEvent):
    """The agent transferred the call (blind: to ``exten``@``context``; attended: to ``target``)."""

    kind: ClassVar[str] = "CallTransferred"
    queue: str
    agent: str
    transfer: str = TransferKind.BLIND.value
    exten: str = ""
    context: str = ""
    target: str = ""


CALL_EVENT_TYPES: Mapping[str, type[CallEvent]] = {
    cls.kind: cls
    for cls in (
        CallQueued,
        CallOffered,
        CallAnswered,
        CallAbandoned,
        CallCompleted,
        CallbackRequested,
        CallHeld,
        CallRetrieved,
        CallTransferred,
    )
}


def encode_call_event(event: CallEvent) -> tuple[str, dict[str, str]]:
    """The stream ``type`` and string fields of a call fact (empty optional fields left out)."""
    out: dict[str, str] = {}
    for f in fields(event):
        value = getattr(event, f.name)
        text = ("1" if value else "0") if isinstance(value, bool) else str(value)
        if text or f.name == "item":
            out[f.name] = text
    return event.kind, out


def decode_call_event(kind: str, values: Mapping[str, str]) -> CallEvent:
    """The call fact from a stream entry; ValueError names the bad or missing field."""
    cls = CALL_EVENT_TYPES.get(kind)
    if cls is None:
        raise ValueError(f"not a call fact: {kind!r}")
    args: dict[str, object] = {}
    for f in fields(cls):
        raw = values.get(f.name)
        if raw is None or (raw == "" and f.default is not MISSING):
            continue
        if f.type in ("int", int):
            try:
                args[f.name] = int(float(raw))
            except ValueError:
                raise ValueError(f"{kind}.{f.name}: {raw!r} is not a number") from None
        elif f.type in ("bool", bool):
            args[f.name] = raw == "1"
        else:
            args[f.name] = raw
    try:
        event = cls(**args)  # type: ignore[arg-type]
    except TypeError:
        missing = [f.name for f in fields(cls) if f.name not in args]
        raise ValueError(f"{kind}: missing field(s) {', '.join(missing)}") from None
    if not event.item:
        raise ValueError(f"{kind}.item: must not be empty")
    return event
