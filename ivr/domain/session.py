"""The IVR session: a pure state machine that walks a flow for one call.

Theory of operation. ``IvrSession(flow, call, clock)`` starts in ``NEW``. ``start()`` (or
``handle(CallStarted())``) enters the flow's start step and returns commands. From then on
``handle(event)`` takes what the adapter observed and returns the next commands. Steps that do
not wait for anything (``set``, ``condition``) are passed through within one call; a step that
waits leaves the session ``RUNNING`` with ``waiting_for`` naming the event kind it needs, which
is the reply to the last command in the list that expects one (see ``ivr.domain.commands``).
Events of another kind are ignored (they return ``[]``), so a late or duplicated reply cannot
derail a call. ``CallerHungUp`` is accepted in every state but ``ENDED``: the session ends at
once, with outcome ``caller_hung_up`` recorded for the step the caller was in. The session ends
in ``ENDED`` after ``hangup``, a successful ``queue`` or ``transfer``, or a failure with no
``on_failure`` target (the call is then hung up with outcome ``failed``).

The input rules follow what FastAGI ``GET DATA`` reports (tests/fixtures/asterisk-traces/
README.md, section 4.2): an empty result is no input, ``#`` ends input and is not returned, so a
caller who presses ``#`` at once gives ``DigitsReceived("")``; partial digits may come with
``timed_out``. In a menu, ``*`` repeats the menu (unless it is an option) without using a retry
and ``0`` goes to ``operator`` (unless it is an option). ``retries`` is the number of attempts
after the first.

Every step entered, every input (digits; recognised words with confidence), every rejection,
lookup, callback, voicemail and survey answer, and the outcome are recorded as path events
(``ivr.domain.path``) returned in ``RecordPath`` commands and kept in ``path``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from enum import StrEnum

from ivr.domain.business_calendar import is_holiday, is_open, local_time
from ivr.domain.call import CallInfo
from ivr.domain.commands import (
    Command,
    Hangup,
    ListenSpeech,
    Lookup,
    Play,
    Prompt,
    Queue,
    ReadDigits,
    RecordPath,
    RecordVoicemail,
    RequestCallback,
    SetLanguage,
    SetVariable,
    SoundPrompt,
    TextPrompt,
    Transfer,
)
from ivr.domain.events import (
    CallerHungUp,
    CallStarted,
    DigitsReceived,
    Event,
    LookupFailed,
    LookupResult,
    NoInput,
    NoMatch,
    PromptFinished,
    SpeechRecognised,
    TransferResult,
    VoicemailFailed,
    VoicemailRecorded,
)
from ivr.domain.flow import (
    CallbackStep,
    CallerKnownTest,
    CollectStep,
    ConditionStep,
    Flow,
    HangupStep,
    HolidayTest,
    KbAnswerStep,
    LookupKind,
    LookupStep,
    MenuStep,
    OpenTest,
    PlayStep,
    QueueStep,
    SetStep,
    SpeechStep,
    Step,
    StepId,
    SurveyStep,
    Test,
    TransferStep,
    Validation,
    VariableOp,
    VariableTest,
    VipTest,
    VoicemailStep,
    step_type,
)
from ivr.domain.path import (
    CallbackRequested,
    DigitsEntered,
    InputRejected,
    IvrEnded,
    IvrStarted,
    LookupAnswered,
    LookupOutcome,
    Outcome,
    PathEvent,
    Rejection,
    SpeechHeard,
    StepEntered,
    SurveyAnswered,
    VariablesSet,
    VoicemailLeft,
)
from ivr.domain.templates import render
from ivr.domain.validators import digits_valid

#: Steps passed through in one ``handle`` call before the session gives up on a runaway loop.
MAX_HOPS = 100


class SessionState(StrEnum):
    NEW = "new"
    RUNNING = "running"
    ENDED = "ended"


class Waiting(StrEnum):
    """The kind of event the session needs next."""

    NOTHING = "nothing"
    PROMPT = "prompt"
    DIGITS = "digits"
    SPEECH = "speech"
    LOOKUP = "lookup"
    VOICEMAIL = "voicemail"
    TRANSFER = "transfer"


_ACCEPTS: Mapping[Waiting, tuple[type[Event], ...]] = {
    Waiting.NOTHING: (),
    Waiting.PROMPT: (PromptFinished,),
    Waiting.DIGITS: (DigitsReceived,),
    Waiting.SPEECH: (SpeechRecognised, NoInput, NoMatch),
    Waiting.LOOKUP: (LookupResult, LookupFailed),
    Waiting.VOICEMAIL: (VoicemailRecorded, VoicemailFailed),
    Waiting.TRANSFER: (TransferResult,),
}


class _Phase(StrEnum):
    """Where a multi-part step is (knowledge-base answer, callback)."""

    MAIN = "main"
    ANSWER = "answer"
    CONFIRM = "confirm"
    ENTER = "enter"
    THANKS = "thanks"


class IvrSession:
    """One call's walk through a flow: ``start()``, then ``handle(event)`` until ``ENDED``."""

    def __init__(self, flow: Flow, call: CallInfo, clock: Callable[[], datetime]) -> None:
        self._flow = flow
        self._call = call
        self._clock = clock
        self._state = SessionState.NEW
        self._waiting = Waiting.NOTHING
        self._step: Step | None = None
        # The channel's language (Asterisk's default is "en") only where the flow speaks it.
        self._language = call.language if call.language in flow.languages else flow.language
        self._variables: dict[str, str] = dict(call.variables)
        self._skills: list[str] = []
        self._priority = 0
        self._path: list[PathEvent] = []
        self._out: list[Command] = []
        self._started_at: datetime | None = None
        self._outcome: Outcome | None = None
        # per-step state
        self._attempt = 0
        self._phase = _Phase.MAIN
        self._question = 0
        self._number = ""

    # --- read-only view ----------------------------------------------------------------------

    @property
    def state(self) -> SessionState:
        return self._state

    @property
    def waiting_for(self) -> Waiting:
        return self._waiting

    @property
    def current_step(self) -> StepId | None:
        return self._step.id if self._step is not None else None

    @property
    def outcome(self) -> Outcome | None:
        return self._outcome

    @property
    def language(self) -> str:
        return self._language

    @property
    def variables(self) -> Mapping[str, str]:
        return dict(self._variables)

    @property
    def path(self) -> tuple[PathEvent, ...]:
        return tuple(self._path)

    # --- driving -----------------------------------------------------------------------------

    def start(self) -> list[Command]:
        """Enter the start step; only valid in ``NEW`` (otherwise returns ``[]``)."""
        if self._state is not SessionState.NEW:
            return []
        self._state = SessionState.RUNNING
        self._started_at = self._now()
        self._record(
            IvrStarted(
                self._call.call_id,
                self._started_at,
                self._flow.name,
                self._call.caller,
                self._language,
            )
        )
        self._go(self._flow.start)
        return self._flush()

    def handle(self, event: Event) -> list[Command]:
        """Take one event, return the commands it leads to (``[]`` if it is not expected)."""
        if isinstance(event, CallStarted):
            return self.start()
        if self._state is SessionState.ENDED:
            return []
        if isinstance(event, CallerHungUp):
            if self._started_at is None:
                self._started_at = self._now()
            self._end(Outcome.CALLER_HUNG_UP, hang_up=False)
            return self._flush()
        if self._state is SessionState.NEW or not isinstance(event, _ACCEPTS[self._waiting]):
            return []
        step = self._step
        assert step is not None
        self._waiting = Waiting.NOTHING
        self._on_event(step, event)
        return self._flush()

    # --- plumbing ----------------------------------------------------------------------------

    def _now(self) -> datetime:
        now = self._clock()
        return now if now.tzinfo is not None else now.replace(tzinfo=UTC)

    def _flush(self) -> list[Command]:
        out, self._out = self._out, []
        return out

    def _emit(self, *commands: Command) -> None:
        self._out.extend(commands)

    def _record(self, event: PathEvent) -> None:
        self._path.append(event)
        self._out.append(RecordPath(event))

    def _wait(self, waiting: Waiting, command: Command) -> None:
        self._emit(command)
        self._waiting = waiting

    def _names(self) -> dict[str, str]:
        return {
            **self._variables,
            "caller": self._call.caller,
            "called": self._call.called,
            "call_id": self._call.call_id,
            "language": self._language,
        }

    def _render(self, template: str) -> str:
        return render(template, self._names())

    def _prompt(self, name: str) -> Prompt:
        text = self._flow.prompts.get(name)
        if text is None:
            return SoundPrompt(name)
        template = text.text_for(self._language, self._flow.language)
        return TextPrompt(self._render(template), self._language)

    def _prompts(self, *names: str | None) -> tuple[Prompt, ...]:
        return tuple(self._prompt(name) for name in names if name)

    def _end(self, outcome: Outcome, hang_up: bool, destination: str = "") -> None:
        if hang_up:
            self._emit(Hangup())
        now = self._now()
        started = self._started_at or now
        self._record(
            IvrEnded(
                self._call.call_id,
                now,
                self.current_step or StepId(""),
                outcome,
                max(0, int((now - started).total_seconds() * 1000)),
                destination,
            )
        )
        self._outcome = outcome
        self._state = SessionState.ENDED
        self._waiting = Waiting.NOTHING

    def _go(self, target: StepId | None) -> None:
        """Enter ``target`` and pass through steps that need no input; no target is a failure."""
        hops = 0
        while self._state is SessionState.RUNNING and self._waiting is Waiting.NOTHING:
            step = self._flow.steps.get(target) if target is not None else None
            hops += 1
            if step is None or hops > MAX_HOPS:
                self._end(Outcome.FAILED, hang_up=True)
                return
            target = self._enter(step)

    def _enter(self, step: Step) -> StepId | None:
        """Start ``step``; return the next step for a pass-through step, else ``None``."""
        self._step = step
        self._attempt = 0
        self._phase = _Phase.MAIN
        self._question = 0
        self._record(StepEntered(self._call.call_id, self._now(), step.id, step_type(step)))
        match step:
            case ConditionStep():
                return next((b.target for b in step.branches if self._test(b.test)), step.otherwise)
            case SetStep():
                self._apply_set(step)
                return step.next
            case HangupStep():
                if step.prompt:
                    self._emit(Play(self._prompts(step.prompt)))
                self._end(Outcome.HUNG_UP, hang_up=True)
            case _:
                self._ask(step)
        return None

    # --- what each waiting step asks for -----------------------------------------------------

    def _ask(self, step: Step, before: str | None = None) -> None:
        """(Re-)issue the waiting command of ``step``, optionally after prompt ``before``."""
        match step:
            case PlayStep():
                self._wait(Waiting.PROMPT, Play(self._prompts(*step.prompts)))
            case MenuStep():
                read = ReadDigits(self._prompts(before, step.prompt), 1, step.timeout_ms, "")
                self._wait(Waiting.DIGITS, read)
            case CollectStep():
                prompts = self._prompts(before, step.prompt)
                read = ReadDigits(prompts, step.max_digits, step.timeout_ms, step.terminator)
                self._wait(Waiting.DIGITS, read)
            case SpeechStep():
                prompts = self._prompts(before, step.prompt)
                words = tuple(step.options)
                listen = ListenSpeech(prompts, words, step.timeout_ms, step.threshold)
                self._wait(Waiting.SPEECH, listen)
            case LookupStep():
                params = tuple((k, self._render(v)) for k, v in step.params.items())
                self._wait(Waiting.LOOKUP, Lookup(step.kind, params, step.timeout_ms, step.url))
            case KbAnswerStep():
                params = (("question", self._render(step.question)),)
                self._wait(Waiting.LOOKUP, Lookup(LookupKind.KB, params, step.timeout_ms))
            case CallbackStep():
                self._ask_callback(step, before)
            case VoicemailStep():
                record = RecordVoicemail(
                    self._prompts(step.prompt), step.max_seconds, self._render(step.subject)
                )
                self._wait(Waiting.VOICEMAIL, record)
            case QueueStep():
                skills = list(dict.fromkeys([*self._skills, *step.skills]))
                priority = step.priority if step.priority is not None else self._priority
                language = step.language or self._language
                queue = Queue(step.queue, tuple(skills), priority, language)
                self._wait(Waiting.TRANSFER, queue)
            case TransferStep():
                self._wait(Waiting.TRANSFER, Transfer(self._render(step.number)))
            case SurveyStep():
                asked = step.questions[self._question]
                read = ReadDigits(self._prompts(before, asked.prompt), 1, step.timeout_ms, "")
                self._wait(Waiting.DIGITS, read)
            case ConditionStep() | SetStep() | HangupStep():  # pragma: no cover - never waits
                raise AssertionError(step)

    def _ask_callback(self, step: CallbackStep, before: str | None) -> None:
        if self._phase is _Phase.MAIN:
            self._number = self._variables.get("callback_number") or self._call.caller
            ok = digits_valid(self._number, Validation.DIGITS, step.min_digits, step.max_digits)
            self._phase = _Phase.CONFIRM if ok else _Phase.ENTER
        if self._phase is _Phase.CONFIRM:
            self._variables["callback_number"] = self._number
            read = ReadDigits(self._prompts(before, step.confirm_prompt), 1, step.timeout_ms, "")
        else:
            prompts = self._prompts(before, step.enter_prompt)
            read = ReadDigits(prompts, step.max_digits, step.timeout_ms, "#")
        self._wait(Waiting.DIGITS, read)

    # --- what each event does ----------------------------------------------------------------

    def _on_event(self, step: Step, event: Event) -> None:
        match event:
            case DigitsReceived():
                self._record(
                    DigitsEntered(
                        self._call.call_id, self._now(), step.id, event.digits, event.timed_out
                    )
                )
            case SpeechRecognised():
                self._record(
                    SpeechHeard(
                        self._call.call_id,
                        self._now(),
                        step.id,
                        event.text,
                        event.confidence,
                        event.keypad,
                    )
                )
        match step, event:
            case PlayStep(), PromptFinished():
                self._go(step.next)
            case MenuStep(), DigitsReceived():
                self._on_menu(step, event.digits)
            case CollectStep(), DigitsReceived():
                if digits_valid(event.digits, step.validate, step.min_digits, step.max_digits):
                    self._set_variable(step.variable, event.digits)
                    self._go(step.next)
                else:
                    reason = Rejection.INVALID if event.digits else Rejection.NO_INPUT
                    self._retry(step, reason, step.invalid_prompt, step.on_failure)
            case SpeechStep(), _:
                self._on_speech(step, event)
            case LookupStep(), LookupResult() | LookupFailed():
                self._on_lookup(step, event)
            case KbAnswerStep(), _:
                self._on_kb(step, event)
            case CallbackStep(), DigitsReceived():
                self._on_callback(step, event.digits)
            case VoicemailStep(), VoicemailRecorded():
                self._record(
                    VoicemailLeft(
                        self._call.call_id,
                        self._now(),
                        step.id,
                        event.recording,
                        event.duration_s,
                        self._render(step.subject),
                        self._call.caller,
                        self._language,
                    )
                )
                self._go(step.next)
            case VoicemailStep(), VoicemailFailed():
                self._go(step.on_failure)
            case QueueStep() | TransferStep(), TransferResult():
                if event.ok:
                    is_queue = isinstance(step, QueueStep)
                    outcome = Outcome.QUEUED if is_queue else Outcome.TRANSFERRED
                    destination = step.queue if isinstance(step, QueueStep) else step.number
                    self._end(outcome, hang_up=False, destination=self._render(destination))
                else:
                    self._go(step.on_failure)
            case SurveyStep(), DigitsReceived():
                self._on_survey(step, event.digits)
            case SurveyStep(), PromptFinished():
                self._go(step.next)
            case _:  # pragma: no cover - _ACCEPTS only lets through the events above
                raise AssertionError((step, event))

    def _retry(
        self, step: Step, reason: Rejection, prompt: str | None, on_failure: StepId | None
    ) -> None:
        """Ask again after ``prompt``, or give up and go to ``on_failure`` after the retries."""
        self._attempt += 1
        retries = getattr(step, "retries", 0)
        gave_up = self._attempt > retries
        self._record(
            InputRejected(self._call.call_id, self._now(), step.id, reason, self._attempt, gave_up)
        )
        if gave_up:
            self._go(on_failure)
        else:
            self._ask(step, before=prompt)

    def _on_menu(self, step: MenuStep, digits: str) -> None:
        if digits in step.options:
            self._go(step.options[digits])
        elif digits == "*" and step.repeat:
            self._ask(step)
        elif digits == "0" and step.operator is not None:
            self._go(step.operator)
        elif digits == "":
            prompt = step.timeout_prompt or step.invalid_prompt
            self._retry(step, Rejection.NO_INPUT, prompt, step.on_failure)
        else:
            self._retry(step, Rejection.INVALID, step.invalid_prompt, step.on_failure)

    def _on_speech(self, step: SpeechStep, event: Event) -> None:
        if isinstance(event, SpeechRecognised):
            if event.confidence < step.threshold:
                reason = Rejection.LOW_CONFIDENCE
            else:
                target = _match_words(event.text, step.options) or step.next
                if target is not None:
                    self._set_variable(step.variable, event.text)
                    self._go(target)
                    return
                reason = Rejection.NO_MATCH
        else:
            reason = Rejection.NO_INPUT if isinstance(event, NoInput) else Rejection.NO_MATCH
        self._retry(step, reason, step.no_match_prompt, step.on_failure)

    def _on_lookup(self, step: LookupStep, event: LookupResult | LookupFailed) -> None:
        now = self._now()
        found = ""
        if isinstance(event, LookupFailed):
            outcome, target, reason = LookupOutcome.FAILED, step.on_failure, event.reason
        elif event.ok:
            outcome, target, reason = LookupOutcome.OK, step.next, ""
            if step.kind is LookupKind.TICKET_STATUS:
                found = str(event.data.get("number", ""))
            for key, value in event.data.items():
                self._variables[f"{step.result}.{key}"] = str(value)
        else:
            outcome, reason = LookupOutcome.NOT_FOUND, ""
            target = step.on_not_found or step.on_failure
        self._record(
            LookupAnswered(self._call.call_id, now, step.id, step.kind, outcome, reason, found)
        )
        self._go(target)

    def _on_kb(self, step: KbAnswerStep, event: Event) -> None:
        if isinstance(event, PromptFinished) and self._phase is _Phase.ANSWER:
            self._go(step.next)
            return
        answer = event.data.get("answer", "") if isinstance(event, LookupResult) else ""
        ok = isinstance(event, LookupResult) and event.ok and bool(answer)
        if isinstance(event, LookupFailed):
            outcome, reason = LookupOutcome.FAILED, event.reason
        else:
            outcome, reason = (LookupOutcome.OK if ok else LookupOutcome.NOT_FOUND), ""
        self._record(
            LookupAnswered(self._call.call_id, self._now(), step.id, LookupKind.KB, outcome, reason)
        )
        if not ok:
            self._go(step.on_failure)
            return
        self._variables["kb.answer"] = answer
        self._phase = _Phase.ANSWER
        prompts = (*self._prompts(step.intro), TextPrompt(answer, self._language))
        self._wait(Waiting.PROMPT, Play(prompts))

    def _on_callback(self, step: CallbackStep, digits: str) -> None:
        if self._phase is _Phase.CONFIRM:
            if digits == "1":
                self._emit(RequestCallback(self._number, self._language))
                self._record(
                    CallbackRequested(self._call.call_id, self._now(), step.id, self._number)
                )
                self._go(step.next)
                return
            if digits == "2":
                self._phase = _Phase.ENTER
                self._ask(step)
                return
        elif digits_valid(digits, Validation.DIGITS, step.min_digits, step.max_digits):
            self._number = digits
            self._phase = _Phase.CONFIRM
            self._ask(step)
            return
        reason = Rejection.INVALID if digits else Rejection.NO_INPUT
        self._retry(step, reason, None, step.on_failure)

    def _on_survey(self, step: SurveyStep, digits: str) -> None:
        question = step.questions[self._question]
        score = int(digits) if len(digits) == 1 and digits.isdigit() else None
        if score is None or not question.low <= score <= question.high:
            self._attempt += 1
            reason = Rejection.INVALID if digits else Rejection.NO_INPUT
            gave_up = self._attempt > step.retries
            self._record(
                InputRejected(
                    self._call.call_id, self._now(), step.id, reason, self._attempt, gave_up
                )
            )
            if not gave_up:
                self._ask(step)
                return
            score = None
        self._record(SurveyAnswered(self._call.call_id, self._now(), step.id, question.name, score))
        if score is not None:
            self._variables[f"survey.{question.name}"] = str(score)
        self._question += 1
        self._attempt = 0
        if self._question < len(step.questions):
            self._ask(step)
        elif step.thanks_prompt:
            self._phase = _Phase.THANKS
            self._wait(Waiting.PROMPT, Play(self._prompts(step.thanks_prompt)))
        else:
            self._go(step.next)

    # --- set and condition -------------------------------------------------------------------

    def _set_variable(self, name: str, value: str) -> None:
        self._variables[name] = value

    def _apply_set(self, step: SetStep) -> None:
        values: list[tuple[str, str]] = []
        for name, template in step.variables.items():
            value = self._render(template)
            self._variables[name] = value
            self._emit(SetVariable(name, value))
            values.append((name, value))
        if step.language:
            self._language = step.language
            self._emit(SetLanguage(step.language))
            values.append(("language", step.language))
        if step.skills:
            self._skills = list(dict.fromkeys([*self._skills, *step.skills]))
            values.append(("skills", ",".join(self._skills)))
        if step.priority is not None:
            self._priority = step.priority
            values.append(("priority", str(step.priority)))
        self._record(VariablesSet(self._call.call_id, self._now(), step.id, tuple(values)))

    def _test(self, test: Test) -> bool:
        match test:
            case OpenTest():
                calendar = self._flow.calendars.get(test.calendar)
                return calendar is not None and is_open(calendar, self._now())
            case HolidayTest():
                calendar = self._flow.calendars.get(test.calendar)
                if calendar is None:
                    return False
                return is_holiday(calendar, local_time(calendar, self._now()).date())
            case CallerKnownTest():
                return self._call.caller_known is test.expected
            case VipTest():
                return self._call.vip is test.expected
            case VariableTest():
                value = self._names().get(test.name)
                if test.op is VariableOp.EXISTS:
                    return bool(value) is test.expected
                if test.op is VariableOp.NOT_EQUALS:
                    return value != (test.values[0] if test.values else "")
                return value in test.values


def _match_words(text: str, options: Mapping[str, StepId]) -> StepId | None:
    """The target of the first option whose word or phrase occurs in ``text``."""
    spoken = f" {' '.join(text.lower().split())} "
    for words, target in options.items():
        if f" {' '.join(words.split())} " in spoken:
            return target
    return None
