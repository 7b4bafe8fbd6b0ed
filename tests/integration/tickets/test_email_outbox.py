"""Outbound customer mail through real SMTP sockets, on SQLite and PostgreSQL.

Our inbound SMTP server (`build_email_channel`), the relay we submit to (an aiosmtpd server that
can be told to refuse), the web app's REST API for the agent's reply, and the outbox sender
(`build_outbound_mail`) running as the node runs it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field, replace
from email import message_from_bytes
from email.message import EmailMessage
from email.policy import default
from functools import partial
from pathlib import Path
from typing import Any

import aiosmtplib
import pytest
from aiohttp.test_utils import TestClient, TestServer
from aiosmtpd.smtp import SMTP, Envelope, Session
from sqlalchemy import select

from agent_console.app import create_app
from agent_console.state import WebConfig
from callcenter.config import EmailSettings, Secret
from tests.polling import eventually
from tickets.chat import ChatRecords
from tickets.customers import CustomerDirectory
from tickets.db import Database
from tickets.email.loops import LOOP_HEADER
from tickets.email.outbound import OutboundMail, build_outbound_mail
from tickets.email.outbox import MailOutboxEntry, OutboxPolicy, OutboxStatus
from tickets.email.service import build_email_channel
from tickets.email.smtp_in import InboundSmtpServer
from tickets.email.sql_desk import email_number
from tickets.email.threading import ReplyTokenSigner
from tickets.hooks import HelpDeskHooks
from tickets.models import AuthorKind, Channel, Direction, IdentityKind, Message, Ticket
from tickets.repository import TicketRepository
from tickets.users import Role, UserDirectory

SECRET = "outbox-test-secret-0123456789"
SUPPORT = "support@help.test"
ALICE = "alice@example.org"
FAST = OutboxPolicy(max_attempts=4, base_delay=0.01, max_delay=0.05, idle_poll=0.02)


@dataclass
class Relay:
    """The smarthost: keeps what it accepts; ``refuse`` holds replies to give DATA/RCPT first."""

    accepted: list[tuple[str, list[str], bytes]] = field(default_factory=list)
    refuse_data: list[str] = field(default_factory=list)
    refuse_rcpt: list[str] = field(default_factory=list)
    attempts: int = 0

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: Any
    ) -> str:
        if self.refuse_rcpt:
            self.attempts += 1
            return self.refuse_rcpt.pop(0) if len(self.refuse_rcpt) > 1 else self.refuse_rcpt[0]
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        self.attempts += 1
        if self.refuse_data:
            return self.refuse_data.pop(0)
        assert envelope.original_content is not None
        self.accepted.append(
            (envelope.mail_from or "", list(envelope.rcpt_tos), envelope.original_content)
        )
        return "250 2.0.0 queued"

    def message(self, index: int = -1) -> EmailMessage:
        parsed = message_from_bytes(self.accepted[index][2], policy=default)
        assert isinstance(parsed, EmailMessage)
        return parsed


@dataclass
class World:
    db: Database
    relay: Relay
    inbound: InboundSmtpServer
    outbound: OutboundMail
    client: TestClient[Any, Any]
    token: str

    async def customer_writes(self, raw: bytes, to: str = SUPPORT) -> None:
        async with aiosmtplib.SMTP(
            hostname="127.0.0.1", port=self.inbound.port, timeout=30, start_tls=False
        ) as smtp:
            await smtp.sendmail(ALICE, [to], raw)

    async def reply(self, ticket_id: int, body: str, kind: str = "reply") -> dict[str, Any]:
        response = await self.client.post(
            f"/api/tickets/{ticket_id}/messages",
            json={"body": body, "kind": kind},
            headers={"Authorization": f"Bearer {self.token}"},
        )
        assert response.status == 201, await response.text()
        out: dict[str, Any] = await response.json()
        return out

    async def ticket_json(self, ticket_id: int) -> dict[str, Any]:
        response = await self.client.get(
            f"/api/tickets/{ticket_id}", headers={"Authorization": f"Bearer {self.token}"}
        )
        out: dict[str, Any] = await response.json()
        return out

    async def wait_accepted(self, count: int) -> None:
        async def arrived() -> bool:
            return len(self.relay.accepted) >= count

        await eventually(arrived, 10, f"{count} message(s) at the relay")

    async def wait_status(self, status: OutboxStatus, count: int = 1) -> list[MailOutboxEntry]:
        async def reached() -> bool:
            return len(await self.outbox(status)) >= count

        await eventually(reached, 10, f"{count} outbox row(s) {status}")
        return await self.outbox(status)

    async def outbox(self, status: OutboxStatus | None = None) -> list[MailOutboxEntry]:
        async with self.db.sessions() as session:
            query = select(MailOutboxEntry).order_by(MailOutboxEntry.id)
            if status is not None:
                query = query.where(MailOutboxEntry.status == status)
            return list((await session.execute(query)).scalars())


async def tickets(db: Database) -> list[Ticket]:
    async with db.sessions() as session:
        return list((await session.execute(select(Ticket).order_by(Ticket.id))).scalars())


async def messages(db: Database, ticket_id: int) -> list[Message]:
    async with db.sessions() as session:
        repo = TicketRepository(session)
        return await repo.messages(await repo.get(ticket_id))


def customer_mail(
    subject: str = "Printer on fire",
    body: str = "Hello, the printer is on fire.",
    *,
    message_id: str = "c1@example.org",
    in_reply_to: str | None = None,
    references: tuple[str, ...] = (),
    to: str = SUPPORT,
) -> bytes:
    msg = EmailMessage()
    msg["From"] = f"Alice Example <{ALICE}>"
    msg["To"] = to
    msg["Subject"] = subject
    msg["Message-ID"] = f"<{message_id}>"
    if in_reply_to is not None:
        msg["In-Reply-To"] = f"<{in_reply_to}>"
    if references:
        msg["References"] = " ".join(f"<{r}>" for r in references)
    msg.set_content(body)
    return msg.as_bytes().replace(b"\n", b"\r\n")


def email_settings(tmp_path: Path, relay_port: int, **changes: Any) -> EmailSettings:
    base = EmailSettings(
        enabled=True,
        host="127.0.0.1",
        port=0,
        domain="help.test",
        address=SUPPORT,
        secret=Secret(SECRET),
        blob_dir=str(tmp_path / "mail"),
        relay_host="127.0.0.1",
        relay_port=relay_port,
    )
    return replace(base, **changes)


@contextlib.asynccontextmanager
async def running(task_factory: Any) -> AsyncIterator[None]:
    task = asyncio.create_task(task_factory())
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


@pytest.fixture
async def relay() -> AsyncIterator[tuple[Relay, int]]:
    handler = Relay()
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: SMTP(handler, hostname="relay.help.test", loop=loop), "127.0.0.1", 0
    )
    try:
        yield handler, server.sockets[0].getsockname()[1]
    finally:
        server.close()
        await server.wait_closed()


async def make_world(
    db: Database, tmp_path: Path, relay: tuple[Relay, int], **changes: Any
) -> AsyncIterator[World]:
    settings = email_settings(tmp_path, relay[1], **changes)
    outbound = build_outbound_mail(db, settings, policy=FAST)
    assert outbound is not None
    async with db.sessions.begin() as session:
        users = UserDirectory(session)
        agent = await users.add("agent1", "correct horse battery", Role.AGENT, actor="test")
        token = (await users.issue_token(agent, "test", actor="test")).value
    app = create_app(
        WebConfig(secret="s" * 32, cookie_secure=False),
        database=db,
        customer_mail=outbound.customer_mail,
        offline_mailer=outbound.offline_mailer,
        run_webhooks=False,
    )
    inbound = build_email_channel(db, settings, HelpDeskHooks(db.sessions))
    async with inbound, TestClient(TestServer(app)) as client, running(outbound.sender.run):
        yield World(db, relay[0], inbound, outbound, client, token)


@pytest.fixture
async def world(db: Database, tmp_path: Path, relay: tuple[Relay, int]) -> AsyncIterator[World]:
    async for made in make_world(db, tmp_path, relay):
        yield made


async def test_given_an_email_ticket_when_an_agent_replies_then_the_customer_gets_a_threaded_mail(
    world: World,
) -> None:
    await world.customer_writes(customer_mail())
    (ticket,) = await tickets(world.db)
    out = await world.reply(ticket.id, "We are sending the fire brigade.")
    assert out["channel"] == "email"
    assert out["mail"]["to"] == [ALICE]
    await world.wait_accepted(1)

    sender, recipients, _raw = world.relay.accepted[0]
    assert sender == SUPPORT  # a person's reply: a real reverse-path, bounces come back
    assert recipients == [ALICE]
    mail = world.relay.message()
    message_id = mail["Message-ID"].strip("<>")
    number = email_number(ticket)
    assert ReplyTokenSigner(SECRET.encode()).verify_message_id(message_id) == number
    assert mail["In-Reply-To"] == "<c1@example.org>"
    assert "<c1@example.org>" in mail["References"]
    assert mail["Subject"] == f"Re: [#{number}] Printer on fire"
    assert mail["Thread-Index"]
    assert mail["Thread-Topic"] == "Printer on fire"
    assert f"support+t{number}-" in mail["Reply-To"]
    assert mail["Auto-Submitted"] is None
    assert mail[LOOP_HEADER] == "help.test"
    assert "We are sending the fire brigade." in mail.get_content()

    stored = await messages(world.db, ticket.id)
    assert stored[-1].external_id == message_id  # the reply threads back by this id
    assert stored[-1].channel == Channel.EMAIL
    (entry,) = await world.wait_status(OutboxStatus.SENT)
    assert entry.attempts == 1
    shown = await world.ticket_json(ticket.id)
    assert shown["mail"][0]["status"] == "sent"


async def test_given_our_mail_when_the_customer_replies_to_it_then_the_reply_lands_on_the_ticket(
    world: World,
) -> None:
    await world.customer_writes(customer_mail())
    (ticket,) = await tickets(world.db)
    await world.reply(ticket.id, "Is the printer still burning?")
    await world.wait_accepted(1)
    ours = world.relay.message()["Message-ID"].strip("<>")

    # the customer's client answers with In-Reply-To/References
    await world.customer_writes(
        customer_mail(
            "Re: Printer on fire",
            "Yes, still burning.",
            message_id="c2@example.org",
            in_reply_to=ours,
            references=("c1@example.org", ours),
        )
    )
    # a second client drops every header but keeps our Reply-To address
    reply_to = world.relay.message()["Reply-To"].addresses[0].addr_spec
    await world.customer_writes(
        customer_mail("the printer", "Now it is out.", message_id="c3@example.org", to=reply_to),
        to=reply_to,
    )
    assert [t.id for t in await tickets(world.db)] == [ticket.id]
    bodies = [m.body.strip() for m in await messages(world.db, ticket.id)]
    assert bodies[-2:] == ["Yes, still burning.", "Now it is out."]

    # our next reply carries the whole thread, answering the customer's latest mail
    await world.reply(ticket.id, "Good news.")
    await world.wait_accepted(2)
    second = world.relay.message()
    assert second["In-Reply-To"] == "<c3@example.org>"
    assert second["References"].split() == [
        "<c1@example.org>",
        f"<{ours}>",
        "<c2@example.org>",
        "<c3@example.org>",
    ]


async def test_given_a_relay_that_refuses_then_accepts_when_replying_then_sent_once_after_retry(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    world.relay.refuse_data.append("451 4.3.0 try again later")
    await world.customer_writes(customer_mail())
    (ticket,) = await tickets(world.db)
    await world.reply(ticket.id, "On our way.")
    (entry,) = await world.wait_status(OutboxStatus.SENT)
    assert entry.attempts == 2
    assert world.relay.attempts == 2
    assert len(world.relay.accepted) == 1
    assert not [m for m in await messages(world.db, ticket.id) if m.internal]
    assert "a***@example.org" in caplog.text
    assert ALICE not in caplog.text


async def test_given_a_relay_that_rejects_the_address_when_replying_then_dead_noted_and_logged(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    world.relay.refuse_rcpt.append("550 5.1.1 no such user")
    await world.customer_writes(customer_mail())
    (ticket,) = await tickets(world.db)
    await world.reply(ticket.id, "Hello?")
    (entry,) = await world.wait_status(OutboxStatus.DEAD)
    assert entry.attempts == 1  # a 5xx is final: no retries
    assert "550" in entry.last_error
    (note,) = [m for m in await messages(world.db, ticket.id) if m.internal]
    assert ALICE in note.body
    assert "could not be delivered" in note.body
    assert "undeliverable" in caplog.text
    assert "a***@example.org" in caplog.text
    assert ALICE not in caplog.text
    assert (await world.ticket_json(ticket.id))["mail"][0]["status"] == "dead"


async def test_given_a_relay_that_keeps_deferring_when_replying_then_dead_after_the_last_attempt(
    world: World,
) -> None:
    world.relay.refuse_data.extend(["421 4.7.0 busy"] * FAST.max_attempts)
    await world.customer_writes(customer_mail())
    (ticket,) = await tickets(world.db)
    await world.reply(ticket.id, "Hello?")
    (entry,) = await world.wait_status(OutboxStatus.DEAD)
    assert entry.attempts == FAST.max_attempts
    assert world.relay.accepted == []
    assert len([m for m in await messages(world.db, ticket.id) if m.internal]) == 1


async def test_given_notes_chats_and_customers_without_address_then_no_mail_is_queued(
    world: World,
) -> None:
    await world.customer_writes(customer_mail())
    (email_ticket,) = await tickets(world.db)
    note = await world.reply(email_ticket.id, "internal only", kind="note")
    assert "mail" not in note
    async with world.db.sessions.begin() as session:
        repo = TicketRepository(session)
        directory = CustomerDirectory(session)
        caller = await directory.find_or_create(IdentityKind.PHONE, "+14155550100", actor="t")
        phone = await repo.create(
            subject="Call", channel=Channel.PHONE, actor="t", customer_id=caller.customer.id
        )
        chat = await repo.create(
            subject="Chat", channel=Channel.CHAT, actor="t", customer_id=email_ticket.customer_id
        )
    for ticket_id in (phone.id, chat.id):
        out = await world.reply(ticket_id, "a reply nobody can mail")
        assert "mail" not in out
    assert await world.outbox() == []


async def test_given_a_phone_ticket_of_a_customer_with_a_known_address_then_the_reply_is_mailed(
    world: World,
) -> None:
    async with world.db.sessions.begin() as session:
        directory = CustomerDirectory(session)
        caller = await directory.find_or_create(IdentityKind.PHONE, "+14155550100", actor="t")
        await directory.add_identity(caller.customer, IdentityKind.EMAIL, ALICE, actor="t")
        phone = await TicketRepository(session).create(
            subject="Call about the printer",
            channel=Channel.PHONE,
            actor="t",
            customer_id=caller.customer.id,
        )
    out = await world.reply(phone.id, "As promised on the phone: the manual.")
    assert out["channel"] == "email"
    await world.wait_accepted(1)
    mail = world.relay.message()
    assert mail["In-Reply-To"] is None  # nothing to answer: the thread starts here
    assert mail["Subject"] == f"[#{email_number(phone)}] Call about the printer"


async def test_given_an_offline_chat_message_when_acknowledged_twice_then_one_loop_safe_mail(
    world: World,
) -> None:
    async with world.db.sessions.begin() as session:
        ticket, _ = await ChatRecords(session).offline_message(
            name="Alice", email="Alice@Example.org", text="Call me back <b>please</b>"
        )
    for _ in range(2):
        await world.outbound.offline_mailer.acknowledge(
            ticket_id=ticket.id,
            number=ticket.number,
            to="Alice@Example.org",
            name="Alice",
            text="Call me back <b>please</b>",
        )
    await world.wait_accepted(1)
    assert len(await world.outbox()) == 1
    sender, recipients, _raw = world.relay.accepted[0]
    assert sender == "<>"  # RFC 3834: automatic mail from the null reverse-path
    assert recipients == [ALICE]
    mail = world.relay.message()
    assert mail["Auto-Submitted"] == "auto-generated"
    assert mail["X-Auto-Response-Suppress"] == "All"
    assert mail[LOOP_HEADER] == "help.test"
    assert ticket.number in mail.get_content()
    assert "> Call me back <b>please</b>" in mail.get_content()

    ours = mail["Message-ID"].strip("<>")
    await world.customer_writes(
        customer_mail("Re: offline", "Any time after 5.", in_reply_to=ours, references=(ours,))
    )
    assert [t.id for t in await tickets(world.db)] == [ticket.id]
    assert (await messages(world.db, ticket.id))[-1].body.strip() == "Any time after 5."


async def test_given_notify_customers_off_then_replies_stay_on_the_ticket_only(
    db: Database, tmp_path: Path, relay: tuple[Relay, int]
) -> None:
    async for world in make_world(db, tmp_path, relay, notify_customers=False):
        await world.customer_writes(customer_mail())
        (ticket,) = await tickets(world.db)
        out = await world.reply(ticket.id, "kept here")
        assert "mail" not in out
        assert await world.outbox() == []


def test_given_no_relay_host_then_no_outbound_mail(tmp_path: Path, db: Database) -> None:
    assert build_outbound_mail(db, email_settings(tmp_path, 25, relay_host="")) is None


async def test_given_no_agent_when_a_visitor_leaves_an_offline_message_then_it_is_acknowledged(
    world: World,
) -> None:
    origin = {"Origin": str(world.client.make_url("")).rstrip("/")}
    visitor = await world.client.ws_connect("/chat/ws", headers=origin)
    try:
        await visitor.send_json({"type": "hello", "name": "Alice"})
        await until_frame(visitor, "welcome")
        await visitor.send_json({"type": "message", "text": "anyone there?"})
        await until_frame(visitor, "offline")
        await visitor.send_json(
            {"type": "offline_message", "email": ALICE, "text": "Please call me back"}
        )
        stored = await until_frame(visitor, "offline_stored")
    finally:
        await visitor.close()
    await world.wait_accepted(1)
    mail = world.relay.message()
    assert mail["To"] == ALICE
    assert stored["ticket_number"] in mail.get_content()
    assert mail["Auto-Submitted"] == "auto-generated"


async def until_frame(ws: Any, kind: str) -> dict[str, Any]:
    async with asyncio.timeout(10):
        while True:
            frame: dict[str, Any] = await ws.receive_json()
            if frame["type"] == kind:
                return frame


async def test_given_two_nodes_sending_then_every_mail_leaves_exactly_once(
    db: Database, tmp_path: Path, relay: tuple[Relay, int]
) -> None:
    settings = email_settings(tmp_path, relay[1])
    first = build_outbound_mail(db, settings, policy=FAST)
    second = build_outbound_mail(db, settings, policy=FAST)
    assert first is not None
    assert second is not None
    await queue_replies(db, first, 12)
    async with running(first.sender.run), running(second.sender.run):
        await eventually(
            partial(all_sent, db, 12), 20, "all twelve outbox rows sent by the two nodes"
        )
    ids = [message_from_bytes(raw, policy=default)["Message-ID"] for *_, raw in relay[0].accepted]
    assert len(ids) == 12
    assert len(set(ids)) == 12


async def all_sent(db: Database, count: int) -> bool:
    async with db.sessions() as session:
        query = select(MailOutboxEntry).where(MailOutboxEntry.status == OutboxStatus.SENT)
        return len((await session.execute(query)).scalars().all()) == count


async def queue_replies(db: Database, outbound: OutboundMail, count: int) -> None:
    """``count`` email tickets, each with an agent reply queued for its customer."""
    async with db.sessions.begin() as session:
        repo = TicketRepository(session)
        directory = CustomerDirectory(session)
        for index in range(count):
            found = await directory.find_or_create(
                IdentityKind.EMAIL, f"customer{index}@example.org", actor="t"
            )
            ticket = await repo.create(
                subject=f"Question {index}",
                channel=Channel.EMAIL,
                actor="t",
                customer_id=found.customer.id,
            )
            to = await outbound.customer_mail.reply_recipient(session, ticket)
            assert to == f"customer{index}@example.org"
            reply = await repo.add_message(
                ticket,
                channel=Channel.EMAIL,
                direction=Direction.OUTBOUND,
                author_kind=AuthorKind.AGENT,
                body=f"Answer {index}",
                actor="t",
            )
            await outbound.customer_mail.agent_reply(session, ticket, reply, to)


async def test_given_a_relay_that_never_answers_then_each_try_times_out_and_the_mail_ends_dead(
    db: Database, tmp_path: Path
) -> None:
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()  # accepts the connection, never greets
        writer.close()

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    policy = replace(FAST, send_timeout=0.2, max_attempts=2)
    outbound = build_outbound_mail(db, email_settings(tmp_path, port), policy=policy)
    assert outbound is not None
    await queue_replies(db, outbound, 1)
    try:
        async with running(outbound.sender.run):

            async def dead() -> bool:
                async with db.sessions() as session:
                    entry = (await session.execute(select(MailOutboxEntry))).scalar_one()
                    return entry.status == OutboxStatus.DEAD

            await eventually(dead, 10, "the outbox row dead after two timed-out tries")
    finally:
        server.close()
        await server.wait_closed()
    async with db.sessions() as session:
        entry = (await session.execute(select(MailOutboxEntry))).scalar_one()
        notes = (await session.execute(select(Message).where(Message.internal))).scalars().all()
    assert entry.attempts == 2
    assert "did not take" in entry.last_error
    assert len(notes) == 1
