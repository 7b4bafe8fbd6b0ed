"""Email round trips through real SMTP sockets: acknowledgements, replies, loops, forged tags.

Two aiosmtpd servers: ours (the help desk inbound) and the customer's mail server, which
captures what our notifier sends. The in-memory help desk acknowledges every message whose
loop verdict allows it, exactly as the real ticket service is expected to.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email import message_from_bytes
from email.message import Message
from email.policy import default
from email.utils import getaddresses

import aiosmtplib
import pytest
from aiosmtpd.smtp import SMTP, Envelope, Session

from tickets.email.loops import LOOP_HEADER, AutoKind
from tickets.email.ports import InMemoryHelpDesk, StoredMail
from tickets.email.smtp_in import (
    InboundPipeline,
    InboundSmtpHandler,
    InboundSmtpServer,
    InboundSmtpSettings,
)
from tickets.email.smtp_out import (
    OutboundIdentity,
    RelaySettings,
    SmtpNotifier,
    ThreadContext,
    build_message,
)
from tickets.email.threading import MatchedBy, ReplyTokenSigner, ThreadAction, TicketState

SIGNER = ReplyTokenSigner(b"round-trip-secret-0123456789")
SUPPORT = "support@help.test"
IDENTITY = OutboundIdentity(domain="help.test", address=SUPPORT, loop_id="rt-node")
ALICE = "alice@example.org"


class CaptureHandler:
    """The customer's mail server: keeps every message it receives."""

    def __init__(self) -> None:
        self.messages: list[tuple[str | None, bytes]] = []
        self.arrived = asyncio.Condition()

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        assert envelope.original_content is not None
        async with self.arrived:
            self.messages.append((envelope.mail_from, envelope.original_content))
            self.arrived.notify_all()
        return "250 OK"


@dataclass
class World:
    desk: InMemoryHelpDesk
    inbound: InboundSmtpServer
    customer_mx: CaptureHandler
    acks: list[Message] = field(default_factory=list)

    async def send(self, raw: bytes, sender: str = ALICE, to: str = SUPPORT) -> StoredMail:
        before = len(self.desk.stored)
        async with aiosmtplib.SMTP(
            hostname="127.0.0.1", port=self.inbound.port, timeout=10, start_tls=False
        ) as client:
            await client.sendmail(sender, [to], raw)
        assert len(self.desk.stored) == before + 1
        return self.desk.stored[-1]

    async def wait_for_acks(self, count: int) -> list[Message]:
        capture = self.customer_mx
        async with asyncio.timeout(5), capture.arrived:
            await capture.arrived.wait_for(lambda: len(capture.messages) >= count)
        return [message_from_bytes(raw, policy=default) for _, raw in self.customer_mx.messages]


@pytest.fixture
async def world() -> AsyncIterator[World]:
    capture = CaptureHandler()
    loop = asyncio.get_running_loop()
    mx = await loop.create_server(
        lambda: SMTP(capture, hostname="mx.example.org", loop=loop), "127.0.0.1", 0
    )
    notifier = SmtpNotifier(RelaySettings("127.0.0.1", mx.sockets[0].getsockname()[1]))

    async def acknowledge(stored: StoredMail) -> None:
        mail = stored.mail
        if not mail.loop.notify or mail.sender is None:
            return
        summary = desk.summary(stored.ticket_number)
        parent = mail.message.message_id
        thread = ThreadContext(
            summary.number,
            mail.message.subject,
            datetime.now(UTC),
            parent,
            mail.message.references,
        )
        out = build_message(IDENTITY, SIGNER, thread, (mail.sender,), "We have your message.")
        desk.record_message_id(summary.number, out.message_id)
        await notifier.send(out)

    desk = InMemoryHelpDesk(on_stored=acknowledge)
    pipeline = InboundPipeline(
        directory=desk,
        sink=desk,
        signer=SIGNER,
        loop_id=IDENTITY.loop_id,
        own_addresses=frozenset({SUPPORT}),
    )
    settings = InboundSmtpSettings(host="127.0.0.1", port=0)
    try:
        async with InboundSmtpServer(InboundSmtpHandler(pipeline), settings) as inbound:
            yield World(desk, inbound, capture)
    finally:
        mx.close()
        await mx.wait_closed()


def _mail(
    subject: str,
    body: str = "Hello",
    *,
    sender: str = ALICE,
    message_id: str = "<c1@example.org>",
    extra: str = "",
) -> bytes:
    return (
        f"From: {sender}\r\nTo: {SUPPORT}\r\nSubject: {subject}\r\n"
        f"Message-ID: {message_id}\r\n{extra}\r\n{body}\r\n"
    ).encode()


