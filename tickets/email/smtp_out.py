"""Outbound mail: build threaded notifications (pure) and hand them to an SMTP relay (aiosmtplib).

Theory of operation. A customer's mail client threads our messages only if we send what it
reads: ``Message-ID`` in our own domain (signed, see tickets.email.threading), ``In-Reply-To``
the customer's message and ``References`` the thread so far (RFC 5322 section 3.6.4; capped to
the root plus the newest ids), and for Outlook ``Thread-Topic`` and ``Thread-Index``
([MS-OXOMSG] 2.2.1.3 PidTagConversationIndex: a 22-byte header of 0x01, the 40 high bits of a
FILETIME and a conversation GUID, then one 5-byte response level; the GUID is derived from the
ticket so every message of a ticket shares it). The Reply-To carries a signed plus-address
token and the body a ``{#CC:…#}`` marker, so replies thread even when a client drops headers.

Loop safety (RFC 3834): automatic messages carry ``Auto-Submitted: auto-replied`` (a response to
a customer's message) or ``auto-generated`` (not a response) and are sent from the null
reverse-path; every message carries ``X-Auto-Response-Suppress: All`` (no out-of-office
replies from Exchange) and our ``X-Callcenter-Loop`` header, which the inbound side refuses to
answer.
"""

from __future__ import annotations

import base64
import logging
import re
import secrets
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from email.utils import format_datetime, formataddr
from enum import StrEnum

import aiosmtplib

from callcenter.logmask import mask_email
from tickets.email import EmailDeliveryError
from tickets.email.loops import LOOP_HEADER
from tickets.email.threading import ReplyTokenSigner, body_marker

__all__ = [
    "OutboundIdentity",
    "OutboundKind",
    "OutboundMessage",
    "RelaySettings",
    "SmtpNotifier",
    "ThreadContext",
    "build_message",
    "reply_to_address",
    "thread_index",
]

log = logging.getLogger(__name__)

_FILETIME_EPOCH = datetime(1601, 1, 1, tzinfo=UTC)
_MAX_REFERENCES = 20
_ADDRESS = re.compile(r"[^\s<>'\"(),;:\[\]]+@[^\s<>'\"(),;:\[\]]+")
_REPLY_PREFIX = re.compile(r"^\s*((re|aw|sv|fw|fwd|wg)(\[\d+\])?\s*:\s*)+", re.IGNORECASE)


class OutboundKind(StrEnum):
    AUTOMATIC = "automatic"  # acknowledgements and status notifications
    AGENT_REPLY = "agent-reply"  # written by a person: no Auto-Submitted


@dataclass(frozen=True, slots=True)
class OutboundIdentity:
    """Who we are on the wire: the Message-ID domain, the From address, our loop id."""

    domain: str
    address: str
    display_name: str = "Help desk"
    loop_id: str = "callcenter"


@dataclass(frozen=True, slots=True)
class ThreadContext:
    """The ticket and thread a message belongs to; ``references`` oldest first."""

    ticket_number: int
    subject: str
    opened_at: datetime
    parent_message_id: str | None = None
    references: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class OutboundMessage:
    """A built message, its Message-ID (record it on the ticket) and the envelope sender."""

    message: EmailMessage
    message_id: str
    envelope_sender: str
    recipients: tuple[str, ...]


def _filetime(moment: datetime) -> int:
    return (moment.astimezone(UTC) - _FILETIME_EPOCH) // timedelta(microseconds=1) * 10


def thread_index(conversation: uuid.UUID, started_at: datetime, now: datetime | None) -> str:
    """Outlook's Thread-Index: header block, plus one response level when ``now`` is given."""
    start = _filetime(started_at) >> 24 << 24
    data = b"\x01" + (start >> 24).to_bytes(5, "big") + conversation.bytes
    if now is not None:
        delta = max(0, _filetime(now) - start)
        if delta < 1 << 49:
            code, time_delta = 0, (delta >> 18) & 0x7FFFFFFF
        else:
            code, time_delta = 1, (delta >> 23) & 0x7FFFFFFF
        block = (code << 39) | (time_delta << 8) | (secrets.randbelow(16) << 4) | 1
        data += block.to_bytes(5, "big")
    return base64.b64encode(data).decode("ascii")


def conversation_guid(domain: str, ticket_number: int) -> uuid.UUID:
    return uuid.uuid5(uuid.NAMESPACE_URL, f"callcenter:{domain}:ticket:{ticket_number}")


def reply_to_address(identity: OutboundIdentity, signer: ReplyTokenSigner, number: int) -> str:
    """``support+t<number>-<signature>@domain``: replies to it carry the signed token."""
    local, _, domain = identity.address.rpartition("@")
    return f"{local}+t{signer.token(number)}@{domain}"


def _topic(subject: str) -> str:
    topic = _REPLY_PREFIX.sub("", subject)
    return re.sub(r"\[#\d+\]\s*", "", topic).strip()


