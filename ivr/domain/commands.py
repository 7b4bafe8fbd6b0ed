"""Commands the IVR session gives its adapter: what to play, read, look up or do with the call.

The adapter runs a list in order. ``Play``, ``ReadDigits``, ``ListenSpeech``, ``Lookup``,
``RecordVoicemail``, ``Queue`` and ``Transfer`` (``REPLY_EXPECTED``) produce a result. If the
session is still waiting afterwards (``IvrSession.waiting_for`` is not ``NOTHING``), it wants the
result of the *last* of them in the list, as one event; earlier ones (only ever ``Play``) are
simply played through. The others (``SetVariable``, ``SetLanguage``, ``RequestCallback``,
``Hangup``, ``RecordPath``) need no reply. If the caller hangs up, the adapter drops the rest
of the list and sends ``CallerHungUp``. The FastAGI adapter maps ``Play`` to ``STREAM FILE``,
``ReadDigits`` to ``GET DATA`` and ``Hangup`` to ``HANGUP`` (see the AGI section of
tests/fixtures/asterisk-traces/README.md).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypeAlias

from ivr.domain.flow import LookupKind
from ivr.domain.path import PathEvent


@dataclass(frozen=True, slots=True)
class SoundPrompt:
    """A sound file, by Asterisk name (no extension, no language folder)."""

    name: str


@dataclass(frozen=True, slots=True)
class TextPrompt:
    """Text for the adapter to render to speech in ``language``."""

    text: str
    language: str


Prompt: TypeAlias = SoundPrompt | TextPrompt


@dataclass(frozen=True, slots=True)
class Play:
    prompts: tuple[Prompt, ...]
    interruptible_digits: str = ""


@dataclass(frozen=True, slots=True)
class ReadDigits:
    """Play ``prompts`` then read up to ``max_digits`` until ``terminator`` or the timeout."""

    prompts: tuple[Prompt, ...]
    max_digits: int
    timeout_ms: int
    terminator: str = "#"


@dataclass(frozen=True, slots=True)
class ListenSpeech:
    """Play ``prompts`` then recognise speech, preferring ``words`` when given."""

    prompts: tuple[Prompt, ...]
    words: tuple[str, ...]
    timeout_ms: int
    threshold: float


@dataclass(frozen=True, slots=True)
class Lookup:
    kind: LookupKind
    params: tuple[tuple[str, str], ...]
    timeout_ms: int
    url: str = ""


@dataclass(frozen=True, slots=True)
class SetVariable:
    name: str
    value: str


@dataclass(frozen=True, slots=True)
class SetLanguage:
    language: str


@dataclass(frozen=True, slots=True)
class Queue:
    """Hand the call to the ACD."""

    queue: str
    skills: tuple[str, ...]
    priority: int
    language: str


@dataclass(frozen=True, slots=True)
class Transfer:
    """Transfer the call to an external number."""

    number: str


@dataclass(frozen=True, slots=True)
class RecordVoicemail:
    """Play ``prompts``, beep, record up to ``max_seconds``; the recording becomes a ticket."""

    prompts: tuple[Prompt, ...]
    max_seconds: int
    subject: str


@dataclass(frozen=True, slots=True)
class RequestCallback:
    number: str
    language: str


@dataclass(frozen=True, slots=True)
class Hangup:
    pass


@dataclass(frozen=True, slots=True)
class RecordPath:
    """Publish one path event (no reply)."""

    event: PathEvent


Command: TypeAlias = (
    Play
    | ReadDigits
    | ListenSpeech
    | Lookup
    | SetVariable
    | SetLanguage
    | Queue
    | Transfer
    | RecordVoicemail
    | RequestCallback
    | Hangup
    | RecordPath
)

REPLY_EXPECTED: tuple[type[Command], ...] = (
    Play,
    ReadDigits,
    ListenSpeech,
    Lookup,
    RecordVoicemail,
    Queue,
    Transfer,
)
