"""Inbound SMTP over real sockets: size limits at DATA, MIME over the wire, bad input, 451 retry."""

from __future__ import annotations

import asyncio
import logging
import smtplib
from collections.abc import AsyncIterator
from email.message import EmailMessage

import aiosmtplib
import pytest

from tickets.email.parse import ParseFlag
from tickets.email.ports import InMemoryHelpDesk
from tickets.email.smtp_in import (
    DEFAULT_MAX_MESSAGE_BYTES,
    InboundPipeline,
    InboundSmtpHandler,
    InboundSmtpServer,
    InboundSmtpSettings,
)
from tickets.email.threading import ReplyTokenSigner, ThreadAction

SIGNER = ReplyTokenSigner(b"integration-secret-0123456789")
SUPPORT = "support@help.test"


@pytest.fixture
def desk() -> InMemoryHelpDesk:
    return InMemoryHelpDesk()


@pytest.fixture
async def server(desk: InMemoryHelpDesk) -> AsyncIterator[InboundSmtpServer]:
    pipeline = InboundPipeline(directory=desk, sink=desk, signer=SIGNER, loop_id="it-node")
    handler = InboundSmtpHandler(pipeline, accepted_domains=frozenset({"help.test"}))
    settings = InboundSmtpSettings(host="127.0.0.1", port=0, hostname="mx.help.test")
    async with InboundSmtpServer(handler, settings) as smtp_server:
        yield smtp_server


def _client(server: InboundSmtpServer) -> aiosmtplib.SMTP:
    return aiosmtplib.SMTP(hostname="127.0.0.1", port=server.port, timeout=30, start_tls=False)


def _text_message(size: int) -> bytes:
    """A plain message of exactly ``size`` bytes on the wire (998-octet lines)."""
    head = b"From: alice@example.org\r\nTo: support@help.test\r\nSubject: big\r\n\r\n"
    line = b"x" * 998 + b"\r\n"
    body_size = size - len(head)
    count, rest = divmod(body_size, len(line))
    tail = b"y" * max(rest - 2, 0) + b"\r\n" if rest else b""
    return head + line * count + tail


async def test_given_30_mb_message_then_refused_at_data_with_552_and_nothing_stored(
    server: InboundSmtpServer, desk: InMemoryHelpDesk
) -> None:
    raw = _text_message(30 * 1024 * 1024)
    async with _client(server) as client:
        await client.mail("alice@example.org")  # no SIZE= declared: refused only at DATA
        await client.rcpt(SUPPORT)
        with pytest.raises(aiosmtplib.SMTPDataError) as refused:
            await client.data(raw)
        assert refused.value.code == 552
        assert desk.stored == []
        # the session is still usable: the next message on the same connection is accepted
        _, reply = await client.sendmail("alice@example.org", [SUPPORT], _text_message(2000))
    assert "OK" in reply
    assert len(desk.stored) == 1


async def test_given_declared_size_over_limit_then_refused_at_mail_from_with_552(
    server: InboundSmtpServer, desk: InMemoryHelpDesk
) -> None:
    def send() -> None:
        with smtplib.SMTP("127.0.0.1", server.port, timeout=30) as client:
            client.sendmail("alice@example.org", [SUPPORT], _text_message(26 * 1024 * 1024))

    with pytest.raises(smtplib.SMTPSenderRefused) as refused:
        await asyncio.to_thread(send)
    assert refused.value.smtp_code == 552
    assert desk.stored == []


async def test_given_message_just_under_the_limit_then_accepted_and_stored(
    server: InboundSmtpServer, desk: InMemoryHelpDesk
) -> None:
    msg = EmailMessage()
    msg["From"] = "alice@example.org"
    msg["To"] = SUPPORT
    msg["Subject"] = "scan attached"
    msg.set_content("see attachment")
    msg.add_attachment(b"\x00" * (18 * 1024 * 1024), maintype="application", subtype="pdf")
    raw = msg.as_bytes().replace(b"\n", b"\r\n")
    assert DEFAULT_MAX_MESSAGE_BYTES - 1024 * 1024 < len(raw) < DEFAULT_MAX_MESSAGE_BYTES
    async with _client(server) as client:
        await client.sendmail("alice@example.org", [SUPPORT], raw)
    (stored,) = desk.stored
    assert stored.mail.message.text == "see attachment"
    (attachment,) = stored.mail.message.attachments
    assert attachment.size == 18 * 1024 * 1024
    assert stored.mail.raw == raw


