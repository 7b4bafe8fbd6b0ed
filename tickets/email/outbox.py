"""Outbound mail on the records: threaded customer mail in a SQL outbox, sent with retries.

Theory of operation (a transactional outbox, as `tickets.webhooks` does for HTTP):

* Writing. :class:`CustomerMail` builds the whole message (`smtp_out.build_message`: our signed
  Message-ID, ``In-Reply-To`` the customer's latest mail, ``References`` the ticket's thread,
  ``Thread-Index``, the signed reply-to token) inside the caller's transaction, records its
  Message-ID as the ticket message's ``external_id`` (so the customer's answer threads back by
  ``In-Reply-To``/``References`` through `SqlHelpDesk.tickets_by_message_ids`) and adds one
  ``mail_outbox`` row holding the exact bytes. The reply and its mail commit together or not at
  all; a restart loses nothing. A ``dedup_key`` per purpose (``reply:<message id>``,
  ``offline-ack:<ticket id>``, ``survey:<ticket id>``) makes each mail exist once.
* Who gets mail. A public agent reply on a ticket of any channel but chat (a chat's replies go
  over the chat socket) is mailed to the ticket customer's *known* email address: the one that
  last wrote on the ticket, else the newest known one. A ``maybe`` address never gets mail (it
  may be somebody else). No address: nothing is queued and the reply stays on the ticket.
* Sending. :class:`OutboxSender` claims due rows (a short transaction that moves their next
  attempt past the SMTP timeout, a lease: ``FOR UPDATE SKIP LOCKED`` on PostgreSQL so nodes
  share the work), submits them to the relay outside any transaction and records the outcome.
  A temporary failure (4xx, connection refused, timeout) is retried after an exponential,
  capped, jittered back-off (`tickets.webhooks.backoff`); a permanent one (5xx) or the last
  attempt makes the row ``dead``: an internal note on the ticket names the address and the
  relay's answer, and one log line names the masked address. Delivery is at least once (a
  crash between the relay's 250 and the record re-sends the same Message-ID, which mail
  clients fold into one).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Protocol

from sqlalchemy import (
    JSON,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    event,
    select,
)
from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import Mapped, Session, mapped_column

from callcenter.logmask import mask_email
from tickets.customers import CustomerDirectory
from tickets.email import EmailDeliveryError
from tickets.email.smtp_out import (
    OutboundIdentity,
    OutboundKind,
    OutboundMessage,
    ThreadContext,
    build_message,
)
from tickets.email.sql_desk import email_number
from tickets.email.threading import ReplyTokenSigner
from tickets.errors import TicketsError
from tickets.models import (
    AuthorKind,
    Base,
    Channel,
    Confidence,
    CustomerIdentity,
    Direction,
    EnumText,
    IdentityKind,
    Message,
    Ticket,
)
from tickets.repository import Clock, TicketRepository, record_audit, utc_now
from tickets.webhooks import backoff

__all__ = [
    "CustomerMail",
    "MailOutboxEntry",
    "OutboxPolicy",
    "OutboxSender",
    "OutboxStatus",
    "RawMailSender",
    "customer_address",
    "thread_of",
]

log = logging.getLogger(__name__)

ACTOR = "system:email-out"
_MESSAGE_ID = re.compile(r"^[^\s<>@]+@[^\s<>@]+$")


class OutboxStatus(StrEnum):
    PENDING = "pending"
    SENT = "sent"
    DEAD = "dead"


class MailPurpose(StrEnum):
    AGENT_REPLY = "agent-reply"
    OFFLINE_ACK = "offline-ack"
    SURVEY = "survey"


class MailOutboxEntry(Base):
    """One outbound message waiting for (or done with) the relay: the exact bytes we send."""

    __tablename__ = "mail_outbox"
    __table_args__ = (Index("ix_mail_outbox_due", "status", "next_attempt_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    ticket_id: Mapped[int] = mapped_column(ForeignKey("tickets.id", ondelete="CASCADE"), index=True)
    ticket_message_id: Mapped[int | None] = mapped_column(
        ForeignKey("messages.id", ondelete="SET NULL")
    )
    purpose: Mapped[MailPurpose] = mapped_column(EnumText(MailPurpose))
    dedup_key: Mapped[str] = mapped_column(String(200), unique=True)
    message_id: Mapped[str] = mapped_column(String(500), unique=True)
    envelope_sender: Mapped[str] = mapped_column(String(320), default="")
    recipients: Mapped[list[str]] = mapped_column(JSON, default=list)
    raw: Mapped[bytes] = mapped_column(LargeBinary)
    status: Mapped[OutboxStatus] = mapped_column(EnumText(OutboxStatus))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime]
    last_error: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime]
    sent_at: Mapped[datetime | None]


# -- writing, inside the caller's transaction ---------------------------------------------------


class CustomerMail:
    """Builds threaded mail for tickets and queues it in the outbox (see the module docstring)."""

    def __init__(
        self,
        identity: OutboundIdentity,
        signer: ReplyTokenSigner,
        *,
        notify_customers: bool = True,
        clock: Clock = utc_now,
        wake: asyncio.Event | None = None,
    ) -> None:
        self.identity = identity
        self.signer = signer
        self.notify_customers = notify_customers
        self.clock = clock
        self.wake = wake or asyncio.Event()

    def queued(self) -> None:
        """Call after the transaction that queued mail committed: the sender looks at once."""
        self.wake.set()

    async def reply_recipient(self, session: AsyncSession, ticket: Ticket) -> str | None:
        """Who an agent's public reply on ``ticket`` is mailed to, or None (no mail)."""
        if not self.notify_customers or ticket.channel == Channel.CHAT:
            return None
        return await customer_address(session, ticket)

    async def agent_reply(
        self, session: AsyncSession, ticket: Ticket, message: Message, to: str
    ) -> MailOutboxEntry:
        """Queue ``message`` (a public agent reply, flushed) as a threaded mail to ``to``."""
        thread = await thread_of(session, ticket)
        built = build_message(
            self.identity,
            self.signer,
            thread,
            (to,),
            message.body,
            kind=OutboundKind.AGENT_REPLY,
            now=self.clock(),
        )
        return await self._queue(
            session, ticket, message, built, MailPurpose.AGENT_REPLY, f"reply:{message.id}"
        )

    async def offline_acknowledgement(
        self, session: AsyncSession, ticket: Ticket, *, to: str, name: str, text: str
    ) -> MailOutboxEntry | None:
        """Queue the automatic acknowledgement of an offline chat message (once per ticket).

        The acknowledgement is a public system message on the ticket, so the customer's answer to
        it threads back by References; it is auto-generated mail (RFC 3834, null reverse-path).
        """
        key = f"offline-ack:{ticket.id}"
        if await self._queued_before(session, key):
            return None
        address = CustomerDirectory(session, self.clock).normalise(IdentityKind.EMAIL, to)
        body = _acknowledgement(ticket.number, name, text)
        return await self._automatic(
            session, ticket, to=address, body=body, purpose=MailPurpose.OFFLINE_ACK, key=key
        )

    async def survey_invitation(
        self, session: AsyncSession, ticket: Ticket, *, link: str
    ) -> MailOutboxEntry | None:
        """Queue the satisfaction survey of a solved ticket (`tickets.surveys.SurveyMail`).

        Once per ticket, to the customer's known address (None: no address, or a chat ticket,
        whose customer rates the chat in the widget). Auto-generated mail threaded on the ticket;
        the ticket's copy names the link without its token (the token is the customer's alone).
        The sender is woken when the caller's transaction commits.
        """
        key = f"survey:{ticket.id}"
        if ticket.channel == Channel.CHAT or await self._queued_before(session, key):
            return None
        to = await customer_address(session, ticket)
        if to is None:
            return None
        entry = await self._automatic(
            session,
            ticket,
            to=to,
            body=_survey_invitation(ticket.number, link),
            kept=_survey_invitation(ticket.number, link.rpartition("/")[0] + "/…"),
            purpose=MailPurpose.SURVEY,
            key=key,
        )
        self._wake_after_commit(session)
        return entry

    def _wake_after_commit(self, session: AsyncSession) -> None:
        """Wake the sender once the caller's outermost transaction has committed. (SQLAlchemy
        emits ``after_commit`` for a released SAVEPOINT too: those are not the commit.)"""
        woken = False

        def committed(sync: Session) -> None:
            nonlocal woken
            if not woken and sync.get_nested_transaction() is None:
                woken = True
                self.queued()

        event.listen(session.sync_session, "after_commit", committed)

    async def _queued_before(self, session: AsyncSession, key: str) -> bool:
        found = select(MailOutboxEntry.id).where(MailOutboxEntry.dedup_key == key)
        return (await session.execute(found)).first() is not None

    async def _automatic(
        self,
        session: AsyncSession,
        ticket: Ticket,
        *,
        to: str,
        body: str,
        purpose: MailPurpose,
        key: str,
        kept: str | None = None,
    ) -> MailOutboxEntry:
        """Queue auto-generated mail ``body`` to ``to``, threaded on the ticket, with its public
        system message on the ticket (whose text is ``kept`` when it must differ from the mail)."""
        thread = await thread_of(session, ticket)
        built = build_message(self.identity, self.signer, thread, (to,), body, now=self.clock())
        message = await TicketRepository(session, self.clock).add_message(
            ticket,
            channel=Channel.EMAIL,
            direction=Direction.OUTBOUND,
            author_kind=AuthorKind.SYSTEM,
            body=body if kept is None else kept,
            actor=ACTOR,
            author=self.identity.address,
        )
        return await self._queue(session, ticket, message, built, purpose, key)

    async def _queue(
        self,
        session: AsyncSession,
        ticket: Ticket,
        message: Message,
        built: OutboundMessage,
        purpose: MailPurpose,
        key: str,
    ) -> MailOutboxEntry:
        now = self.clock()
        message.external_id = built.message_id
        entry = MailOutboxEntry(
            ticket_id=ticket.id,
            ticket_message_id=message.id,
            purpose=purpose,
            dedup_key=key,
            message_id=built.message_id,
            envelope_sender=built.envelope_sender,
            recipients=list(built.recipients),
            raw=built.message.as_bytes(),
            status=OutboxStatus.PENDING,
            attempts=0,
            next_attempt_at=now,
            last_error="",
            created_at=now,
        )
        session.add(entry)
        await session.flush()
        record_audit(
            session,
            at=now,
            actor=ACTOR,
            action="email.queued",
            ticket_id=ticket.id,
            customer_id=ticket.customer_id,
            data={
                "outbox": entry.id,
                "message": message.id,
                "message_id": built.message_id,
                "purpose": str(purpose),
                "to": list(built.recipients),
            },
        )
        return entry


