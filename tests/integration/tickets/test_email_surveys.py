"""Email surveys end to end on SQLite and PostgreSQL: a solved ticket mails its survey link
through the outbox and a real SMTP relay, the customer answers on the public page (aiohttp test
client), the answer is on the ticket and in the CSAT report, and bad links and answers are refused
with a clear page and nothing stored.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any

import aiosmtplib
import pytest
from aiohttp import ClientResponse
from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy import func, select

from agent_console.app import create_app
from agent_console.ratelimit import RateLimiter
from agent_console.state import WebConfig
from agent_console.survey_pages import SURVEY_LIMITER
from tests.contract.test_web_app import add_users
from tests.polling import eventually
from tickets.customers import CustomerDirectory
from tickets.db import Database
from tickets.email.outbound import build_outbound_mail, outbound_identity
from tickets.email.outbox import CustomerMail, MailOutboxEntry, OutboxStatus
from tickets.email.service import build_email_channel
from tickets.email.smtp_in import InboundSmtpServer
from tickets.email.threading import ReplyTokenSigner
from tickets.hooks import HelpDeskHooks
from tickets.models import AuthorKind, Channel, IdentityKind, Ticket
from tickets.repository import TicketRepository
from tickets.surveys import SurveyResponse, SurveyTokens
from tickets.users import Role

from .test_email_outbox import (
    ALICE,
    FAST,
    SECRET,
    SUPPORT,
    Relay,
    customer_mail,
    email_settings,
    relay,  # noqa: F401 - the SMTP relay fixture, found by name
    running,
)

PUBLIC_URL = "https://help.example.test"
LINK = re.compile(re.escape(PUBLIC_URL) + r"/survey/(\S+)")
TOKENS = SurveyTokens(b"survey-secret-for-the-tests-0123")


@dataclass
class Desk:
    db: Database
    relay: Relay
    inbound: InboundSmtpServer
    client: TestClient[Any, Any]
    tokens: dict[Role, str]

    @property
    def agent(self) -> dict[str, str]:
        return self.auth(Role.AGENT)

    def auth(self, role: Role) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[role]}"}

    async def customer_writes(self) -> Ticket:
        async with aiosmtplib.SMTP(
            hostname="127.0.0.1", port=self.inbound.port, timeout=30, start_tls=False
        ) as smtp:
            await smtp.sendmail(ALICE, [SUPPORT], customer_mail())
        async with self.db.sessions() as session:
            query = select(Ticket).order_by(Ticket.id.desc()).limit(1)
            return (await session.execute(query)).scalar_one()

    async def set_status(self, ticket_id: int, status: str) -> None:
        response = await self.client.patch(
            f"/api/tickets/{ticket_id}", json={"status": status}, headers=self.agent
        )
        assert response.status == 200, await response.text()

    async def ticket(self, ticket_id: int) -> dict[str, Any]:
        response = await self.client.get(f"/api/tickets/{ticket_id}", headers=self.agent)
        out: dict[str, Any] = await response.json()
        return out

    async def survey_mails(self) -> list[MailOutboxEntry]:
        async with self.db.sessions() as session:
            query = select(MailOutboxEntry).where(MailOutboxEntry.purpose == "survey")
            return list((await session.execute(query)).scalars())

    async def answers(self) -> int:
        async with self.db.sessions() as session:
            return int((await session.execute(select(func.count(SurveyResponse.id)))).scalar_one())

    async def mailed_link(self) -> str:
        async def arrived() -> bool:
            return len(self.relay.accepted) >= 1

        await eventually(arrived, 10, "the survey mail at the relay")
        found = LINK.search(self.relay.message().get_content())
        assert found is not None
        return f"/survey/{found.group(1)}"


async def make_desk(
    db: Database,
    tmp_path: Path,
    smarthost: tuple[Relay, int],
    *,
    surveys: bool = True,
    limiter: RateLimiter | None = None,
) -> AsyncIterator[Desk]:
    settings = email_settings(tmp_path, smarthost[1])
    # the sender never looks on its own: a survey mail leaves because its commit woke the sender
    outbound = build_outbound_mail(db, settings, policy=replace(FAST, idle_poll=3600.0))
    assert outbound is not None
    hooks = HelpDeskHooks(
        db.sessions,
        survey_tokens=TOKENS if surveys else None,
        survey_mail=outbound.customer_mail,
        public_url=PUBLIC_URL + "/",
    )
    tokens = await add_users(db)
    app = create_app(
        WebConfig(secret="s" * 32, cookie_secure=False),
        database=db,
        customer_mail=outbound.customer_mail,
        hooks=hooks,
        run_webhooks=False,
    )
    if limiter is not None:
        app[SURVEY_LIMITER] = limiter
    inbound = build_email_channel(db, settings, hooks)
    async with inbound, TestClient(TestServer(app)) as client, running(outbound.sender.run):
        yield Desk(db, smarthost[0], inbound, client, tokens)


DeskMaker = Callable[..., AsyncIterator[Desk]]


@pytest.fixture
def desks(db: Database, tmp_path: Path, relay: tuple[Relay, int]) -> DeskMaker:  # noqa: F811
    """Help desks on the test database and SMTP relay, built with `make_desk`'s options."""
    return partial(make_desk, db, tmp_path, relay)


