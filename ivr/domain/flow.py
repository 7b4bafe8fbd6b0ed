"""The IVR flow model: steps, targets, prompts and calendars as loaded from a flow file.

A flow is a graph of named steps. Each step says what the caller hears or does and which step
comes next. The loader (``ivr.domain.flow_loader``) builds these objects from YAML and records,
for every target and prompt reference, the line it was written on (``Flow.refs``,
``Flow.prompt_refs``) so that ``ivr.domain.flow_check`` can report problems with file and line.
The format is documented in ``docs/ivr-flows.md``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, time
from enum import StrEnum
from typing import NewType, TypeAlias

StepId = NewType("StepId", str)


class StepType(StrEnum):
    """The kinds of step a flow may contain (the ``type:`` of a step)."""

    PLAY = "play"
    MENU = "menu"
    COLLECT = "collect"
    SPEECH = "speech"
    CONDITION = "condition"
    SET = "set"
    LOOKUP = "lookup"
    KB_ANSWER = "kb_answer"
    CALLBACK = "callback"
    VOICEMAIL = "voicemail"
    QUEUE = "queue"
    TRANSFER = "transfer"
    SURVEY = "survey"
    HANGUP = "hangup"


#: Steps that end the IVR session when they succeed (the call is hung up or leaves the IVR).
TERMINAL_STEP_TYPES = frozenset({StepType.HANGUP, StepType.QUEUE, StepType.TRANSFER})


class Validation(StrEnum):
    """How a collect step checks the digits it read (see ``ivr.domain.validators``)."""

    DIGITS = "digits"
    LUHN = "luhn"
    TICKET = "ticket"


class LookupKind(StrEnum):
    """What a lookup asks the outside world for."""

    TICKET_STATUS = "ticket_status"
    WEBHOOK = "webhook"
    KB = "kb"


class VariableOp(StrEnum):
    """The comparison a variable test makes."""

    EQUALS = "equals"
    NOT_EQUALS = "not_equals"
    IN = "in"
    EXISTS = "exists"


@dataclass(frozen=True, slots=True)
class Problem:
    """One mistake in a flow file, located by file and 1-based line."""

    file: str
    line: int
    message: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.message}"


@dataclass(frozen=True, slots=True)
class Ref:
    """A reference from one step to another, with the line it was written on."""

    source: StepId
    label: str
    target: StepId
    line: int


@dataclass(frozen=True, slots=True)
class PromptRef:
    """A prompt name used by a step, with the line it was written on."""

    step: StepId
    name: str
    line: int


@dataclass(frozen=True, slots=True)
class TextPromptDef:
    """A prompt given as text (per language), rendered to speech by the adapter."""

    name: str
    texts: Mapping[str, str]

    def text_for(self, language: str, default_language: str) -> str:
        """The text in ``language``, else the flow's default language, else any."""
        for lang in (language, default_language):
            if lang in self.texts:
                return self.texts[lang]
        return next(iter(self.texts.values()), "")


@dataclass(frozen=True, slots=True)
class Interval:
    """Opening hours on one day, local time, ``start <= t < end``."""

    start: time
    end: time


@dataclass(frozen=True, slots=True)
class BusinessCalendar:
    """Opening hours per weekday (0 = Monday) and holidays, in one time zone."""

    name: str
    timezone: str
    hours: Mapping[int, tuple[Interval, ...]]
    holidays: frozenset[date] = frozenset()
    yearly_holidays: frozenset[tuple[int, int]] = frozenset()  # (month, day)


# --- steps -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PlayStep:
    id: StepId
    line: int
    prompts: tuple[str, ...]
    next: StepId


@dataclass(frozen=True, slots=True)
class MenuStep:
    id: StepId
    line: int
    prompt: str
    options: Mapping[str, StepId]
    timeout_ms: int = 5000
    retries: int = 3
    invalid_prompt: str | None = None
    timeout_prompt: str | None = None
    repeat: bool = True
    operator: StepId | None = None
    on_failure: StepId | None = None


@dataclass(frozen=True, slots=True)
class CollectStep:
    id: StepId
    line: int
    prompt: str
    variable: str
    next: StepId
    min_digits: int = 1
    max_digits: int = 10
    terminator: str = "#"
    timeout_ms: int = 5000
    validate: Validation = Validation.DIGITS
    retries: int = 3
    invalid_prompt: str | None = None
    on_failure: StepId | None = None


@dataclass(frozen=True, slots=True)
class SpeechStep:
    id: StepId
    line: int
    prompt: str
    options: Mapping[str, StepId]
    variable: str = "speech"
    threshold: float = 0.5
    timeout_ms: int = 5000
    retries: int = 2
    no_match_prompt: str | None = None
    next: StepId | None = None
    on_failure: StepId | None = None


@dataclass(frozen=True, slots=True)
class OpenTest:
    """True when the calendar is open now (inside hours and not a holiday)."""

    calendar: str


@dataclass(frozen=True, slots=True)
class HolidayTest:
    """True when today (in the calendar's time zone) is a holiday."""

    calendar: str


@dataclass(frozen=True, slots=True)
class CallerKnownTest:
    expected: bool


