"""The IVR session state machine: every step type, hang-ups anywhere, and random events."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ivr.domain.call import CallId, CallInfo
from ivr.domain.commands import (
    REPLY_EXPECTED,
    Command,
    Hangup,
    ListenSpeech,
    Lookup,
    Play,
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
from ivr.domain.flow import Flow, LookupKind, StepType, step_type
from ivr.domain.flow_check import check_flow, load_checked_flow
from ivr.domain.flow_loader import load_flow_text
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
    VoicemailLeft,
)
from ivr.domain.session import IvrSession, SessionState, Waiting

FLOWS_DIR = Path(__file__).resolve().parents[2] / "ivr" / "flows"
# Friday 27 March 2026 10:00 in Paris (CET, UTC+1)
OPEN_TIME = datetime(2026, 3, 27, 9, 0, tzinfo=UTC)


class Clock:
    """A virtual clock the test moves by hand."""

    def __init__(self, now: datetime = OPEN_TIME) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


def load(text: str) -> Flow:
    flow, problems = load_flow_text(text, "test.yaml")
    assert flow is not None
    assert [*problems, *check_flow(flow)] == []
    return flow


def make(
    flow: Flow | str,
    clock: Clock | None = None,
    caller: str = "0612345678",
    *,
    language: str = "",
    vip: bool = False,
    caller_known: bool = False,
    variables: dict[str, str] | None = None,
) -> IvrSession:
    flow = load(flow) if isinstance(flow, str) else flow
    info = CallInfo(
        CallId("c-1"),
        caller,
        language=language,
        vip=vip,
        caller_known=caller_known,
        variables=variables or {},
    )
    return IvrSession(flow, info, clock or Clock())


def media(commands: Sequence[Command]) -> list[Command]:
    return [c for c in commands if not isinstance(c, RecordPath)]


def recorded(commands: Sequence[Command]) -> list[PathEvent]:
    return [c.event for c in commands if isinstance(c, RecordPath)]


def entered(session: IvrSession) -> list[str]:
    return [e.step for e in session.path if isinstance(e, StepEntered)]


def ended(session: IvrSession) -> IvrEnded:
    last = session.path[-1]
    assert isinstance(last, IvrEnded)
    return last


def text(prompt: object) -> str:
    assert isinstance(prompt, TextPrompt)
    return prompt.text


MENU = """\
name: menu
start: menu
prompts:
  menu: "Press 1 for sales."
  invalid: "Invalid."
  silence: "I heard nothing."
steps:
  menu:
    type: menu
    prompt: menu
    options: {"1": sales}
    operator: operator
    retries: 2
    timeout_ms: 3000
    invalid_prompt: invalid
    timeout_prompt: silence
    on_failure: bye
  sales: {type: queue, queue: sales, skills: [sales]}
  operator: {type: queue, queue: operator}
  bye: {type: hangup, prompt: goodbye}
