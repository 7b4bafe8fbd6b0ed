"""The email channel on the records: the SQL `TicketDirectory` and `InboundMailSink`.

Theory of operation (the threading rules are `tickets.email.threading`'s; the port contract is
`tickets.email.ports`'):

* Numbers. Threading speaks integers (``[#2026000042]``, reply tokens, signed Message-IDs); a
  ticket's human number ``2026-000042`` is the same digits (:func:`email_number`), and
  `tickets.repository.parse_number` reads them back.
* Reading. A Message-ID is looked up in ``messages.external_id`` (every message we store or
  send keeps its own id there); a ticket's participants are its customer's known addresses and
  the authors of its email messages; a merged ticket answers ``merged`` with its survivor.
* Writing, one transaction per message (all or nothing, so a failure is a ``451`` and the MTA
  retries). The raw bytes and every attachment and inline part go to the :class:`BlobStore`
  first (content-addressed, so a retry rewrites nothing); then, in the transaction: the
  sender's customer (identity kind email, found or created), the ticket the decision names (its
  survivor if merged; a new one linked to it if it closed meanwhile) or a new email ticket
  (linked to the finished ticket it follows up), and the message with its own Message-ID, its
  direction and one `Attachment` row per part plus ``original.eml`` (the raw source).
* Automated mail (`loops.classify`: auto-replies, bounces, lists, our own loop) is stored as an
  internal note and neither reopens a ticket nor moves its SLA. A message flagged for review is
  tagged ``email-needs-review``; one that could not be parsed at all is an internal note whose
  original is ``original.eml``: never lost.
* Idempotent per Message-ID: a message whose id is already stored with the same raw bytes (an
  MTA retrying after a lost ``250``, the same mail to two of our addresses) is recorded in the
  audit only. The same id on *different* bytes is kept as an internal note flagged
  ``message-id-reused``. On PostgreSQL a transaction-scoped advisory lock per Message-ID
  serialises concurrent deliveries of one message; SQLite's ``BEGIN IMMEDIATE`` already does.
* Hooks (`tickets.hooks.HelpDeskHooks`), in the same transaction: a new ticket starts its SLA
  clock and is checked for cross-channel duplicates; a customer's public message moves the
  response deadlines (and a reopen resumes the clock); a reply matched by references or a
  signed token links the sender's address to the ticket's customer; phone numbers in a new
  customer message's signature become suggestions.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from callcenter.logmask import mask_email
from tickets.customers import CustomerDirectory
from tickets.email.parse import ParseFlag
from tickets.email.ports import InboundMail
from tickets.email.threading import MatchedBy, ThreadAction, TicketState, TicketSummary
from tickets.errors import InvalidIdentity
from tickets.hooks import HelpDeskHooks
from tickets.models import (
    Attachment,
    AuthorKind,
    Channel,
    Confidence,
    CustomerIdentity,
    Direction,
    IdentityKind,
    LinkKind,
    Message,
    Ticket,
    TicketStatus,
)
from tickets.repository import (
    AttachmentMeta,
    Clock,
    TicketRepository,
    record_audit,
    utc_now,
)

__all__ = [
    "RAW_FILENAME",
    "REVIEW_TAG",
    "BlobStore",
    "FileBlobStore",
    "SqlHelpDesk",
    "StoredBlob",
    "email_number",
]

log = logging.getLogger(__name__)

RAW_FILENAME = "original.eml"
RAW_CONTENT_TYPE = "message/rfc822"
REVIEW_TAG = "email-needs-review"
AUTOMATED_TAG = "email-automated"
ACTOR = "system:email"
NO_SUBJECT = "(no subject)"


def email_number(ticket: Ticket) -> int:
    """The ticket's number as the email channel writes it: ``2026-000042`` -> ``2026000042``."""
    return int(f"{ticket.year:04d}{ticket.seq:06d}")


@dataclass(frozen=True, slots=True)
class StoredBlob:
    sha256: str
    url: str
    size: int


class BlobStore(Protocol):
    """Where message sources and attachment bytes live (the records keep their URL and hash)."""

    async def put(self, data: bytes) -> StoredBlob: ...