@dataclass(frozen=True, slots=True)
class VipTest:
    expected: bool


@dataclass(frozen=True, slots=True)
class VariableTest:
    name: str
    op: VariableOp
    values: tuple[str, ...] = ()
    expected: bool = True  # for ``exists``


Test: TypeAlias = OpenTest | HolidayTest | CallerKnownTest | VipTest | VariableTest


@dataclass(frozen=True, slots=True)
class Branch:
    test: Test
    target: StepId


@dataclass(frozen=True, slots=True)
class ConditionStep:
    id: StepId
    line: int
    branches: tuple[Branch, ...]
    otherwise: StepId


@dataclass(frozen=True, slots=True)
class SetStep:
    id: StepId
    line: int
    next: StepId
    variables: Mapping[str, str] = field(default_factory=dict)
    language: str | None = None
    skills: tuple[str, ...] = ()
    priority: int | None = None


@dataclass(frozen=True, slots=True)
class LookupStep:
    id: StepId
    line: int
    kind: LookupKind
    next: StepId
    params: Mapping[str, str] = field(default_factory=dict)
    url: str = ""
    timeout_ms: int = 3000
    result: str = "lookup"
    on_not_found: StepId | None = None
    on_failure: StepId | None = None


@dataclass(frozen=True, slots=True)
class KbAnswerStep:
    id: StepId
    line: int
    next: StepId
    question: str = "{speech}"
    intro: str | None = None
    timeout_ms: int = 3000
    on_failure: StepId | None = None


@dataclass(frozen=True, slots=True)
class CallbackStep:
    id: StepId
    line: int
    confirm_prompt: str
    enter_prompt: str
    next: StepId
    min_digits: int = 6
    max_digits: int = 15
    timeout_ms: int = 8000
    retries: int = 2
    on_failure: StepId | None = None


@dataclass(frozen=True, slots=True)
class VoicemailStep:
    id: StepId
    line: int
    prompt: str
    next: StepId
    max_seconds: int = 120
    subject: str = "Voicemail from {caller}"
    on_failure: StepId | None = None


@dataclass(frozen=True, slots=True)
class QueueStep:
    id: StepId
    line: int
    queue: str
    skills: tuple[str, ...] = ()
    priority: int | None = None
    language: str | None = None
    on_failure: StepId | None = None


@dataclass(frozen=True, slots=True)
class TransferStep:
    id: StepId
    line: int
    number: str
    on_failure: StepId | None = None


@dataclass(frozen=True, slots=True)
class SurveyQuestion:
    name: str
    prompt: str
    low: int = 1
    high: int = 5


@dataclass(frozen=True, slots=True)
class SurveyStep:
    id: StepId
    line: int
    questions: tuple[SurveyQuestion, ...]
    next: StepId
    timeout_ms: int = 5000
    retries: int = 1
    thanks_prompt: str | None = None


@dataclass(frozen=True, slots=True)
class HangupStep:
    id: StepId
    line: int
    prompt: str | None = None


Step: TypeAlias = (
    PlayStep
    | MenuStep
    | CollectStep
    | SpeechStep
    | ConditionStep
    | SetStep
    | LookupStep
    | KbAnswerStep
    | CallbackStep
    | VoicemailStep
    | QueueStep
    | TransferStep
    | SurveyStep
    | HangupStep
)

STEP_CLASSES: Mapping[StepType, type[Step]] = {
    StepType.PLAY: PlayStep,
    StepType.MENU: MenuStep,
    StepType.COLLECT: CollectStep,
    StepType.SPEECH: SpeechStep,
    StepType.CONDITION: ConditionStep,
    StepType.SET: SetStep,
    StepType.LOOKUP: LookupStep,
    StepType.KB_ANSWER: KbAnswerStep,
    StepType.CALLBACK: CallbackStep,
    StepType.VOICEMAIL: VoicemailStep,
    StepType.QUEUE: QueueStep,
    StepType.TRANSFER: TransferStep,
    StepType.SURVEY: SurveyStep,
    StepType.HANGUP: HangupStep,
}
STEP_TYPES: Mapping[type[Step], StepType] = {cls: kind for kind, cls in STEP_CLASSES.items()}


def step_type(step: Step) -> StepType:
    """The ``type:`` of a step object."""
    return STEP_TYPES[type(step)]


@dataclass(frozen=True, slots=True)
class Flow:
    """A loaded flow: its steps by id, text prompts, calendars and source references."""

    name: str
    file: str
    start: StepId
    start_line: int
    language: str
    steps: Mapping[StepId, Step]
    prompts: Mapping[str, TextPromptDef] = field(default_factory=dict)
    calendars: Mapping[str, BusinessCalendar] = field(default_factory=dict)
    refs: tuple[Ref, ...] = ()
    prompt_refs: tuple[PromptRef, ...] = ()
    invalid_steps: Mapping[StepId, int] = field(default_factory=dict)  # unreadable: id -> line

    @property
    def languages(self) -> frozenset[str]:
        """The flow's own language and every language its prompts have a text in."""
        return frozenset(
            {self.language, *(lang for p in self.prompts.values() for lang in p.texts)}
        )
