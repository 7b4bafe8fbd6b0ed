"""Inbound SMTP: an aiosmtpd server whose handler parses, classifies and threads each message.

Theory of operation (RFC 5321 reply codes; aiosmtpd's handler hooks):

* Size: the server advertises ``SIZE <limit>`` (RFC 1870). A client that declares a bigger
  size gets ``552`` at ``MAIL FROM``; one that does not is read to the end of DATA, the data
  is discarded as it arrives, and the answer is ``552`` (aiosmtpd's ``data_size_limit``). The
  handler checks the size again before doing anything, so nothing is ever half-stored.
* Accepted data goes through :class:`InboundPipeline`: parse (never raises) -> loop verdict ->
  threading lookups through the :class:`TicketDirectory` port -> pure decision -> the
  :class:`InboundMailSink`. Only then does the client get ``250``.
* A message that cannot be parsed is still ``250``: it reaches the sink flagged
  ``unparseable`` with its raw bytes. If the directory or the sink fails, the answer is ``451``
  (temporary) so the sending MTA keeps the message and retries: nothing is lost.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from aiosmtpd.smtp import SMTP, Envelope, Session

from callcenter.logmask import mask_email
from tickets.email.loops import SenderRateLimiter, classify
from tickets.email.parse import ParseLimits, parse_message
from tickets.email.ports import InboundMail, InboundMailSink, TicketDirectory
from tickets.email.threading import (
    ReplyTokenSigner,
    ThreadingPolicy,
    TicketSummary,
    decide,
    gather_clues,
    merge_targets,
)

__all__ = [
    "DEFAULT_MAX_MESSAGE_BYTES",
    "InboundPipeline",
    "InboundSmtpHandler",
    "InboundSmtpServer",
    "InboundSmtpSettings",
    "MaskEmailsFilter",
    "install_log_masking",
]

log = logging.getLogger(__name__)

DEFAULT_MAX_MESSAGE_BYTES = 25 * 1024 * 1024
AIOSMTPD_LOGGER = "mail.log"  # aiosmtpd logs every command line (addresses included) at INFO

_EMAIL = re.compile(r"[^\s<>:,;'\"()\[\]]+@[^\s<>:,;'\"()\[\]]+")


class MaskEmailsFilter(logging.Filter):
    """Masks e-mail addresses in aiosmtpd's log records (``MAIL FROM:<a@x>`` -> ``a***@x``)."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        masked = _EMAIL.sub(lambda m: mask_email(m.group(0)), message)
        if masked != message:
            record.msg, record.args = masked, ()
        return True


def install_log_masking() -> None:
    """Attach :class:`MaskEmailsFilter` to aiosmtpd's logger once (idempotent)."""
    logger = logging.getLogger(AIOSMTPD_LOGGER)
    if not any(isinstance(f, MaskEmailsFilter) for f in logger.filters):
        logger.addFilter(MaskEmailsFilter())


def _utcnow() -> datetime:
    return datetime.now(UTC)


