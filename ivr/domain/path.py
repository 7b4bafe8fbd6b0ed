"""The recorded IVR path: past-tense events about one session, for tickets and reports.

The session emits them in order inside ``RecordPath`` commands and keeps them in
``IvrSession.path``. Every event carries the call id and the instant it happened (from the
session's clock), so step timings are the differences between consecutive ``at`` values.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import TypeAlias

from ivr.domain.call import CallId
from ivr.domain.flow import LookupKind, StepId, StepType


class Outcome(StrEnum):
    """How an IVR session ended."""

    QUEUED = "queued"
    TRANSFERRED = "transferred"
    HUNG_UP = "hung_up"
    CALLER_HUNG_UP = "caller_hung_up"
    FAILED = "failed"


class Rejection(StrEnum):
    """Why caller input was not accepted."""

    NO_INPUT = "no_input"
    INVALID = "invalid"
    NO_MATCH = "no_match"
    LOW_CONFIDENCE = "low_confidence"


class LookupOutcome(StrEnum):
    OK = "ok"
    NOT_FOUND = "not_found"
    FAILED = "failed"


@dataclass(frozen=True, slots=True)
class IvrStarted:
    call_id: CallId
    at: datetime
    flow: str
    caller: str
    language: str


@dataclass(frozen=True, slots=True)
class StepEntered:
    call_id: CallId
    at: datetime
    step: StepId
    step_type: StepType


@dataclass(frozen=True, slots=True)
class DigitsEntered:
    call_id: CallId
    at: datetime
    step: StepId
    digits: str
    timed_out: bool


@dataclass(frozen=True, slots=True)
class SpeechHeard:
    call_id: CallId
    at: datetime
    step: StepId
    text: str
    confidence: float
    keypad: bool = False  # the caller keyed the word's digit instead of speaking


@dataclass(frozen=True, slots=True)
class InputRejected:
    call_id: CallId
    at: datetime
    step: StepId
    reason: Rejection
    attempt: int
    gave_up: bool


@dataclass(frozen=True, slots=True)
class VariablesSet:
    call_id: CallId
    at: datetime
    step: StepId
    values: tuple[tuple[str, str], ...]


@dataclass(frozen=True, slots=True)
class LookupAnswered:
    call_id: CallId
    at: datetime
    step: StepId
    kind: LookupKind
    outcome: LookupOutcome
    reason: str = ""
    ticket: str = ""  # the ticket number a successful ticket-status lookup found


@dataclass(frozen=True, slots=True)
class CallbackRequested:
    call_id: CallId
    at: datetime
    step: StepId
    number: str


@dataclass(frozen=True, slots=True)
class VoicemailLeft:
    """A voicemail to be turned into a ticket."""

    call_id: CallId
    at: datetime
    step: StepId
    recording: str
    duration_s: float
    subject: str
    caller: str
    language: str


@dataclass(frozen=True, slots=True)
class SurveyAnswered:
    call_id: CallId
    at: datetime
    step: StepId
    question: str
    score: int | None


class QueueOutcome(StrEnum):
    """How a caller's wait in a queue ended."""

    ANSWERED = "answered"  # an agent answered; talk time known
    CALLBACK = "callback"  # the caller left a callback and kept the place
    ABANDONED = "abandoned"  # the caller hung up while waiting or while an agent rang
    REFUSED = "refused"  # the queue did not take the call


@dataclass(frozen=True, slots=True)
class QueueLeft:
    """The caller's wait in a queue step ended (recorded by the adapter that ran the wait)."""

    call_id: CallId
    at: datetime
    queue: str
    outcome: QueueOutcome
    waited_ms: int  # from joining the queue to the agent's answer (or to leaving)
    agent: str = ""
    talk_ms: int | None = None
    missed: int = 0  # agents rung who did not answer


@dataclass(frozen=True, slots=True)
class IvrEnded:
    call_id: CallId
    at: datetime
    step: StepId
    outcome: Outcome
    duration_ms: int
    destination: str = ""


PathEvent: TypeAlias = (
    IvrStarted
    | StepEntered
    | DigitsEntered
    | SpeechHeard
    | InputRejected
    | VariablesSet
    | LookupAnswered
    | CallbackRequested
    | VoicemailLeft
    | SurveyAnswered
    | QueueLeft
    | IvrEnded
)