async def customer_address(session: AsyncSession, ticket: Ticket) -> str | None:
    """The ticket customer's known address that last wrote on the ticket, else the newest one."""
    if ticket.customer_id is None:
        return None
    directory = CustomerDirectory(session)
    customer = await directory.surviving(await directory.get(ticket.customer_id))
    query = (
        select(CustomerIdentity.value)
        .where(
            CustomerIdentity.customer_id == customer.id,
            CustomerIdentity.kind == IdentityKind.EMAIL,
            CustomerIdentity.confidence == Confidence.KNOWN,
        )
        .order_by(CustomerIdentity.created_at.desc(), CustomerIdentity.id.desc())
    )
    known = list((await session.execute(query)).scalars())
    if not known:
        return None
    authors = (
        select(Message.author)
        .where(
            Message.ticket_id == ticket.id,
            Message.channel == Channel.EMAIL,
            Message.direction == Direction.INBOUND,
            Message.author_kind == AuthorKind.CUSTOMER,
        )
        .order_by(Message.created_at.desc(), Message.id.desc())
    )
    for author in (await session.execute(authors)).scalars():
        if author.lower() in known:
            return author.lower()
    return known[0]


async def thread_of(session: AsyncSession, ticket: Ticket) -> ThreadContext:
    """The ticket's mail thread: every stored Message-ID, oldest first, and the one to answer."""
    query = (
        select(Message.external_id, Message.direction, Message.internal)
        .where(
            Message.ticket_id == ticket.id,
            Message.channel == Channel.EMAIL,
            Message.external_id.is_not(None),
        )
        .order_by(Message.created_at, Message.id)
    )
    ids: list[str] = []
    parent: str | None = None
    for external_id, direction, internal in (await session.execute(query)).all():
        if external_id is None or not _MESSAGE_ID.match(external_id):
            continue  # "raw-…@no-message-id" and "<id>#<hash>" are ours, never on the wire
        ids.append(external_id)
        if direction == Direction.INBOUND and not internal:
            parent = external_id
    if parent is None and ids:
        parent = ids[-1]
    return ThreadContext(
        ticket_number=email_number(ticket),
        subject=ticket.subject,
        opened_at=ticket.created_at,
        parent_message_id=parent,
        references=tuple(ids),
    )