async def test_given_mime_with_attachment_and_inline_image_over_smtp_then_all_parts_stored(
    server: InboundSmtpServer, desk: InMemoryHelpDesk
) -> None:
    msg = EmailMessage()
    msg["From"] = "Zoë <zoe@example.org>"
    msg["To"] = SUPPORT
    msg["Subject"] = "Grüße mit Bild"
    msg.set_content("Hallo, siehe Bild.")
    msg.add_alternative('<p>Hallo <img src="cid:pic@zoe"></p>', subtype="html")
    html = msg.get_body(("html",))
    assert isinstance(html, EmailMessage)
    html.add_related(b"GIF89a...", maintype="image", subtype="gif", cid="<pic@zoe>")
    msg.add_attachment("a,b\n1,2\n", subtype="csv", filename="daten.csv")
    async with _client(server) as client:
        await client.send_message(msg)
    (stored,) = desk.stored
    parsed = stored.mail.message
    assert parsed.subject == "Grüße mit Bild"
    assert parsed.from_address == "zoe@example.org"
    assert parsed.text == "Hallo, siehe Bild."
    names = {(a.filename, a.inline) for a in parsed.attachments}
    assert names == {("daten.csv", False), (None, True)}
    assert stored.mail.thread.action is ThreadAction.NEW_TICKET


async def test_given_unparseable_message_then_250_and_stored_raw_and_flagged(
    server: InboundSmtpServer, desk: InMemoryHelpDesk
) -> None:
    raw = b"\x01\x02 not a mail at all\r\n\xff\xfe\r\n"
    async with _client(server) as client:
        _, reply = await client.sendmail("someone@example.org", [SUPPORT], raw)
    assert "OK" in reply
    (stored,) = desk.stored
    assert ParseFlag.UNPARSEABLE in stored.mail.message.flags
    assert stored.mail.raw == raw
    assert stored.mail.needs_review
    assert stored.mail.sender == "someone@example.org"  # from the envelope
    assert not stored.mail.loop.notify  # never auto-answer what we could not read
    assert "no-readable-sender" in stored.mail.loop.reasons


async def test_given_odd_charsets_over_smtp_then_text_decodes(
    server: InboundSmtpServer, desk: InMemoryHelpDesk
) -> None:
    bodies = {
        "shift_jis": "日本語の問い合わせ",
        "gb2312": "中文问题",
        "iso-8859-1": "Problème réglé",
    }
    async with _client(server) as client:
        for charset, text in bodies.items():
            raw = (
                f"From: c@example.org\r\nTo: {SUPPORT}\r\nSubject: {charset}\r\n"
                f"Content-Type: text/plain; charset={charset}\r\n"
                "Content-Transfer-Encoding: 8bit\r\n\r\n"
            ).encode() + text.encode(charset)
            await client.sendmail("c@example.org", [SUPPORT], raw)
    assert [s.mail.message.text for s in desk.stored] == list(bodies.values())


async def test_given_sink_failure_then_451_and_the_retry_is_stored(
    server: InboundSmtpServer, desk: InMemoryHelpDesk
) -> None:
    raw = _text_message(500)
    desk.fail_next = True
    async with _client(server) as client:
        with pytest.raises(aiosmtplib.SMTPDataError) as refused:
            await client.sendmail("alice@example.org", [SUPPORT], raw)
        assert refused.value.code == 451
        assert desk.stored == []
        await client.sendmail("alice@example.org", [SUPPORT], raw)
    assert len(desk.stored) == 1


async def test_given_recipient_in_a_foreign_domain_then_550(server: InboundSmtpServer) -> None:
    async with _client(server) as client:
        await client.mail("alice@example.org")
        with pytest.raises(aiosmtplib.SMTPRecipientRefused) as refused:
            await client.rcpt("victim@elsewhere.test")
    assert refused.value.code == 550


async def test_email_addresses_are_masked_in_logs(
    server: InboundSmtpServer, desk: InMemoryHelpDesk, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    async with _client(server) as client:
        await client.sendmail("alice.secret@example.org", [SUPPORT], _text_message(600))
    assert len(desk.stored) == 1
    assert "MAIL FROM" in caplog.text  # aiosmtpd's own command log is there ...
    assert "alice.secret@" not in caplog.text  # ... but masked, like ours
    assert "a***@example.org" in caplog.text
