"""Service levels on the records: stored calendars and policies, each ticket's clock, escalation.

`ServiceLevels` applies the pure rules of `tickets.sla` to tickets inside the caller's
transaction and writes the ticket's own SLA columns (`first_response_due_at`,
`first_response_at`, `next_response_due_at`, `resolution_due_at`, `sla_paused_at`,
`sla_paused_seconds`); what the ticket table has no column for (the policy applied, breaches,
the remaining time while paused, the phone service level) is in `ticket_sla`, one row per ticket.
Every change is audited (`sla.*`, `ticket.escalated`).

The help-desk service calls the hooks where the facts happen: `start` when a ticket is created,
`message_added` for each public message, `status_changed` after a transition, `call_recorded`
when a call record is final, and `check_breaches` periodically. Escalation to tier 2 re-queues the
ticket with the tier-2 skill through the `Escalations` port, which the ACD implements.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Any, Protocol

from sqlalchemy import JSON, Boolean, Float, ForeignKey, Integer, String, or_, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from tickets.errors import InvalidCalendar, InvalidPolicy, TicketsError
from tickets.models import (
    AuthorKind,
    Base,
    CallRecord,
    Channel,
    Direction,
    Disposition,
    EnumText,
    Message,
    Priority,
    Ticket,
    TicketStatus,
)
from tickets.repository import ACTIVE_STATUSES, SLA_PAUSED_STATUSES, Clock, record_audit, utc_now
from tickets.sla import (
    Breach,
    BusinessCalendar,
    Deadlines,
    Interval,
    SlaPolicy,
    Target,
    breaches,
    deadlines_on_resume,
    next_response_due,
    phone_service,
    remaining_at_pause,
    select_policy,
    start_deadlines,
    validate_calendar,
)

TIER2 = 2


class SlaCalendarRecord(Base):
    """A business-hours calendar: weekday spans, holidays, a time zone."""

    __tablename__ = "sla_calendars"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    timezone: Mapped[str] = mapped_column(String(64))
    hours: Mapped[dict[str, Any]] = mapped_column()  # {"0": [["08:00", "18:00"]], ...}
    holidays: Mapped[list[str]] = mapped_column(JSON, default=list)  # ISO dates
    yearly_holidays: Mapped[list[str]] = mapped_column(JSON, default=list)  # "MM-DD"
    created_at: Mapped[datetime]


class SlaPolicyRecord(Base):
    """Targets in seconds for a priority and channel (NULL: any)."""

    __tablename__ = "sla_policies"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    priority: Mapped[Priority | None] = mapped_column(EnumText(Priority))
    channel: Mapped[Channel | None] = mapped_column(EnumText(Channel))
    calendar_id: Mapped[int | None] = mapped_column(ForeignKey("sla_calendars.id"))
    first_response_s: Mapped[int | None] = mapped_column(Integer)
    next_response_s: Mapped[int | None] = mapped_column(Integer)
    resolution_s: Mapped[int | None] = mapped_column(Integer)
    phone_answer_s: Mapped[int | None] = mapped_column(Integer)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime]


class TicketSla(Base):
    """A ticket's service-level state beyond the ticket's own columns."""

    __tablename__ = "ticket_sla"

    ticket_id: Mapped[int] = mapped_column(
        ForeignKey("tickets.id", ondelete="CASCADE"), primary_key=True
    )
    policy_id: Mapped[int | None] = mapped_column(ForeignKey("sla_policies.id"))
    first_response_breached_at: Mapped[datetime | None]
    next_response_breached_at: Mapped[datetime | None]
    resolution_breached_at: Mapped[datetime | None]
    paused_remaining: Mapped[dict[str, Any]] = mapped_column(default=dict)
    phone_answer_s: Mapped[float | None] = mapped_column(Float)
    phone_abandoned: Mapped[bool] = mapped_column(Boolean, default=False)
    phone_within_target: Mapped[bool | None] = mapped_column(Boolean)
    escalated_at: Mapped[datetime | None]
    updated_at: Mapped[datetime]


class Escalations(Protocol):
    """Puts a ticket back in the ACD's queue with new skills (the ACD service implements it)."""

    async def requeue(
        self, *, ticket_id: int, number: str, queue: str, skills: Sequence[str], priority: str
    ) -> None: ...