@pytest.fixture
async def desk(desks: DeskMaker) -> AsyncIterator[Desk]:
    async for made in desks():
        yield made


async def _page(response: ClientResponse, status: int, *needles: str) -> str:
    text = await response.text()
    assert response.status == status, text
    assert response.content_type == "text/html"
    for needle in needles:
        assert needle.lower() in text.lower(), (needle, text)
    return text


async def test_given_an_email_ticket_when_solved_then_the_customer_answers_the_mailed_survey_once(
    desk: Desk,
) -> None:
    ticket = await desk.customer_writes()
    await desk.set_status(ticket.id, "solved")
    path = await desk.mailed_link()

    sender, recipients, _raw = desk.relay.accepted[0]
    mail = desk.relay.message()
    assert (sender, recipients) == ("<>", [ALICE])  # automatic mail: the null reverse-path
    assert mail["Auto-Submitted"] is not None
    assert mail["In-Reply-To"] == "<c1@example.org>"  # threaded on the customer's mail
    assert ticket.number in mail.get_content()
    (row,) = await desk.survey_mails()
    assert row.status in (OutboxStatus.PENDING, OutboxStatus.SENT)
    shown = await desk.ticket(ticket.id)
    (copy,) = [m for m in shown["messages"] if m["author_kind"] == str(AuthorKind.SYSTEM)]
    assert f"{PUBLIC_URL}/survey/…" in copy["body"]
    assert path.removeprefix("/survey/") not in copy["body"]  # the token is the customer's alone

    page = await desk.client.get(path)
    await _page(page, 200, ticket.number, 'name="score"', 'name="resolved"', 'name="comment"')
    assert page.headers["Referrer-Policy"] == "no-referrer"
    assert page.headers["Cache-Control"] == "no-store"

    answer = await desk.client.post(
        path, data={"score": "4", "resolved": "yes", "comment": "Quick <b>and</b> kind"}
    )
    await _page(answer, 200, "Thank you")
    (survey,) = (await desk.ticket(ticket.id))["surveys"]
    assert survey["source"] == "email"
    assert (survey["score"], survey["resolved"]) == (4, True)
    assert survey["comment"] == "Quick <b>and</b> kind"
    report = await desk.client.get(
        "/api/reports/csat?by=channel", headers=desk.auth(Role.SUPERVISOR)
    )
    assert report.status == 200, await report.text()
    rows = [(r["key"], r["responses"], r["csat"]) for r in (await report.json())["rows"]]
    assert rows == [("email", 1, 100.0)]
    by_agent = await desk.client.get(
        "/api/reports/csat?by=agent&since=2000-01-01&until=2000-01-31",
        headers=desk.auth(Role.ADMIN),
    )
    assert (await by_agent.json())["rows"] == []  # answered today, not in January 2000

    again = await desk.client.post(path, data={"score": "1"})
    await _page(again, 409, "already answered")
    await _page(await desk.client.get(path), 409, "already answered")
    assert await desk.answers() == 1
    assert (await desk.ticket(ticket.id))["surveys"][0]["score"] == 4

    # reopened and solved again: the customer is not asked twice
    await desk.set_status(ticket.id, "open")
    await desk.set_status(ticket.id, "solved")
    assert len(await desk.survey_mails()) == 1


