"""IVR actions through the simulator: callback, voicemail, transfer, survey, speech delegation."""

from __future__ import annotations

import pytest

from asterisk_sim.scripts import AgentScript, HangUp, Pause, Press, WaitForPrompt
from ivr.adapters.fastagi_server import AgiSession
from ivr.domain.commands import ListenSpeech, SoundPrompt
from ivr.domain.events import DigitsReceived, Event, NoMatch, SpeechRecognised
from ivr.domain.path import (
    CallbackRequested,
    InputRejected,
    Outcome,
    Rejection,
    SpeechHeard,
    SurveyAnswered,
    VoicemailLeft,
)
from ivr.protocol.agi import StreamFile
from tests.contract.test_ivr_route import (
    CALLER,
    SUNDAY_NOON_PARIS,
    Rig,
    flow_from,
    prompt_cache,
    rig,
    shipped,
)

__all__ = ["prompt_cache", "rig"]  # fixtures, imported for pytest

pytestmark = pytest.mark.timeout(60)

NATIONAL_CALLER = "5551230001"  # the callback step confirms plain digit strings


# --- callback --------------------------------------------------------------------------------


async def test_given_a_callback_request_when_caller_confirms_the_number_then_it_is_handed_on(
    rig: Rig,
) -> None:
    result = await rig.call(
        shipped("main"),
        [
            WaitForPrompt("GET DATA"),
            Press("1"),
            WaitForPrompt("GET DATA"),
            Press("3"),
            WaitForPrompt("GET DATA"),
            Press("1"),
        ],
        caller_id=NATIONAL_CALLER,
    )

    assert rig.played(
        result,
        f"We will call you back on {NATIONAL_CALLER}. "
        "Press 1 to confirm, or 2 to enter another number.",
    )
    assert [e.number for e in result.of(CallbackRequested)] == [NATIONAL_CALLER]
    assert [(r.number, r.language) for r in rig.callbacks.requests] == [(NATIONAL_CALLER, "en")]
    assert rig.callbacks.requests[0].call_id == result.ended.call_id
    assert result.variables["CC_CALLBACK_NUMBER"] == NATIONAL_CALLER
    assert result.variables["CC_CALLBACK_LANGUAGE"] == "en"
    assert result.steps[-2:] == ["callback-done", "goodbye"]
    assert result.ended.outcome is Outcome.HUNG_UP


async def test_given_a_callback_on_another_number_then_the_keyed_number_is_confirmed(
    rig: Rig,
) -> None:
    result = await rig.call(
        shipped("main"),
        [
            WaitForPrompt("GET DATA"),
            Press("1"),
            WaitForPrompt("GET DATA"),
            Press("3"),
            WaitForPrompt("GET DATA"),
            Press("2"),
            WaitForPrompt("GET DATA"),
            Press("0612345678#", gap=0.1),
            WaitForPrompt("GET DATA"),
            Press("1"),
        ],
        caller_id=NATIONAL_CALLER,
    )

    assert rig.played(
        result,
        "We will call you back on 0612345678. Press 1 to confirm, or 2 to enter another number.",
    )
    assert [e.number for e in result.of(CallbackRequested)] == ["0612345678"]
    assert result.variables["CC_CALLBACK_NUMBER"] == "0612345678"


# --- voicemail -------------------------------------------------------------------------------


async def test_given_closed_hours_when_caller_leaves_a_message_then_voicemail_left_for_a_ticket(
    rig: Rig,
) -> None:
    rig.clock_at = SUNDAY_NOON_PARIS
    result = await rig.call(
        shipped("main"),
        [
            WaitForPrompt("GET DATA"),
            Press("1"),
            WaitForPrompt("RECORD FILE"),
            Pause(3.0),
            Press("#", delay=0.0),
        ],
    )

    records = result.ran("RECORD FILE")
    assert len(records) == 1
    assert records[0].endswith('wav "#" 120000 BEEP s=5')
    [left] = result.of(VoicemailLeft)
    assert left.recording.startswith("/tmp/ivr-test-voicemail/")
    assert left.recording.endswith("-1.wav")
    # (a VoicemailLeft at all means the recording passed the route's too-short check)
    assert left.subject == f"Voicemail on the main number from {CALLER}"
    assert (left.caller, left.language) == (CALLER, "en")
    assert result.steps[-1] == "goodbye"
    assert result.ended.outcome is Outcome.HUNG_UP


