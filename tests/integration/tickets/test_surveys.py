"""Satisfaction on real SQLite and PostgreSQL: IVR survey, signed email link, chat rating, CSAT."""

from __future__ import annotations

from datetime import timedelta

import pytest

from ivr.domain.call import CallId
from ivr.domain.flow import StepId
from ivr.domain.path import SurveyAnswered
from tickets.db import Database
from tickets.errors import InvalidSurveyAnswer, InvalidSurveyToken, SurveyAlreadyAnswered
from tickets.models import CallRecord, Channel, Direction, Disposition, Ticket
from tickets.repository import TicketRepository
from tickets.surveys import ReportBy, Surveys, SurveyTokens

from .conftest import FakeClock

SECRET = b"survey-secret-for-tests-only-0123"
_NOW = FakeClock().now


async def _ticket(db: Database, clock: FakeClock, *, queue: str, channel: Channel) -> Ticket:
    async with db.sessions.begin() as session:
        ticket = await TicketRepository(session, clock).create(
            subject="Help", channel=channel, actor="system", queue=queue
        )
        ticket.assignee = "agent:ann"
        return ticket


async def _call(db: Database, clock: FakeClock, ticket: Ticket, call_id: str) -> None:
    async with db.sessions.begin() as session:
        session.add(
            CallRecord(
                call_id=call_id,
                ticket_id=ticket.id,
                direction=Direction.INBOUND,
                caller_kind="valid",
                started_at=clock.now,
                queue=ticket.queue,
                agent="agent:bob",
                disposition=Disposition.ANSWERED,
                created_at=clock.now,
            )
        )


async def test_given_ivr_survey_path_when_recorded_then_scores_on_the_ticket_once(
    db: Database, clock: FakeClock
) -> None:
    ticket = await _ticket(db, clock, queue="support", channel=Channel.PHONE)
    await _call(db, clock, ticket, "call-1")
    path = [
        SurveyAnswered(CallId("call-1"), clock.now, StepId("questions"), "satisfaction", 4),
        SurveyAnswered(CallId("call-1"), clock.now, StepId("questions"), "resolved", 2),
    ]
    async with db.sessions.begin() as session:
        response = await Surveys(session, clock).record_ivr("call-1", path)
        assert response is not None
        assert (response.score, response.resolved, response.agent) == (4, False, "agent:bob")
    async with db.sessions.begin() as session:
        with pytest.raises(SurveyAlreadyAnswered):
            await Surveys(session, clock).record_ivr("call-1", path)
        assert [r.score for r in await Surveys(session).for_ticket(ticket)] == [4]


async def test_given_caller_hung_up_before_answering_when_recorded_then_nothing_stored(
    db: Database, clock: FakeClock
) -> None:
    ticket = await _ticket(db, clock, queue="support", channel=Channel.PHONE)
    await _call(db, clock, ticket, "call-2")
    path = [{"event": "SurveyAnswered", "question": "satisfaction", "score": None}]
    async with db.sessions.begin() as session:
        assert await Surveys(session, clock).record_ivr("call-2", path) is None
    async with db.sessions.begin() as session:
        bad = [{"event": "SurveyAnswered", "question": "satisfaction", "score": 9}]
        with pytest.raises(InvalidSurveyAnswer):
            await Surveys(session, clock).record_ivr("call-2", bad)
        assert await Surveys(session).count() == 0


async def test_given_email_link_when_answered_then_stored_and_reuse_refused(
    db: Database, clock: FakeClock
) -> None:
    ticket = await _ticket(db, clock, queue="billing", channel=Channel.EMAIL)
    tokens = SurveyTokens(SECRET)
    async with db.sessions() as session:
        token = Surveys(session, clock, tokens).email_link_token(ticket)
    async with db.sessions.begin() as session:
        stored = await Surveys(session, clock, tokens).answer_email(token, score=5, comment="Great")
        assert (stored.ticket_id, stored.score, stored.comment) == (ticket.id, 5, "Great")
    async with db.sessions.begin() as session:
        with pytest.raises(SurveyAlreadyAnswered) as caught:
            await Surveys(session, clock, tokens).answer_email(token, score=1)
        assert caught.value.error_id == "survey-already-answered"
    async with db.sessions() as session:
        assert [r.score for r in await Surveys(session).for_ticket(ticket)] == [5]