def _acknowledgement(number: str, name: str, text: str) -> str:
    quoted = "\n".join(f"> {line}" for line in text[:2000].splitlines()) or "> "
    greeting = f"Hello {' '.join(name.split())[:100]}," if name.strip() else "Hello,"
    return (
        f"{greeting}\n\nthank you for your message. Nobody could take the chat just then, so we"
        f" opened ticket {number} for it and will answer you by email.\n\n"
        f"Your message:\n{quoted}\n"
    )


def _survey_invitation(number: str, link: str) -> str:
    return (
        f"Hello,\n\nyour ticket {number} is solved. How did we do? Tell us on this page:\n\n"
        f"{link}\n\nYou can answer once. If the problem is not solved, just"
        " reply to this message and the ticket opens again.\n"
    )


# -- sending -----------------------------------------------------------------------------------


class RawMailSender(Protocol):
    """The relay port (`smtp_out.SmtpNotifier` implements it)."""

    async def send_bytes(
        self, message_id: str, sender: str, recipients: Sequence[str], raw: bytes
    ) -> None: ...


@dataclass(frozen=True, slots=True)
class OutboxPolicy:
    max_attempts: int = 8
    base_delay: float = 30.0
    max_delay: float = 3600.0
    # the longest one submission may take; a claimed batch of n rows is leased for (n + 1) x this
    send_timeout: float = 30.0
    batch: int = 20
    idle_poll: float = 5.0