class FileBlobStore:
    """Content-addressed files under ``root`` (``ab/cd/<sha256>``), written atomically."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def path_for(self, sha256: str) -> Path:
        return self.root / sha256[:2] / sha256[2:4] / sha256

    async def put(self, data: bytes) -> StoredBlob:
        digest = hashlib.sha256(data).hexdigest()
        path = self.path_for(digest)
        await asyncio.to_thread(self._write, path, data)
        return StoredBlob(digest, path.resolve().as_uri(), len(data))

    @staticmethod
    def _write(path: Path, data: bytes) -> None:
        if path.exists() and path.stat().st_size == len(data):
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".part-")
        try:
            with os.fdopen(fd, "wb") as out:
                out.write(data)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    async def get(self, sha256: str) -> bytes:
        return await asyncio.to_thread(self.path_for(sha256).read_bytes)


def _state(ticket: Ticket) -> TicketState:
    if ticket.merged_into_id is not None:
        return TicketState.MERGED
    if ticket.status == TicketStatus.CLOSED:
        return TicketState.CLOSED
    if ticket.status == TicketStatus.SOLVED:
        return TicketState.SOLVED
    return TicketState.OPEN


class SqlHelpDesk:
    """`TicketDirectory` + `InboundMailSink` on the records (see the module docstring)."""

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        blobs: BlobStore,
        *,
        hooks: HelpDeskHooks | None = None,
        clock: Clock = utc_now,
    ) -> None:
        self.sessions = sessions
        self.blobs = blobs
        self.hooks = hooks
        self.clock = clock

    # -- TicketDirectory ------------------------------------------------------------------------

    async def tickets_by_message_ids(
        self, message_ids: Sequence[str]
    ) -> Mapping[str, TicketSummary]:
        async with self.sessions() as session:
            query = (
                select(Message.external_id, Message.ticket_id)
                .where(Message.external_id.in_(list(message_ids)))
                .order_by(Message.id)
            )
            rows = (await session.execute(query)).all()
            out: dict[str, TicketSummary] = {}
            for external_id, ticket_id in rows:
                if external_id is not None and external_id not in out:
                    ticket = await session.get_one(Ticket, ticket_id)
                    out[external_id] = await self._summary(session, ticket)
            return out

    async def tickets_by_numbers(self, numbers: Sequence[int]) -> Mapping[int, TicketSummary]:
        async with self.sessions() as session:
            out: dict[int, TicketSummary] = {}
            for number in numbers:
                ticket = await self._by_email_number(session, number)
                if ticket is not None:
                    out[number] = await self._summary(session, ticket)
            return out

    async def _by_email_number(self, session: AsyncSession, number: int) -> Ticket | None:
        return await TicketRepository(session, self.clock).by_number(str(number))

    async def _summary(self, session: AsyncSession, ticket: Ticket) -> TicketSummary:
        merged_into = None
        if ticket.merged_into_id is not None:
            merged_into = email_number(await session.get_one(Ticket, ticket.merged_into_id))
        return TicketSummary(
            number=email_number(ticket),
            state=_state(ticket),
            participants=await self._participants(session, ticket),
            solved_at=ticket.solved_at,
            merged_into=merged_into,
        )

    async def _participants(self, session: AsyncSession, ticket: Ticket) -> frozenset[str]:
        authors = select(Message.author).where(
            Message.ticket_id == ticket.id,
            Message.channel == Channel.EMAIL,
            Message.author_kind == AuthorKind.CUSTOMER,
        )
        found = {a.lower() for a in (await session.execute(authors)).scalars() if a}
        if ticket.customer_id is not None:
            known = select(CustomerIdentity.value).where(
                CustomerIdentity.customer_id == ticket.customer_id,
                CustomerIdentity.kind == IdentityKind.EMAIL,
                CustomerIdentity.confidence == Confidence.KNOWN,
            )
            found.update((await session.execute(known)).scalars())
        return frozenset(found)

    # -- InboundMailSink ------------------------------------------------------------------------

    async def accept(self, mail: InboundMail) -> None:
        raw_blob = await self.blobs.put(mail.raw)
        parts = [(part, await self.blobs.put(part.data)) for part in mail.message.attachments]
        external_id = mail.message.message_id or f"raw-{raw_blob.sha256[:40]}@no-message-id"
        metas = [
            AttachmentMeta(
                filename=(part.filename or _default_name(part.content_type, index))[:255],
                content_type=part.content_type[:100],
                size=blob.size,
                sha256=blob.sha256,
                storage_url=blob.url,
                inline=part.inline,
            )
            for index, (part, blob) in enumerate(parts, start=1)
        ]
        metas.append(
            AttachmentMeta(
                filename=RAW_FILENAME,
                content_type=RAW_CONTENT_TYPE,
                size=raw_blob.size,
                sha256=raw_blob.sha256,
                storage_url=raw_blob.url,
            )
        )
        async with self.sessions.begin() as session:
            await _lock_message_id(session, external_id)
            stored = await self._stored_with(session, external_id, raw_blob.sha256)
            if stored is not None:
                record_audit(
                    session,
                    at=self.clock(),
                    actor=ACTOR,
                    action="email.duplicate_delivery",
                    ticket_id=stored.ticket_id,
                    data={"message_id": external_id, "recipients": list(mail.recipients)},
                )
                log.info("mail %s already stored; delivery recorded only", external_id)
                return
            reused = await self._id_taken(session, external_id)
            if reused:
                external_id = f"{external_id}#{raw_blob.sha256[:16]}"
            await self._store(session, mail, external_id, metas, reused=reused)

    async def _stored_with(
        self, session: AsyncSession, external_id: str, raw_sha: str
    ) -> Message | None:
        query = (
            select(Message)
            .join(Attachment, Attachment.message_id == Message.id)
            .where(
                Message.external_id == external_id,
                Attachment.filename == RAW_FILENAME,
                Attachment.sha256 == raw_sha,
            )
            .limit(1)
        )
        return (await session.execute(query)).scalar_one_or_none()

    async def _id_taken(self, session: AsyncSession, external_id: str) -> bool:
        query = select(func.count(Message.id)).where(Message.external_id == external_id)
        return int((await session.execute(query)).scalar_one()) > 0

    async def _store(
        self,
        session: AsyncSession,
        mail: InboundMail,
        external_id: str,
        metas: list[AttachmentMeta],
        *,
        reused: bool,
    ) -> None:
        repo = TicketRepository(session, self.clock)
        message = mail.message
        decision = mail.thread
        automated = mail.loop.automated
        unparseable = ParseFlag.UNPARSEABLE in message.flags
        internal = automated or unparseable or reused
        notes = list(decision.notes)

        ticket: Ticket | None = None
        follows: Ticket | None = None
        if decision.action is not ThreadAction.NEW_TICKET and decision.ticket_number is not None:
            named = await self._by_email_number(session, decision.ticket_number)
            if named is not None:
                ticket = await repo.surviving(named)
                if ticket.status == TicketStatus.CLOSED and not internal:
                    notes.append(f"closed-meanwhile:{ticket.number}")
                    follows, ticket = ticket, None
        elif decision.linked_to is not None:
            follows = await self._by_email_number(session, decision.linked_to)
            if follows is not None:
                follows = await repo.surviving(follows)

        certain = decision.matched_by in (MatchedBy.REFERENCES, MatchedBy.REPLY_TOKEN)
        if ticket is not None and certain and mail.sender and self.hooks is not None:
            await self.hooks.reply_on_thread(session, ticket, mail.sender)

        created = ticket is None
        customer_id: int | None = None
        if created and mail.sender:
            directory = CustomerDirectory(session, self.clock)
            try:
                found = await directory.find_or_create(
                    IdentityKind.EMAIL,
                    mail.sender,
                    actor=ACTOR,
                    display_name=message.from_name or mail.sender,
                )
                customer_id = found.customer.id
            except InvalidIdentity:
                notes.append("sender-not-an-address")
        if ticket is None:
            tags = set()
            if mail.needs_review:
                tags.add(REVIEW_TAG)
            if automated:
                tags.add(AUTOMATED_TAG)
            ticket = await repo.create(
                subject=message.subject.strip() or NO_SUBJECT,
                channel=Channel.EMAIL,
                actor=ACTOR,
                customer_id=customer_id,
                tags=tags,
            )
            if follows is not None and follows.id != ticket.id:
                await repo.link(ticket, follows, actor=ACTOR, kind=LinkKind.RELATED)
        elif mail.needs_review:
            await repo.tag(ticket, actor=ACTOR, add=[REVIEW_TAG])

        previous = ticket.status
        body = message.text
        if unparseable:
            body = f"This message could not be parsed; its source is kept as {RAW_FILENAME}."
        if reused:
            notes.append("message-id-reused")
        stored = await repo.add_message(
            ticket,
            channel=Channel.EMAIL,
            direction=Direction.INBOUND,
            author_kind=AuthorKind.SYSTEM if automated else AuthorKind.CUSTOMER,
            author=(mail.sender or "")[:200],
            body=body,
            actor=ACTOR,
            internal=internal,
            external_id=external_id[:500],
            attachments=metas,
        )
        record_audit(
            session,
            at=self.clock(),
            actor=ACTOR,
            action="email.received",
            ticket_id=ticket.id,
            customer_id=ticket.customer_id,
            data={
                "message": stored.id,
                "message_id": external_id,
                "thread": str(decision.action),
                "matched_by": str(decision.matched_by),
                "notes": notes,
                "loop": str(mail.loop.kind),
                "loop_reasons": list(mail.loop.reasons),
                "flags": sorted(str(f) for f in message.flags),
                "recipients": list(mail.recipients),
            },
        )
        if self.hooks is not None:
            if created:
                await self.hooks.ticket_created(session, ticket)
            await self.hooks.status_changed(session, ticket, previous)
            if not internal:
                await self.hooks.message_added(session, ticket, stored)
                if created and ticket.customer_id is not None:
                    linker = self.hooks.linker(session)
                    customer = await linker.customers.get(ticket.customer_id)
                    await linker.email_body(customer, message.text)
        log.info(
            "mail %s from %s stored on ticket %s (%s%s)",
            external_id,
            mask_email(mail.sender) if mail.sender else "-",
            ticket.number,
            "new" if created else "existing",
            ", internal" if internal else "",
        )


async def _lock_message_id(session: AsyncSession, external_id: str) -> None:
    """PostgreSQL: one transaction at a time per Message-ID (SQLite serialises all writers)."""
    if session.get_bind().dialect.name != "postgresql":
        return
    key = int.from_bytes(hashlib.sha256(external_id.encode()).digest()[:8], "big", signed=True)
    await session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": key})


def _default_name(content_type: str, index: int) -> str:
    subtype = content_type.rpartition("/")[2] or "bin"
    return f"part-{index}.{subtype}"