def _references(thread: ThreadContext) -> list[str]:
    refs = list(dict.fromkeys(thread.references))
    if thread.parent_message_id and thread.parent_message_id not in refs:
        refs.append(thread.parent_message_id)
    if len(refs) > _MAX_REFERENCES:
        refs = refs[:1] + refs[-(_MAX_REFERENCES - 1) :]
    return refs


def build_message(
    identity: OutboundIdentity,
    signer: ReplyTokenSigner,
    thread: ThreadContext,
    to: tuple[str, ...],
    body: str,
    *,
    kind: OutboundKind = OutboundKind.AUTOMATIC,
    now: datetime | None = None,
    nonce: str | None = None,
) -> OutboundMessage:
    """Build one outbound message for ``thread`` (no I/O)."""
    now = now or datetime.now(UTC)
    number = thread.ticket_number
    message_id = signer.message_id(number, nonce or secrets.token_hex(8), identity.domain)
    tag = f"[#{number}]"
    topic = _topic(thread.subject)
    subject = f"{tag} {topic}" if topic else tag
    if thread.parent_message_id:
        subject = f"Re: {subject}"

    msg = EmailMessage()
    msg["Message-ID"] = f"<{message_id}>"
    msg["Date"] = format_datetime(now.astimezone(UTC))
    msg["From"] = formataddr((identity.display_name, identity.address))
    msg["Reply-To"] = formataddr(
        (identity.display_name, reply_to_address(identity, signer, number))
    )
    msg["To"] = ", ".join(to)
    msg["Subject"] = subject
    if thread.parent_message_id:
        msg["In-Reply-To"] = f"<{thread.parent_message_id}>"
    refs = _references(thread)
    if refs:
        msg["References"] = " ".join(f"<{ref}>" for ref in refs)
    msg["Thread-Topic"] = topic or tag
    msg["Thread-Index"] = thread_index(
        conversation_guid(identity.domain, number),
        thread.opened_at,
        now if thread.parent_message_id else None,
    )
    if kind is OutboundKind.AUTOMATIC:
        msg["Auto-Submitted"] = "auto-replied" if thread.parent_message_id else "auto-generated"
    msg["X-Auto-Response-Suppress"] = "All"
    msg[LOOP_HEADER] = identity.loop_id
    marker = body_marker(signer, number)
    footer = f"\n\n-- \nTicket {tag}. Please keep this line when you reply: {marker}\n"
    msg.set_content(body.rstrip("\n") + footer)
    envelope_sender = "" if kind is OutboundKind.AUTOMATIC else identity.address
    return OutboundMessage(msg, message_id, envelope_sender, to)


@dataclass(frozen=True, slots=True)
class RelaySettings:
    """The SMTP relay (smarthost) we submit to."""

    host: str
    port: int
    timeout: float = 10.0
    start_tls: bool = False
    username: str | None = None
    password: str | None = field(default=None, repr=False)


class SmtpNotifier:
    """Sends messages to the relay; failures become :class:`EmailDeliveryError`.

    A 5xx reply (to MAIL FROM, to every RCPT TO, or to DATA) is a permanent failure; a 4xx
    reply, a refused connection or a timeout is temporary (the outbox retries it).
    """

    def __init__(self, relay: RelaySettings) -> None:
        self._relay = relay

    async def send(self, outbound: OutboundMessage) -> None:
        await self.send_bytes(
            outbound.message_id,
            outbound.envelope_sender,
            outbound.recipients,
            outbound.message.as_bytes(),
        )

    async def send_bytes(
        self, message_id: str, sender: str, recipients: Sequence[str], raw: bytes
    ) -> None:
        """Submit ``raw`` (a whole RFC 5322 message) for ``recipients``."""
        relay = self._relay
        client = aiosmtplib.SMTP(
            hostname=relay.host,
            port=relay.port,
            timeout=relay.timeout,
            start_tls=relay.start_tls,
            username=relay.username,
            password=relay.password,
        )
        try:
            async with client:  # sendmail: "" is the null reverse-path, not "take it from From"
                await client.sendmail(sender, list(recipients), raw)
        except (aiosmtplib.SMTPException, OSError, ValueError) as err:
            raise EmailDeliveryError(
                f"relay {relay.host}:{relay.port} refused {message_id}: {_masked(str(err))}",
                permanent=_permanent(err),
            ) from err
        log.info("sent %s to %s", message_id, ", ".join(mask_email(r) for r in recipients))


def _masked(text: str) -> str:
    """``text`` with every address in it masked (relays quote the recipient they refuse)."""
    return _ADDRESS.sub(lambda m: mask_email(m.group(0)), text)


def _permanent(err: Exception) -> bool:
    if isinstance(err, ValueError):  # a message aiosmtplib cannot send at all
        return True
    if isinstance(err, aiosmtplib.SMTPRecipientsRefused):
        return bool(err.recipients) and all(r.code >= 500 for r in err.recipients)
    if isinstance(err, aiosmtplib.SMTPResponseException):
        return 500 <= err.code < 600
    return False