"""


# --- menu ------------------------------------------------------------------------------------


def test_given_a_menu_when_started_then_it_reads_one_digit_after_its_prompt() -> None:
    session = make(MENU)
    commands = session.start()
    [read] = media(commands)
    assert isinstance(read, ReadDigits)
    assert (read.max_digits, read.timeout_ms, read.terminator) == (1, 3000, "")
    assert text(read.prompts[0]) == "Press 1 for sales."
    assert session.waiting_for is Waiting.DIGITS
    assert isinstance(recorded(commands)[0], IvrStarted)


def test_given_a_menu_when_the_caller_presses_an_option_then_the_call_is_queued() -> None:
    session = make(MENU)
    session.start()
    [queue] = media(session.handle(DigitsReceived("1")))
    assert queue == Queue("sales", ("sales",), 0, "en")
    commands = session.handle(TransferResult(ok=True))
    assert media(commands) == []
    assert session.state is SessionState.ENDED
    assert ended(session).outcome is Outcome.QUEUED
    assert ended(session).destination == "sales"


def test_given_a_menu_when_the_caller_presses_nothing_then_the_timeout_prompt_plays() -> None:
    session = make(MENU)
    session.start()
    [read] = media(session.handle(DigitsReceived("", timed_out=True)))
    assert isinstance(read, ReadDigits)
    assert [text(p) for p in read.prompts] == ["I heard nothing.", "Press 1 for sales."]
    rejected = [e for e in session.path if isinstance(e, InputRejected)]
    assert rejected[-1].reason is Rejection.NO_INPUT


def test_given_a_menu_when_the_caller_presses_hash_at_once_then_it_counts_as_no_input() -> None:
    session = make(MENU)
    session.start()
    session.handle(DigitsReceived(""))  # GET DATA returns nothing: '#' is not returned
    assert [e for e in session.path if isinstance(e, InputRejected)][-1].attempt == 1
    assert session.waiting_for is Waiting.DIGITS


def test_given_a_menu_when_the_caller_presses_too_much_then_it_is_invalid() -> None:
    session = make(MENU)
    session.start()
    [read] = media(session.handle(DigitsReceived("12")))
    assert isinstance(read, ReadDigits)
    assert text(read.prompts[0]) == "Invalid."
    assert [e for e in session.path if isinstance(e, InputRejected)][-1].reason is (
        Rejection.INVALID
    )


def test_given_a_menu_when_retries_run_out_then_it_goes_to_on_failure() -> None:
    session = make(MENU)
    session.start()
    session.handle(DigitsReceived("9"))
    session.handle(DigitsReceived("", timed_out=True))
    commands = session.handle(DigitsReceived("8"))
    assert media(commands) == [Play((SoundPrompt("goodbye"),)), Hangup()]
    assert entered(session) == ["menu", "bye"]
    assert ended(session).outcome is Outcome.HUNG_UP
    rejections = [e for e in session.path if isinstance(e, InputRejected)]
    assert [(r.attempt, r.gave_up) for r in rejections] == [(1, False), (2, False), (3, True)]


def test_given_a_menu_when_the_caller_presses_star_then_it_repeats_without_using_a_retry() -> None:
    session = make(MENU)
    session.start()
    for _ in range(5):
        [read] = media(session.handle(DigitsReceived("*")))
        assert isinstance(read, ReadDigits)
        assert [text(p) for p in read.prompts] == ["Press 1 for sales."]
    assert not [e for e in session.path if isinstance(e, InputRejected)]


def test_given_a_menu_when_the_caller_presses_zero_then_it_goes_to_the_operator() -> None:
    session = make(MENU)
    session.start()
    [queue] = media(session.handle(DigitsReceived("0")))
    assert isinstance(queue, Queue)
    assert queue.queue == "operator"


def test_given_a_menu_without_on_failure_when_retries_run_out_then_the_call_fails() -> None:
    flow = MENU.replace("    on_failure: bye\n", "").replace("retries: 2", "retries: 0")
    flow += "  spare: {type: play, prompt: beep, next: bye}\n"
    parsed, _ = load_flow_text(flow)
    assert parsed is not None
    session = make(parsed)
    session.start()
    assert media(session.handle(DigitsReceived("5"))) == [Hangup()]
    assert ended(session).outcome is Outcome.FAILED


# --- collect ---------------------------------------------------------------------------------

COLLECT = """\
name: collect
start: account
prompts:
  ask: "Enter your account number."
  bad: "Not valid."
steps:
  account:
    type: collect
    prompt: ask
    variable: account
    validate: luhn
    min_digits: 8
    max_digits: 16
    retries: 1
    invalid_prompt: bad
    next: done
    on_failure: failed
  done: {type: transfer, number: "{account}"}
  failed: {type: hangup}
