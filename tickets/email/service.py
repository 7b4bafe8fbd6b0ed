"""Composition of the email channel on the records, and the periodic SLA breach check.

The node calls :func:`build_email_channel` with its records database and its ``[email]``
settings and runs the returned server (``InboundSmtpServer.run``) and a :class:`BreachWatcher`
(``run``) in its task group; neither needs to know the pipeline, the desk or the hooks.
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

__all__ = ["SECRET_ENV", "BreachWatcher", "build_email_channel"]

log = logging.getLogger(__name__)

SECRET_ENV = TOKEN_SECRET_ENV  # one name: the settings' [email] secret


def build_email_channel(
    records: Database, settings: EmailSettings, hooks: HelpDeskHooks
) -> InboundSmtpServer:
    """The inbound SMTP server storing mail on ``records`` with ``hooks`` (not started yet).

    Raises `EmailConfigError` naming ``CALLCENTER_EMAIL_SECRET`` when the secret is missing or
    shorter than 16 bytes.
    """
    signer = ReplyTokenSigner.from_setting(settings.secret.value)
    desk = SqlHelpDesk(
        records.sessions, FileBlobStore(Path(settings.blob_dir)), hooks=hooks, clock=hooks.clock
    )
    domain = settings.domain.lower()
    pipeline = InboundPipeline(
        directory=desk,
        sink=desk,
        signer=signer,
        loop_id=domain,
        own_addresses=frozenset({settings.address.lower()}),
    )
    handler = InboundSmtpHandler(
        pipeline,
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