async def test_given_bad_links_and_answers_when_sent_then_clear_pages_and_nothing_stored(
    desk: Desk,
) -> None:
    ticket = await desk.customer_writes()
    await desk.set_status(ticket.id, "solved")
    path = await desk.mailed_link()

    forged = path[:-2] + ("AA" if not path.endswith("AA") else "BB")
    await _page(await desk.client.get(forged), 404, "altered")
    await _page(await desk.client.post(forged, data={"score": "5"}), 404, "altered")
    await _page(await desk.client.get("/survey/nonsense"), 404, "not a survey token")
    expired = TOKENS.issue(ticket.id, datetime.now(UTC) - timedelta(days=31))
    await _page(await desk.client.post(f"/survey/{expired}", data={"score": "5"}), 404, "expired")
    other = TOKENS.issue(ticket.id + 1000, datetime.now(UTC))
    await _page(await desk.client.get(f"/survey/{other}"), 404, "names no ticket")

    for form in (
        {"score": "9"},
        {"score": "five"},
        {},
        {"score": "3", "resolved": "maybe"},
        {"score": "3", "comment": "x" * 4001},
    ):
        refused = await desk.client.post(path, data=form)
        await _page(refused, 400, 'role="alert"', 'name="score"')  # the form again, with why
    await _page(
        await desk.client.post(path, json={"score": 5}), 400, "score from 1"
    )  # not a form: nothing to read
    assert await desk.answers() == 0

    ok = await desk.client.post(path, data={"score": "2", "comment": "x" * 4000})
    await _page(ok, 200, "Thank you")
    assert await desk.answers() == 1


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("since=yesterday", "since"),
        ("until=2026-02-30", "until"),
        ("since=2026-03-02&until=2026-03-01", "since"),
        ("since=2024-01-01&until=2026-01-01", "since"),
        ("by=colour", "by"),
    ],
)
async def test_given_a_bad_report_query_when_asked_then_400_naming_the_field(
    desk: Desk, query: str, field: str
) -> None:
    response = await desk.client.get(
        f"/api/reports/csat?{query}", headers=desk.auth(Role.SUPERVISOR)
    )
    assert response.status == 400
    assert (await response.json())["field"] == field
    refused = await desk.client.get("/api/reports/csat", headers=desk.agent)
    assert refused.status == 403


async def test_given_no_survey_secret_when_solved_then_no_survey_mail_and_the_page_says_why(
    desks: DeskMaker,
) -> None:
    async for desk in desks(surveys=False):
        ticket = await desk.customer_writes()
        await desk.set_status(ticket.id, "solved")
        assert await desk.survey_mails() == []
        token = TOKENS.issue(ticket.id, datetime.now(UTC))
        for response in (
            await desk.client.get(f"/survey/{token}"),
            await desk.client.post(f"/survey/{token}", data={"score": "5"}),
        ):
            await _page(response, 404, "does not run email surveys", "survey_secret")
        assert await desk.answers() == 0


async def test_given_tickets_without_a_known_address_when_solved_then_no_survey_mail(
    desk: Desk,
) -> None:
    async with desk.db.sessions.begin() as session:
        repo = TicketRepository(session)
        anonymous = await repo.create(subject="Walk-in", channel=Channel.API, actor="t")
        chat = await repo.create(subject="Chat", channel=Channel.CHAT, actor="t")
    for ticket in (anonymous, chat):
        await desk.set_status(ticket.id, "solved")
    assert await desk.survey_mails() == []


async def test_given_a_survey_mail_queued_in_a_savepoint_then_only_the_commit_wakes_the_sender(
    db: Database, tmp_path: Path
) -> None:
    mail = CustomerMail(
        outbound_identity(email_settings(tmp_path, 25)), ReplyTokenSigner.from_setting(SECRET)
    )
    async with db.sessions.begin() as session:
        found = await CustomerDirectory(session).find_or_create(
            IdentityKind.EMAIL, ALICE, actor="t"
        )
        ticket = await TicketRepository(session).create(
            subject="Printer", channel=Channel.EMAIL, actor="t", customer_id=found.customer.id
        )
        async with session.begin_nested():  # as the hooks queue it
            assert await mail.survey_invitation(session, ticket, link=f"{PUBLIC_URL}/survey/x")
        assert not mail.wake.is_set()  # released savepoint: nothing the sender could see yet
    assert mail.wake.is_set()
    async with db.sessions.begin() as session:  # a rolled-back invitation wakes nobody
        again = CustomerMail(mail.identity, mail.signer)
        other = await TicketRepository(session).create(
            subject="Other", channel=Channel.EMAIL, actor="t", customer_id=found.customer.id
        )
        assert await again.survey_invitation(session, other, link=f"{PUBLIC_URL}/survey/y")
        await session.rollback()
    assert not again.wake.is_set()


async def test_given_one_address_asking_too_often_then_429_with_retry_after(
    desks: DeskMaker,
) -> None:
    limiter = RateLimiter(burst=2, per_second=1 / 60, clock=lambda: 0.0)
    async for desk in desks(limiter=limiter):
        for _ in range(2):
            await _page(await desk.client.get("/survey/nonsense"), 404)
        limited = await desk.client.post("/survey/nonsense", data={"score": "5"})
        await _page(limited, 429, "too many survey requests")
        assert int(limited.headers["Retry-After"]) >= 1
