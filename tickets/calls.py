"""Every call becomes a ticket or joins one: the service the ACD and IVR hand finished calls to.

Theory of operation. `record_call(event)` runs two transactions:

1. *store*: the call record is written (or, for a `call_id` seen before, updated with the new
   facts) and committed on its own, before any ticket decision. Whatever happens next, including
   an anonymous caller, a bad ticket number or a database failure in step 2, the call is kept;
   `ticket_unticketed()` finishes the calls step 2 left behind.
2. *ticket*: the caller's number (E.164, see `tickets.phone`) finds or creates the customer; then
   the first rule that applies picks the ticket:

   a. the caller named a ticket in the IVR (`named_ticket`) and it exists: the call joins it (or
      the ticket it was merged into). A closed ticket takes no calls: a new ticket is opened and
      linked to it. A caller who is not that ticket's customer is recorded as a *maybe* identity
      of the ticket's customer, for an agent to confirm.
   b. the same customer has an unsolved ticket in the same queue with activity within
      `CallPolicy.repeat_window`: the call joins it (a repeat caller).
   c. otherwise a new ticket is opened.

   The call is attached and an internal phone note summarising it is added to the thread. An
   agent who disagrees can `split_call()` it off to a ticket of its own.

Withheld numbers create no customer, so they never join by rule (b); they always get a ticket.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError, InterfaceError, OperationalError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from callcenter.logmask import mask_number
from tickets.customers import CustomerDirectory
from tickets.errors import DatabaseUnavailable, TicketNotFound
from tickets.models import (
    AuthorKind,
    CallRecord,
    Channel,
    Confidence,
    Customer,
    Direction,
    Disposition,
    IdentityKind,
    LinkKind,
    Priority,
    Ticket,
    TicketStatus,
)
from tickets.phone import DEFAULT_REGION, PhoneNumber, normalise
from tickets.repository import Clock, TicketRepository, record_audit, utc_now

log = logging.getLogger(__name__)


class CallOutcome(StrEnum):
    """Why the call ended up on its ticket."""

    NEW_TICKET = "new_ticket"
    NAMED_TICKET = "named_ticket"
    REPEAT_CALLER = "repeat_caller"
    ALREADY_TICKETED = "already_ticketed"


@dataclass(frozen=True, slots=True)
class CallPolicy:
    """How calls are matched to tickets."""

    repeat_window: timedelta = timedelta(hours=2)
    default_region: str = DEFAULT_REGION
    actor: str = "system:calls"


@dataclass(frozen=True, slots=True)
class CallEvent:
    """What the ACD/IVR knows about one call; send it again later with more facts (same call_id)."""

    call_id: str
    caller: str
    started_at: datetime
    caller_name: str = ""
    called: str = ""
    direction: Direction = Direction.INBOUND
    answered_at: datetime | None = None
    ended_at: datetime | None = None
    subject: str = ""
    queue: str = ""
    skills: tuple[str, ...] = ()
    priority: Priority = Priority.NORMAL
    ivr_path: tuple[Mapping[str, Any], ...] = ()
    named_ticket: str = ""
    queue_wait_s: float | None = None
    talk_s: float | None = None
    hold_s: float | None = None
    agent: str | None = None
    transfers: tuple[Mapping[str, Any], ...] = ()
    recording_url: str | None = None
    transcript_url: str | None = None
    disposition: Disposition = Disposition.IN_PROGRESS


@dataclass(frozen=True, slots=True)
class CallTicketed:
    """Where a call went."""

    call_record_id: int
    call_id: str
    ticket_id: int
    ticket_number: str
    outcome: CallOutcome
    customer_id: int | None
    caller: PhoneNumber
    note: str = ""


def ivr_path_json(events: Iterable[object]) -> tuple[dict[str, Any], ...]:
    """IVR path events (frozen dataclasses such as `ivr.domain.path.*`) as JSON-ready dicts."""
    out: list[dict[str, Any]] = []
    for event in events:
        if not dataclasses.is_dataclass(event) or isinstance(event, type):
            raise TypeError(f"not a path event: {event!r}")
        fields = {f.name: _plain(getattr(event, f.name)) for f in dataclasses.fields(event)}
        out.append({"event": type(event).__name__, **fields})
    return tuple(out)


def _plain(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, tuple | list):
        return [_plain(v) for v in value]
    if isinstance(value, str | int | float | bool) or value is None:
        return value
    return str(value)


class CallTickets:
    """Turns call events into tickets (see the module docstring for the rules)."""

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        policy: CallPolicy | None = None,
        clock: Clock = utc_now,
    ) -> None:
        self.sessions = sessions
        self.policy = policy or CallPolicy()
        self.clock = clock

    async def record_call(self, event: CallEvent) -> CallTicketed:
        """Store the call, then put it on a ticket.

        Raises `DatabaseUnavailable` when the call could not even be stored (the caller should
        keep the event and retry); after step 1 the call is safe whatever is raised.
        """
        caller = normalise(event.caller, self.policy.default_region)
        try:
            record_id, ticket_id = await self._store(event, caller)
        except (OSError, OperationalError, InterfaceError) as err:
            raise DatabaseUnavailable(f"call {event.call_id} not stored: {err}") from err
        if ticket_id is not None:
            async with self.sessions() as session:
                ticket = await TicketRepository(session).get(ticket_id)
                record = await session.get(CallRecord, record_id)
                customer_id = None if record is None else record.customer_id
            return CallTicketed(
                call_record_id=record_id,
                call_id=event.call_id,
                ticket_id=ticket.id,
                ticket_number=ticket.number,
                outcome=CallOutcome.ALREADY_TICKETED,
                customer_id=customer_id,
                caller=caller,
            )
        return await self._ticket(record_id, priority=event.priority)

    async def ticket_unticketed(self) -> list[CallTicketed]:
        """Ticket every stored call that has no ticket yet (after a failure in step 2)."""
        async with self.sessions() as session:
            query = select(CallRecord.id).where(CallRecord.ticket_id.is_(None))
            pending = list((await session.execute(query.order_by(CallRecord.id))).scalars())
        return [await self._ticket(record_id) for record_id in pending]

    async def split_call(self, call_id: str, *, actor: str, subject: str | None = None) -> Ticket:
        """Move a call (and its notes) from the ticket it joined to a new ticket of its own."""
        async with self.sessions.begin() as session:
            query = select(CallRecord).where(CallRecord.call_id == call_id)
            record = (await session.execute(query)).scalar_one_or_none()
            if record is None or record.ticket_id is None:
                raise TicketNotFound(f"call {call_id} is not on a ticket")
            repo = TicketRepository(session, self.clock)
            ticket = await repo.get(record.ticket_id, for_update=True)
            return await repo.split(
                ticket, actor=actor, call_record_ids=[record.id], subject=subject
            )

    # -- step 1: store -------------------------------------------------------------------------

    async def _store(self, event: CallEvent, caller: PhoneNumber) -> tuple[int, int | None]:
        """Write or update the call record; return its id and its ticket id (if any)."""
        for _attempt in range(2):
            try:
                async with self.sessions.begin() as session:
                    query = select(CallRecord).where(CallRecord.call_id == event.call_id)
                    record = (await session.execute(query)).scalar_one_or_none()
                    if record is None:
                        record = self._new_record(event, caller)
                        session.add(record)
                        await session.flush()
                        action = "call.recorded"
                    else:
                        _update_record(record, event)
                        action = "call.updated"
                    record_audit(
                        session,
                        at=self.clock(),
                        actor=self.policy.actor,
                        action=action,
                        ticket_id=record.ticket_id,
                        call_record_id=record.id,
                        data={"call_id": event.call_id, "disposition": record.disposition},
                    )
                    return record.id, record.ticket_id
            except IntegrityError:  # the same call_id stored concurrently: update that one
                continue
        raise RuntimeError(f"call {event.call_id} could not be stored")  # pragma: no cover

    def _new_record(self, event: CallEvent, caller: PhoneNumber) -> CallRecord:
        return CallRecord(
            call_id=event.call_id,
            direction=event.direction,
            caller_raw=caller.raw[:200],
            caller_e164=caller.e164,
            caller_kind=caller.kind,
            caller_extension=caller.extension[:16],
            caller_name=event.caller_name[:200],
            called=event.called[:64],
            started_at=event.started_at,
            answered_at=event.answered_at,
            ended_at=event.ended_at,
            ivr_path=[dict(step) for step in event.ivr_path],
            named_ticket=event.named_ticket.strip()[:32],
            subject=event.subject[:300],
            queue=event.queue,
            skills=list(event.skills),
            queue_wait_s=event.queue_wait_s,
            talk_s=event.talk_s,
            hold_s=event.hold_s,
            agent=event.agent,
            transfers=[dict(t) for t in event.transfers],
            recording_url=event.recording_url,
            transcript_url=event.transcript_url,
            disposition=event.disposition,
            created_at=self.clock(),
        )

    # -- step 2: ticket ------------------------------------------------------------------------

    async def _ticket(
        self, record_id: int, *, priority: Priority = Priority.NORMAL
    ) -> CallTicketed:
        actor = self.policy.actor
        async with self.sessions.begin() as session:
            record = await session.get(CallRecord, record_id, with_for_update=True)
            if record is None:  # pragma: no cover - step 1 committed it
                raise TicketNotFound(f"call record {record_id} vanished")
            caller = normalise(record.caller_raw, self.policy.default_region)
            repo = TicketRepository(session, self.clock)
            directory = CustomerDirectory(session, self.clock, self.policy.default_region)
            customer: Customer | None = None
            if caller.e164 is not None:
                found = await directory.find_or_create(
                    IdentityKind.PHONE,
                    caller.e164,
                    actor=actor,
                    display_name=record.caller_name or caller.e164,
                )
                customer = found.customer
                if not found.created:
                    # one caller's calls are ticketed one at a time (rule b sees the previous one)
                    lock = select(Customer).where(Customer.id == customer.id).with_for_update()
                    customer = (await session.execute(lock)).scalar_one()
            customer_id = None if customer is None else customer.id
            ticket, outcome, note, closed = await self._choose(repo, directory, record, customer)
            if ticket is None:
                ticket = await repo.create(
                    subject=record.subject or _subject(caller, record.queue),
                    channel=Channel.PHONE,
                    actor=actor,
                    customer_id=customer_id,
                    queue=record.queue,
                    skills=record.skills,
                    priority=priority,
                )
                outcome = CallOutcome.NEW_TICKET
                if closed is not None:
                    await repo.link(ticket, closed, actor=actor, kind=LinkKind.RELATED)
            await repo.add_message(
                ticket,
                channel=Channel.PHONE,
                direction=record.direction,
                author_kind=AuthorKind.SYSTEM,
                body=_summary(record, caller, outcome, note),
                actor=actor,
                internal=True,
                call_record_id=record.id,
            )
            # the call's own columns change last, so they go out in one UPDATE at commit
            record.customer_id = customer_id
            await repo.attach_call(record, ticket, actor=actor)
            result = CallTicketed(
                call_record_id=record.id,
                call_id=record.call_id,
                ticket_id=ticket.id,
                ticket_number=ticket.number,
                outcome=outcome,
                customer_id=customer_id,
                caller=caller,
                note=note,
            )
        log.info(
            "call %s from %s -> ticket %s (%s)",
            record.call_id,
            mask_number(caller.e164 or caller.kind),
            result.ticket_number,
            outcome,
        )
        return result

    async def _choose(
        self,
        repo: TicketRepository,
        directory: CustomerDirectory,
        record: CallRecord,
        customer: Customer | None,
    ) -> tuple[Ticket | None, CallOutcome, str, Ticket | None]:
        """(ticket to join or None, outcome, note, closed ticket the caller named)."""
        note = ""
        if record.named_ticket:
            named = await repo.by_number(record.named_ticket)
            if named is None:
                note = f"named ticket {record.named_ticket} not found"
            else:
                named = await repo.surviving(named)
                if named.status == TicketStatus.CLOSED:
                    return (
                        None,
                        CallOutcome.NEW_TICKET,
                        f"named ticket {named.number} closed",
                        named,
                    )
                await self._note_other_caller(directory, named, customer, record)
                return named, CallOutcome.NAMED_TICKET, note, None
        if customer is not None:
            since = self.clock() - self.policy.repeat_window
            recent = await repo.open_for_customer(customer.id, queue=record.queue, since=since)
            if recent is not None:
                return recent, CallOutcome.REPEAT_CALLER, note, None
        return None, CallOutcome.NEW_TICKET, note, None

    async def _note_other_caller(
        self,
        directory: CustomerDirectory,
        ticket: Ticket,
        customer: Customer | None,
        record: CallRecord,
    ) -> None:
        """A different number naming a customer's ticket may be that customer's other phone."""
        if ticket.customer_id is None or customer is None or customer.id == ticket.customer_id:
            return
        if record.caller_e164 is None:
            return
        owner = await directory.get(ticket.customer_id)
        await directory.add_identity(
            owner,
            IdentityKind.PHONE,
            record.caller_e164,
            actor=self.policy.actor,
            confidence=Confidence.MAYBE,
            source=f"named ticket {ticket.number} in the IVR",
        )


def _update_record(record: CallRecord, event: CallEvent) -> None:
    """Fold later facts about a call into its record; nothing already known is erased."""
    for name in ("answered_at", "ended_at", "queue_wait_s", "talk_s", "hold_s", "agent"):
        value = getattr(event, name)
        if value is not None:
            setattr(record, name, value)
    for name in ("recording_url", "transcript_url"):
        value = getattr(event, name)
        if value:
            setattr(record, name, value)
    if event.queue:
        record.queue = event.queue
    if event.skills:
        record.skills = list(event.skills)
    if event.subject:
        record.subject = event.subject[:300]
    if event.named_ticket and not record.named_ticket:
        record.named_ticket = event.named_ticket.strip()[:32]
    if event.ivr_path:
        record.ivr_path = [dict(step) for step in event.ivr_path]
    if event.transfers:
        record.transfers = [dict(t) for t in event.transfers]
    if event.disposition != Disposition.IN_PROGRESS:
        record.disposition = event.disposition


def _subject(caller: PhoneNumber, queue: str) -> str:
    who = caller.e164 if caller.e164 is not None else f"{caller.kind} caller"
    return f"Call from {who}" + (f" ({queue})" if queue else "")


def _summary(record: CallRecord, caller: PhoneNumber, outcome: CallOutcome, note: str) -> str:
    parts: list[str] = [f"{record.direction} call {record.call_id}"]
    parts.append(f"caller {caller.e164 or caller.raw or '-'} ({caller.kind})")
    if record.queue:
        parts.append(f"queue {record.queue}")
    if record.agent:
        parts.append(f"agent {record.agent}")
    parts.append(f"disposition {record.disposition}")
    parts.append(f"ticket rule {outcome}")
    if note:
        parts.append(note)
    return "; ".join(parts)
