"""Composition of outbound customer mail: the outbox writer, the offline-chat mailer, the sender.

:func:`build_outbound_mail` reads ``[email]`` and gives an :class:`OutboundMail` (None without
``email.relay_host``). The composition root hands ``customer_mail`` to the web app
(``create_app(customer_mail=...)``: agents' public replies are mailed), ``offline_mailer`` to
the chat (``create_app(offline_mailer=...)``) and runs ``sender.run()`` in its task group. The
writer and the sender share one wake-up event, so a queued mail leaves at once.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

from callcenter.config import EmailSettings
from tickets.db import Database
from tickets.email.chat_mail import SmtpOfflineMailer
from tickets.email.outbox import CustomerMail, OutboxPolicy, OutboxSender
from tickets.email.smtp_out import OutboundIdentity, RelaySettings, SmtpNotifier
from tickets.email.threading import ReplyTokenSigner

__all__ = ["OutboundMail", "build_outbound_mail", "outbound_identity"]

log = logging.getLogger(__name__)


def outbound_identity(settings: EmailSettings) -> OutboundIdentity:
    """Who our mail is from: ``email.address``, Message-IDs and loop id in ``email.domain``.

    The loop id is the domain, as the inbound pipeline's, so our own mail coming back is seen.
    """
    domain = settings.domain.lower()
    return OutboundIdentity(domain=domain, address=settings.address.lower(), loop_id=domain)


@dataclass(frozen=True, slots=True)
class OutboundMail:
    """Outbound customer mail: what the web app queues into, and the task that sends it."""

    customer_mail: CustomerMail
    offline_mailer: SmtpOfflineMailer
    sender: OutboxSender


def build_outbound_mail(
    records: Database, settings: EmailSettings, *, policy: OutboxPolicy | None = None
) -> OutboundMail | None:
    """Customer mail through ``email.relay_host`` (None when it is empty: no outbound mail).

    Raises `EmailConfigError` naming ``CALLCENTER_EMAIL_SECRET`` when the secret is missing or
    shorter than 16 bytes (our Message-IDs and reply tokens are signed with it).
    """
    if not settings.relay_host:
        log.info("no email.relay_host: customers get no mail")
        return None
    signer = ReplyTokenSigner.from_setting(settings.secret.value)
    wake = asyncio.Event()
    mail = CustomerMail(
        outbound_identity(settings),
        signer,
        notify_customers=settings.notify_customers,
        wake=wake,
    )
    relay = SmtpNotifier(
        RelaySettings(
            host=settings.relay_host,
            port=settings.relay_port,
            start_tls=settings.relay_start_tls,
            username=settings.relay_username or None,
            password=settings.relay_password.value or None,
        )
    )
    sender = OutboxSender(records.sessions, relay, policy, wake=wake)
    return OutboundMail(mail, SmtpOfflineMailer(records.sessions, mail), sender)
