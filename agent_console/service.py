"""The web app's one service: help-desk reads and changes as JSON dicts, each with its webhooks.

Handlers resolve input, this module checks and acts inside one transaction, and every change
enqueues its webhook events in that same transaction (see `tickets.webhooks`), so a ticket
change and its notification are stored together or not at all.

The help desk's follow-up rules (`tickets.hooks.HelpDeskHooks`: SLA clocks, duplicates, the
email survey of a solved ticket) run in that transaction too, through one path: a new ticket
goes through `ticket_created`, every stored message through `message_stored`, every status
change through `status_changed`. Other web-app code that stores messages or changes a status
(the chat) calls these two as well.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from agent_console.errors import InvalidInput
from tickets.chat import ChatRecords
from tickets.customers import CustomerDirectory
from tickets.email.outbox import CustomerMail, MailOutboxEntry
from tickets.errors import CustomerNotFound, InvalidIdentity
from tickets.hooks import HelpDeskHooks
from tickets.models import (
    AuditEvent,
    AuthorKind,
    CallRecord,
    Channel,
    Customer,
    CustomerIdentity,
    Direction,
    IdentityKind,
    LinkKind,
    Message,
    Priority,
    Ticket,
    TicketLink,
    TicketStatus,
    TicketTag,
)
from tickets.repository import Clock, TicketRepository, utc_now
from tickets.surveys import ReportBy, SurveyResponse, Surveys
from tickets.webhooks import WebhookEvent, enqueue


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def ticket_json(ticket: Ticket, tags: Sequence[str] = ()) -> dict[str, Any]:
    return {
        "id": ticket.id,
        "number": ticket.number,
        "subject": ticket.subject,
        "status": str(ticket.status),
        "priority": str(ticket.priority),
        "channel": str(ticket.channel),
        "customer_id": ticket.customer_id,
        "queue": ticket.queue,
        "skills": list(ticket.skills),
        "assignee": ticket.assignee,
        "tier": ticket.tier,
        "merged_into_id": ticket.merged_into_id,
        "tags": list(tags),
        "created_at": _iso(ticket.created_at),
        "updated_at": _iso(ticket.updated_at),
        "sla": {
            "first_response_due_at": _iso(ticket.first_response_due_at),
            "first_response_at": _iso(ticket.first_response_at),
            "next_response_due_at": _iso(ticket.next_response_due_at),
            "resolution_due_at": _iso(ticket.resolution_due_at),
            "paused_at": _iso(ticket.sla_paused_at),
            "paused_seconds": ticket.sla_paused_seconds,
            "solved_at": _iso(ticket.solved_at),
        },
    }


def message_json(message: Message) -> dict[str, Any]:
    return {
        "id": message.id,
        "ticket_id": message.ticket_id,
        "channel": str(message.channel),
        "direction": str(message.direction),
        "internal": message.internal,
        "author_kind": str(message.author_kind),
        "author": message.author,
        "body": message.body,
        "content_type": message.content_type,
        "call_record_id": message.call_record_id,
        "created_at": _iso(message.created_at),
    }


def call_json(call: CallRecord) -> dict[str, Any]:
    return {
        "id": call.id,
        "call_id": call.call_id,
        "direction": str(call.direction),
        "caller_e164": call.caller_e164,
        "queue": call.queue,
        "agent": call.agent,
        "queue_wait_s": call.queue_wait_s,
        "talk_s": call.talk_s,
        "hold_s": call.hold_s,
        "disposition": str(call.disposition),
        "ivr_path": call.ivr_path,
        "recording_url": call.recording_url,
        "started_at": _iso(call.started_at),
        "ended_at": _iso(call.ended_at),
    }


def outbox_json(entry: MailOutboxEntry) -> dict[str, Any]:
    return {
        "id": entry.id,
        "message_id": entry.ticket_message_id,
        "to": list(entry.recipients),
        "purpose": str(entry.purpose),
        "status": str(entry.status),
        "attempts": entry.attempts,
        "last_error": entry.last_error,
        "sent_at": _iso(entry.sent_at),
    }


def survey_json(response: SurveyResponse) -> dict[str, Any]:
    return {
        "id": response.id,
        "source": str(response.source),
        "channel": str(response.channel),
        "score": response.score,
        "resolved": response.resolved,
        "comment": response.comment,
        "queue": response.queue,
        "agent": response.agent,
        "answered_at": _iso(response.answered_at),
    }


def link_json(link: TicketLink) -> dict[str, Any]:
    return {
        "source_id": link.source_id,
        "target_id": link.target_id,
        "kind": str(link.kind),
        "actor": link.actor,
        "created_at": _iso(link.created_at),
    }


def audit_json(event: AuditEvent) -> dict[str, Any]:
    return {"at": _iso(event.at), "actor": event.actor, "action": event.action, "data": event.data}


class HelpDesk:
    """Tickets and customers for the REST API and the chat channel."""

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        clock: Clock = utc_now,
        *,
        customer_mail: CustomerMail | None = None,
        hooks: HelpDeskHooks | None = None,
    ) -> None:
        self.sessions = sessions
        self.clock = clock
        self.customer_mail = customer_mail
        self.hooks = hooks or HelpDeskHooks(sessions, clock)

    def _repo(self, session: AsyncSession) -> TicketRepository:
        return TicketRepository(session, self.clock)

    async def _emit(
        self, session: AsyncSession, event: WebhookEvent, data: Mapping[str, Any]
    ) -> None:
        await enqueue(session, event, data, clock=self.clock)

    async def _ticket_out(self, session: AsyncSession, ticket: Ticket) -> dict[str, Any]:
        return ticket_json(ticket, await self._repo(session).tags(ticket))

    # -- follow-ups, in the caller's transaction -----------------------------------------------

    async def ticket_created(self, session: AsyncSession, ticket: Ticket) -> None:
        """A ticket made here: its SLA clock starts, the customer's duplicates are linked."""
        await self.hooks.ticket_created(session, ticket)

    async def message_stored(self, session: AsyncSession, ticket: Ticket, message: Message) -> None:
        """A message stored on ``ticket``: a public one moves the response deadlines (a reply
        by the customer may also have reopened the ticket: pass the status it had before to
        `status_changed`)."""
        if not message.internal:
            await self.hooks.message_added(session, ticket, message)

    async def status_changed(
        self, session: AsyncSession, ticket: Ticket, previous: TicketStatus
    ) -> None:
        """After a status change: the SLA clock pauses, resumes or stops; solved sends the
        survey mail (no-op when the status is still ``previous``)."""
        await self.hooks.status_changed(session, ticket, previous)

    # -- reading -------------------------------------------------------------------------------

    async def list_tickets(self, filters: Mapping[str, Any]) -> dict[str, Any]:
        limit = int(filters.get("limit", 25))
        offset = int(filters.get("offset", 0))
        query = select(Ticket)
        for name in ("status", "priority", "channel", "assignee", "customer_id", "queue"):
            if name in filters:
                query = query.where(getattr(Ticket, name) == filters[name])
        if "tag" in filters:
            query = query.where(
                Ticket.id.in_(select(TicketTag.ticket_id).where(TicketTag.tag == filters["tag"]))
            )
        if "q" in filters:
            needle = filters["q"].replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
            query = query.where(Ticket.subject.ilike(f"%{needle}%", escape="\\"))
        async with self.sessions() as session:
            total = (
                await session.execute(select(func.count()).select_from(query.subquery()))
            ).scalar_one()
            rows = (
                await session.execute(
                    query.order_by(Ticket.last_activity_at.desc(), Ticket.id.desc())
                    .limit(limit)
                    .offset(offset)
                )
            ).scalars()
            items = [await self._ticket_out(session, t) for t in rows]
        return {"items": items, "total": int(total), "limit": limit, "offset": offset}

    async def get_ticket(self, ticket_id: int) -> dict[str, Any]:
        async with self.sessions() as session:
            repo = self._repo(session)
            ticket = await repo.get(ticket_id)
            out = await self._ticket_out(session, ticket)
            out["messages"] = [message_json(m) for m in await repo.messages(ticket)]
            out["calls"] = [call_json(c) for c in await repo.calls(ticket)]
            out["links"] = [link_json(link) for link in await repo.links(ticket)]
            out["history"] = [audit_json(e) for e in await repo.history(ticket)]
            out["mail"] = [outbox_json(e) for e in await self._outbox(session, ticket)]
            out["chats"] = [
                {"id": c.id, "status": str(c.status), "agent": c.agent, "rating": c.rating}
                for c in await ChatRecords(session, self.clock).for_ticket(ticket.id)
            ]
            out["surveys"] = [
                survey_json(r) for r in await Surveys(session, self.clock).for_ticket(ticket)
            ]
        return out

    async def csat_report(
        self, by: ReportBy, *, since: datetime, until: datetime
    ) -> dict[str, Any]:
        """Survey answers in [since, until) per ``by`` (`tickets.surveys.Surveys.csat`)."""
        async with self.sessions() as session:
            rows = await Surveys(session, self.clock).csat(by, since=since, until=until)
        return {
            "by": str(by),
            "since": since.isoformat(),
            "until": until.isoformat(),
            "rows": [
                {
                    "key": r.key,
                    "responses": r.responses,
                    "scored": r.scored,
                    "satisfied": r.satisfied,
                    "average": r.average,
                    "csat": r.csat,
                }
                for r in rows
            ],
        }

    async def _outbox(self, session: AsyncSession, ticket: Ticket) -> list[MailOutboxEntry]:
        query = select(MailOutboxEntry).where(MailOutboxEntry.ticket_id == ticket.id)
        return list((await session.execute(query.order_by(MailOutboxEntry.id))).scalars())

    async def get_customer(self, customer_id: int) -> dict[str, Any]:
        async with self.sessions() as session:
            directory = CustomerDirectory(session, self.clock)
            customer = await directory.surviving(await directory.get(customer_id))
            return await self._customer_out(session, directory, customer)

    async def _customer_out(
        self, session: AsyncSession, directory: CustomerDirectory, customer: Customer
    ) -> dict[str, Any]:
        identities = await directory.identities(customer)
        tickets = (
            await session.execute(
                select(Ticket)
                .where(Ticket.customer_id == customer.id)
                .order_by(Ticket.last_activity_at.desc(), Ticket.id.desc())
                .limit(200)
            )
        ).scalars()
        return {
            "id": customer.id,
            "display_name": customer.display_name,
            "merged_into_id": customer.merged_into_id,
            "identities": [_identity_json(i) for i in identities],
            "tickets": [ticket_json(t) for t in tickets],
        }

    async def search_customers(self, *, phone: str = "", email: str = "") -> dict[str, Any]:
        kind, value = (IdentityKind.PHONE, phone) if phone else (IdentityKind.EMAIL, email)
        async with self.sessions() as session:
            directory = CustomerDirectory(session, self.clock)
            try:
                directory.normalise(kind, value)
            except InvalidIdentity as err:
                raise InvalidInput(f"{kind}: {err}", field=str(kind)) from err
            found = await directory.match(kind, value)
            known = None
            if found.known is not None:
                known = await self._customer_out(session, directory, found.known)
            maybe = [await self._customer_out(session, directory, c) for c in found.maybe]
        return {"known": known, "maybe": maybe}

    # -- changing ------------------------------------------------------------------------------

    async def create_ticket(self, body: Mapping[str, Any], *, actor: str) -> dict[str, Any]:
        async with self.sessions.begin() as session:
            customer_id = body.get("customer_id")
            if customer_id is not None and await session.get(Customer, customer_id) is None:
                raise CustomerNotFound(f"no customer with id {customer_id}")
            repo = self._repo(session)
            ticket = await repo.create(
                subject=body["subject"],
                channel=Channel(body.get("channel", Channel.API)),
                actor=actor,
                customer_id=customer_id,
                queue=body.get("queue", ""),
                skills=body.get("skills", ()),
                priority=Priority(body.get("priority", Priority.NORMAL)),
                tags=body.get("tags", ()),
            )
            if body.get("body"):
                await repo.add_message(
                    ticket,
                    channel=ticket.channel,
                    direction=Direction.INBOUND,
                    author_kind=AuthorKind.AGENT,
                    body=body["body"],
                    actor=actor,
                    author=actor,
                    internal=True,
                )
            await self.ticket_created(session, ticket)
            out = await self._ticket_out(session, ticket)
            await self._emit(session, WebhookEvent.TICKET_CREATED, {"ticket": out})
        return out

    async def update_ticket(
        self, ticket_id: int, body: Mapping[str, Any], *, actor: str
    ) -> dict[str, Any]:
        async with self.sessions.begin() as session:
            repo = self._repo(session)
            ticket = await repo.get(ticket_id, for_update=True)
            changed = sorted(body)
            if "status" in body:
                previous = ticket.status
                await repo.transition(ticket, TicketStatus(body["status"]), actor=actor)
                await self.status_changed(session, ticket, previous)
            if "priority" in body:
                await repo.set_priority(ticket, Priority(body["priority"]), actor=actor)
            if "assignee" in body:
                await repo.assign(ticket, body["assignee"], actor=actor, tier=body.get("tier"))
            if "add_tags" in body or "remove_tags" in body:
                await repo.tag(
                    ticket,
                    actor=actor,
                    add=body.get("add_tags", ()),
                    remove=body.get("remove_tags", ()),
                )
            out = await self._ticket_out(session, ticket)
            await self._emit(
                session, WebhookEvent.TICKET_UPDATED, {"ticket": out, "changed": changed}
            )
        return out

    async def add_message(
        self, ticket_id: int, body: Mapping[str, Any], *, actor: str, author: str
    ) -> dict[str, Any]:
        """A reply or internal note; a public reply is also mailed to the customer when there is
        outbound mail and a known address (`tickets.email.outbox`), in the same transaction."""
        internal = body.get("kind", "reply") == "note"
        mail = self.customer_mail
        to: str | None = None
        async with self.sessions.begin() as session:
            repo = self._repo(session)
            ticket = await repo.get(ticket_id, for_update=True)
            if not internal and mail is not None:
                to = await mail.reply_recipient(session, ticket)
            message = await repo.add_message(
                ticket,
                channel=Channel.EMAIL if to is not None else ticket.channel,
                direction=Direction.OUTBOUND,
                author_kind=AuthorKind.AGENT,
                body=body["body"],
                actor=actor,
                author=author,
                internal=internal,
            )
            await self.message_stored(session, ticket, message)
            out = message_json(message)
            if mail is not None and to is not None:
                out["mail"] = outbox_json(await mail.agent_reply(session, ticket, message, to))
            await self._emit(
                session,
                WebhookEvent.MESSAGE_ADDED,
                {"ticket": await self._ticket_out(session, ticket), "message": out},
            )
        if mail is not None and to is not None:
            mail.queued()
        return out

    async def merge(self, ticket_id: int, into_id: int, *, actor: str) -> dict[str, Any]:
        async with self.sessions.begin() as session:
            repo = self._repo(session)
            source = await repo.get(ticket_id, for_update=True)
            target = await repo.get(into_id, for_update=True)
            previous = source.status
            await repo.merge(source, target, actor=actor)
            await self.status_changed(session, source, previous)
            out = await self._ticket_out(session, target)
            await self._emit(
                session,
                WebhookEvent.TICKET_UPDATED,
                {"ticket": out, "changed": ["merged"], "merged_id": source.id},
            )
        return out

    async def link(
        self, ticket_id: int, other_id: int, kind: LinkKind, *, actor: str
    ) -> dict[str, Any]:
        async with self.sessions.begin() as session:
            repo = self._repo(session)
            link = await repo.link(
                await repo.get(ticket_id), await repo.get(other_id), actor=actor, kind=kind
            )
            return link_json(link)

    async def split(self, ticket_id: int, body: Mapping[str, Any], *, actor: str) -> dict[str, Any]:
        async with self.sessions.begin() as session:
            repo = self._repo(session)
            ticket = await repo.get(ticket_id, for_update=True)
            new = await repo.split(
                ticket,
                actor=actor,
                call_record_ids=body.get("call_record_ids", ()),
                message_ids=body.get("message_ids", ()),
                subject=body.get("subject"),
            )
            await self.ticket_created(session, new)
            out = await self._ticket_out(session, new)
            await self._emit(
                session, WebhookEvent.TICKET_CREATED, {"ticket": out, "split_from": ticket.id}
            )
        return out


def _identity_json(identity: CustomerIdentity) -> dict[str, Any]:
    return {
        "kind": str(identity.kind),
        "value": identity.value,
        "confidence": str(identity.confidence),
        "source": identity.source,
    }