"""


def test_given_collect_when_a_luhn_valid_number_is_entered_then_it_is_stored() -> None:
    session = make(COLLECT)
    [read] = media(session.start())
    assert read == ReadDigits((TextPrompt("Enter your account number.", "en"),), 16, 5000, "#")
    [transfer] = media(session.handle(DigitsReceived("79927398713")))
    assert transfer == Transfer("79927398713")
    assert session.variables["account"] == "79927398713"
    digits = [e for e in session.path if isinstance(e, DigitsEntered)]
    assert digits[0].digits == "79927398713"


def test_given_collect_when_the_luhn_check_fails_then_it_asks_again_then_gives_up() -> None:
    session = make(COLLECT)
    session.start()
    [read] = media(session.handle(DigitsReceived("79927398710")))
    assert isinstance(read, ReadDigits)
    assert text(read.prompts[0]) == "Not valid."
    assert media(session.handle(DigitsReceived("1234", timed_out=True))) == [Hangup()]
    assert entered(session) == ["account", "failed"]


def test_given_collect_when_hash_is_pressed_at_once_then_it_is_no_input() -> None:
    session = make(COLLECT)
    session.start()
    session.handle(DigitsReceived(""))
    [rejected] = [e for e in session.path if isinstance(e, InputRejected)]
    assert rejected.reason is Rejection.NO_INPUT


def test_given_collect_when_too_many_digits_arrive_then_they_are_rejected() -> None:
    session = make(COLLECT)
    session.start()
    session.handle(DigitsReceived("79927398713" * 2))
    assert session.current_step == "account"
    assert "account" not in session.variables


# --- speech ----------------------------------------------------------------------------------

SPEECH = """\
name: speech
start: ask
prompts:
  ask: "Say sales or support."
  again: "Sorry?"
steps:
  ask:
    type: speech
    prompt: ask
    options: {sales: sales, "tech support": support}
    threshold: 0.6
    retries: 2
    no_match_prompt: again
    on_failure: bye
  sales: {type: queue, queue: sales}
  support: {type: queue, queue: support}
  bye: {type: hangup}
"""


def test_given_speech_when_a_word_is_recognised_confidently_then_it_branches() -> None:
    session = make(SPEECH)
    [listen] = media(session.start())
    assert isinstance(listen, ListenSpeech)
    assert listen.words == ("sales", "tech support")
    assert listen.threshold == 0.6
    [queue] = media(session.handle(SpeechRecognised("I need Tech  Support please", 0.9)))
    assert isinstance(queue, Queue)
    assert queue.queue == "support"
    [heard] = [e for e in session.path if isinstance(e, SpeechHeard)]
    assert (heard.text, heard.confidence) == ("I need Tech  Support please", 0.9)
    assert session.variables["speech"] == "I need Tech  Support please"


def test_given_speech_when_confidence_is_low_no_input_or_no_match_then_it_retries() -> None:
    session = make(SPEECH)
    session.start()
    [listen] = media(session.handle(SpeechRecognised("sales", 0.3)))
    assert isinstance(listen, ListenSpeech)
    assert text(listen.prompts[0]) == "Sorry?"
    session.handle(NoInput())
    assert media(session.handle(NoMatch())) == [Hangup()]
    reasons = [e.reason for e in session.path if isinstance(e, InputRejected)]
    assert reasons == [Rejection.LOW_CONFIDENCE, Rejection.NO_INPUT, Rejection.NO_MATCH]


def test_given_speech_when_the_words_match_no_option_then_it_is_no_match() -> None:
    session = make(SPEECH)
    session.start()
    session.handle(SpeechRecognised("wholesale", 0.95))
    [rejected] = [e for e in session.path if isinstance(e, InputRejected)]
    assert rejected.reason is Rejection.NO_MATCH


# --- condition and set -----------------------------------------------------------------------

CONDITION = """\
name: hours
start: check
calendars:
  office:
    timezone: Europe/Paris
    hours: {mon-fri: "08:00-18:00"}
    holidays: ["12-25", 2026-04-06]
