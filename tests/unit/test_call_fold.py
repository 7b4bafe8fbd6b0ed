"""The fold of one IVR session's path events into the help desk's call event (pure)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from ivr.domain.call import CallId
from ivr.domain.flow import LookupKind, StepId, StepType
from ivr.domain.path import (
    CallbackRequested,
    DigitsEntered,
    IvrEnded,
    IvrStarted,
    LookupAnswered,
    LookupOutcome,
    Outcome,
    PathEvent,
    QueueLeft,
    QueueOutcome,
    StepEntered,
    SurveyAnswered,
    VoicemailLeft,
)
from tickets.call_feed import CallFold, fold_call
from tickets.models import Disposition

T0 = datetime(2026, 3, 3, 9, 0, tzinfo=UTC)
CALL = CallId("call-1")


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def started() -> IvrStarted:
    return IvrStarted(CALL, at(0), "support", "+15551230001", "en")


def ended(outcome: Outcome, destination: str = "", seconds: float = 30) -> IvrEnded:
    return IvrEnded(CALL, at(seconds), StepId("end"), outcome, int(seconds * 1000), destination)


def test_given_a_caller_who_checked_a_ticket_then_the_call_names_that_ticket() -> None:
    path: list[PathEvent] = [
        started(),
        StepEntered(CALL, at(1), StepId("ticket-number"), StepType.COLLECT),
        DigitsEntered(CALL, at(5), StepId("ticket-number"), "2026000042", False),
        LookupAnswered(
            CALL,
            at(6),
            StepId("ticket-lookup"),
            LookupKind.TICKET_STATUS,
            LookupOutcome.OK,
            "",
            "2026-000042",
        ),
        ended(Outcome.HUNG_UP),
    ]
    event = fold_call(CALL, path)
    assert event.named_ticket == "2026-000042"
    assert event.caller == "+15551230001"
    assert event.started_at == at(0)
    assert event.ended_at == at(30)
    assert event.disposition is Disposition.SELF_SERVICE
    assert [step["event"] for step in event.ivr_path] == [type(e).__name__ for e in path]


def test_given_a_failed_ticket_lookup_then_no_ticket_is_named() -> None:
    path: list[PathEvent] = [
        started(),
        LookupAnswered(
            CALL,
            at(6),
            StepId("ticket-lookup"),
            LookupKind.TICKET_STATUS,
            LookupOutcome.NOT_FOUND,
        ),
        ended(Outcome.CALLER_HUNG_UP),
    ]
    event = fold_call(CALL, path)
    assert event.named_ticket == ""
    assert event.disposition is Disposition.ABANDONED


def test_given_a_queued_call_then_it_is_in_progress_in_that_queue_and_not_ended() -> None:
    event = fold_call(CALL, [started(), ended(Outcome.QUEUED, "support")])
    assert event.queue == "support"
    assert event.ended_at is None
    assert event.disposition is Disposition.IN_PROGRESS


def test_given_a_voicemail_then_the_call_carries_its_subject_and_recording() -> None:
    voicemail = VoicemailLeft(
        CALL,
        at(20),
        StepId("vm"),
        "/var/spool/vm-1",
        12.5,
        "After-hours message",
        "+15551230001",
        "en",
    )
    event = fold_call(CALL, [started(), voicemail, ended(Outcome.HUNG_UP)])
    assert event.disposition is Disposition.VOICEMAIL
    assert event.subject == "After-hours message"
    assert event.recording_url == "/var/spool/vm-1"


def test_given_a_callback_request_then_the_disposition_is_callback() -> None:
    request = CallbackRequested(CALL, at(10), StepId("cb"), "+15551230001")
    event = fold_call(CALL, [started(), request, ended(Outcome.HUNG_UP)])
    assert event.disposition is Disposition.CALLBACK


def test_given_events_then_the_fold_hands_the_call_back_once_when_it_ends() -> None:
    fold = CallFold()
    assert fold.add("1-0", started(), now=0.0) is None
    assert fold.add("1-0", started(), now=0.5) is None  # the same entry again: ignored
    folded = fold.add("2-0", ended(Outcome.HUNG_UP), now=1.0)
    assert folded is not None
    assert folded.entry_ids == ("1-0", "2-0")
    assert len(folded.event.ivr_path) == 2
    assert fold.open_calls == 0


def test_given_a_session_that_never_ends_then_it_is_folded_as_failed_once_stale() -> None:
    fold = CallFold(stale_after=60.0)
    fold.add("1-0", started(), now=0.0)
    assert fold.stale(now=59.0) == []
    [folded] = fold.stale(now=61.0)
    assert folded.event.disposition is Disposition.FAILED
    assert folded.event.caller == "+15551230001"
    assert fold.open_calls == 0


def test_given_more_open_calls_than_allowed_then_the_oldest_are_folded_first() -> None:
    fold = CallFold(stale_after=3600.0, max_open=2)
    for index in range(3):
        other = IvrStarted(CallId(f"c{index}"), at(index), "main", "", "en")
        fold.add(f"{index}-0", other, now=float(index))
    [folded] = fold.stale(now=3.0)
    assert folded.event.call_id == "c0"
    assert fold.open_calls == 2


def test_given_an_agent_answered_in_the_queue_then_the_call_has_agent_wait_and_talk() -> None:
    left = QueueLeft(CALL, at(100), "support", QueueOutcome.ANSWERED, 40_000, "2001", 55_000, 1)
    event = fold_call(CALL, [started(), left, ended(Outcome.QUEUED, "support", seconds=101)])
    assert event.disposition is Disposition.ANSWERED
    assert (event.queue, event.agent) == ("support", "2001")
    assert (event.queue_wait_s, event.talk_s) == (40.0, 55.0)
    assert event.answered_at == at(45)
    assert event.ended_at == at(101)


def test_given_the_caller_hung_up_while_queued_then_the_call_is_abandoned_with_its_wait() -> None:
    left = QueueLeft(CALL, at(70), "sales", QueueOutcome.ABANDONED, 62_000)
    event = fold_call(CALL, [started(), left, ended(Outcome.CALLER_HUNG_UP, seconds=70)])
    assert event.disposition is Disposition.ABANDONED
    assert event.queue_wait_s == 62.0
    assert event.agent is None
    assert event.talk_s is None


def test_given_a_post_call_survey_then_its_answers_stay_in_the_path_for_the_survey_hook() -> None:
    path: list[PathEvent] = [
        started(),
        SurveyAnswered(CALL, at(20), StepId("survey"), "satisfaction", 5),
        SurveyAnswered(CALL, at(25), StepId("survey"), "resolved", None),
        ended(Outcome.HUNG_UP),
    ]
    call = fold_call(CALL, path)
    answers = [
        (step["question"], step["score"])
        for step in call.ivr_path
        if step["event"] == "SurveyAnswered"
    ]
    assert answers == [("satisfaction", 5), ("resolved", None)]
    assert call.disposition is Disposition.SELF_SERVICE
