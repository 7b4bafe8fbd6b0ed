"""Service levels follow what agents do in the web app (REST API), on SQLite and PostgreSQL.

The app runs on the `db` fixture's real databases with a settable clock; SLA policies are
stored through `ServiceLevels`, customers write through the repository and the hooks as the
email channel does, agents act only through the aiohttp test client.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy import select

from tests.integration.tickets.conftest import FakeClock
from tickets.db import Database
from tickets.hooks import HelpDeskHooks
from tickets.models import AuditEvent, AuthorKind, Channel, Direction
from tickets.repository import TicketRepository
from tickets.sla import SlaPolicy
from tickets.sla_records import ServiceLevels, TicketSla
from tickets.users import Role

from .test_web_app import Web, add_users, start_web

H = timedelta(hours=1)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def site(tmp_path: Path, db: Database, clock: FakeClock) -> AsyncIterator[Web]:
    """The app on a fake clock, with a round-the-clock policy for every ticket."""
    async with db.sessions.begin() as session:
        await ServiceLevels(session, clock).add_policy(
            SlaPolicy(name="any", first_response=2 * H, next_response=4 * H, resolution=10 * H)
        )
    app, database = await start_web(tmp_path, database=db, run_webhooks=False, clock=clock)
    tokens = await add_users(database)
    async with TestClient(TestServer(app)) as client:
        yield Web(app, client, database, tokens)


async def _ticket(site: Web, **body: Any) -> dict[str, Any]:
    response = await site.client.post(
        "/api/tickets", json={"subject": "No dial tone", **body}, headers=site.auth(Role.AGENT)
    )
    assert response.status == 201, await response.text()
    out: dict[str, Any] = await response.json()
    return out


async def _get(site: Web, ticket_id: int) -> dict[str, Any]:
    response = await site.client.get(f"/api/tickets/{ticket_id}", headers=site.auth(Role.AGENT))
    out: dict[str, Any] = await response.json()
    return out


async def _post(site: Web, ticket_id: int, body: str, kind: str = "reply") -> None:
    response = await site.client.post(
        f"/api/tickets/{ticket_id}/messages",
        json={"body": body, "kind": kind},
        headers=site.auth(Role.AGENT),
    )
    assert response.status == 201, await response.text()


async def _status(site: Web, ticket_id: int, status: str) -> dict[str, Any]:
    response = await site.client.patch(
        f"/api/tickets/{ticket_id}", json={"status": status}, headers=site.auth(Role.AGENT)
    )
    assert response.status == 200, await response.text()
    out: dict[str, Any] = await response.json()
    return out


async def _customer_writes(site: Web, clock: FakeClock, ticket_id: int, text: str) -> None:
    """A customer's mail on the ticket, stored as the email channel stores it (with the hooks)."""
    async with site.database.sessions.begin() as session:
        repo = TicketRepository(session, clock)
        ticket = await repo.get(ticket_id)
        previous = ticket.status
        message = await repo.add_message(
            ticket,
            channel=Channel.EMAIL,
            direction=Direction.INBOUND,
            author_kind=AuthorKind.CUSTOMER,
            body=text,
            actor="test:customer",
            author="ann@example.org",
        )
        hooks = HelpDeskHooks(site.database.sessions, clock)
        await hooks.status_changed(session, ticket, previous)
        await hooks.message_added(session, ticket, message)


async def _actions(site: Web, ticket_id: int) -> list[str]:
    async with site.database.sessions() as session:
        query = select(AuditEvent.action).where(AuditEvent.ticket_id == ticket_id)
        return list((await session.execute(query.order_by(AuditEvent.id))).scalars())


def _at(value: str | None) -> datetime | None:
    return None if value is None else datetime.fromisoformat(value)