steps:
  check:
    type: condition
    branches:
      - if: {holiday: office}
        goto: holiday
      - if: {open: office}
        goto: open
      - if: {vip: true}
        goto: vip
    else: closed
  holiday: {type: hangup, prompt: beep}
  open: {type: transfer, number: "100"}
  vip: {type: transfer, number: "200"}
  closed: {type: hangup}
"""


@pytest.mark.parametrize(
    ("at", "vip", "step"),
    [
        (datetime(2026, 3, 27, 6, 30, tzinfo=UTC), False, "closed"),  # 07:30 CET
        (datetime(2026, 3, 30, 6, 30, tzinfo=UTC), False, "open"),  # 08:30 CEST after DST
        (datetime(2026, 3, 27, 6, 30, tzinfo=UTC), True, "vip"),
        (datetime(2026, 4, 6, 9, 0, tzinfo=UTC), False, "holiday"),  # Easter Monday
        (datetime(2027, 12, 25, 9, 0, tzinfo=UTC), True, "holiday"),  # yearly
    ],
)
def test_given_business_hours_across_dst_and_holidays_then_the_condition_branches(
    at: datetime, vip: bool, step: str
) -> None:
    session = make(CONDITION, Clock(at), vip=vip)
    session.start()
    assert entered(session) == ["check", step]


VARIABLES = """\
name: vars
start: set
steps:
  set:
    type: set
    variables: {segment: gold, greeting: "hi {caller}"}
    language: fr
    skills: [billing]
    priority: 7
    next: test
  test:
    type: condition
    branches:
      - if: {variable: segment, in: [silver, gold]}
        goto: more
      - if: {caller_known: true}
        goto: queue
    else: queue
  more:
    type: set
    skills: [billing, gold]
    next: queue
  queue: {type: queue, queue: billing, skills: [french]}
"""


def test_given_set_steps_then_variables_language_skills_and_priority_reach_the_queue() -> None:
    session = make(VARIABLES)
    commands = media(session.start())
    assert commands[:3] == [
        SetVariable("segment", "gold"),
        SetVariable("greeting", "hi 0612345678"),
        SetLanguage("fr"),
    ]
    assert commands[-1] == Queue("billing", ("billing", "gold", "french"), 7, "fr")
    assert entered(session) == ["set", "test", "more", "queue"]
    assert session.language == "fr"


# --- lookup and knowledge base ---------------------------------------------------------------

LOOKUP = """\
name: lookup
start: ticket
prompts:
  status: "Ticket {t.number} is {t.status}."
steps:
  ticket:
    type: lookup
    kind: ticket_status
    params: {number: "{ticket_number}"}
    result: t
    timeout_ms: 2000
    next: say
    on_not_found: unknown
    on_failure: down
  say: {type: play, prompt: status, next: bye}
  unknown: {type: transfer, number: "1"}
  down: {type: transfer, number: "2"}
  bye: {type: hangup}
"""


def test_given_a_lookup_when_it_answers_then_its_data_is_read_back() -> None:
    session = make(LOOKUP, variables={"ticket_number": "42"})
    [lookup] = media(session.start())
    assert lookup == Lookup(LookupKind.TICKET_STATUS, (("number", "42"),), 2000)
    [play] = media(session.handle(LookupResult(True, {"number": "42", "status": "open"})))
    assert isinstance(play, Play)
    assert text(play.prompts[0]) == "Ticket 42 is open."
    [answered] = [e for e in session.path if isinstance(e, LookupAnswered)]
    assert answered.outcome is LookupOutcome.OK


@pytest.mark.parametrize(
    ("event", "number", "outcome"),
    [
        (LookupResult(False), "1", LookupOutcome.NOT_FOUND),
        (LookupFailed("timeout"), "2", LookupOutcome.FAILED),
        (LookupFailed("http-500"), "2", LookupOutcome.FAILED),
    ],
)
def test_given_a_lookup_when_not_found_failed_or_timed_out_then_it_takes_that_branch(
    event: Event, number: str, outcome: LookupOutcome
) -> None:
    session = make(LOOKUP)
    session.start()
    assert media(session.handle(event)) == [Transfer(number)]
    [answered] = [e for e in session.path if isinstance(e, LookupAnswered)]
    assert answered.outcome is outcome


WEBHOOK = """\
name: hook
start: hook
steps:
  hook:
    type: lookup
    kind: webhook
    url: "https://crm.example/lookup"
    params: {caller: "{caller}"}
    next: bye
  bye: {type: hangup}