@dataclass(frozen=True, slots=True)
class _Job:
    entry_id: int
    message_id: str
    sender: str
    recipients: tuple[str, ...]
    raw: bytes


class OutboxSender:
    """Sends due outbox rows; `run()` loops until cancelled, `send_due()` does one pass."""

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        relay: RawMailSender,
        policy: OutboxPolicy | None = None,
        *,
        clock: Clock = utc_now,
        wake: asyncio.Event | None = None,
    ) -> None:
        self.sessions = sessions
        self.relay = relay
        self.policy = policy or OutboxPolicy()
        self.clock = clock
        self.wake = wake or asyncio.Event()

    async def run(self) -> None:
        """Send until cancelled; a database outage is logged and the pass retried. The wake-up is
        cleared before each pass, so mail queued while a pass runs is looked at right after it."""
        while True:
            self.wake.clear()
            try:
                tried = await self.send_due()
            except (OSError, TimeoutError, OperationalError, InterfaceError) as err:
                # A cancel landing inside a database call can come out as the driver's error
                # (SQLAlchemy wraps it): the task still counts the request, so honour it.
                task = asyncio.current_task()
                if task is not None and task.cancelling():
                    raise asyncio.CancelledError from err
                log.warning("mail outbox pass failed (%s); retrying", err)
                tried = 0
            if tried == 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.wake.wait(), self.policy.idle_poll)

    async def send_due(self) -> int:
        """Try every due row once (one at a time: one relay connection); how many were tried."""
        jobs = await self._claim()
        for job in jobs:
            error: EmailDeliveryError | None = None
            try:
                async with asyncio.timeout(self.policy.send_timeout):
                    await self.relay.send_bytes(job.message_id, job.sender, job.recipients, job.raw)
            except EmailDeliveryError as err:
                error = err
            except TimeoutError:
                error = EmailDeliveryError(
                    f"the relay did not take {job.message_id} within {self.policy.send_timeout} s"
                )
            await self._record(job, error)
        return len(jobs)

    async def _claim(self) -> list[_Job]:
        now = self.clock()
        async with self.sessions.begin() as session:
            query = (
                select(MailOutboxEntry)
                .where(
                    MailOutboxEntry.status == OutboxStatus.PENDING,
                    MailOutboxEntry.next_attempt_at <= now,
                )
                .order_by(MailOutboxEntry.next_attempt_at, MailOutboxEntry.id)
                .limit(self.policy.batch)
            )
            if session.get_bind().dialect.name == "postgresql":
                query = query.with_for_update(skip_locked=True)
            entries = list((await session.execute(query)).scalars())
            # sent one after the other: the last row of the batch must still be ours when it goes
            lease = timedelta(seconds=self.policy.send_timeout * (len(entries) + 1))
            jobs = []
            for entry in entries:
                entry.next_attempt_at = now + lease
                jobs.append(
                    _Job(
                        entry.id,
                        entry.message_id,
                        entry.envelope_sender,
                        tuple(entry.recipients),
                        entry.raw,
                    )
                )
        return jobs

    async def _record(self, job: _Job, error: EmailDeliveryError | None) -> None:
        now = self.clock()
        async with self.sessions.begin() as session:
            entry = await session.get(MailOutboxEntry, job.entry_id)
            if entry is None:  # its ticket was deleted meanwhile
                return
            entry.attempts += 1
            if error is None:
                entry.status = OutboxStatus.SENT
                entry.sent_at = now
                entry.last_error = ""
                return
            entry.last_error = str(error)[:2000]
            if error.permanent or entry.attempts >= self.policy.max_attempts:
                entry.status = OutboxStatus.DEAD
                await self._dead(session, entry)
                return
            entry.next_attempt_at = now + backoff(
                entry.attempts, base=self.policy.base_delay, cap=self.policy.max_delay
            )
            log.info(
                "mail %s to %s not sent yet (try %d): %s",
                entry.message_id,
                ", ".join(mask_email(r) for r in entry.recipients),
                entry.attempts,
                error,
            )

    async def _dead(self, session: AsyncSession, entry: MailOutboxEntry) -> None:
        to = ", ".join(entry.recipients)
        log.warning(
            "mail %s to %s undeliverable after %d tries: %s",
            entry.message_id,
            ", ".join(mask_email(r) for r in entry.recipients),
            entry.attempts,
            entry.last_error,
        )
        repo = TicketRepository(session, self.clock)
        note = (
            f"The email to {to} could not be delivered ({entry.attempts} attempt(s)); the relay"
            f" said: {entry.last_error}\nThe customer has not received it: correct the address"
            " or reach them another way."
        )
        try:
            ticket = await repo.surviving(await repo.get(entry.ticket_id))
            async with session.begin_nested():
                await repo.add_message(
                    ticket,
                    channel=Channel.EMAIL,
                    direction=Direction.INTERNAL,
                    author_kind=AuthorKind.SYSTEM,
                    body=note,
                    actor=ACTOR,
                    internal=True,
                )
        except TicketsError as err:  # the row stays dead and visible; the note is a courtesy
            log.warning("no undeliverable note on ticket id %s: %s", entry.ticket_id, err)
        record_audit(
            session,
            at=self.clock(),
            actor=ACTOR,
            action="email.undeliverable",
            ticket_id=entry.ticket_id,
            data={"outbox": entry.id, "message_id": entry.message_id, "to": entry.recipients},
        )