async def test_given_an_api_ticket_when_an_agent_replies_then_first_and_next_response_are_met(
    site: Web, clock: FakeClock
) -> None:
    ticket = await _ticket(site)
    created = clock.now
    assert _at(ticket["sla"]["first_response_due_at"]) == created + 2 * H
    assert _at(ticket["sla"]["resolution_due_at"]) == created + 10 * H

    clock.advance(H)
    await _post(site, ticket["id"], "Have you tried another socket?")
    shown = await _get(site, ticket["id"])
    assert _at(shown["sla"]["first_response_at"]) == created + H
    assert (await _actions(site, ticket["id"])).count("sla.responded") == 1

    clock.advance(H)
    await _customer_writes(site, clock, ticket["id"], "Still nothing.")
    waiting = await _get(site, ticket["id"])
    assert _at(waiting["sla"]["next_response_due_at"]) == clock.now + 4 * H

    clock.advance(H)
    await _post(site, ticket["id"], "A technician is on the way.")
    answered = await _get(site, ticket["id"])
    assert answered["sla"]["next_response_due_at"] is None
    assert _at(answered["sla"]["first_response_at"]) == created + H  # the first stays the first
    assert (await _actions(site, ticket["id"])).count("sla.responded") == 2


async def test_given_an_api_ticket_when_an_agent_adds_a_note_then_no_response_is_recorded(
    site: Web, clock: FakeClock
) -> None:
    ticket = await _ticket(site)
    clock.advance(H)
    await _post(site, ticket["id"], "Called the exchange, no answer yet.", kind="note")
    shown = await _get(site, ticket["id"])
    assert shown["sla"]["first_response_at"] is None
    assert shown["sla"]["first_response_due_at"] == ticket["sla"]["first_response_due_at"]
    assert "sla.responded" not in await _actions(site, ticket["id"])

    # a note after the customer's follow-up leaves the next-response deadline running
    clock.advance(H)
    await _post(site, ticket["id"], "Here is what you asked.")
    await _customer_writes(site, clock, ticket["id"], "Thanks, and now?")
    due = _at((await _get(site, ticket["id"]))["sla"]["next_response_due_at"])
    assert due is not None
    await _post(site, ticket["id"], "Customer is impatient.", kind="note")
    assert _at((await _get(site, ticket["id"]))["sla"]["next_response_due_at"]) == due


async def test_given_an_api_ticket_when_set_pending_then_the_resolution_clock_stops_until_open(
    site: Web, clock: FakeClock
) -> None:
    ticket = await _ticket(site)
    resolution = _at(ticket["sla"]["resolution_due_at"])
    assert resolution is not None

    clock.advance(3 * H)  # 7 h of the 10 h left
    paused = await _status(site, ticket["id"], "pending")
    assert _at(paused["sla"]["paused_at"]) == clock.now
    async with site.database.sessions() as session:
        state = await session.get_one(TicketSla, ticket["id"])
        assert state.paused_remaining["resolution"] == pytest.approx(7 * 3600)

    clock.advance(24 * H)  # waiting on the customer: none of this counts
    resumed = await _status(site, ticket["id"], "open")
    assert _at(resumed["sla"]["resolution_due_at"]) == clock.now + 7 * H
    assert resumed["sla"]["paused_at"] is None
    assert resumed["sla"]["paused_seconds"] == pytest.approx(24 * 3600)
    actions = await _actions(site, ticket["id"])
    assert actions.index("sla.paused") < actions.index("sla.resumed")


async def test_given_an_api_ticket_when_solved_then_no_next_response_is_owed(
    site: Web, clock: FakeClock
) -> None:
    ticket = await _ticket(site)
    await _post(site, ticket["id"], "Try this.")
    await _customer_writes(site, clock, ticket["id"], "Did not help.")
    assert (await _get(site, ticket["id"]))["sla"]["next_response_due_at"] is not None
    solved = await _status(site, ticket["id"], "solved")
    assert solved["sla"]["next_response_due_at"] is None
    assert _at(solved["sla"]["solved_at"]) == clock.now