@dataclass(frozen=True, slots=True)
class BreachDetected:
    ticket_id: int
    number: str
    target: Target
    due_at: datetime


def calendar_from_record(record: SlaCalendarRecord) -> BusinessCalendar:
    """The stored calendar as the shared `BusinessCalendar` (validated)."""
    try:
        hours = {
            int(day): tuple(Interval(_clock_time(a), _clock_time(b)) for a, b in spans)
            for day, spans in record.hours.items()
        }
        calendar = BusinessCalendar(
            name=record.name,
            timezone=record.timezone,
            hours=hours,
            holidays=frozenset(date.fromisoformat(d) for d in record.holidays),
            yearly_holidays=frozenset((int(md[:2]), int(md[3:5])) for md in record.yearly_holidays),
        )
    except (ValueError, TypeError) as err:
        raise InvalidCalendar(f"calendar {record.name!r}: {err}") from err
    validate_calendar(calendar)
    return calendar


def _clock_time(text: str) -> time:
    return time.max if text == "24:00" else time.fromisoformat(text)


def _seconds(value: timedelta | None) -> int | None:
    return None if value is None else int(value.total_seconds())


def _delta(value: int | None) -> timedelta | None:
    return None if value is None else timedelta(seconds=value)


class ServiceLevels:
    """Policies and ticket clocks inside the caller's transaction."""

    def __init__(
        self,
        session: AsyncSession,
        clock: Clock = utc_now,
        escalations: Escalations | None = None,
    ) -> None:
        self.session = session
        self.clock = clock
        self.escalations = escalations

    # -- configuration -------------------------------------------------------------------------

    async def add_calendar(
        self,
        name: str,
        *,
        timezone: str,
        hours: Mapping[int, Sequence[tuple[str, str]]],
        holidays: Sequence[date] = (),
        yearly_holidays: Sequence[tuple[int, int]] = (),
    ) -> SlaCalendarRecord:
        """Store a calendar; refused (`InvalidCalendar`) when it could never measure time."""
        record = SlaCalendarRecord(
            name=name,
            timezone=timezone,
            hours={str(day): [list(span) for span in spans] for day, spans in hours.items()},
            holidays=[d.isoformat() for d in holidays],
            yearly_holidays=[f"{m:02d}-{d:02d}" for m, d in yearly_holidays],
            created_at=self.clock(),
        )
        calendar_from_record(record)
        self.session.add(record)
        await self.session.flush()
        return record

    async def add_policy(
        self, policy: SlaPolicy, *, calendar: SlaCalendarRecord | None = None
    ) -> SlaPolicyRecord:
        if policy.first_response is None and policy.resolution is None:
            raise InvalidPolicy(
                f"policy {policy.name!r} needs a first-response or resolution target"
            )
        record = SlaPolicyRecord(
            name=policy.name,
            priority=policy.priority,
            channel=policy.channel,
            calendar_id=None if calendar is None else calendar.id,
            first_response_s=_seconds(policy.first_response),
            next_response_s=_seconds(policy.next_response),
            resolution_s=_seconds(policy.resolution),
            phone_answer_s=_seconds(policy.phone_answer),
            active=True,
            created_at=self.clock(),
        )
        self.session.add(record)
        await self.session.flush()
        return record

    async def policies(self) -> list[tuple[SlaPolicyRecord, SlaPolicy]]:
        query = select(SlaPolicyRecord).where(SlaPolicyRecord.active.is_(True))
        out = []
        for record in (await self.session.execute(query.order_by(SlaPolicyRecord.id))).scalars():
            out.append((record, await self._policy(record)))
        return out

    async def _policy(self, record: SlaPolicyRecord) -> SlaPolicy:
        calendar = None
        if record.calendar_id is not None:
            stored = await self.session.get_one(SlaCalendarRecord, record.calendar_id)
            calendar = calendar_from_record(stored)
        return SlaPolicy(
            name=record.name,
            first_response=_delta(record.first_response_s),
            next_response=_delta(record.next_response_s),
            resolution=_delta(record.resolution_s),
            priority=record.priority,
            channel=record.channel,
            calendar=calendar,
            phone_answer=_delta(record.phone_answer_s),
        )

    # -- a ticket's clock ----------------------------------------------------------------------

    async def state(self, ticket: Ticket) -> TicketSla | None:
        return await self.session.get(TicketSla, ticket.id)

    async def policy_for(self, ticket: Ticket) -> SlaPolicy | None:
        state = await self.state(ticket)
        if state is None or state.policy_id is None:
            return None
        return await self._policy(await self.session.get_one(SlaPolicyRecord, state.policy_id))

    async def start(self, ticket: Ticket) -> SlaPolicy | None:
        """Choose the ticket's policy and set its deadlines from its creation."""
        chosen = select_policy(
            [p for _, p in await self.policies()], ticket.priority, ticket.channel
        )
        records = {p.name: r for r, p in await self.policies()}
        now = self.clock()
        state = await self.state(ticket)
        if state is None:
            state = TicketSla(ticket_id=ticket.id, paused_remaining={}, updated_at=now)
            self.session.add(state)
        state.policy_id = None if chosen is None else records[chosen.name].id
        state.updated_at = now
        if chosen is not None:
            deadlines = start_deadlines(chosen, ticket.created_at)
            ticket.first_response_due_at = deadlines.first_response
            ticket.resolution_due_at = deadlines.resolution
        self._audit(ticket, "sla.started", policy=None if chosen is None else chosen.name)
        await self.session.flush()
        return chosen

    async def message_added(self, ticket: Ticket, message: Message) -> None:
        """An agent's public reply meets the response deadlines; a customer's message sets the
        next-response deadline once the first response was given."""
        if message.internal:
            return
        policy = await self.policy_for(ticket)
        if message.author_kind == AuthorKind.AGENT and message.direction == Direction.OUTBOUND:
            if ticket.first_response_at is None:
                ticket.first_response_at = message.created_at
            if ticket.first_response_due_at is not None or ticket.next_response_due_at is not None:
                self._audit(ticket, "sla.responded", at=message.created_at.isoformat())
            ticket.next_response_due_at = None
        elif (
            message.author_kind == AuthorKind.CUSTOMER
            and ticket.first_response_at is not None
            and policy is not None
            and ticket.next_response_due_at is None
        ):
            ticket.next_response_due_at = next_response_due(policy, message.created_at)
            state = await self._state(ticket)
            state.next_response_breached_at = None
        await self.session.flush()

    async def status_changed(
        self, ticket: Ticket, previous: TicketStatus, *, actor: str = "system"
    ) -> None:
        """Call after a transition: entering a paused status keeps each open deadline's remaining
        working time, leaving it sets the deadlines again from now. (The repository keeps
        `sla_paused_at` and `sla_paused_seconds` itself.)"""
        now = self.clock()
        policy = await self.policy_for(ticket)
        entering = ticket.status in SLA_PAUSED_STATUSES and previous not in SLA_PAUSED_STATUSES
        leaving = previous in SLA_PAUSED_STATUSES and ticket.status not in SLA_PAUSED_STATUSES
        if entering:
            if policy is not None:
                state = await self._state(ticket)
                state.paused_remaining = remaining_at_pause(policy, _deadlines(ticket), now)
                state.updated_at = now
            self._audit(ticket, "sla.paused", actor=actor)
        elif leaving:
            if policy is not None:
                state = await self._state(ticket)
                resumed = deadlines_on_resume(policy, state.paused_remaining, now)
                if ticket.first_response_at is None:
                    ticket.first_response_due_at = resumed.first_response
                ticket.next_response_due_at = resumed.next_response
                if resumed.resolution is not None:
                    ticket.resolution_due_at = resumed.resolution
                state.paused_remaining = {}
                state.updated_at = now
            self._audit(ticket, "sla.resumed", actor=actor)
        if ticket.status in (TicketStatus.SOLVED, TicketStatus.CLOSED):
            ticket.next_response_due_at = None
        await self.session.flush()

    async def check_breaches(self) -> list[BreachDetected]:
        """Mark every running deadline that has passed, once; returns what was newly breached."""
        now = self.clock()
        query = select(Ticket).where(
            Ticket.status.in_(sorted(ACTIVE_STATUSES - SLA_PAUSED_STATUSES)),
            Ticket.merged_into_id.is_(None),
            Ticket.sla_paused_at.is_(None),
            or_(
                Ticket.first_response_due_at <= now,
                Ticket.next_response_due_at <= now,
                Ticket.resolution_due_at <= now,
            ),
        )
        found: list[BreachDetected] = []
        for ticket in (await self.session.execute(query.order_by(Ticket.id))).scalars():
            state = await self._state(ticket)
            already = [t for t in Target if getattr(state, f"{t}_breached_at") is not None]
            for breach in breaches(_deadlines(ticket), now, already):
                setattr(state, f"{breach.target}_breached_at", now)
                found.append(_detected(ticket, breach))
                self._audit(
                    ticket, "sla.breached", target=str(breach.target), due=breach.due_at.isoformat()
                )
            state.updated_at = now
        await self.session.flush()
        return found

    async def escalate(self, ticket: Ticket, *, actor: str, skill: str, reason: str = "") -> Ticket:
        """Raise the ticket to tier 2 with `skill` and hand it back to the ACD's queue."""
        if ticket.merged_into_id is not None:
            raise TicketsError(f"ticket {ticket.number} was merged; escalate the surviving one")
        if not skill.strip():
            raise InvalidPolicy("escalation needs the tier-2 skill")
        now = self.clock()
        previous = {"tier": ticket.tier, "skills": list(ticket.skills), "assignee": ticket.assignee}
        ticket.tier = TIER2
        ticket.skills = sorted({*ticket.skills, skill})
        ticket.assignee = None
        ticket.updated_at = now
        state = await self._state(ticket)
        state.escalated_at = now
        state.updated_at = now
        self._audit(
            ticket,
            "ticket.escalated",
            actor=actor,
            reason=reason,
            skill=skill,
            before=previous,
            requeued=self.escalations is not None,
        )
        await self.session.flush()
        if self.escalations is not None:
            await self.escalations.requeue(
                ticket_id=ticket.id,
                number=ticket.number,
                queue=ticket.queue,
                skills=list(ticket.skills),
                priority=str(ticket.priority),
            )
        return ticket

    async def call_recorded(self, ticket: Ticket, call: CallRecord) -> TicketSla:
        """The phone service level of the ticket's latest call: answer time and abandon."""
        policy = await self.policy_for(ticket)
        service = phone_service(
            policy,
            queue_wait_s=call.queue_wait_s,
            answered=call.answered_at is not None or call.disposition == Disposition.ANSWERED,
            abandoned=call.disposition == Disposition.ABANDONED,
        )
        state = await self._state(ticket)
        state.phone_answer_s = service.answer_s
        state.phone_abandoned = service.abandoned
        state.phone_within_target = service.within_target
        state.updated_at = self.clock()
        self._audit(
            ticket,
            "sla.phone_recorded",
            call_id=call.call_id,
            answer_s=service.answer_s,
            abandoned=service.abandoned,
            within_target=service.within_target,
        )
        await self.session.flush()
        return state

    async def _state(self, ticket: Ticket) -> TicketSla:
        state = await self.state(ticket)
        if state is None:
            state = TicketSla(ticket_id=ticket.id, paused_remaining={}, updated_at=self.clock())
            self.session.add(state)
            await self.session.flush()
        return state

    def _audit(self, ticket: Ticket, action: str, *, actor: str = "system", **data: Any) -> None:
        record_audit(
            self.session,
            at=self.clock(),
            actor=actor,
            action=action,
            ticket_id=ticket.id,
            data=data,
        )


def _deadlines(ticket: Ticket) -> Deadlines:
    return Deadlines(
        first_response=ticket.first_response_due_at if ticket.first_response_at is None else None,
        next_response=ticket.next_response_due_at,
        resolution=ticket.resolution_due_at if ticket.solved_at is None else None,
    )


def _detected(ticket: Ticket, breach: Breach) -> BreachDetected:
    return BreachDetected(ticket.id, ticket.number, breach.target, breach.due_at)
