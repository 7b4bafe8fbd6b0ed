"""The IVR's ports: what the FastAGI route needs from the world, as ``typing.Protocol`` s.

Adapters implement them (``ivr.adapters.lookups``, ``ivr.adapters.path_sink``, the speech
adapter); the route (``ivr.adapters.ivr_route``) only sees these shapes. The help desk and the
customer directory do not exist yet, so each of those ports has an in-memory stand-in named as
such (``InMemory*``) for the demo and the tests. The caller's wait in a queue goes through
:class:`QueuePort` (``ivr.adapters.acd_queue`` implements it over the ACD service): the IVR
imports nothing of the ACD.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from ivr.domain.call import CallId
from ivr.domain.commands import ListenSpeech
from ivr.domain.events import Event
from ivr.domain.path import PathEvent

if TYPE_CHECKING:
    from ivr.adapters.fastagi_server import AgiSession


class SpeechPort(Protocol):
    """Speech recognition for a ``speech`` step (the Vosk + AudioSocket adapter implements it).

    ``listen`` plays ``command.prompts`` (barge-in allowed), listens, and returns one of
    ``SpeechRecognised``, ``NoInput``, ``NoMatch`` or ``DigitsReceived`` (the caller used the
    keypad instead; the route maps a digit to the n-th word of ``command.words``). It raises
    ``AgiChannelHungUp`` / ``AgiConnectionLost`` like ``AgiSession.send`` when the caller leaves.
    """

    async def listen(self, session: AgiSession, command: ListenSpeech, language: str) -> Event: ...


class TicketDesk(Protocol):
    """Ticket status by number from the help desk."""

    async def ticket_status(self, number: str) -> Mapping[str, str] | None:
        """The ticket's fields (``number``, ``status``, ...); None if there is no such ticket."""
        ...


class KnowledgeBase(Protocol):
    """Answers to callers' questions, as text to read back."""

    async def answer(self, question: str, language: str) -> str | None:
        """The answer text, or None when the knowledge base has none."""
        ...


@dataclass(frozen=True, slots=True)
class Customer:
    """What the IVR knows about a caller before the flow starts (``caller_known``, ``vip``)."""

    known: bool = False
    vip: bool = False


class CustomerDirectory(Protocol):
    """Who is calling: a known customer, a VIP?"""

    async def customer(self, caller: str) -> Customer: ...


class CallbackPort(Protocol):
    """Takes callback requests (the ACD will: it keeps the caller's place in the queue)."""

    async def request_callback(self, call_id: CallId, number: str, language: str) -> None: ...


class PathSink(Protocol):
    """Where the recorded IVR path goes (tickets and reports consume it)."""

    async def publish(self, event: PathEvent) -> None:
        """Publish one path event; must not raise for a transient failure (log it instead)."""
        ...


class PromptRendering(Protocol):
    """Text to a sound file Asterisk can play (``ivr.adapters.prompt_renderer.PromptRenderer``)."""

    async def render(self, text: str, language: str) -> Path:
        """The sound file, with its extension; raises ``IvrError`` if it cannot be made."""
        ...


@dataclass(frozen=True, slots=True)
class QueueJoin:
    """A caller entering a queue (the flow's ``queue`` step)."""

    call_id: CallId
    queue: str
    skills: tuple[str, ...]
    priority: int
    language: str
    caller: str = ""
    unique_id: str = ""


@dataclass(frozen=True, slots=True)
class WaitSettings:
    """How the wait sounds: announcement period, hold music class, the callback key ("": none)."""

    announce_every_s: float = 30.0
    moh_class: str = "default"
    callback_key: str = "5"
    ring_timeout_s: float = 20.0


@dataclass(frozen=True, slots=True)
class QueuePosition:
    """The caller's place (1 = next) and expected wait in seconds (None: unknown)."""

    position: int
    expected_wait_s: float | None


@dataclass(frozen=True, slots=True)
class AgentToDial:
    """The agent reserved for the caller: dial ``endpoint`` with ``ring_timeout_s``."""

    agent_id: str
    endpoint: str
    ring_timeout_s: float


class QueuedCall(Protocol):
    """One caller's place in a queue while the AGI session waits.

    ``next_agent`` waits up to ``timeout_s`` for an agent to be reserved (None: not yet); then
    exactly one of ``answered`` (+ ``finished`` when the call ended), ``not_answered`` (the
    caller goes back to the head of the queue) or ``abandon`` follows. ``abandon`` (the caller
    hung up) at any point frees everything; ``leave_callback`` keeps the place for a callback.
    """

    @property
    def settings(self) -> WaitSettings: ...

    def position(self) -> QueuePosition | None: ...

    async def next_agent(self, timeout_s: float) -> AgentToDial | None: ...

    async def answered(self) -> None: ...

    async def not_answered(self, *, busy: bool) -> None: ...

    async def finished(self) -> None: ...

    async def abandon(self) -> None: ...

    async def leave_callback(self, number: str, key: str) -> None: ...


class QueuePort(Protocol):
    """Queues callers (the ACD)."""

    async def join(self, request: QueueJoin) -> QueuedCall:
        """Enter the queue; raises ``IvrError`` if the queue does not exist."""
        ...
