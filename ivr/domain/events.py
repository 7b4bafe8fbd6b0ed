"""Events the IVR session receives: what the caller and the outside world did.

Each answers the last command of the previous ``IvrSession.handle`` that expects a reply
(see ``ivr.domain.session``), except ``CallerHungUp``, which may arrive at any time.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TypeAlias


@dataclass(frozen=True, slots=True)
class CallStarted:
    """The call reached the IVR (same as calling ``IvrSession.start()``)."""


@dataclass(frozen=True, slots=True)
class PromptFinished:
    """A ``Play`` ended, played to the end or cut short by ``interrupted_by``."""

    interrupted_by: str = ""


@dataclass(frozen=True, slots=True)
class DigitsReceived:
    """A ``ReadDigits`` ended: the digits (terminator not included) and whether time ran out."""

    digits: str
    timed_out: bool = False


@dataclass(frozen=True, slots=True)
class SpeechRecognised:
    """A ``ListenSpeech`` heard words, with the recogniser's confidence in 0..1; ``keypad`` when
    the caller pressed the word's key instead (no recogniser, so no confidence: 1.0)."""

    text: str
    confidence: float
    keypad: bool = False


@dataclass(frozen=True, slots=True)
class NoInput:
    """A ``ListenSpeech`` heard nothing before its timeout."""


@dataclass(frozen=True, slots=True)
class NoMatch:
    """A ``ListenSpeech`` heard speech it could not recognise."""


@dataclass(frozen=True, slots=True)
class LookupResult:
    """A ``Lookup`` was answered; ``ok`` is false when nothing was found."""

    ok: bool
    data: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class LookupFailed:
    """A ``Lookup`` could not be answered (``reason`` such as ``timeout`` or ``http-500``)."""

    reason: str


@dataclass(frozen=True, slots=True)
class VoicemailRecorded:
    """A ``RecordVoicemail`` stored a recording."""

    recording: str
    duration_s: float


@dataclass(frozen=True, slots=True)
class VoicemailFailed:
    """A ``RecordVoicemail`` stored nothing (silence, too short, storage error)."""

    reason: str


@dataclass(frozen=True, slots=True)
class TransferResult:
    """A ``Queue`` or ``Transfer`` was accepted (``ok``) or refused (busy, no agents, closed)."""

    ok: bool
    reason: str = ""


@dataclass(frozen=True, slots=True)
class CallerHungUp:
    """The caller hung up; may arrive at any time."""


Event: TypeAlias = (
    CallStarted
    | PromptFinished
    | DigitsReceived
    | SpeechRecognised
    | NoInput
    | NoMatch
    | LookupResult
    | LookupFailed
    | VoicemailRecorded
    | VoicemailFailed
    | TransferResult
    | CallerHungUp
)