"""


def test_given_a_webhook_lookup_without_on_failure_when_it_fails_then_the_call_fails() -> None:
    session = make(WEBHOOK)
    [lookup] = media(session.start())
    assert lookup == Lookup(
        LookupKind.WEBHOOK, (("caller", "0612345678"),), 3000, "https://crm.example/lookup"
    )
    assert media(session.handle(LookupFailed("timeout"))) == [Hangup()]
    assert ended(session).outcome is Outcome.FAILED


KB = """\
name: kb
start: ask
prompts:
  q: "Ask your question."
  intro: "Here is what I found."
steps:
  ask: {type: speech, prompt: q, variable: question, next: kb}
  kb:
    type: kb_answer
    question: "{question}"
    intro: intro
    next: bye
    on_failure: agent
  agent: {type: queue, queue: support}
  bye: {type: hangup}
"""


def test_given_a_kb_answer_when_found_then_it_is_read_back_to_the_caller() -> None:
    session = make(KB)
    session.start()
    [lookup] = media(session.handle(SpeechRecognised("how do I reset my password", 0.8)))
    assert lookup == Lookup(LookupKind.KB, (("question", "how do I reset my password"),), 3000)
    [play] = media(session.handle(LookupResult(True, {"answer": "Use the reset link."})))
    assert isinstance(play, Play)
    assert [text(p) for p in play.prompts] == ["Here is what I found.", "Use the reset link."]
    assert media(session.handle(PromptFinished())) == [Hangup()]


@pytest.mark.parametrize("event", [LookupResult(False), LookupResult(True), LookupFailed("x")])
def test_given_a_kb_answer_when_nothing_is_found_then_it_goes_to_on_failure(event: Event) -> None:
    session = make(KB)
    session.start()
    session.handle(SpeechRecognised("anything", 0.8))
    [queue] = media(session.handle(event))
    assert isinstance(queue, Queue)


# --- callback, voicemail, transfer, survey, hangup -------------------------------------------

CALLBACK = """\
name: cb
start: cb
prompts:
  confirm: "We will call {callback_number}. Press 1 to confirm, 2 to change."
  enter: "Enter your number."
steps:
  cb:
    type: callback
    confirm_prompt: confirm
    enter_prompt: enter
    min_digits: 6
    max_digits: 12
    retries: 1
    next: bye
    on_failure: bye
  bye: {type: hangup}
"""


def test_given_a_callback_when_the_caller_confirms_then_it_is_requested() -> None:
    session = make(CALLBACK)
    [read] = media(session.start())
    assert isinstance(read, ReadDigits)
    assert text(read.prompts[0]) == "We will call 0612345678. Press 1 to confirm, 2 to change."
    commands = session.handle(DigitsReceived("1"))
    assert media(commands)[0] == RequestCallback("0612345678", "en")
    [requested] = [e for e in session.path if isinstance(e, CallbackRequested)]
    assert requested.number == "0612345678"


def test_given_a_callback_when_the_caller_enters_another_number_then_it_is_confirmed() -> None:
    session = make(CALLBACK)
    session.start()
    [enter] = media(session.handle(DigitsReceived("2")))
    assert isinstance(enter, ReadDigits)
    assert (enter.max_digits, enter.terminator) == (12, "#")
    [confirm] = media(session.handle(DigitsReceived("0140000000")))
    assert isinstance(confirm, ReadDigits)
    assert "0140000000" in text(confirm.prompts[0])
    assert media(session.handle(DigitsReceived("1")))[0] == RequestCallback("0140000000", "en")


def test_given_an_anonymous_caller_when_callback_starts_then_the_number_is_asked() -> None:
    session = make(CALLBACK, caller="")
    [read] = media(session.start())
    assert isinstance(read, ReadDigits)
    assert text(read.prompts[0]) == "Enter your number."
    session.handle(DigitsReceived("12"))  # too short
    assert media(session.handle(DigitsReceived(""))) == [Hangup()]
    assert not [e for e in session.path if isinstance(e, CallbackRequested)]


VOICEMAIL = """\
name: vm
start: vm
prompts:
  leave: "Leave a message."