class InboundPipeline:
    """Raw message -> InboundMail handed to the sink. Shared by SMTP and (later) IMAP polling."""

    def __init__(
        self,
        *,
        directory: TicketDirectory,
        sink: InboundMailSink,
        signer: ReplyTokenSigner,
        loop_id: str,
        own_addresses: frozenset[str] = frozenset(),
        policy: ThreadingPolicy | None = None,
        limits: ParseLimits | None = None,
        rate_limiter: SenderRateLimiter | None = None,
        clock: Callable[[], datetime] = _utcnow,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._directory = directory
        self._sink = sink
        self._signer = signer
        self._loop_id = loop_id
        self._own = frozenset(a.lower() for a in own_addresses)
        self._policy = policy or ThreadingPolicy()
        self._limits = limits or ParseLimits()
        self._limiter = rate_limiter or SenderRateLimiter()
        self._clock = clock
        self._monotonic = monotonic

    async def _lookups(
        self, message_ids: Sequence[str], numbers: Sequence[int]
    ) -> tuple[dict[str, TicketSummary], dict[int, TicketSummary]]:
        by_mid = (
            dict(await self._directory.tickets_by_message_ids(message_ids)) if message_ids else {}
        )
        by_number = dict(await self._directory.tickets_by_numbers(numbers)) if numbers else {}
        for _ in range(self._policy.max_merge_hops):
            missing = merge_targets([*by_mid.values(), *by_number.values()], by_number)
            if not missing:
                break
            by_number.update(await self._directory.tickets_by_numbers(sorted(missing)))
        return by_mid, by_number

    async def deliver(
        self, raw: bytes, *, envelope_sender: str | None, recipients: Sequence[str]
    ) -> InboundMail:
        """Parse, classify, thread and store one message; raises if the directory or sink does."""
        message = parse_message(raw, self._limits)
        sender = message.from_address or (envelope_sender or "").lower() or None
        verdict = classify(
            message,
            envelope_sender=envelope_sender,
            loop_id=self._loop_id,
            own_addresses=self._own,
        )
        if message.from_address is None and verdict.notify:
            verdict = verdict.without_notification("no-readable-sender")
        elif verdict.notify and sender and not self._limiter.allow(sender, self._monotonic()):
            verdict = verdict.rate_limited()
        clues = gather_clues(message, recipients, self._signer)
        by_mid, by_number = await self._lookups(clues.message_ids, clues.numbers)
        now = self._clock()
        decision = decide(clues, by_mid, by_number, now, self._policy)
        mail = InboundMail(
            message=message,
            sender=sender,
            envelope_sender=envelope_sender,
            recipients=tuple(r.lower() for r in recipients),
            thread=decision,
            loop=verdict,
            received_at=now,
        )
        await self._sink.accept(mail)
        log.info(
            "inbound mail from %s: %s ticket=%s via=%s loop=%s flags=%s",
            mask_email(sender) if sender else "-",
            decision.action,
            decision.ticket_number or decision.linked_to or "-",
            decision.matched_by,
            verdict.kind,
            ",".join(sorted(message.flags)) or "-",
        )
        return mail


class InboundSmtpHandler:
    """aiosmtpd handler: size guard at DATA, then the pipeline; proper SMTP reply codes."""

    def __init__(
        self,
        pipeline: InboundPipeline,
        *,
        max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
        accepted_domains: frozenset[str] = frozenset(),
        max_recipients: int = 100,
    ) -> None:
        self.pipeline = pipeline
        self.max_message_bytes = max_message_bytes
        self.accepted_domains = frozenset(d.lower() for d in accepted_domains)
        self.max_recipients = max_recipients

    async def handle_RCPT(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        address: str,
        rcpt_options: list[str],
    ) -> str:
        domain = address.rpartition("@")[2].lower()
        if self.accepted_domains and domain not in self.accepted_domains:
            return "550 5.1.1 Recipient not handled here"
        if len(envelope.rcpt_tos) >= self.max_recipients:
            return "452 4.5.3 Too many recipients"
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        raw = envelope.original_content
        if raw is None:
            content = envelope.content
            raw = (
                content.encode("utf-8", "surrogateescape") if isinstance(content, str) else content
            )
        if raw is None:
            return "554 5.6.0 No message data"
        if len(raw) > self.max_message_bytes:
            return "552 5.3.4 Message too big for system"
        mail_from = (envelope.mail_from or "").strip()
        envelope_sender = "" if mail_from in ("", "<>") else mail_from.strip("<>")
        try:
            mail = await self.pipeline.deliver(
                raw, envelope_sender=envelope_sender, recipients=envelope.rcpt_tos
            )
        except Exception:  # storage or lookup failure: the sender keeps the mail and retries
            log.exception("inbound mail not stored; answering 451 so the sender retries")
            return "451 4.3.0 Temporary failure, please retry"
        target = mail.thread.ticket_number or "new"
        return f"250 2.0.0 OK: stored (ticket {target})"


@dataclass(frozen=True, slots=True)
class InboundSmtpSettings:
    host: str = "127.0.0.1"
    port: int = 2525
    hostname: str = "callcenter.local"
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES
    idle_timeout: float = 60.0
    accepted_domains: frozenset[str] = field(default_factory=frozenset)


class InboundSmtpServer:
    """The listening socket; one aiosmtpd ``SMTP`` protocol per connection on this loop."""

    def __init__(self, handler: InboundSmtpHandler, settings: InboundSmtpSettings) -> None:
        self._handler = handler
        self._settings = settings
        self._server: asyncio.Server | None = None
        self._sessions: weakref.WeakSet[SMTP] = weakref.WeakSet()

    def _protocol(self) -> SMTP:
        settings = self._settings
        protocol = SMTP(
            self._handler,
            data_size_limit=settings.max_message_bytes,
            enable_SMTPUTF8=True,
            hostname=settings.hostname,
            timeout=settings.idle_timeout,
            loop=asyncio.get_running_loop(),
        )
        self._sessions.add(protocol)
        return protocol

    async def start(self) -> None:
        install_log_masking()
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            self._protocol, self._settings.host, self._settings.port
        )
        log.info("SMTP inbound listening on %s:%s", self._settings.host, self.port)

    @property
    def port(self) -> int:
        if self._server is None or not self._server.sockets:
            raise RuntimeError("SMTP server not started")
        return int(self._server.sockets[0].getsockname()[1])

    async def close(self) -> None:
        """Stop listening and drop open sessions (a sender retries a message left unanswered)."""
        if self._server is not None:
            self._server.close()
            for session in list(self._sessions):
                if session.transport is not None:
                    session.transport.close()
            await self._server.wait_closed()
            self._server = None

    async def run(self) -> None:
        """Serve until cancelled (for the composition root's TaskGroup)."""
        await self.start()
        try:
            await asyncio.Event().wait()
        finally:
            await self.close()

    async def __aenter__(self) -> InboundSmtpServer:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()
