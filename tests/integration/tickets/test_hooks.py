"""Help-desk hooks and their composition: breach checks, the email channel from settings, replay."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from pathlib import Path

import aiosmtplib
import pytest
from sqlalchemy import func, select

from callcenter.config import EmailSettings, Secret
from ivr.domain.call import CallId
from ivr.domain.flow import StepId
from ivr.domain.path import IvrEnded, IvrStarted, Outcome, SurveyAnswered
from tickets.call_feed import fold_call
from tickets.calls import CallTickets
from tickets.db import Database
from tickets.email import EmailConfigError
from tickets.email.service import SECRET_ENV, BreachWatcher, build_email_channel
from tickets.hooks import HelpDeskHooks
from tickets.models import AuditEvent, Channel, Message, Ticket
from tickets.repository import TicketRepository
from tickets.sla import SlaPolicy, Target
from tickets.sla_records import ServiceLevels
from tickets.surveys import SurveyResponse

from .conftest import FakeClock

T0 = datetime(2026, 3, 3, 9, 0, tzinfo=UTC)


async def until(check: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
    for _ in range(int(timeout / 0.01)):
        if check():
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"not within {timeout} s: {what}")


async def _ticket_with_policy(db: Database, clock: FakeClock) -> Ticket:
    async with db.sessions.begin() as session:
        levels = ServiceLevels(session, clock)
        await levels.add_policy(SlaPolicy("email", first_response=timedelta(hours=1)))
        ticket = await TicketRepository(session, clock).create(
            subject="Slow answer", channel=Channel.EMAIL, actor="test"
        )
        await HelpDeskHooks(db.sessions, clock).ticket_created(session, ticket)
        return ticket


async def test_given_a_passed_deadline_when_the_watcher_runs_then_the_breach_is_logged_once(
    db: Database, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    ticket = await _ticket_with_policy(db, clock)
    watcher = BreachWatcher.for_hooks(HelpDeskHooks(db.sessions, clock), interval=0.01)
    assert await watcher.run_once() == []
    clock.advance(timedelta(hours=2))
    with caplog.at_level(logging.WARNING, logger="tickets.email.service"):
        (breach,) = await watcher.run_once()
        assert await watcher.run_once() == []  # a breach is reported once
    assert (breach.number, breach.target) == (ticket.number, Target.FIRST_RESPONSE)
    logged = [r for r in caplog.records if "SLA breached" in r.getMessage()]
    assert len(logged) == 1
    assert ticket.number in logged[0].getMessage()


async def test_given_the_watcher_running_then_it_checks_repeatedly_until_cancelled(
    db: Database, clock: FakeClock
) -> None:
    await _ticket_with_policy(db, clock)
    clock.advance(timedelta(hours=2))
    watcher = BreachWatcher.for_hooks(HelpDeskHooks(db.sessions, clock), interval=0.01)
    task = asyncio.create_task(watcher.run())
    try:
        await until(lambda: watcher.passes >= 3, "three checks")
    finally:
        task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert watcher.breaches == 1
    async with db.sessions() as session:
        query = select(func.count(AuditEvent.id)).where(AuditEvent.action == "sla.breached")
        assert (await session.execute(query)).scalar_one() == 1


def test_given_a_bad_watcher_interval_then_it_is_refused() -> None:
    async def check() -> list[object]:
        return []

    with pytest.raises(ValueError, match="positive"):
        BreachWatcher(check, interval=0)  # type: ignore[arg-type]


async def test_given_no_email_secret_then_building_the_channel_fails_naming_the_variable(
    db: Database,
) -> None:
    with pytest.raises(EmailConfigError, match=SECRET_ENV):
        build_email_channel(db, EmailSettings(secret=Secret("short")), HelpDeskHooks(db.sessions))


async def test_given_email_settings_then_the_built_channel_stores_mail_on_the_records(
    db: Database, tmp_path: Path
) -> None:
    settings = EmailSettings(
        port=0,
        domain="help.test",
        address="support@help.test",
        secret=Secret("a-long-enough-secret-0123"),
        blob_dir=str(tmp_path / "mail"),
    )
    server = build_email_channel(db, settings, HelpDeskHooks(db.sessions))
    msg = EmailMessage()
    msg["From"] = "carol@example.org"
    msg["To"] = "support@help.test"
    msg["Subject"] = "Hello"
    msg.set_content("hi")
    async with (
        server,
        aiosmtplib.SMTP(hostname="127.0.0.1", port=server.port, start_tls=False) as client,
    ):
        await client.send_message(msg)
        with pytest.raises(aiosmtplib.SMTPRecipientsRefused):  # not our domain
            await client.sendmail("carol@example.org", ["x@elsewhere.test"], msg.as_bytes())
    async with db.sessions() as session:
        (ticket,) = (await session.execute(select(Ticket))).scalars()
        (message,) = (await session.execute(select(Message))).scalars()
    assert ticket.channel == Channel.EMAIL
    assert message.body.strip() == "hi"


async def test_given_a_call_handed_over_twice_then_the_hooks_change_nothing_the_second_time(
    db: Database,
) -> None:
    cid = CallId("s1")
    event = fold_call(
        "s1",
        [
            IvrStarted(cid, T0, "support", "+15551230042", "en"),
            SurveyAnswered(cid, T0, StepId("survey"), "satisfaction", 4),
            IvrEnded(cid, T0, StepId("bye"), Outcome.HUNG_UP, 1000),
        ],
    )
    calls = CallTickets(db.sessions)
    hooks = HelpDeskHooks(db.sessions)
    for _ in range(2):
        await hooks.call_ticketed(await calls.record_call(event), event)
    async with db.sessions() as session:
        (survey,) = (await session.execute(select(SurveyResponse))).scalars()
        started = select(func.count(AuditEvent.id)).where(AuditEvent.action == "sla.started")
        assert (await session.execute(started)).scalar_one() == 1
    assert survey.score == 4


async def test_given_survey_answers_out_of_range_then_the_call_is_kept_and_the_survey_skipped(
    db: Database, caplog: pytest.LogCaptureFixture
) -> None:
    cid = CallId("s2")
    event = fold_call(
        "s2",
        [
            IvrStarted(cid, T0, "support", "+15551230043", "en"),
            SurveyAnswered(cid, T0, StepId("survey"), "satisfaction", 9),
            IvrEnded(cid, T0, StepId("bye"), Outcome.HUNG_UP, 1000),
        ],
    )
    ticketed = await CallTickets(db.sessions).record_call(event)
    with caplog.at_level(logging.WARNING, logger="tickets.hooks"):
        await HelpDeskHooks(db.sessions).call_ticketed(ticketed, event)
    assert any("survey answers not kept" in r.getMessage() for r in caplog.records)
    async with db.sessions() as session:
        assert (await session.execute(select(func.count(SurveyResponse.id)))).scalar_one() == 0
        assert await session.get(Ticket, ticketed.ticket_id) is not None