steps:
  vm:
    type: voicemail
    prompt: leave
    max_seconds: 60
    subject: "Message from {caller}"
    next: bye
    on_failure: failed
  bye: {type: hangup}
  failed: {type: hangup, prompt: beep}
"""


def test_given_a_voicemail_when_recorded_then_it_is_recorded_for_a_ticket() -> None:
    clock = Clock()
    session = make(VOICEMAIL, clock)
    [record] = media(session.start())
    assert record == RecordVoicemail(
        (TextPrompt("Leave a message.", "en"),), 60, "Message from 0612345678"
    )
    clock.advance(42)
    session.handle(VoicemailRecorded("rec-1", 40.5))
    [left] = [e for e in session.path if isinstance(e, VoicemailLeft)]
    assert (left.recording, left.duration_s, left.caller) == ("rec-1", 40.5, "0612345678")
    assert left.subject == "Message from 0612345678"
    assert ended(session).duration_ms == 42_000


def test_given_a_voicemail_when_recording_fails_then_it_goes_to_on_failure() -> None:
    session = make(VOICEMAIL)
    session.start()
    assert media(session.handle(VoicemailFailed("silence"))) == [
        Play((SoundPrompt("beep"),)),
        Hangup(),
    ]


TRANSFER = """\
name: tr
start: tr
steps:
  tr: {type: transfer, number: "+33100000000", on_failure: bye}
  bye: {type: hangup}
"""


def test_given_a_transfer_when_accepted_then_the_session_ends_transferred() -> None:
    session = make(TRANSFER)
    assert media(session.start()) == [Transfer("+33100000000")]
    assert media(session.handle(TransferResult(True))) == []
    assert ended(session).outcome is Outcome.TRANSFERRED


def test_given_a_transfer_when_refused_then_it_goes_to_on_failure() -> None:
    session = make(TRANSFER)
    session.start()
    assert media(session.handle(TransferResult(False, "busy"))) == [Hangup()]
    assert ended(session).outcome is Outcome.HUNG_UP


def test_given_the_shipped_survey_when_answered_then_scores_are_recorded() -> None:
    session = make(load_checked_flow(FLOWS_DIR / "survey.yaml"), language="fr")
    [intro] = media(session.start())
    assert isinstance(intro, Play)
    assert text(intro.prompts[0]).startswith("Merci de rester")
    session.handle(PromptFinished())
    session.handle(DigitsReceived("7"))  # out of range: asked again
    session.handle(DigitsReceived("4"))
    session.handle(DigitsReceived("", timed_out=True))
    [thanks] = media(session.handle(DigitsReceived("", timed_out=True)))  # gives up
    assert isinstance(thanks, Play)
    assert media(session.handle(PromptFinished())) == [Hangup()]
    answers = [(e.question, e.score) for e in session.path if isinstance(e, SurveyAnswered)]
    assert answers == [("satisfaction", 4), ("resolved", None)]
    assert session.variables["survey.satisfaction"] == "4"


def test_given_a_hangup_step_then_it_plays_its_prompt_and_hangs_up() -> None:
    session = make(
        TRANSFER.replace('"+33100000000"', '"1"').replace(
            "{type: hangup}", "{type: hangup, prompt: goodbye}"
        )
    )
    session.start()
    assert media(session.handle(TransferResult(False))) == [
        Play((SoundPrompt("goodbye"),)),
        Hangup(),
    ]


# --- hang-up at every step -------------------------------------------------------------------

EVERY_STEP = """\
name: every
start: play
prompts:
  p: "Prompt."