def _reply_to(ack: Message, *, drop: Callable[[str], bool] = lambda _: False) -> str:
    """Reply headers a mail client would write; ``drop`` removes some as broken clients do."""
    headers = {
        "In-Reply-To": str(ack["Message-ID"]),
        "References": f"{ack['References'] or ''} {ack['Message-ID']}".strip(),
    }
    return "".join(f"{k}: {v}\r\n" for k, v in headers.items() if not drop(k))


async def test_new_mail_gets_a_threaded_acknowledgement_and_the_reply_threads_back(
    world: World,
) -> None:
    first = await world.send(_mail("Printer on fire"))
    assert first.mail.thread.action is ThreadAction.NEW_TICKET
    number = first.ticket_number

    (ack,) = await world.wait_for_acks(1)
    assert world.customer_mx.messages[0][0] == "<>"  # null reverse-path (RFC 3834)
    assert ack["In-Reply-To"] == "<c1@example.org>"
    assert "<c1@example.org>" in str(ack["References"])
    assert str(ack["Message-ID"]).endswith("@help.test>")
    assert ack["Thread-Index"] is not None
    assert ack["Thread-Topic"] == "Printer on fire"
    assert ack["Auto-Submitted"] == "auto-replied"
    assert ack[LOOP_HEADER] == "rt-node"
    assert ack["Subject"] == f"Re: [#{number}] Printer on fire"

    reply = await world.send(
        _mail("Re: something else entirely", message_id="<c2@example.org>", extra=_reply_to(ack))
    )
    assert (reply.ticket_number, reply.mail.thread.matched_by) == (number, MatchedBy.REFERENCES)
    assert reply.mail.thread.action is ThreadAction.APPEND
    acks = await world.wait_for_acks(2)
    assert acks[1]["In-Reply-To"] == "<c2@example.org>"
    assert len(world.desk.tickets) == 1


async def test_reply_with_truncated_references_still_threads(world: World) -> None:
    first = await world.send(_mail("VPN down"))
    (ack,) = await world.wait_for_acks(1)
    # Outlook-style: In-Reply-To points at a colleague's copy, References only keeps the root.
    extra = f"In-Reply-To: <colleague-copy@example.org>\r\nReferences: {ack['Message-ID']}\r\n"
    reply = await world.send(_mail("RE: VPN", message_id="<c3@example.org>", extra=extra))
    assert reply.ticket_number == first.ticket_number


async def test_reply_whose_client_dropped_all_headers_threads_by_reply_to_token(
    world: World,
) -> None:
    first = await world.send(_mail("Invoice wrong"))
    (ack,) = await world.wait_for_acks(1)
    reply_to = getaddresses([str(ack["Reply-To"])])[0][1]
    assert reply_to.startswith("support+t")
    reply = await world.send(
        _mail("Invoice", "no headers, plain new mail", message_id="<c4@example.org>"),
        to=reply_to,
    )
    assert (reply.ticket_number, reply.mail.thread.matched_by) == (
        first.ticket_number,
        MatchedBy.REPLY_TOKEN,
    )


async def test_tampered_reply_token_is_refused_and_opens_a_new_ticket(world: World) -> None:
    first = await world.send(_mail("Order 1"))
    await world.wait_for_acks(1)
    token = SIGNER.token(first.ticket_number)
    forged = token[:-4] + "0000" if not token.endswith("0000") else token[:-4] + "1111"
    reply = await world.send(
        _mail("hi", "{#CC:" + forged + "#}", sender="mallory@evil.test", message_id="<m1@evil>")
    )
    assert reply.mail.thread.action is ThreadAction.NEW_TICKET
    assert reply.ticket_number != first.ticket_number
    assert "tampered-token-refused" in reply.mail.thread.notes


async def test_subject_tag_is_accepted_from_a_participant_and_refused_from_a_stranger(
    world: World,
) -> None:
    first = await world.send(_mail("Account locked"))
    number = first.ticket_number
    own = await world.send(_mail(f"[#{number}] more info", message_id="<c5@example.org>"))
    assert (own.ticket_number, own.mail.thread.matched_by) == (number, MatchedBy.SUBJECT_TAG)

    forged = await world.send(
        _mail(f"Re: [#{number}] send me the data", sender="mallory@evil.test", message_id="<m2@e>")
    )
    assert forged.ticket_number != number
    assert f"subject-tag-refused:{number}" in forged.mail.thread.notes