async def test_given_a_caller_who_presses_hash_at_once_then_no_voicemail_and_failure_branch(
    rig: Rig,
) -> None:
    rig.clock_at = SUNDAY_NOON_PARIS
    result = await rig.call(
        shipped("main"),
        [
            WaitForPrompt("GET DATA"),
            Press("1"),
            WaitForPrompt("RECORD FILE"),
            Press("#", delay=0.1),
        ],
    )

    assert result.of(VoicemailLeft) == []
    assert result.steps[-2:] == ["closed", "goodbye"]


VOICEMAIL_FLOW = """
name: voicemail-test
start: record
steps:
  record: {type: voicemail, prompt: digits/1, max_seconds: 30, next: thanks}
  thanks: {type: hangup, prompt: digits/2}
"""


async def test_given_a_caller_who_hangs_up_after_speaking_then_the_message_is_kept(
    rig: Rig,
) -> None:
    result = await rig.call(
        flow_from(VOICEMAIL_FLOW), [WaitForPrompt("RECORD FILE"), Pause(2.0), HangUp()]
    )

    [left] = result.of(VoicemailLeft)  # kept: not discarded as too short
    assert left.recording.startswith("/tmp/ivr-test-voicemail/")
    assert result.ran("RECORD FILE")[0].endswith('wav "#" 30000 BEEP s=5')


# --- transfer --------------------------------------------------------------------------------


async def test_given_after_hours_emergency_when_on_call_answers_then_transferred(
    rig: Rig,
) -> None:
    rig.clock_at = SUNDAY_NOON_PARIS
    agents = {"+33600000000": AgentScript(answer_after=0.5, talk_for=1.0)}
    result = await rig.call(
        shipped("after_hours"), [WaitForPrompt("GET DATA"), Press("1")], agents=agents
    )

    assert "EXEC Dial Local/+33600000000@trunk,60" in result.commands
    assert result.variables["DIALSTATUS"] == "ANSWER"
    assert result.ended.outcome is Outcome.TRANSFERRED
    assert result.ended.destination == "+33600000000"
    assert result.variables["CC_IVR_DONE"] == "1"


async def test_given_a_busy_on_call_number_then_the_transfer_fails_over_to_voicemail(
    rig: Rig,
) -> None:
    rig.clock_at = SUNDAY_NOON_PARIS
    agents = {"+33600000000": AgentScript(busy=True)}
    result = await rig.call(
        shipped("after_hours"),
        [
            WaitForPrompt("GET DATA"),
            Press("1"),
            WaitForPrompt("RECORD FILE"),
            Pause(2.0),
            Press("#", delay=0.0),
        ],
        agents=agents,
    )

    assert result.variables["DIALSTATUS"] == "BUSY"
    assert result.steps[-3:] == ["on-call", "voicemail", "thanks"]
    assert len(result.of(VoicemailLeft)) == 1


async def test_given_a_transfer_number_that_is_not_a_number_then_refused_without_dialling(
    rig: Rig,
) -> None:
    flow = flow_from(
        """
name: bad-transfer
start: collect
steps:
  collect: {type: set, variables: {target: "12;Hangup"}, next: transfer}
  transfer: {type: transfer, number: "{target}", on_failure: bye}
  bye: {type: hangup}
"""
    )

    result = await rig.call(flow, [])

    assert not result.ran("EXEC Dial")
    assert result.steps[-1] == "bye"


# --- survey ----------------------------------------------------------------------------------