steps:
  play: {type: play, prompt: p, next: menu}
  menu: {type: menu, prompt: p, options: {"1": collect}, on_failure: bye}
  collect: {type: collect, prompt: p, variable: n, next: speech, on_failure: bye}
  speech: {type: speech, prompt: p, next: lookup, on_failure: bye}
  lookup: {type: lookup, kind: ticket_status, next: kb, on_failure: bye}
  kb: {type: kb_answer, next: callback, on_failure: bye}
  callback:
    type: callback
    confirm_prompt: p
    enter_prompt: p
    next: voicemail
    on_failure: bye
  voicemail: {type: voicemail, prompt: p, next: survey, on_failure: bye}
  survey:
    type: survey
    questions: [{name: q, prompt: p}]
    next: transfer
  transfer: {type: transfer, number: "1", on_failure: queue}
  queue: {type: queue, queue: support, on_failure: bye}
  bye: {type: hangup}
"""

# What to answer in each step to move on to the next one.
ADVANCE: dict[str, list[Event]] = {
    "play": [PromptFinished()],
    "menu": [DigitsReceived("1")],
    "collect": [DigitsReceived("1234")],
    "speech": [SpeechRecognised("hello", 0.9)],
    "lookup": [LookupResult(True, {"status": "open"})],
    "kb": [LookupResult(True, {"answer": "Yes."}), PromptFinished()],
    "callback": [DigitsReceived("1")],
    "voicemail": [VoicemailRecorded("r", 3.0)],
    "survey": [DigitsReceived("5")],
    "transfer": [TransferResult(False, "busy")],
}
ORDER = [*ADVANCE, "queue"]


@pytest.mark.parametrize("step", ORDER)
def test_given_a_caller_in_any_step_when_they_hang_up_then_the_session_ends_cleanly(
    step: str,
) -> None:
    session = make(EVERY_STEP)
    session.start()
    for name in ORDER[: ORDER.index(step)]:
        for event in ADVANCE[name]:
            session.handle(event)
    assert session.current_step == step
    assert session.waiting_for is not Waiting.NOTHING
    commands = session.handle(CallerHungUp())
    assert media(commands) == []  # nothing is played to a dead channel
    assert session.state is SessionState.ENDED
    end = ended(session)
    assert (end.step, end.outcome) == (step, Outcome.CALLER_HUNG_UP)
    assert recorded(commands) == [end]
    assert entered(session) == ORDER[: ORDER.index(step) + 1]
    assert session.handle(CallerHungUp()) == []
    assert session.handle(PromptFinished()) == []


def test_every_step_type_that_waits_is_covered_by_the_hang_up_test() -> None:
    kinds = {step_type(s) for s in load(EVERY_STEP).steps.values()}
    assert kinds == set(StepType) - {StepType.CONDITION, StepType.SET}  # these never wait


def test_given_a_caller_who_hangs_up_before_the_start_then_the_end_is_still_recorded() -> None:
    session = make(MENU)
    commands = session.handle(CallerHungUp())
    assert [type(e) for e in recorded(commands)] == [IvrEnded]
    assert session.start() == []


def test_given_call_started_event_then_it_is_the_same_as_start() -> None:
    session = make(MENU)
    assert isinstance(media(session.handle(CallStarted()))[0], ReadDigits)
    assert session.handle(CallStarted()) == []


def test_given_an_unexpected_event_then_it_is_ignored() -> None:
    session = make(MENU)
    session.start()
    assert session.handle(PromptFinished()) == []
    assert session.handle(LookupResult(True)) == []
    assert session.waiting_for is Waiting.DIGITS


def test_given_a_loop_of_pass_through_steps_then_the_session_gives_up_instead_of_spinning() -> None:
    text = """\
