"""Service levels on real tickets (SQLite and PostgreSQL): deadlines, pause, breach, escalation."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import pytest

from tickets.db import Database
from tickets.errors import InvalidCalendar
from tickets.models import (
    AuditEvent,
    AuthorKind,
    CallRecord,
    Channel,
    Direction,
    Disposition,
    Ticket,
    TicketStatus,
)
from tickets.repository import TicketRepository
from tickets.sla import SlaPolicy, Target
from tickets.sla_records import ServiceLevels, TicketSla

from .conftest import FakeClock

H = timedelta(hours=1)
WEEKDAYS = {day: [("09:00", "17:00")] for day in range(5)}


@dataclass
class RecordingEscalations:
    """The `Escalations` port as the ACD will see it: what was re-queued."""

    requeued: list[dict[str, object]] = field(default_factory=list)

    async def requeue(
        self, *, ticket_id: int, number: str, queue: str, skills: Sequence[str], priority: str
    ) -> None:
        self.requeued.append(
            {"ticket": ticket_id, "queue": queue, "skills": list(skills), "priority": priority}
        )


async def _setup(db: Database, clock: FakeClock) -> Ticket:
    """A UTC office calendar, one email policy, and a new ticket at Monday 2 March 09:00 UTC."""
    async with db.sessions.begin() as session:
        levels = ServiceLevels(session, clock)
        office = await levels.add_calendar("office", timezone="UTC", hours=WEEKDAYS)
        await levels.add_policy(
            SlaPolicy(
                name="email-normal",
                channel=Channel.EMAIL,
                first_response=4 * H,
                next_response=8 * H,
                resolution=16 * H,
            ),
            calendar=office,
        )
        await levels.add_policy(
            SlaPolicy(
                name="phone", channel=Channel.PHONE, first_response=H, phone_answer=20 * H / 3600
            )
        )
        ticket = await TicketRepository(session, clock).create(
            subject="Invoice wrong", channel=Channel.EMAIL, actor="system", queue="billing"
        )
        chosen = await levels.start(ticket)
        assert chosen is not None
        assert chosen.name == "email-normal"
        return ticket


async def test_given_a_new_ticket_when_started_then_deadlines_follow_business_hours(
    db: Database, clock: FakeClock
) -> None:
    ticket = await _setup(db, clock)
    assert ticket.first_response_due_at == datetime(2026, 3, 2, 13, tzinfo=UTC)
    assert ticket.resolution_due_at == datetime(2026, 3, 3, 17, tzinfo=UTC)  # 8 h + 8 h


async def test_given_first_response_late_when_checked_then_breach_recorded_once(
    db: Database, clock: FakeClock
) -> None:
    ticket = await _setup(db, clock)
    clock.advance(5 * H)
    async with db.sessions.begin() as session:
        found = await ServiceLevels(session, clock).check_breaches()
        assert [(b.ticket_id, b.target) for b in found] == [(ticket.id, Target.FIRST_RESPONSE)]
    async with db.sessions.begin() as session:
        assert await ServiceLevels(session, clock).check_breaches() == []
        state = await session.get_one(TicketSla, ticket.id)
        assert state.first_response_breached_at == clock.now


async def test_given_agent_reply_then_customer_follow_up_when_measured_then_next_response_set(
    db: Database, clock: FakeClock
) -> None:
    ticket = await _setup(db, clock)
    async with db.sessions.begin() as session:
        repository, levels = TicketRepository(session, clock), ServiceLevels(session, clock)
        ticket = await repository.get(ticket.id)
        clock.advance(H)
        reply = await repository.add_message(
            ticket,
            channel=Channel.EMAIL,
            direction=Direction.OUTBOUND,
            author_kind=AuthorKind.AGENT,
            body="Looking into it",
            actor="agent:ann",
        )
        await levels.message_added(ticket, reply)
        assert ticket.first_response_at == clock.now
        clock.advance(H)
        follow_up = await repository.add_message(
            ticket,
            channel=Channel.EMAIL,
            direction=Direction.INBOUND,
            author_kind=AuthorKind.CUSTOMER,
            body="Any news?",
            actor="customer",
        )
        await levels.message_added(ticket, follow_up)
        # Monday 11:00 + 8 working hours = Tuesday 11:00
        assert ticket.next_response_due_at == datetime(2026, 3, 3, 11, tzinfo=UTC)
    clock.advance(30 * H)
    async with db.sessions.begin() as session:
        found = await ServiceLevels(session, clock).check_breaches()
        assert {b.target for b in found} == {Target.NEXT_RESPONSE, Target.RESOLUTION}


async def test_given_pending_on_customer_when_resumed_then_clock_did_not_run(
    db: Database, clock: FakeClock
) -> None:
    ticket = await _setup(db, clock)
    async with db.sessions.begin() as session:
        repository, levels = TicketRepository(session, clock), ServiceLevels(session, clock)
        ticket = await repository.get(ticket.id)
        clock.advance(H)  # 10:00, 3 h of the first response left
        await repository.transition(ticket, TicketStatus.PENDING, actor="agent:ann")
        await levels.status_changed(ticket, TicketStatus.NEW)
        assert ticket.sla_paused_at == clock.now
    clock.advance(48 * H)  # Wednesday 10:00; a paused ticket is never breached
    async with db.sessions.begin() as session:
        levels = ServiceLevels(session, clock)
        assert await levels.check_breaches() == []
        ticket = await TicketRepository(session, clock).get(ticket.id)
        await TicketRepository(session, clock).transition(ticket, TicketStatus.OPEN, actor="c")
        await levels.status_changed(ticket, TicketStatus.PENDING)
        assert ticket.first_response_due_at == datetime(2026, 3, 4, 13, tzinfo=UTC)
        assert ticket.sla_paused_seconds == 48 * 3600
        actions = [e.action for e in (await TicketRepository(session).history(ticket))]
        assert "sla.paused" in actions
        assert "sla.resumed" in actions


async def test_given_escalation_when_requested_then_tier_2_requeued_and_audited(
    db: Database, clock: FakeClock
) -> None:
    ticket = await _setup(db, clock)
    port = RecordingEscalations()
    async with db.sessions.begin() as session:
        ticket = await TicketRepository(session, clock).get(ticket.id)
        ticket.assignee = "agent:ann"
        await ServiceLevels(session, clock, port).escalate(
            ticket, actor="agent:ann", skill="billing-t2", reason="refund over limit"
        )
    assert port.requeued == [
        {"ticket": ticket.id, "queue": "billing", "skills": ["billing-t2"], "priority": "normal"}
    ]
    async with db.sessions() as session:
        stored = await session.get_one(Ticket, ticket.id)
        assert (stored.tier, stored.assignee) == (2, None)
        history = await TicketRepository(session).history(stored)
        escalated = [e for e in history if e.action == "ticket.escalated"]
        assert escalated[0].data["before"]["assignee"] == "agent:ann"


async def test_given_a_call_record_when_recorded_then_phone_sla_on_the_ticket(
    db: Database, clock: FakeClock
) -> None:
    await _setup(db, clock)
    async with db.sessions.begin() as session:
        repository, levels = TicketRepository(session, clock), ServiceLevels(session, clock)
        ticket = await repository.create(subject="Call", channel=Channel.PHONE, actor="system")
        await levels.start(ticket)
        call = CallRecord(
            call_id="c-1",
            ticket_id=ticket.id,
            direction=Direction.INBOUND,
            caller_kind="valid",
            started_at=clock.now,
            queue_wait_s=35.0,
            disposition=Disposition.ABANDONED,
            created_at=clock.now,
        )
        session.add(call)
        await session.flush()
        state = await levels.call_recorded(ticket, call)
        assert (state.phone_answer_s, state.phone_abandoned, state.phone_within_target) == (
            None,
            True,
            False,
        )
        audit = [e for e in await repository.history(ticket) if isinstance(e, AuditEvent)]
        assert audit[-1].action == "sla.phone_recorded"


async def test_given_a_calendar_without_hours_when_stored_then_refused_and_nothing_saved(
    db: Database, clock: FakeClock
) -> None:
    async with db.sessions.begin() as session:
        levels = ServiceLevels(session, clock)
        with pytest.raises(InvalidCalendar):
            await levels.add_calendar("never", timezone="UTC", hours={})
        with pytest.raises(InvalidCalendar):
            await levels.add_calendar("bad", timezone="UTC", hours={0: [("9am", "5pm")]})
        assert await levels.policies() == []
