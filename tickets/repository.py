"""Tickets on an `AsyncSession`: numbers, status flow, messages, calls, links, merge, split, audit.

The repository never commits: the caller owns the transaction (`async with sessions.begin()`),
so a service can change a ticket, its messages and its history atomically. Every change writes
an `AuditEvent` in the same transaction.

Human numbers are `YYYY-NNNNNN`, one sequence per year, drawn from `ticket_counters` with a
single `INSERT .. ON CONFLICT DO UPDATE .. RETURNING` (PostgreSQL and SQLite >= 3.35 both have
it). On PostgreSQL the counter row stays locked until the drawing transaction ends, so two
sessions can never draw the same number and a rolled-back ticket gives its number back.

The status flow is the table `TRANSITIONS` (as RT's lifecycles): `closed` is final, `solved`
can only be reopened or closed, and a merged ticket accepts no changes at all.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import func, or_, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession

from tickets.errors import (
    InvalidLink,
    InvalidMerge,
    InvalidSplit,
    InvalidTransition,
    TicketClosed,
    TicketMerged,
    TicketNotFound,
)
from tickets.models import (
    Attachment,
    AuditEvent,
    AuthorKind,
    CallRecord,
    Channel,
    Direction,
    LinkKind,
    Message,
    Priority,
    Ticket,
    TicketCounter,
    TicketLink,
    TicketStatus,
    TicketTag,
)

Clock = Callable[[], datetime]

S = TicketStatus
TRANSITIONS: Mapping[TicketStatus, frozenset[TicketStatus]] = {
    S.NEW: frozenset({S.OPEN, S.PENDING, S.ON_HOLD, S.SOLVED, S.CLOSED}),
    S.OPEN: frozenset({S.PENDING, S.ON_HOLD, S.SOLVED, S.CLOSED}),
    S.PENDING: frozenset({S.OPEN, S.ON_HOLD, S.SOLVED, S.CLOSED}),
    S.ON_HOLD: frozenset({S.OPEN, S.PENDING, S.SOLVED, S.CLOSED}),
    S.SOLVED: frozenset({S.OPEN, S.CLOSED}),
    S.CLOSED: frozenset(),
}
ACTIVE_STATUSES = frozenset({S.NEW, S.OPEN, S.PENDING, S.ON_HOLD})
# a status in which the service-level clock does not run (waiting on the customer)
SLA_PAUSED_STATUSES = frozenset({S.PENDING})

_NUMBER = re.compile(r"^#?\s*(\d{4})-?(\d{1,9})$")


def utc_now() -> datetime:
    return datetime.now(UTC)


def format_number(year: int, seq: int) -> str:
    """The human ticket number: `2026-000042`."""
    return f"{year:04d}-{seq:06d}"


def parse_number(text: str) -> tuple[int, int] | None:
    """`2026-000042`, `#2026-42` or DTMF `2026000042` -> (2026, 42); None if it is not one."""
    match = _NUMBER.match(text.strip())
    if match is None:
        return None
    year, seq = int(match.group(1)), int(match.group(2))
    return (year, seq) if seq > 0 else None


def check_transition(current: TicketStatus, target: TicketStatus) -> None:
    """Raise `InvalidTransition` unless the flow allows `current` -> `target`."""
    if target not in TRANSITIONS[current]:
        allowed = ", ".join(sorted(TRANSITIONS[current])) or "nothing (final)"
        raise InvalidTransition(f"a {current} ticket cannot become {target}; allowed: {allowed}")


@dataclass(frozen=True, slots=True)
class AttachmentMeta:
    """What the channel knows about an attached file; the bytes are stored elsewhere."""

    filename: str
    content_type: str
    size: int
    sha256: str = ""
    storage_url: str = ""
    inline: bool = False


def record_audit(
    session: AsyncSession,
    *,
    at: datetime,
    actor: str,
    action: str,
    ticket_id: int | None = None,
    customer_id: int | None = None,
    call_record_id: int | None = None,
    data: Mapping[str, Any] | None = None,
) -> AuditEvent:
    """Append one history entry (flushed with the rest of the transaction)."""
    event = AuditEvent(
        at=at,
        actor=actor,
        action=action,
        ticket_id=ticket_id,
        customer_id=customer_id,
        call_record_id=call_record_id,
        data=dict(data or {}),
    )
    session.add(event)
    return event


class TicketRepository:
    """Reads and changes tickets inside the caller's transaction."""

    def __init__(self, session: AsyncSession, clock: Clock = utc_now) -> None:
        self.session = session
        self.clock = clock

    # -- reading -------------------------------------------------------------------------------

    async def get(self, ticket_id: int, *, for_update: bool = False) -> Ticket:
        query = select(Ticket).where(Ticket.id == ticket_id)
        if for_update:
            query = query.with_for_update()
        ticket = (await self.session.execute(query)).scalar_one_or_none()
        if ticket is None:
            raise TicketNotFound(f"no ticket with id {ticket_id}")
        return ticket

    async def by_number(self, number: str) -> Ticket | None:
        parsed = parse_number(number)
        if parsed is None:
            return None
        year, seq = parsed
        query = select(Ticket).where(Ticket.year == year, Ticket.seq == seq)
        return (await self.session.execute(query)).scalar_one_or_none()

    async def surviving(self, ticket: Ticket) -> Ticket:
        """The ticket itself, or the one it was (transitively) merged into."""
        seen = {ticket.id}
        while ticket.merged_into_id is not None:
            ticket = await self.get(ticket.merged_into_id)
            if ticket.id in seen:  # pragma: no cover - merge refuses cycles
                break
            seen.add(ticket.id)
        return ticket

    async def open_for_customer(
        self, customer_id: int, *, queue: str, since: datetime
    ) -> Ticket | None:
        """The customer's most recently active, not yet solved ticket in `queue` since `since`."""
        query = (
            select(Ticket)
            .where(
                Ticket.customer_id == customer_id,
                Ticket.status.in_(sorted(ACTIVE_STATUSES)),
                Ticket.merged_into_id.is_(None),
                Ticket.queue == queue,
                Ticket.last_activity_at >= since,
            )
            .order_by(Ticket.last_activity_at.desc(), Ticket.id.desc())
            .limit(1)
        )
        return (await self.session.execute(query)).scalar_one_or_none()

    async def tags(self, ticket: Ticket) -> list[str]:
        query = (
            select(TicketTag.tag).where(TicketTag.ticket_id == ticket.id).order_by(TicketTag.tag)
        )
        return list((await self.session.execute(query)).scalars())

    async def messages(self, ticket: Ticket, *, include_internal: bool = True) -> list[Message]:
        query = select(Message).where(Message.ticket_id == ticket.id)
        if not include_internal:
            query = query.where(Message.internal.is_(False))
        query = query.order_by(Message.created_at, Message.id)
        return list((await self.session.execute(query)).scalars())

    async def attachments(self, message: Message) -> list[Attachment]:
        query = select(Attachment).where(Attachment.message_id == message.id)
        return list((await self.session.execute(query.order_by(Attachment.id))).scalars())

    async def calls(self, ticket: Ticket) -> list[CallRecord]:
        query = select(CallRecord).where(CallRecord.ticket_id == ticket.id)
        return list((await self.session.execute(query.order_by(CallRecord.id))).scalars())

    async def links(self, ticket: Ticket) -> list[TicketLink]:
        """Links from or to this ticket."""
        query = select(TicketLink).where(
            or_(TicketLink.source_id == ticket.id, TicketLink.target_id == ticket.id)
        )
        return list((await self.session.execute(query.order_by(TicketLink.id))).scalars())

    async def history(self, ticket: Ticket) -> list[AuditEvent]:
        query = select(AuditEvent).where(AuditEvent.ticket_id == ticket.id)
        return list((await self.session.execute(query.order_by(AuditEvent.id))).scalars())

    # -- creating ------------------------------------------------------------------------------

    async def create(
        self,
        *,
        subject: str,
        channel: Channel,
        actor: str,
        customer_id: int | None = None,
        queue: str = "",
        skills: Sequence[str] = (),
        priority: Priority = Priority.NORMAL,
        tags: Iterable[str] = (),
    ) -> Ticket:
        now = self.clock()
        seq = await self._next_seq(now.year)
        ticket = Ticket(
            year=now.year,
            seq=seq,
            number=format_number(now.year, seq),
            subject=subject[:300],
            status=TicketStatus.NEW,
            priority=priority,
            channel=channel,
            customer_id=customer_id,
            queue=queue,
            skills=list(skills),
            tier=1,
            sla_paused_seconds=0.0,
            created_at=now,
            updated_at=now,
            last_activity_at=now,
        )
        self.session.add(ticket)
        await self.session.flush()
        for tag in sorted(set(tags)):
            self.session.add(TicketTag(ticket_id=ticket.id, tag=tag))
        self._audit(
            ticket,
            actor,
            "ticket.created",
            number=ticket.number,
            channel=channel,
            queue=queue,
            customer_id=customer_id,
        )
        return ticket

    async def _next_seq(self, year: int) -> int:
        dialect = self.session.get_bind().dialect.name
        insert = pg_insert if dialect == "postgresql" else sqlite_insert
        statement = (
            insert(TicketCounter)
            .values(year=year, last_seq=1)
            .on_conflict_do_update(
                index_elements=[TicketCounter.year],
                set_={"last_seq": TicketCounter.last_seq + 1},
            )
            .returning(TicketCounter.last_seq)
        )
        seq: int = (await self.session.execute(statement)).scalar_one()
        return seq

    # -- changing ------------------------------------------------------------------------------

    async def transition(self, ticket: Ticket, status: TicketStatus, *, actor: str) -> Ticket:
        """Move along the status flow; the same status again is a no-op."""
        self._check_not_merged(ticket)
        if ticket.status == status:
            return ticket
        check_transition(ticket.status, status)
        self._set_status(ticket, status, actor)
        return ticket

    def _set_status(self, ticket: Ticket, status: TicketStatus, actor: str) -> None:
        now = self.clock()
        previous = ticket.status
        if previous in SLA_PAUSED_STATUSES and ticket.sla_paused_at is not None:
            paused = (now - ticket.sla_paused_at).total_seconds()
            ticket.sla_paused_seconds = (ticket.sla_paused_seconds or 0.0) + max(paused, 0.0)
            ticket.sla_paused_at = None
        if status in SLA_PAUSED_STATUSES:
            ticket.sla_paused_at = now
        if status == TicketStatus.SOLVED:
            ticket.solved_at = now
        elif status == TicketStatus.CLOSED:
            ticket.closed_at = now
        elif previous == TicketStatus.SOLVED:
            ticket.solved_at = None
        ticket.status = status
        ticket.updated_at = now
        self._audit(ticket, actor, "ticket.status_changed", from_status=previous, to_status=status)

    async def assign(
        self, ticket: Ticket, assignee: str | None, *, actor: str, tier: int | None = None
    ) -> Ticket:
        self._check_changeable(ticket)
        before = {"assignee": ticket.assignee, "tier": ticket.tier}
        ticket.assignee = assignee
        if tier is not None:
            ticket.tier = tier
        ticket.updated_at = self.clock()
        self._audit(
            ticket, actor, "ticket.assigned", before=before, assignee=assignee, tier=ticket.tier
        )
        return ticket

    async def set_priority(self, ticket: Ticket, priority: Priority, *, actor: str) -> Ticket:
        self._check_changeable(ticket)
        previous = ticket.priority
        ticket.priority = priority
        ticket.updated_at = self.clock()
        self._audit(ticket, actor, "ticket.priority_changed", before=previous, after=priority)
        return ticket

    async def route(
        self, ticket: Ticket, *, queue: str, skills: Sequence[str], actor: str
    ) -> Ticket:
        self._check_changeable(ticket)
        before = {"queue": ticket.queue, "skills": list(ticket.skills)}
        ticket.queue = queue
        ticket.skills = list(skills)
        ticket.updated_at = self.clock()
        self._audit(ticket, actor, "ticket.routed", before=before, queue=queue, skills=list(skills))
        return ticket

    async def tag(
        self,
        ticket: Ticket,
        *,
        actor: str,
        add: Iterable[str] = (),
        remove: Iterable[str] = (),
    ) -> list[str]:
        self._check_changeable(ticket)
        current = set(await self.tags(ticket))
        added = sorted(set(add) - current)
        removed = sorted(set(remove) & current)
        for tag in added:
            self.session.add(TicketTag(ticket_id=ticket.id, tag=tag))
        for tag in removed:
            row = await self.session.get(TicketTag, (ticket.id, tag))
            if row is not None:
                await self.session.delete(row)
        if added or removed:
            ticket.updated_at = self.clock()
            self._audit(ticket, actor, "ticket.tagged", added=added, removed=removed)
        await self.session.flush()
        return sorted((current | set(added)) - set(removed))

    async def add_message(
        self,
        ticket: Ticket,
        *,
        channel: Channel,
        direction: Direction,
        author_kind: AuthorKind,
        body: str,
        actor: str,
        author: str = "",
        internal: bool = False,
        content_type: str = "text/plain",
        external_id: str | None = None,
        call_record_id: int | None = None,
        attachments: Sequence[AttachmentMeta] = (),
    ) -> Message:
        """Add a public reply or (`internal=True`) an internal note to the thread.

        A customer's public message reopens a pending or solved ticket; an agent's first public
        outbound reply is the first response. A closed ticket takes internal notes only.
        """
        self._check_not_merged(ticket)
        if ticket.status == TicketStatus.CLOSED and not internal:
            raise TicketClosed(f"ticket {ticket.number} is closed: open a follow-up instead")
        if internal:
            direction = Direction.INTERNAL if direction == Direction.OUTBOUND else direction
        now = self.clock()
        message = Message(
            ticket_id=ticket.id,
            channel=channel,
            direction=direction,
            internal=internal,
            author_kind=author_kind,
            author=author,
            body=body,
            content_type=content_type,
            external_id=external_id,
            call_record_id=call_record_id,
            created_at=now,
        )
        self.session.add(message)
        await self.session.flush()
        for meta in attachments:
            self.session.add(
                Attachment(
                    message_id=message.id,
                    filename=meta.filename,
                    content_type=meta.content_type,
                    size=meta.size,
                    sha256=meta.sha256,
                    storage_url=meta.storage_url,
                    inline=meta.inline,
                )
            )
        public = not internal
        from_customer = author_kind == AuthorKind.CUSTOMER and direction == Direction.INBOUND
        if (
            public
            and from_customer
            and ticket.status in (TicketStatus.PENDING, TicketStatus.SOLVED)
        ):
            self._set_status(ticket, TicketStatus.OPEN, "system")
        if (
            public
            and author_kind == AuthorKind.AGENT
            and direction == Direction.OUTBOUND
            and ticket.first_response_at is None
        ):
            ticket.first_response_at = now
        ticket.updated_at = now
        ticket.last_activity_at = now
        self._audit(
            ticket,
            actor,
            "message.added",
            message_id=message.id,
            channel=channel,
            direction=direction,
            internal=internal,
            attachments=len(attachments),
        )
        return message

    async def attach_call(self, call: CallRecord, ticket: Ticket, *, actor: str) -> None:
        """Put a stored call record on a ticket (a closed or merged ticket refuses it)."""
        self._check_not_merged(ticket)
        if ticket.status == TicketStatus.CLOSED:
            raise TicketClosed(f"ticket {ticket.number} is closed: open a follow-up instead")
        now = self.clock()
        call.ticket_id = ticket.id
        ticket.updated_at = now
        ticket.last_activity_at = now
        self._audit(ticket, actor, "call.attached", call_record_id=call.id, call_id=call.call_id)

    # -- relations -----------------------------------------------------------------------------

    async def link(
        self, source: Ticket, target: Ticket, *, actor: str, kind: LinkKind = LinkKind.RELATED
    ) -> TicketLink:
        """Relate two tickets (idempotent: the same link twice is one link)."""
        if source.id == target.id:
            raise InvalidLink(f"ticket {source.number} cannot be linked to itself")
        query = select(TicketLink).where(
            TicketLink.source_id == source.id,
            TicketLink.target_id == target.id,
            TicketLink.kind == kind,
        )
        existing = (await self.session.execute(query)).scalar_one_or_none()
        if existing is not None:
            return existing
        link = TicketLink(
            source_id=source.id,
            target_id=target.id,
            kind=kind,
            actor=actor,
            created_at=self.clock(),
        )
        self.session.add(link)
        await self.session.flush()
        data = {"kind": kind, "source": source.number, "target": target.number}
        self._audit(source, actor, "ticket.linked", **data)
        self._audit(target, actor, "ticket.linked", **data)
        return link

    async def merge(self, source: Ticket, target: Ticket, *, actor: str) -> Ticket:
        """Fold `source` into `target`: its messages, calls and tags move; it is closed."""
        if source.id == target.id:
            raise InvalidMerge(f"ticket {source.number} cannot be merged into itself")
        if source.merged_into_id is not None or target.merged_into_id is not None:
            raise InvalidMerge("a merged ticket cannot be merged again; use the surviving one")
        if target.status == TicketStatus.CLOSED:
            raise InvalidMerge(f"ticket {target.number} is closed and cannot take a merge")
        now = self.clock()
        moved_messages = await self._move(Message, source.id, target.id, None)
        moved_calls = await self._move(CallRecord, source.id, target.id, None)
        await self.tag(target, actor=actor, add=await self.tags(source))
        previous = source.status
        source.merged_into_id = target.id
        source.status = TicketStatus.CLOSED
        source.closed_at = now
        source.updated_at = now
        target.updated_at = now
        target.last_activity_at = max(target.last_activity_at, source.last_activity_at)
        await self.link(source, target, actor=actor, kind=LinkKind.MERGED_INTO)
        data = {
            "source": source.number,
            "target": target.number,
            "messages": moved_messages,
            "calls": moved_calls,
        }
        self._audit(source, actor, "ticket.merged", from_status=previous, **data)
        self._audit(target, actor, "ticket.merged", **data)
        await self.session.flush()
        return target

    async def split(
        self,
        ticket: Ticket,
        *,
        actor: str,
        call_record_ids: Iterable[int] = (),
        message_ids: Iterable[int] = (),
        subject: str | None = None,
    ) -> Ticket:
        """Move some calls (with their messages) and messages of `ticket` to a new ticket."""
        self._check_changeable(ticket)
        calls = {c.id for c in await self.calls(ticket)}
        messages = await self.messages(ticket)
        wanted_calls = set(call_record_ids)
        wanted_messages = set(message_ids) | {
            m.id for m in messages if m.call_record_id in wanted_calls
        }
        if not wanted_calls and not wanted_messages:
            raise InvalidSplit("choose at least one call or message to split off")
        if not wanted_calls <= calls or not wanted_messages <= {m.id for m in messages}:
            raise InvalidSplit(f"only calls and messages of ticket {ticket.number} can be split")
        if wanted_calls == calls and wanted_messages == {m.id for m in messages}:
            raise InvalidSplit("splitting off everything would leave an empty ticket")
        new = await self.create(
            subject=subject or f"Split from {ticket.number}: {ticket.subject}",
            channel=ticket.channel,
            actor=actor,
            customer_id=ticket.customer_id,
            queue=ticket.queue,
            skills=ticket.skills,
            priority=ticket.priority,
        )
        moved_calls = await self._move(CallRecord, ticket.id, new.id, wanted_calls)
        moved_messages = await self._move(Message, ticket.id, new.id, wanted_messages)
        await self.link(new, ticket, actor=actor, kind=LinkKind.SPLIT_FROM)
        data = {
            "source": ticket.number,
            "new": new.number,
            "calls": moved_calls,
            "messages": moved_messages,
        }
        self._audit(ticket, actor, "ticket.split", **data)
        self._audit(new, actor, "ticket.split", **data)
        ticket.updated_at = self.clock()
        await self.session.flush()
        return new

    async def _move(
        self,
        model: type[Message] | type[CallRecord],
        from_id: int,
        to_id: int,
        ids: set[int] | None,
    ) -> list[int]:
        query = select(model.id).where(model.ticket_id == from_id)
        if ids is not None:
            query = query.where(model.id.in_(sorted(ids)))
        moved = sorted((await self.session.execute(query)).scalars())
        if moved:
            await self.session.execute(
                update(model)
                .where(model.id.in_(moved))
                .values(ticket_id=to_id)
                .execution_options(synchronize_session="fetch")
            )
        return moved

    async def count(self) -> int:
        return int((await self.session.execute(select(func.count(Ticket.id)))).scalar_one())

    # -- guards and history --------------------------------------------------------------------

    def _check_not_merged(self, ticket: Ticket) -> None:
        if ticket.merged_into_id is not None:
            raise TicketMerged(
                f"ticket {ticket.number} was merged into ticket id {ticket.merged_into_id}"
            )

    def _check_changeable(self, ticket: Ticket) -> None:
        self._check_not_merged(ticket)
        if ticket.status == TicketStatus.CLOSED:
            raise TicketClosed(f"ticket {ticket.number} is closed")

    def _audit(self, ticket: Ticket, actor: str, action: str, **data: Any) -> None:
        record_audit(
            self.session,
            at=self.clock(),
            actor=actor,
            action=action,
            ticket_id=ticket.id,
            customer_id=ticket.customer_id,
            call_record_id=data.get("call_record_id"),
            data={key: _jsonable(value) for key, value in data.items()},
        )


def _jsonable(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_jsonable(v) for v in value]
    return value