name: spin
start: a
steps:
  a:
    type: condition
    branches: [{if: {vip: true}, goto: b}]
    else: bye
  b: {type: set, next: a}
  bye: {type: hangup}
"""
    session = make(text, vip=True)
    assert media(session.start()) == [Hangup()]
    assert ended(session).outcome is Outcome.FAILED


# --- property: random event sequences ----------------------------------------------------------

EVENTS = st.one_of(
    st.builds(PromptFinished, st.sampled_from(["", "1", "#"])),
    st.builds(DigitsReceived, st.text(alphabet="0123456789*#", max_size=12), st.booleans()),
    st.builds(SpeechRecognised, st.text(max_size=20), st.floats(0, 1)),
    st.just(NoInput()),
    st.just(NoMatch()),
    st.builds(
        LookupResult,
        st.booleans(),
        st.dictionaries(st.sampled_from(["answer", "status", "number"]), st.text(max_size=8)),
    ),
    st.builds(LookupFailed, st.sampled_from(["timeout", "http-500"])),
    st.builds(VoicemailRecorded, st.just("rec"), st.floats(0, 200)),
    st.builds(VoicemailFailed, st.just("silence")),
    st.builds(TransferResult, st.booleans()),
    st.just(CallStarted()),
)
SHIPPED = {p.stem: load_checked_flow(p) for p in sorted(FLOWS_DIR.glob("*.yaml"))}
SHIPPED["every"] = load(EVERY_STEP)


@settings(max_examples=300, deadline=None)
@given(
    flow=st.sampled_from(sorted(SHIPPED)),
    events=st.lists(EVENTS, max_size=40),
    vip=st.booleans(),
    known=st.booleans(),
    hours=st.integers(0, 24 * 7),
)
def test_random_event_sequences_never_raise_and_end_after_caller_hung_up(
    flow: str, events: list[Event], vip: bool, known: bool, hours: int
) -> None:
    clock = Clock(OPEN_TIME + timedelta(hours=hours))
    session = make(SHIPPED[flow], clock, vip=vip, caller_known=known)
    outputs = [session.start()]
    for event in events:
        outputs.append(session.handle(event))
        clock.advance(1)
    outputs.append(session.handle(CallerHungUp()))
    assert session.state is SessionState.ENDED
    ends = [e for e in session.path if isinstance(e, IvrEnded)]
    assert len(ends) == 1
    assert session.path[-1] == ends[0]
    assert isinstance(session.path[0], IvrStarted)
    for commands in outputs:
        awaited = [c for c in commands if isinstance(c, REPLY_EXPECTED)]
        # Only Play may come before the command whose reply the session waits for.
        assert all(isinstance(c, Play) for c in awaited[:-1])
    assert [c.event for out in outputs for c in out if isinstance(c, RecordPath)] == list(
        session.path
    )


BILINGUAL = """
name: bilingual
start: menu
language: ko
prompts:
  ask:
    ko: "영업은 1번을 누르세요."
    fr: "Pour les ventes, tapez 1."
steps:
  menu:
    type: menu
    prompt: ask
    options: {"1": sales}
  sales:
    type: queue
    queue: sales
"""


@pytest.mark.parametrize(
    ("channel_language", "spoken"),
    [("en", "ko"), ("", "ko"), ("fr", "fr"), ("ko", "ko")],
)
def test_given_a_channel_language_then_it_applies_only_where_the_flow_speaks_it(
    channel_language: str, spoken: str
) -> None:
    session = make(BILINGUAL, language=channel_language)
    [read] = media(session.start())
    assert isinstance(read, ReadDigits)
    assert session.language == spoken
    assert text(read.prompts[0]) == load(BILINGUAL).prompts["ask"].texts[spoken]
