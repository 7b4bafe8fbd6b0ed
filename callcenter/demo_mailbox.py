"""The demo customers' mailbox: the SMTP relay the node's outbound mail goes to, and customers
who answer an agent's reply, so the demo shows the threading round trip.

The node sends customer mail (agents' replies, offline-chat acknowledgements, survey links)
through ``[email] relay_host``; in the demo that is this mailbox on a loopback port. It counts
what arrives by kind and, for an agent's reply (no ``Auto-Submitted``), has the customer answer
now and then: a reply to the ``Reply-To`` address with ``In-Reply-To`` and ``References`` set to
our Message-ID, sent to the node's SMTP port, where it joins the same ticket. A survey mail's
link (``/survey/<token>``) is followed on the node's web app and the form answered.
"""

from __future__ import annotations

import asyncio
import contextlib
import email
import email.policy
import logging
import random
import re
from collections.abc import Coroutine
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.utils import make_msgid, parseaddr
from typing import Any

import aiohttp
import aiosmtplib
from aiosmtpd.smtp import SMTP, Envelope, Session

from callcenter.logmask import mask_email

__all__ = ["CustomerMailbox", "MailboxStats"]

log = logging.getLogger(__name__)

SURVEY_PATH = re.compile(r"/survey/([A-Za-z0-9_.~-]+)")


@dataclass(slots=True)
class MailboxStats:
    """What reached the customers, and how many of them answered."""

    replies: int = 0  # agents' replies (not automatic)
    automatic: int = 0  # acknowledgements, survey links
    answered: int = 0  # customers' answers sent back to the SMTP port
    surveys_answered: int = 0  # survey links followed and the form sent
    recipients: set[str] = field(default_factory=set)


class CustomerMailbox:
    """An SMTP server on loopback that keeps nothing but counts, and answers some replies."""

    def __init__(
        self, *, answer_share: float = 0.5, seed: int | None = None, host: str = "127.0.0.1"
    ) -> None:
        self.stats = MailboxStats()
        self.smtp_in: tuple[str, int] | None = None  # the node's SMTP port, for the answers
        self.web_base: str | None = None  # the node's web app, for the survey links
        self._host = host
        self._answer_share = answer_share
        self._rng = random.Random(seed)
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def port(self) -> int:
        if self._server is None or not self._server.sockets:
            raise RuntimeError("mailbox not started")
        return int(self._server.sockets[0].getsockname()[1])

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            lambda: SMTP(self, hostname="customers.example.org", loop=loop), self._host, 0
        )

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        raw = envelope.original_content or b""
        message = email.message_from_bytes(raw, policy=email.policy.default)
        self.stats.recipients.update(str(r).lower() for r in envelope.rcpt_tos)
        if str(message.get("Auto-Submitted", "no")).lower() != "no":
            self.stats.automatic += 1
            body = message.get_body(preferencelist=("plain",))
            link = SURVEY_PATH.search(body.get_content() if body is not None else "")
            if link is not None and self.web_base is not None:
                self._spawn(self._answer_survey(link.group(0)))
            return "250 OK"
        self.stats.replies += 1
        if self.smtp_in is not None and self._rng.random() < self._answer_share:
            self._spawn(self._answer(message))
        return "250 OK"

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _answer_survey(self, path: str) -> None:
        """The customer opens the survey page and sends a score (4 or 5, resolved)."""
        assert self.web_base is not None
        await asyncio.sleep(self._rng.uniform(0.5, 2.0))
        form = {"score": str(self._rng.choice((4, 5))), "resolved": "yes"}
        url = f"{self.web_base}{path}"
        try:
            async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as http:
                async with http.get(url) as page:
                    if page.status != 200:
                        log.warning("demo: a survey page answered %d", page.status)
                        return
                async with http.post(url, data=form) as sent:
                    if sent.status != 200:
                        log.warning("demo: a survey answer was refused (%d)", sent.status)
                        return
        except (aiohttp.ClientError, TimeoutError) as err:
            log.warning("demo: a survey page could not be reached: %s", err)
            return
        self.stats.surveys_answered += 1

    async def _answer(self, received: EmailMessage) -> None:
        """The customer answers the agent's reply, threaded by In-Reply-To and References."""
        assert self.smtp_in is not None
        await asyncio.sleep(self._rng.uniform(0.5, 2.0))
        _name, customer = parseaddr(str(received.get("To", "")))
        _name, ours = parseaddr(str(received.get("Reply-To") or received.get("From", "")))
        message_id = str(received.get("Message-ID", ""))
        if not customer or not ours or not message_id:
            return
        answer = EmailMessage()
        answer["From"] = customer
        answer["To"] = ours
        subject = str(received.get("Subject", ""))
        answer["Subject"] = subject if subject.lower().startswith("re:") else f"Re: {subject}"
        answer["Message-ID"] = make_msgid(domain="example.org")
        answer["In-Reply-To"] = message_id
        answer["References"] = " ".join(
            part for part in (str(received.get("References", "")), message_id) if part
        )
        answer.set_content("Thank you, that worked.")
        host, port = self.smtp_in
        try:
            await aiosmtplib.send(answer, hostname=host, port=port, timeout=10)
        except (aiosmtplib.SMTPException, OSError) as err:
            log.warning("demo: %s's answer was not accepted: %s", mask_email(customer), err)
            return
        self.stats.answered += 1
