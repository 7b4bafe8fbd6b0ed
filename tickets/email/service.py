"""Composition of the email channel on the records, and the periodic SLA breach check.

The node calls :func:`build_email_channel` with its records database and its ``[email]``
settings and runs the returned server (``InboundSmtpServer.run``) and a :class:`BreachWatcher`
(``run``) in its task group; neither needs to know the pipeline, the desk or the hooks. With
``imap_host`` set, :func:`build_imap_poller` gives an `ImapPoller` (``run``) into the same path.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable
from pathlib import Path

from sqlalchemy.exc import InterfaceError, OperationalError

from callcenter.config import EmailSettings
from tickets.db import Database
from tickets.email import EmailConfigError
from tickets.email.imap_poll import AfterStore, ImapPoller, ImapSettings
from tickets.email.smtp_in import (
    InboundPipeline,
    InboundSmtpHandler,
    InboundSmtpServer,
    InboundSmtpSettings,
)
from tickets.email.sql_desk import FileBlobStore, SqlHelpDesk
from tickets.email.threading import TOKEN_SECRET_ENV, ReplyTokenSigner
from tickets.hooks import HelpDeskHooks
from tickets.sla_records import BreachDetected

__all__ = [
    "IMAP_PASSWORD_ENV",
    "SECRET_ENV",
    "BreachWatcher",
    "build_email_channel",
    "build_imap_poller",
]

log = logging.getLogger(__name__)

SECRET_ENV = TOKEN_SECRET_ENV  # one name: the settings' [email] secret
IMAP_PASSWORD_ENV = "CALLCENTER_EMAIL_IMAP_PASSWORD"


def build_email_channel(
    records: Database, settings: EmailSettings, hooks: HelpDeskHooks
) -> InboundSmtpServer:
    """The inbound SMTP server storing mail on ``records`` with ``hooks`` (not started yet).

    Raises `EmailConfigError` naming ``CALLCENTER_EMAIL_SECRET`` when the secret is missing or
    shorter than 16 bytes.
    """
    domain = settings.domain.lower()
    handler = InboundSmtpHandler(
        _inbound_pipeline(records, settings, hooks),
        max_message_bytes=settings.max_message_bytes,
        accepted_domains=frozenset({domain}),
    )
    return InboundSmtpServer(
        handler,
        InboundSmtpSettings(
            host=settings.host,
            port=settings.port,
            hostname=domain,
            max_message_bytes=settings.max_message_bytes,
            accepted_domains=frozenset({domain}),
        ),
    )


def _inbound_pipeline(
    records: Database, settings: EmailSettings, hooks: HelpDeskHooks
) -> InboundPipeline:
    """The one inbound path (parse, loops, threading, SQL desk) behind SMTP and IMAP."""
    signer = ReplyTokenSigner.from_setting(settings.secret.value)
    desk = SqlHelpDesk(
        records.sessions, FileBlobStore(Path(settings.blob_dir)), hooks=hooks, clock=hooks.clock
    )
    return InboundPipeline(
        directory=desk,
        sink=desk,
        signer=signer,
        loop_id=settings.domain.lower(),
        own_addresses=frozenset({settings.address.lower()}),
    )


def build_imap_poller(
    settings: EmailSettings, records: Database, hooks: HelpDeskHooks
) -> ImapPoller | None:
    """The poller of ``[email] imap_*``'s mailbox into the same desk as SMTP, or None if off.

    Off when ``imap_host`` is empty. Raises `EmailConfigError` naming the key when
    ``imap_username`` or ``CALLCENTER_EMAIL_IMAP_PASSWORD`` is missing, or the secret is.
    """
    if not settings.imap_host:
        return None
    if not settings.imap_username:
        raise EmailConfigError("email.imap_username must be set when email.imap_host is")
    if not settings.imap_password:
        raise EmailConfigError(f"{IMAP_PASSWORD_ENV} (email.imap_password) must be set")
    try:
        imap = ImapSettings(
            host=settings.imap_host,
            port=settings.imap_port,
            tls=settings.imap_tls,
            username=settings.imap_username,
            password=settings.imap_password.value,
            folder=settings.imap_folder,
            interval=settings.imap_interval,
            max_message_bytes=settings.max_message_bytes,
            after_store=AfterStore(settings.imap_after_store),
            move_to=settings.imap_move_to,
        )
    except ValueError as err:
        raise EmailConfigError(f"email.imap_*: {err}") from err
    return ImapPoller(_inbound_pipeline(records, settings, hooks), imap)


class BreachWatcher:
    """Runs ``check`` every ``interval`` seconds; each breach is logged once, when first found.

    A database outage is logged and retried with back-off (bounded by ``backoff_max``);
    ``on_breach`` (optional) is awaited for each new breach, e.g. to notify a supervisor.
    """

    def __init__(
        self,
        check: Callable[[], Awaitable[list[BreachDetected]]],
        *,
        interval: float = 60.0,
        backoff_max: float = 300.0,
        on_breach: Callable[[BreachDetected], Awaitable[None]] | None = None,
    ) -> None:
        if interval <= 0 or backoff_max <= 0:
            raise ValueError("interval and backoff_max must be positive")
        self.check = check
        self.interval = interval
        self.backoff_max = backoff_max
        self.on_breach = on_breach
        self.passes = 0
        self.breaches = 0

    @classmethod
    def for_hooks(cls, hooks: HelpDeskHooks, *, interval: float = 60.0) -> BreachWatcher:
        return cls(hooks.check_breaches, interval=interval)

    async def run_once(self) -> list[BreachDetected]:
        found = await self.check()
        self.passes += 1
        for breach in found:
            self.breaches += 1
            log.warning(
                "SLA breached: ticket %s %s was due %s",
                breach.number,
                breach.target,
                breach.due_at.isoformat(),
            )
            if self.on_breach is not None:
                await self.on_breach(breach)
        return found

    async def run(self) -> None:
        """Check until cancelled."""
        delay = self.interval
        while True:
            try:
                await self.run_once()
                delay = self.interval
            except (OSError, OperationalError, InterfaceError) as err:
                delay = min(max(delay * 2, self.interval), self.backoff_max)
                log.warning("SLA breach check failed (%s); retrying in %.0f s", err, delay)
            await asyncio.sleep(delay * random.uniform(0.9, 1.0))