async def test_given_a_post_call_survey_then_each_answer_is_recorded(rig: Rig) -> None:
    result = await rig.call(
        shipped("survey"),
        [
            WaitForPrompt("GET DATA"),
            Press("9"),  # out of range: asked again
            Pause(0.5),
            WaitForPrompt("GET DATA"),
            Press("4"),
            Pause(0.5),
            WaitForPrompt("GET DATA"),
            Press("1"),
        ],
    )

    assert [(a.question, a.score) for a in result.of(SurveyAnswered)] == [
        ("satisfaction", 4),
        ("resolved", 1),
    ]
    assert [(r.reason, r.gave_up) for r in result.of(InputRejected)] == [(Rejection.INVALID, False)]
    assert rig.played(result, "Thank you for your answers. Goodbye.")
    assert result.ended.outcome is Outcome.HUNG_UP


async def test_given_a_silent_caller_then_survey_questions_are_recorded_unanswered(
    rig: Rig,
) -> None:
    result = await rig.call(shipped("survey"), [])

    assert [(a.question, a.score) for a in result.of(SurveyAnswered)] == [
        ("satisfaction", None),
        ("resolved", None),
    ]


# --- speech ----------------------------------------------------------------------------------


class ScriptedSpeech:
    """A speech port that plays the prompts over AGI and hears what it is told to hear."""

    def __init__(self, heard: list[Event]) -> None:
        self.heard = heard
        self.asked: list[tuple[ListenSpeech, str]] = []

    async def listen(self, session: AgiSession, command: ListenSpeech, language: str) -> Event:
        self.asked.append((command, language))
        for prompt in command.prompts:
            if isinstance(prompt, SoundPrompt):
                await session.send(StreamFile(prompt.name, ""))
        return self.heard.pop(0)


SPEECH_FLOW = """
name: speech-test
start: ask
steps:
  ask:
    type: speech
    prompt: digits/1
    options: {sales: sales, support: support}
    retries: 1
    on_failure: bye
  sales: {type: queue, queue: sales}
  support: {type: queue, queue: support}
  bye: {type: hangup}
"""


async def test_given_a_speech_port_then_the_route_delegates_and_words_choose_the_branch(
    rig: Rig,
) -> None:
    speech = ScriptedSpeech([NoMatch(), SpeechRecognised("i need support please", 0.9)])
    rig.speech = speech

    result = await rig.call(flow_from(SPEECH_FLOW), [])

    assert [(c.words, lang) for c, lang in speech.asked] == [(("sales", "support"), "en")] * 2
    assert 'STREAM FILE digits/1 ""' in result.commands
    assert [r.reason for r in result.of(InputRejected)] == [Rejection.NO_MATCH]
    assert [(h.text, h.confidence, h.keypad) for h in result.of(SpeechHeard)] == [
        ("i need support please", 0.9, False)
    ]
    assert result.ended.destination == "support"


async def test_given_a_speech_port_that_hears_a_digit_then_it_counts_as_the_nth_word(
    rig: Rig,
) -> None:
    rig.speech = ScriptedSpeech([DigitsReceived("1")])

    result = await rig.call(flow_from(SPEECH_FLOW), [])

    heard = result.of(SpeechHeard)[0]
    assert (heard.text, heard.keypad) == ("sales", True)
    assert result.ended.destination == "sales"


async def test_given_no_speech_port_then_a_wrong_key_is_no_match_and_a_right_one_chooses(
    rig: Rig,
) -> None:
    result = await rig.call(
        flow_from(SPEECH_FLOW),
        [
            WaitForPrompt("GET DATA"),
            Press("7"),
            Pause(0.5),
            WaitForPrompt("GET DATA"),
            Press("2"),
        ],
    )

    assert rig.played(result, "Press 1 for sales. Press 2 for support.")
    assert [r.reason for r in result.of(InputRejected)] == [Rejection.NO_MATCH]
    assert [(h.text, h.keypad) for h in result.of(SpeechHeard)] == [("support", True)]
    assert result.ended.destination == "support"