@pytest.mark.parametrize(
    "forge",
    [
        lambda t: t[:-2] + ("AA" if not t.endswith("AA") else "BB"),  # signature changed
        lambda t: "eyJ0Ijo5OTksImUiOjk5OTk5OTk5OTl9." + t.split(".")[1],  # other payload
        lambda t: SurveyTokens(b"another-secret-of-16+bytes").issue(1, _NOW),
        lambda t: "garbage",
        lambda t: "",
        lambda t: t + "." * 600,
    ],
)
async def test_given_forged_or_damaged_link_when_answered_then_refused_and_nothing_stored(
    db: Database, clock: FakeClock, forge: object
) -> None:
    ticket = await _ticket(db, clock, queue="billing", channel=Channel.EMAIL)
    tokens = SurveyTokens(SECRET)
    token = tokens.issue(ticket.id, clock.now)
    async with db.sessions.begin() as session:
        with pytest.raises(InvalidSurveyToken):
            await Surveys(session, clock, tokens).answer_email(forge(token), score=5)  # type: ignore[operator]
    async with db.sessions() as session:
        assert await Surveys(session).count() == 0


async def test_given_expired_link_when_answered_then_refused(
    db: Database, clock: FakeClock
) -> None:
    ticket = await _ticket(db, clock, queue="billing", channel=Channel.EMAIL)
    tokens = SurveyTokens(SECRET, lifetime=timedelta(days=7))
    token = tokens.issue(ticket.id, clock.now)
    clock.advance(timedelta(days=8))
    async with db.sessions.begin() as session:
        with pytest.raises(InvalidSurveyToken, match="expired"):
            await Surveys(session, clock, tokens).answer_email(token, score=4)


def test_given_a_short_secret_when_tokens_made_then_refused() -> None:
    with pytest.raises(ValueError, match="16 bytes"):
        SurveyTokens(b"short")


async def test_given_answers_on_all_channels_when_reported_then_csat_per_queue_agent_channel(
    db: Database, clock: FakeClock
) -> None:
    start = clock.now
    phone = await _ticket(db, clock, queue="support", channel=Channel.PHONE)
    await _call(db, clock, phone, "call-3")
    email = await _ticket(db, clock, queue="billing", channel=Channel.EMAIL)
    chat = await _ticket(db, clock, queue="support", channel=Channel.CHAT)
    tokens = SurveyTokens(SECRET)
    async with db.sessions.begin() as session:
        surveys = Surveys(session, clock, tokens)
        await surveys.record_ivr(
            "call-3", [{"event": "SurveyAnswered", "question": "satisfaction", "score": 5}]
        )
        await surveys.answer_email(surveys.email_link_token(email), score=2)
        await surveys.record_chat_rating(chat, chat_id="chat-9", score=4, agent="agent:cat")
        with pytest.raises(InvalidSurveyAnswer):
            await surveys.record_chat_rating(chat, chat_id="chat-10", score=0)
    end = clock.now + timedelta(seconds=1)
    async with db.sessions() as session:
        surveys = Surveys(session, clock)
        by_queue = {
            r.key: (r.responses, r.csat)
            for r in await surveys.csat(ReportBy.QUEUE, since=start, until=end)
        }
        assert by_queue == {"billing": (1, 0.0), "support": (2, 100.0)}
        by_channel = {
            r.key: r.csat for r in await surveys.csat(ReportBy.CHANNEL, since=start, until=end)
        }
        assert by_channel == {"chat": 100.0, "email": 0.0, "phone": 100.0}
        by_agent = {
            r.key: r.average for r in await surveys.csat(ReportBy.AGENT, since=start, until=end)
        }
        assert by_agent == {"agent:ann": 2.0, "agent:bob": 5.0, "agent:cat": 4.0}
        later = await surveys.csat(ReportBy.DAY, since=end, until=end + timedelta(days=1))
        assert later == []
