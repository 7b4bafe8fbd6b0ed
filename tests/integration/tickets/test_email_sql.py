"""The email channel on the records: real SMTP sockets into the SQL desk, SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta
from email.message import EmailMessage
from pathlib import Path

import aiosmtplib
import pytest
from sqlalchemy import select

from tickets.customers import CustomerDirectory
from tickets.db import Database
from tickets.email.ports import InboundMail
from tickets.email.smtp_in import (
    InboundPipeline,
    InboundSmtpHandler,
    InboundSmtpServer,
    InboundSmtpSettings,
)
from tickets.email.sql_desk import (
    RAW_FILENAME,
    REVIEW_TAG,
    FileBlobStore,
    SqlHelpDesk,
    email_number,
)
from tickets.email.threading import ReplyTokenSigner
from tickets.hooks import HelpDeskHooks
from tickets.models import (
    Attachment,
    AuditEvent,
    AuthorKind,
    Channel,
    Confidence,
    CustomerIdentity,
    Direction,
    IdentityKind,
    LinkKind,
    Message,
    Ticket,
    TicketLink,
    TicketStatus,
)
from tickets.repository import TicketRepository
from tickets.sla import SlaPolicy
from tickets.sla_records import ServiceLevels

SIGNER = ReplyTokenSigner(b"sql-desk-test-secret-0123456789")
SUPPORT = "support@help.test"
LIMIT = 25 * 1024 * 1024


@dataclass
class World:
    db: Database
    desk: SqlHelpDesk
    server: InboundSmtpServer
    blobs: FileBlobStore


class FlakySink:
    """Stores through the desk, then fails once as if the 250 never reached the sender."""

    def __init__(self, desk: SqlHelpDesk) -> None:
        self.desk = desk
        self.fail_after_store = False

    async def accept(self, mail: InboundMail) -> None:
        await self.desk.accept(mail)
        if self.fail_after_store:
            self.fail_after_store = False
            raise ConnectionResetError("lost the connection after commit")


@pytest.fixture
async def sink_world(db: Database, tmp_path: Path) -> AsyncIterator[tuple[World, FlakySink]]:
    async with db.sessions.begin() as session:
        await ServiceLevels(session).add_policy(
            SlaPolicy("email", first_response=timedelta(hours=4), channel=Channel.EMAIL)
        )
    blobs = FileBlobStore(tmp_path / "mail")
    desk = SqlHelpDesk(db.sessions, blobs, hooks=HelpDeskHooks(db.sessions))
    sink = FlakySink(desk)
    pipeline = InboundPipeline(
        directory=desk,
        sink=sink,
        signer=SIGNER,
        loop_id="help.test",
        own_addresses=frozenset({SUPPORT}),
    )
    handler = InboundSmtpHandler(
        pipeline, max_message_bytes=LIMIT, accepted_domains=frozenset({"help.test"})
    )
    settings = InboundSmtpSettings(
        host="127.0.0.1", port=0, hostname="mx.help.test", max_message_bytes=LIMIT
    )
    async with InboundSmtpServer(handler, settings) as server:
        yield World(db, desk, server, blobs), sink


@pytest.fixture
def world(sink_world: tuple[World, FlakySink]) -> World:
    return sink_world[0]


def mail(
    subject: str = "Printer on fire",
    body: str = "Hello, the printer is on fire.",
    *,
    sender: str = "alice@example.org",
    message_id: str | None = None,
    in_reply_to: str | None = None,
    **headers: str,
) -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = f"Alice Example <{sender}>"
    msg["To"] = SUPPORT
    msg["Subject"] = subject
    if message_id is not None:
        msg["Message-ID"] = f"<{message_id}>"
    if in_reply_to is not None:
        msg["In-Reply-To"] = f"<{in_reply_to}>"
        msg["References"] = f"<{in_reply_to}>"
    for name, value in headers.items():
        msg[name.replace("_", "-")] = value
    msg.set_content(body)
    return msg


async def send(
    world: World, message: EmailMessage | bytes, sender: str = "alice@example.org"
) -> str:
    raw = message if isinstance(message, bytes) else message.as_bytes().replace(b"\n", b"\r\n")
    async with aiosmtplib.SMTP(
        hostname="127.0.0.1", port=world.server.port, timeout=60, start_tls=False
    ) as client:
        _, reply = await client.sendmail(sender, [SUPPORT], raw)
    return reply


async def tickets(db: Database) -> list[Ticket]:
    async with db.sessions() as session:
        return list((await session.execute(select(Ticket).order_by(Ticket.id))).scalars())


async def messages(db: Database, ticket: Ticket) -> list[Message]:
    async with db.sessions() as session:
        return await TicketRepository(session).messages(ticket)


async def attachments(db: Database, message: Message) -> list[Attachment]:
    async with db.sessions() as session:
        return await TicketRepository(session).attachments(message)


async def test_given_a_new_mail_with_parts_then_an_email_ticket_for_the_sender_with_every_part(
    world: World,
) -> None:
    msg = mail(message_id="first@example.org")
    msg.add_alternative('<p>Hello <img src="cid:pic@alice"></p>', subtype="html")
    html = msg.get_body(("html",))
    assert isinstance(html, EmailMessage)
    html.add_related(b"GIF89a-picture", maintype="image", subtype="gif", cid="<pic@alice>")
    msg.add_attachment(b"%PDF-1.7 report", maintype="application", subtype="pdf", filename="r.pdf")
    reply = await send(world, msg)
    assert "250" in reply or "OK" in reply

    (ticket,) = await tickets(world.db)
    assert (ticket.channel, ticket.subject, ticket.status) == (
        Channel.EMAIL,
        "Printer on fire",
        TicketStatus.NEW,
    )
    assert ticket.first_response_due_at == ticket.created_at + timedelta(hours=4)  # SLA started
    async with world.db.sessions() as session:
        match = await CustomerDirectory(session).match(IdentityKind.EMAIL, "ALICE@example.org")
    assert match.known is not None
    assert match.known.id == ticket.customer_id
    assert match.known.display_name == "Alice Example"
    (message,) = await messages(world.db, ticket)
    assert message.external_id == "first@example.org"
    assert (message.direction, message.author_kind, message.internal) == (
        Direction.INBOUND,
        AuthorKind.CUSTOMER,
        False,
    )
    assert message.body.strip() == "Hello, the printer is on fire."
    parts = {a.filename: a for a in await attachments(world.db, message)}
    assert set(parts) == {"r.pdf", "part-1.gif", RAW_FILENAME}
    assert parts["part-1.gif"].inline
    assert not parts["r.pdf"].inline
    assert await world.blobs.get(parts["r.pdf"].sha256) == b"%PDF-1.7 report"
    raw = await world.blobs.get(parts[RAW_FILENAME].sha256)
    assert b"Subject: Printer on fire" in raw


async def test_given_a_reply_to_our_stored_message_id_then_it_joins_the_ticket(
    world: World,
) -> None:
    await send(world, mail(message_id="q1@example.org"))
    await send(world, mail("Re: Printer on fire", "Still burning", in_reply_to="q1@example.org"))
    (ticket,) = await tickets(world.db)
    bodies = [m.body.strip() for m in await messages(world.db, ticket)]
    assert bodies == ["Hello, the printer is on fire.", "Still burning"]


async def test_given_a_reply_from_a_colleague_on_the_thread_then_the_address_is_linked(
    world: World,
) -> None:
    await send(world, mail(message_id="q2@example.org"))
    colleague = mail(
        "Re: Printer", "me too", sender="bob@example.org", in_reply_to="q2@example.org"
    )
    await send(world, colleague, sender="bob@example.org")
    (ticket,) = await tickets(world.db)
    async with world.db.sessions() as session:
        query = select(CustomerIdentity).where(CustomerIdentity.value == "bob@example.org")
        (identity,) = (await session.execute(query)).scalars()
    assert (identity.customer_id, identity.confidence) == (ticket.customer_id, Confidence.KNOWN)
    assert identity.source == f"thread:{ticket.number}"


async def test_given_an_mta_retry_after_451_then_the_message_is_stored_once(
    sink_world: tuple[World, FlakySink],
) -> None:
    world, sink = sink_world
    sink.fail_after_store = True
    with pytest.raises(aiosmtplib.SMTPDataError) as refused:
        await send(world, mail(message_id="retry@example.org"))
    assert refused.value.code == 451
    await send(world, mail(message_id="retry@example.org"))  # the MTA's retry, same bytes
    (ticket,) = await tickets(world.db)
    assert len(await messages(world.db, ticket)) == 1
    async with world.db.sessions() as session:
        query = select(AuditEvent).where(AuditEvent.action == "email.duplicate_delivery")
        assert len((await session.execute(query)).scalars().all()) == 1


async def test_given_a_reused_message_id_on_other_content_then_it_is_kept_as_a_flagged_note(
    world: World,
) -> None:
    await send(world, mail(message_id="same@example.org"))
    await send(world, mail("Other", "different text", message_id="same@example.org"))
    (ticket,) = await tickets(world.db)
    _first, second = await messages(world.db, ticket)
    assert second.internal
    assert second.body.strip() == "different text"
    assert second.external_id is not None
    assert second.external_id.startswith("same@example.org#")


async def test_given_a_30_mb_mail_then_552_and_nothing_stored(world: World) -> None:
    head = b"From: alice@example.org\r\nTo: support@help.test\r\nSubject: huge\r\n\r\n"
    raw = head + (b"x" * 998 + b"\r\n") * (30 * 1024 * 1024 // 1000)
    with pytest.raises(aiosmtplib.SMTPResponseException) as refused:
        await send(world, raw)  # declared SIZE: refused at MAIL FROM
    assert refused.value.code == 552
    async with aiosmtplib.SMTP(
        hostname="127.0.0.1", port=world.server.port, timeout=60, start_tls=False
    ) as client:
        await client.mail("alice@example.org")  # no SIZE declared: refused at the end of DATA
        await client.rcpt(SUPPORT)
        with pytest.raises(aiosmtplib.SMTPDataError) as at_data:
            await client.data(raw)
    assert at_data.value.code == 552
    assert await tickets(world.db) == []


async def test_given_a_mail_near_the_size_limit_then_it_is_stored_with_its_attachment(
    world: World,
) -> None:
    msg = mail("scan", "see attachment")
    msg.add_attachment(b"\x01" * (18 * 1024 * 1024), maintype="application", subtype="pdf")
    raw = msg.as_bytes().replace(b"\n", b"\r\n")
    assert LIMIT - 1024 * 1024 < len(raw) < LIMIT
    await send(world, raw)
    (ticket,) = await tickets(world.db)
    (message,) = await messages(world.db, ticket)
    sizes = {a.filename: a.size for a in await attachments(world.db, message)}
    assert sizes == {"part-1.pdf": 18 * 1024 * 1024, RAW_FILENAME: len(raw)}


async def test_given_odd_charsets_then_subject_and_body_are_decoded(world: World) -> None:
    raw = (
        b"From: =?iso-2022-jp?b?GyRCOzNFRBsoQg==?= <taro@example.jp>\r\n"
        b"To: support@help.test\r\n"
        b"Subject: =?shift_jis?b?g2WDWINn?=\r\n"
        b"MIME-Version: 1.0\r\n"
        b'Content-Type: text/plain; charset="iso-8859-1"\r\n'
        b"Content-Transfer-Encoding: 8bit\r\n\r\n"
        b"Gr\xfc\xdfe, caf\xe9 \x80 5\r\n"
    )
    await send(world, raw, sender="taro@example.jp")
    (ticket,) = await tickets(world.db)
    assert ticket.subject == "テスト"
    (message,) = await messages(world.db, ticket)
    assert message.body.strip() == "Grüße, café € 5"


async def test_given_a_forged_subject_tag_from_a_stranger_then_a_new_ticket_and_a_noted_refusal(
    world: World,
) -> None:
    await send(world, mail(message_id="own@example.org"))
    (ticket,) = await tickets(world.db)
    tag = f"[#{email_number(ticket)}]"
    await send(world, mail(f"Re: {tag} Printer", "I am alice, honest", sender="eve@evil.test"))
    await send(world, mail(f"Re: {tag} Printer", "any news?"))  # alice herself: accepted
    first, forged = await tickets(world.db)
    assert forged.subject.startswith("Re: [#")
    assert forged.customer_id != first.customer_id
    assert [m.body.strip() for m in await messages(world.db, first)] == [
        "Hello, the printer is on fire.",
        "any news?",
    ]
    async with world.db.sessions() as session:
        query = select(AuditEvent).where(
            AuditEvent.action == "email.received", AuditEvent.ticket_id == forged.id
        )
        (event,) = (await session.execute(query)).scalars()
    assert f"subject-tag-refused:{email_number(first)}" in event.data["notes"]


async def test_given_a_reply_to_a_merged_ticket_then_it_lands_on_the_survivor(
    world: World,
) -> None:
    await send(world, mail("First", message_id="m1@example.org"))
    await send(world, mail("Second", message_id="m2@example.org"))
    first, second = await tickets(world.db)
    async with world.db.sessions.begin() as session:
        repo = TicketRepository(session)
        await repo.merge(await repo.get(first.id), await repo.get(second.id), actor="agent:kim")
    await send(world, mail("Re: First", "reply to the old one", in_reply_to="m1@example.org"))
    assert len(await tickets(world.db)) == 2
    survivor = (await tickets(world.db))[1]
    assert "reply to the old one" in [m.body.strip() for m in await messages(world.db, survivor)]


async def test_given_a_reply_to_a_closed_ticket_then_a_new_linked_ticket(world: World) -> None:
    await send(world, mail(message_id="c1@example.org"))
    (old,) = await tickets(world.db)
    async with world.db.sessions.begin() as session:
        repo = TicketRepository(session)
        await repo.transition(await repo.get(old.id), TicketStatus.CLOSED, actor="agent:kim")
    await send(world, mail("Re: Printer on fire", "again!", in_reply_to="c1@example.org"))
    closed, follow_up = await tickets(world.db)
    assert closed.status == TicketStatus.CLOSED
    assert follow_up.status == TicketStatus.NEW
    async with world.db.sessions() as session:
        links = await TicketRepository(session).links(follow_up)
    assert [(x.source_id, x.target_id, x.kind) for x in links] == [
        (follow_up.id, closed.id, LinkKind.RELATED)
    ]


async def test_given_a_mail_loop_then_it_is_an_internal_note_and_no_customer_reply(
    world: World,
) -> None:
    await send(world, mail(message_id="l1@example.org"))
    (ticket,) = await tickets(world.db)
    async with world.db.sessions.begin() as session:
        repo = TicketRepository(session)
        await repo.transition(await repo.get(ticket.id), TicketStatus.SOLVED, actor="agent:kim")
    for n in range(3):  # an autoresponder answering our notifications
        auto = mail(
            "Auto: out of office",
            "I am away",
            message_id=f"ooo{n}@example.org",
            in_reply_to="l1@example.org",
            Auto_Submitted="auto-replied",
        )
        await send(world, auto)
    (ticket,) = await tickets(world.db)
    assert ticket.status == TicketStatus.SOLVED  # automated mail reopens nothing
    notes = (await messages(world.db, ticket))[1:]
    assert len(notes) == 3
    assert all(m.internal and m.author_kind == AuthorKind.SYSTEM for m in notes)


async def test_given_our_own_message_coming_back_then_it_is_recorded_as_a_loop(
    world: World,
) -> None:
    looped = mail(
        "Ticket received", "We got your mail", sender=SUPPORT, X_Callcenter_Loop="help.test"
    )
    await send(world, looped, sender=SUPPORT)
    (ticket,) = await tickets(world.db)
    (message,) = await messages(world.db, ticket)
    assert message.internal
    async with world.db.sessions() as session:
        assert "email-automated" in await TicketRepository(session).tags(ticket)


async def test_given_an_unparseable_message_then_it_is_kept_raw_and_flagged(world: World) -> None:
    raw = b"\x00\x01 this is not a mail at all \xff\xfe\r\n\r\n"
    await send(world, raw)
    (ticket,) = await tickets(world.db)
    (message,) = await messages(world.db, ticket)
    assert message.internal
    assert RAW_FILENAME in message.body
    (original,) = await attachments(world.db, message)
    assert await world.blobs.get(original.sha256) == raw
    async with world.db.sessions() as session:
        assert REVIEW_TAG in await TicketRepository(session).tags(ticket)


async def test_given_the_same_person_called_about_it_then_the_email_ticket_is_a_duplicate(
    world: World,
) -> None:
    await send(world, mail(message_id="d0@example.org"))
    (email_ticket,) = await tickets(world.db)
    assert email_ticket.customer_id is not None
    async with world.db.sessions.begin() as session:
        phone = await TicketRepository(session).create(
            subject="Printer on fire again",
            channel=Channel.PHONE,
            actor="system:calls",
            customer_id=email_ticket.customer_id,
        )
    await send(world, mail("Printer on fire again", "new mail", message_id="d1@example.org"))
    *_, newest = await tickets(world.db)
    async with world.db.sessions() as session:
        query = select(TicketLink).where(TicketLink.kind == LinkKind.DUPLICATE)
        (link,) = (await session.execute(query)).scalars()
    assert (link.source_id, link.target_id) == (newest.id, phone.id)
