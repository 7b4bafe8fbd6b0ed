"""IMAP polling against a real Dovecot into the SQL desk (SQLite and PostgreSQL): at least once.

Needs Debian's ``dovecot-imapd`` (``.ci/run`` installs it); each test gets its own mailbox user
on one private Dovecot started for the session (own port, own temp dir).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from email.message import EmailMessage
from pathlib import Path

import pytest
from sqlalchemy import select

from callcenter.config import EmailSettings, Secret
from tests.integration.dovecot import Dovecot, dovecot_binary
from tests.integration.tickets.test_email_sql import messages, tickets
from tests.polling import eventually, eventually_true
from tickets.db import Database
from tickets.email import EmailConfigError
from tickets.email.imap_poll import (
    FAILED_KEYWORD,
    TOO_BIG_KEYWORD,
    AfterStore,
    ImapPoller,
    ImapSettings,
)
from tickets.email.ports import InboundMail
from tickets.email.service import build_imap_poller
from tickets.email.smtp_in import InboundPipeline
from tickets.email.sql_desk import RAW_FILENAME, REVIEW_TAG, FileBlobStore, SqlHelpDesk
from tickets.email.threading import ReplyTokenSigner
from tickets.hooks import HelpDeskHooks
from tickets.models import Attachment, AuditEvent
from tickets.repository import TicketRepository

SIGNER = ReplyTokenSigner(b"imap-poll-test-secret-0123456789")
SUPPORT = "support@help.test"
SEEN = "\\Seen"
WAIT = 30.0


@pytest.fixture(scope="session")
def dovecot_server() -> Iterator[Dovecot]:
    binary = dovecot_binary()
    if binary is None:
        pytest.skip("dovecot not installed: apt-get install dovecot-imapd (.ci/run does)")
    server = Dovecot(binary)
    try:
        server.start()
        yield server
    finally:
        server.close()


@dataclass
class Mailbox:
    server: Dovecot
    user: str
    password: str

    def append(self, raw: bytes, folder: str = "INBOX") -> int:
        return self.server.append(self.user, raw, folder)

    def flags(self, folder: str = "INBOX") -> dict[int, set[str]]:
        return self.server.flags(self.user, folder)


@pytest.fixture
def mailbox(dovecot_server: Dovecot) -> Mailbox:
    """A fresh user (so an empty INBOX) on the running session Dovecot."""
    if not dovecot_server.running:
        dovecot_server.start()  # a previous test stopped it and failed before restarting
    user = f"desk-{uuid.uuid4().hex[:10]}@help.test"
    password = uuid.uuid4().hex
    dovecot_server.set_user(user, password)
    return Mailbox(dovecot_server, user, password)


class Sink:
    """The real desk, with a hook run around each store (to fail or to drop the server)."""

    def __init__(self, desk: SqlHelpDesk) -> None:
        self.desk = desk
        self.before: Callable[[InboundMail], Awaitable[None]] | None = None
        self.after: Callable[[InboundMail], Awaitable[None]] | None = None

    async def accept(self, mail: InboundMail) -> None:
        if self.before is not None:
            await self.before(mail)
        await self.desk.accept(mail)
        if self.after is not None:
            await self.after(mail)


@dataclass
class World:
    db: Database
    blobs: FileBlobStore
    sink: Sink
    pipeline: InboundPipeline
    mailbox: Mailbox

    def poller(
        self,
        *,
        max_message_bytes: int = 25 * 1024 * 1024,
        max_attempts: int = 3,
        after_store: AfterStore = AfterStore.SEEN,
        move_to: str = "",
        password: str | None = None,
        port: int | None = None,
        command_timeout: float = 30.0,
        folder: str = "INBOX",
        tls: bool = False,
        ssl_context: ssl.SSLContext | None = None,
    ) -> ImapPoller:
        """A poller on this mailbox with quick passes and short back-offs."""
        settings = ImapSettings(
            "127.0.0.1",
            port=self.mailbox.server.port if port is None else port,
            tls=tls,
            username=self.mailbox.user,
            password=self.mailbox.password if password is None else password,
            interval=0.05,
            timeout=5.0,
            backoff_initial=0.05,
            backoff_max=0.2,
            command_timeout=command_timeout,
            folder=folder,
            max_message_bytes=max_message_bytes,
            max_attempts=max_attempts,
            after_store=after_store,
            move_to=move_to,
        )
        return ImapPoller(self.pipeline, settings, ssl_context=ssl_context)


@pytest.fixture
def world(db: Database, tmp_path: Path, mailbox: Mailbox) -> World:
    blobs = FileBlobStore(tmp_path / "mail")
    sink = Sink(SqlHelpDesk(db.sessions, blobs, hooks=HelpDeskHooks(db.sessions)))
    pipeline = InboundPipeline(
        directory=sink.desk,
        sink=sink,
        signer=SIGNER,
        loop_id="help.test",
        own_addresses=frozenset({SUPPORT}),
    )
    return World(db, blobs, sink, pipeline, mailbox)


@asynccontextmanager
async def polling(poller: ImapPoller) -> AsyncIterator[ImapPoller]:
    task = asyncio.create_task(poller.run())
    try:
        yield poller
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


def mail(
    subject: str = "Printer on fire",
    body: str = "Hello, the printer is on fire.",
    *,
    message_id: str,
    sender: str = "alice@example.org",
    in_reply_to: str | None = None,
    size: int = 0,
) -> bytes:
    msg = EmailMessage()
    msg["Return-Path"] = f"<{sender}>"
    msg["Delivered-To"] = SUPPORT
    msg["From"] = f"Alice Example <{sender}>"
    msg["To"] = SUPPORT
    msg["Subject"] = subject
    msg["Message-ID"] = f"<{message_id}>"
    if in_reply_to is not None:
        msg["In-Reply-To"] = f"<{in_reply_to}>"
        msg["References"] = f"<{in_reply_to}>"
    msg.set_content(body + ("\n" + "x" * 76) * (size // 77))
    return msg.as_bytes().replace(b"\n", b"\r\n")


async def audits(db: Database, action: str) -> list[AuditEvent]:
    async with db.sessions() as session:
        query = select(AuditEvent).where(AuditEvent.action == action)
        return list((await session.execute(query)).scalars())


async def ticket_count(db: Database, count: int) -> None:
    async def reached() -> bool:
        return len(await tickets(db)) >= count

    await eventually(reached, WAIT, f"{count} tickets stored", every=0.05)


async def all_seen(mailbox: Mailbox, folder: str = "INBOX") -> None:
    def seen() -> bool:
        flags = mailbox.flags(folder)
        return bool(flags) and all(SEEN in f for f in flags.values())

    await eventually_true(seen, WAIT, f"every message in {folder} marked \\Seen", every=0.05)


async def more_passes(poller: ImapPoller, count: int = 3) -> None:
    target = poller.stats.passes + count
    await eventually_true(lambda: poller.stats.passes >= target, WAIT, f"{count} more passes")


async def test_given_new_messages_in_the_folder_when_polled_then_each_is_a_ticket_marked_seen(
    world: World,
) -> None:
    world.mailbox.append(mail("Printer on fire", message_id="p1@example.org"))
    world.mailbox.append(mail("Invoice wrong", message_id="p2@example.org", sender="bob@x.org"))
    async with polling(world.poller()):
        await ticket_count(world.db, 2)
        await all_seen(world.mailbox)
    first, second = await tickets(world.db)
    assert (first.subject, second.subject) == ("Printer on fire", "Invoice wrong")
    (message,) = await messages(world.db, first)
    assert message.external_id == "p1@example.org"
    assert message.body.strip() == "Hello, the printer is on fire."
    assert not message.internal
    async with world.db.sessions() as session:
        (original,) = [
            a
            for a in await TicketRepository(session).attachments(message)
            if a.filename == RAW_FILENAME
        ]
    assert await world.blobs.get(original.sha256) == mail(
        "Printer on fire", message_id="p1@example.org"
    )  # the bytes as they were in the mailbox
    (received,) = [a for a in await audits(world.db, "email.received") if a.ticket_id == second.id]
    assert received.data["recipients"] == [SUPPORT]  # Delivered-To stands for RCPT TO


async def test_given_a_reply_in_the_folder_then_it_threads_onto_the_ticket_of_its_original(
    world: World,
) -> None:
    async with polling(world.poller()) as poller:
        world.mailbox.append(mail(message_id="orig@example.org"))
        await ticket_count(world.db, 1)
        world.mailbox.append(
            mail(
                "Re: Printer on fire",
                "Still burning.",
                message_id="re1@example.org",
                in_reply_to="orig@example.org",
            )
        )
        (ticket,) = await tickets(world.db)

        async def replied() -> bool:
            return len(await messages(world.db, ticket)) == 2

        await eventually(replied, WAIT, "the reply stored on the original's ticket")
        await more_passes(poller)
    assert len(await tickets(world.db)) == 1
    _, reply = await messages(world.db, ticket)
    assert reply.external_id == "re1@example.org"
    assert reply.body.strip() == "Still burning."


async def test_given_a_polled_folder_when_polled_again_then_nothing_is_taken_twice(
    world: World,
) -> None:
    world.mailbox.append(mail(message_id="once@example.org"))
    async with polling(world.poller()) as poller:
        await ticket_count(world.db, 1)
        await all_seen(world.mailbox)
        await more_passes(poller)
        assert poller.stats.stored == 1
    async with polling(world.poller()) as again:  # a restarted node: only \Seen to go by
        await more_passes(again)
        assert again.stats.stored == 0
    (ticket,) = await tickets(world.db)
    assert len(await messages(world.db, ticket)) == 1
    assert await audits(world.db, "email.duplicate_delivery") == []


async def test_given_dovecot_killed_after_a_store_then_error_logged_retried_and_nothing_lost(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    server = world.mailbox.server
    for n in range(3):
        world.mailbox.append(mail(f"Case {n}", message_id=f"kill{n}@example.org"))

    async def kill_after_second(mail: InboundMail) -> None:
        if mail.message.message_id == "kill1@example.org" and server.running:
            await asyncio.to_thread(server.stop)  # stored, not yet marked \Seen

    world.sink.after = kill_after_second
    with caplog.at_level(logging.WARNING, logger="tickets.email.imap_poll"):
        async with polling(world.poller()) as poller:
            await ticket_count(world.db, 2)
            await eventually_true(lambda: poller.stats.failures >= 2, WAIT, "retries while down")
            await asyncio.to_thread(server.start)
            await ticket_count(world.db, 3)
            await all_seen(world.mailbox)
    assert "connection lost during UID STORE" in caplog.text
    assert "cannot connect" in caplog.text  # the retries while it was down, each logged
    assert world.mailbox.password not in caplog.text
    stored = await tickets(world.db)
    assert [t.subject for t in stored] == ["Case 0", "Case 1", "Case 2"]
    for ticket in stored:
        assert len(await messages(world.db, ticket)) == 1
    assert await audits(world.db, "email.duplicate_delivery") == []  # the mark was remembered


async def test_given_a_stored_but_unmarked_message_when_a_new_poller_retakes_it_then_stored_once(
    world: World,
) -> None:
    server = world.mailbox.server
    world.mailbox.append(mail(message_id="twice@example.org"))

    async def kill(mail: InboundMail) -> None:
        if server.running:
            await asyncio.to_thread(server.stop)

    world.sink.after = kill
    async with polling(world.poller()) as poller:  # the node dies before it can mark the mail
        await ticket_count(world.db, 1)
        await eventually_true(lambda: poller.stats.failures >= 1, WAIT, "the mark failed")
    world.sink.after = None
    await asyncio.to_thread(server.start)
    assert all(SEEN not in f for f in world.mailbox.flags().values())
    async with polling(world.poller()) as restarted:
        await all_seen(world.mailbox)
        assert restarted.stats.stored == 1  # delivered again: at least once ...
    (ticket,) = await tickets(world.db)
    assert len(await messages(world.db, ticket)) == 1  # ... and the desk kept it once
    assert len(await audits(world.db, "email.duplicate_delivery")) == 1


async def test_given_a_wrong_password_then_login_refused_is_logged_and_retried_until_fixed(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    server, user = world.mailbox.server, world.mailbox.user
    world.mailbox.append(mail(message_id="pw@example.org"))
    configured = "the-configured-password"
    with caplog.at_level(logging.WARNING, logger="tickets.email.imap_poll"):
        async with polling(world.poller(password=configured)) as poller:
            await eventually_true(lambda: poller.stats.failures >= 2, WAIT, "login retried")
            assert await tickets(world.db) == []
            server.set_user(user, configured)  # the operator fixes the mailbox's password
            await ticket_count(world.db, 1)
    refused = [r for r in caplog.records if "login refused" in r.getMessage()]
    assert refused
    assert all(r.levelno == logging.ERROR for r in refused)
    assert "AUTHENTICATIONFAILED" in refused[0].getMessage()
    assert user not in caplog.text  # masked: d***@help.test
    assert configured not in caplog.text


async def test_given_tls_then_the_certificate_is_verified_and_a_trusted_one_is_polled(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    server = world.mailbox.server
    if server.cert is None:
        pytest.skip("openssl not installed: no certificate for Dovecot's TLS port")
    world.mailbox.append(mail(message_id="tls@example.org"))
    with caplog.at_level(logging.WARNING, logger="tickets.email.imap_poll"):
        async with polling(world.poller(port=server.tls_port, tls=True)) as untrusting:
            await eventually_true(lambda: untrusting.stats.failures >= 2, WAIT, "TLS refused")
            assert untrusting.stats.connects == 0
    assert "CERTIFICATE_VERIFY_FAILED" in caplog.text  # the system CAs do not know it
    assert await tickets(world.db) == []
    trusting = ssl.create_default_context(cafile=str(server.cert))
    async with polling(world.poller(port=server.tls_port, tls=True, ssl_context=trusting)):
        await ticket_count(world.db, 1)
        await all_seen(world.mailbox)


async def test_given_a_missing_folder_then_the_error_names_it_and_polling_starts_once_it_exists(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    server, user = world.mailbox.server, world.mailbox.user
    with caplog.at_level(logging.WARNING, logger="tickets.email.imap_poll"):
        async with polling(world.poller(folder="Support Queue")) as poller:
            await eventually_true(lambda: poller.stats.failures >= 2, WAIT, "SELECT retried")
            server.create_folder(user, '"Support Queue"')
            world.mailbox.append(mail(message_id="queue@example.org"), '"Support Queue"')
            await ticket_count(world.db, 1)
    missing = [r for r in caplog.records if "SELECT Support Queue answered NO" in r.getMessage()]
    assert missing
    assert all(r.levelno == logging.ERROR for r in missing)


async def test_given_a_malformed_message_then_it_is_kept_raw_and_flagged_for_review(
    world: World,
) -> None:
    raw = b"this is not a mail at all \xff\xfe\r\n\r\n"  # (Dovecot turns NULs into 0x80)
    world.mailbox.append(raw)
    async with polling(world.poller()):
        await ticket_count(world.db, 1)
        await all_seen(world.mailbox)
    (ticket,) = await tickets(world.db)
    (message,) = await messages(world.db, ticket)
    assert message.internal
    assert RAW_FILENAME in message.body
    async with world.db.sessions() as session:
        repo = TicketRepository(session)
        (original,) = await repo.attachments(message)
        assert REVIEW_TAG in await repo.tags(ticket)
    assert isinstance(original, Attachment)
    assert await world.blobs.get(original.sha256) == raw


async def test_given_a_message_over_the_limit_then_not_stored_flagged_too_big_and_not_retaken(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    big = world.mailbox.append(mail("Huge", message_id="big@example.org", size=20_000))
    small = world.mailbox.append(mail("Small", message_id="small@example.org"))
    with caplog.at_level(logging.ERROR, logger="tickets.email.imap_poll"):
        async with polling(world.poller(max_message_bytes=8_000)) as poller:
            await ticket_count(world.db, 1)
            await all_seen(world.mailbox)
            await more_passes(poller)
            assert poller.stats.too_big == 1
    assert [t.subject for t in await tickets(world.db)] == ["Small"]
    flags = world.mailbox.flags()
    assert flags[big] == {SEEN, TOO_BIG_KEYWORD}  # left in the folder for an operator
    assert flags[small] == {SEEN}
    assert f"UID {big} is" in caplog.text
    assert "over the 8000-byte limit" in caplog.text


async def test_given_a_message_the_desk_keeps_refusing_then_given_up_after_max_attempts(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    bad = world.mailbox.append(mail("Poison", message_id="poison@example.org"))
    good = world.mailbox.append(mail("Fine", message_id="fine@example.org"))

    async def refuse_poison(mail: InboundMail) -> None:
        if mail.message.message_id == "poison@example.org":
            raise ValueError("this message breaks the desk")

    world.sink.before = refuse_poison
    with caplog.at_level(logging.WARNING, logger="tickets.email.imap_poll"):
        async with polling(world.poller(max_attempts=3)) as poller:
            await all_seen(world.mailbox)
            await more_passes(poller)
            assert poller.stats.given_up == 1
    assert [t.subject for t in await tickets(world.db)] == ["Fine"]
    flags = world.mailbox.flags()
    assert flags[bad] == {SEEN, FAILED_KEYWORD}
    assert flags[good] == {SEEN}
    assert caplog.text.count("not stored (attempt") == 2  # 1 and 2 of 3 warned; the 3rd gives up
    assert "given up" in caplog.text


async def test_given_the_desk_down_then_nothing_marked_and_the_message_stored_once_it_is_back(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    world.mailbox.append(mail(message_id="outage@example.org"))
    outages = 2

    async def database_down(mail: InboundMail) -> None:
        nonlocal outages
        if outages:
            outages -= 1
            assert all(SEEN not in f for f in world.mailbox.flags().values())
            raise ConnectionRefusedError("database unreachable")

    world.sink.before = database_down
    with caplog.at_level(logging.WARNING, logger="tickets.email.imap_poll"):
        async with polling(world.poller(max_attempts=1)) as poller:
            await ticket_count(world.db, 1)
            await all_seen(world.mailbox)
    assert outages == 0
    assert poller.stats.given_up == 0  # an outage never counts as an attempt
    assert caplog.text.count("help desk could not store mail") == 2
    (ticket,) = await tickets(world.db)
    assert len(await messages(world.db, ticket)) == 1


async def test_given_a_server_that_never_finishes_login_then_it_times_out_and_is_retried(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    """A server that keeps every read busy (Dovecot's "Waiting for authentication process"
    lines) but never answers the command: only the whole-command deadline ends the wait."""
    logins = 0
    stop = asyncio.Event()
    handlers: set[asyncio.Task[None]] = set()

    async def stalling(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal logins
        task = asyncio.current_task()
        assert task is not None
        handlers.add(task)
        writer.write(b"* OK [CAPABILITY IMAP4rev1] stalling test server\r\n")
        try:
            while not stop.is_set() and (line := await reader.readline()):
                tag, _, command = line.decode().partition(" ")
                if command.upper().startswith("CAPABILITY"):
                    writer.write(f"* CAPABILITY IMAP4rev1\r\n{tag} OK done\r\n".encode())
                elif command.upper().startswith("LOGIN"):
                    logins += 1
                    while not stop.is_set():
                        writer.write(b"* OK Waiting for authentication process to respond..\r\n")
                        await writer.drain()
                        with contextlib.suppress(TimeoutError):
                            await asyncio.wait_for(stop.wait(), 0.05)
                await writer.drain()
        except ConnectionError:
            pass
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    server = await asyncio.start_server(stalling, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        with caplog.at_level(logging.WARNING, logger="tickets.email.imap_poll"):
            async with polling(world.poller(port=port, command_timeout=0.5)) as poller:
                await eventually_true(lambda: poller.stats.failures >= 2, WAIT, "two timeouts")
    finally:
        stop.set()
        server.close()
        await asyncio.gather(*handlers)
        await server.wait_closed()
    assert logins >= 2  # it reconnected and tried again
    assert "no complete answer within 0.5 s" in caplog.text


@pytest.mark.parametrize("after", [AfterStore.MOVE, AfterStore.DELETE])
async def test_given_move_or_delete_configured_then_applied_only_after_the_store(
    world: World, after: AfterStore
) -> None:
    server, user = world.mailbox.server, world.mailbox.user
    server.create_folder(user, "Processed")
    world.mailbox.append(mail(message_id=f"{after}@example.org"))
    async with polling(world.poller(after_store=after, move_to="Processed")):
        await ticket_count(world.db, 1)
        await eventually_true(lambda: world.mailbox.flags() == {}, WAIT, "INBOX emptied")
    moved = world.mailbox.flags("Processed")
    assert list(moved.values()) == ([{SEEN}] if after is AfterStore.MOVE else [])


async def test_given_imap_settings_then_the_built_poller_stores_into_the_records(
    db: Database, mailbox: Mailbox, tmp_path: Path
) -> None:
    settings = EmailSettings(
        secret=Secret("s" * 24),
        blob_dir=str(tmp_path / "blobs"),
        imap_host="127.0.0.1",
        imap_port=mailbox.server.port,
        imap_tls=False,
        imap_username=mailbox.user,
        imap_password=Secret(mailbox.password),
        imap_interval=0.05,
    )
    hooks = HelpDeskHooks(db.sessions)
    assert build_imap_poller(EmailSettings(), db, hooks) is None  # imap_host empty: off
    with pytest.raises(EmailConfigError, match="CALLCENTER_EMAIL_IMAP_PASSWORD"):
        build_imap_poller(
            EmailSettings(secret=settings.secret, imap_host="h", imap_username="u"), db, hooks
        )
    with pytest.raises(EmailConfigError, match="needs move_to"):
        build_imap_poller(replace(settings, imap_after_store="move"), db, hooks)
    with pytest.raises(EmailConfigError, match=r"email\.imap_"):
        build_imap_poller(replace(settings, imap_after_store="archive"), db, hooks)
    poller = build_imap_poller(settings, db, hooks)
    assert poller is not None
    mailbox.append(mail(message_id="built@example.org"))
    async with polling(poller):
        await ticket_count(db, 1)
        await all_seen(mailbox)