async def test_our_own_acknowledgement_looping_back_is_recorded_but_not_answered(
    world: World,
) -> None:
    await world.send(_mail("Loop me"))
    await world.wait_for_acks(1)
    _, ack_raw = world.customer_mx.messages[0]
    # A forwarding rule at the customer sends our acknowledgement straight back to us.
    echoed = await world.send(ack_raw, sender="")
    assert echoed.mail.loop.kind is AutoKind.OWN_LOOP
    assert not echoed.mail.loop.notify
    assert echoed.ticket_number == world.desk.stored[0].ticket_number  # recorded on the ticket
    # the sink awaits any notification before our 250, so nothing can still be on its way
    assert len(world.customer_mx.messages) == 1


async def test_out_of_office_reply_to_our_acknowledgement_is_recorded_not_answered(
    world: World,
) -> None:
    first = await world.send(_mail("Question"))
    (ack,) = await world.wait_for_acks(1)
    ooo = await world.send(
        _mail(
            "Automatic reply: Question",
            "I am out of office until Monday.",
            message_id="<ooo1@example.org>",
            extra="Auto-Submitted: auto-replied\r\nX-Autoreply: yes\r\n" + _reply_to(ack),
        )
    )
    assert ooo.ticket_number == first.ticket_number
    assert ooo.mail.loop.kind is AutoKind.AUTO_REPLY
    assert len(world.customer_mx.messages) == 1


async def test_bounce_with_null_reverse_path_is_recorded_not_answered(world: World) -> None:
    first = await world.send(_mail("Where is my parcel"))
    (ack,) = await world.wait_for_acks(1)
    dsn = (
        f"From: Mail Delivery System <MAILER-DAEMON@mx.example.org>\r\nTo: {SUPPORT}\r\n"
        "Subject: Undelivered Mail Returned to Sender\r\nMessage-ID: <dsn1@mx.example.org>\r\n"
        f"{_reply_to(ack)}\r\nThe mail system could not deliver your message.\r\n"
    ).encode()
    bounce = await world.send(dsn, sender="")
    assert bounce.mail.envelope_sender == ""
    assert bounce.mail.loop.kind is AutoKind.BOUNCE
    assert "null-reverse-path" in bounce.mail.loop.reasons
    assert bounce.ticket_number == first.ticket_number
    assert len(world.customer_mx.messages) == 1


async def test_autoresponder_without_headers_is_stopped_by_the_rate_limit(world: World) -> None:
    for i in range(12):
        await world.send(_mail(f"ping {i}", sender="robot@example.org", message_id=f"<p{i}@x>"))
    acks = await world.wait_for_acks(10)
    assert len(acks) == 10
    assert world.desk.stored[-1].mail.loop.kind is AutoKind.RATE_LIMITED
    assert len(world.desk.stored) == 12  # every message is still recorded


async def test_reply_to_closed_ticket_opens_a_linked_ticket(world: World) -> None:
    first = await world.send(_mail("Old issue"))
    (ack,) = await world.wait_for_acks(1)
    world.desk.set_state(first.ticket_number, TicketState.CLOSED)
    late = await world.send(_mail("Re: Old issue", message_id="<c6@x>", extra=_reply_to(ack)))
    assert late.mail.thread.action is ThreadAction.NEW_TICKET
    assert late.ticket_number != first.ticket_number
    assert world.desk.linked_to(late.ticket_number) == first.ticket_number


async def test_reply_to_recently_solved_ticket_reopens_it(world: World) -> None:
    first = await world.send(_mail("Fixed?"))
    (ack,) = await world.wait_for_acks(1)
    solved_at = datetime.now(UTC) - timedelta(hours=1)
    world.desk.set_state(first.ticket_number, TicketState.SOLVED, solved_at=solved_at)
    again = await world.send(_mail("Re: Fixed?", message_id="<c7@x>", extra=_reply_to(ack)))
    assert (again.mail.thread.action, again.ticket_number) == (
        ThreadAction.REOPEN,
        first.ticket_number,
    )
    assert world.desk.summary(first.ticket_number).state is TicketState.OPEN


async def test_reply_to_merged_ticket_lands_on_the_surviving_ticket(world: World) -> None:
    first = await world.send(_mail("Duplicate report"))
    (ack,) = await world.wait_for_acks(1)
    survivor = world.desk.add_ticket([ALICE])
    world.desk.set_state(first.ticket_number, TicketState.MERGED, merged_into=survivor.number)
    reply = await world.send(_mail("Re: Duplicate", message_id="<c8@x>", extra=_reply_to(ack)))
    assert (reply.mail.thread.action, reply.ticket_number) == (
        ThreadAction.APPEND,
        survivor.number,
    )
    assert f"redirected-from-merged:{first.ticket_number}" in reply.mail.thread.notes
