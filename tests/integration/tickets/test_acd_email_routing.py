"""Email tickets through the real ACD on real Redis, with the records on real SQLite and PostgreSQL.

The dispatcher turns unassigned email tickets into ACD items (``email-<ticket id>``), gives each
ticket to the agent the ACD reserves (audited), and ends the item when the agent replies or the
ticket leaves new/open; a dispatcher and ACD started again find everything where it was.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass

import pytest
import redis.asyncio as aioredis
from sqlalchemy import select

from acd.adapters.email_routing import ASSIGNED_ACTION, EmailDispatcher, NoEmailQueue
from acd.adapters.redis_calls import CallFacts
from acd.adapters.redis_state import AcdRedisState
from acd.config import AcdConfig, parse_acd_config
from acd.service import AcdService
from agent_console.service import HelpDesk
from tests.polling import eventually
from tickets.customers import CustomerDirectory
from tickets.db import Database
from tickets.models import AuditEvent, Channel, IdentityKind, Ticket, TicketStatus
from tickets.repository import TicketRepository

pytestmark = pytest.mark.timeout(60)


def config(site: str, *, ring_timeout: float = 20.0) -> AcdConfig:
    """Offers outlive ``ring_timeout`` by 0.2 s (a crashed claim is found again quickly)."""
    capacity = {"call": 0, "chat": 0, "email": 1}
    return parse_acd_config(
        {
            "service": {"site": site, "ring_timeout": ring_timeout, "offer_margin": 0.2},
            "queues": [
                {"id": "mail", "channel": "email", "skills": "*", "wrap_up": 0},
                {"id": "phones", "skills": "*"},
            ],
            "agents": [
                {"id": "ann", "skills": {"billing": 3}, "capacity": capacity},
                {"id": "bob", "skills": {"tech": 3}, "capacity": capacity},
            ],
        }
    )


@dataclass
class Desk:
    """One ACD service and its email dispatcher, running (a node, as far as email goes)."""

    acd: AcdService
    dispatcher: EmailDispatcher
    tasks: list[asyncio.Task[None]]

    async def stop(self) -> None:
        """The dispatcher finishes its pass, then the ACD service is cancelled."""
        self.dispatcher.close()
        await asyncio.gather(*self.tasks[1:])
        self.tasks[0].cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)


@pytest.fixture
async def redis(redis_url: str) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(redis_url)
    yield client
    await client.aclose()


@pytest.fixture
def site() -> str:
    return f"mail{uuid.uuid4().hex[:8]}"


async def start(db: Database, redis: aioredis.Redis, site: str) -> Desk:
    state = AcdRedisState(redis, site)
    acd = AcdService(state, CallFacts(redis, state), config(site), poll_interval=0.02)
    dispatcher = EmailDispatcher(acd, db.sessions, redis, interval=0.05, sweep_every=0.5)
    tasks = [asyncio.create_task(acd.run()), asyncio.create_task(dispatcher.run())]
    return Desk(acd, dispatcher, tasks)


async def email_ticket(
    db: Database,
    sender: str,
    *,
    skills: Sequence[str] = (),
    queue: str = "",
    tags: Sequence[str] = (),
) -> int:
    async with db.sessions.begin() as session:
        found = await CustomerDirectory(session).find_or_create(
            IdentityKind.EMAIL, sender, actor="test"
        )
        ticket = await TicketRepository(session).create(
            subject=f"mail from {sender}",
            channel=Channel.EMAIL,
            actor="test",
            customer_id=found.customer.id,
            skills=skills,
            queue=queue,
            tags=tags,
        )
        return ticket.id


async def ticket(db: Database, ticket_id: int) -> Ticket:
    async with db.sessions() as session:
        return await TicketRepository(session).get(ticket_id)


async def assigned_to(db: Database, ticket_id: int, agent: str | None) -> None:
    async def check() -> bool:
        return (await ticket(db, ticket_id)).assignee == agent

    await eventually(check, 15, f"ticket {ticket_id} assigned to {agent}")


async def item_state(desk: Desk, item_id: str, state: str) -> None:
    async def check() -> bool:
        record = await desk.acd.state.item(item_id)
        return record is not None and record.state == state

    await eventually(check, 15, f"{item_id} {state}")


async def test_given_email_tickets_when_agents_have_email_capacity_then_the_acd_assigns_each_by_skill_and_a_reply_frees_the_agent(  # noqa: E501
    db: Database, redis: aioredis.Redis, site: str
) -> None:
    invoice = await email_ticket(db, "ada@example.org", skills=["billing"])
    outage = await email_ticket(db, "ben@example.org", skills=["tech"])
    refund = await email_ticket(db, "cy@example.org", skills=["billing"])
    desk = await start(db, redis, site)
    try:
        await desk.acd.started.wait()
        await desk.acd.login("ann")
        await desk.acd.login("bob")
        await assigned_to(db, invoice, "ann")
        await assigned_to(db, outage, "bob")
        await item_state(desk, f"email-{refund}", "waiting")  # ann holds one email: the limit
        first = await ticket(db, invoice)
        assert first.status == TicketStatus.OPEN
        async with db.sessions() as session:
            audit = list(
                (
                    await session.execute(
                        select(AuditEvent.actor, AuditEvent.action)
                        .where(AuditEvent.ticket_id == invoice)
                        .order_by(AuditEvent.id)
                    )
                ).all()
            )
        assert ("system:acd", "ticket.assigned") in audit
        assert ("system:acd", ASSIGNED_ACTION) in audit

        helpdesk = HelpDesk(db.sessions)
        await helpdesk.add_message(
            invoice, {"kind": "note", "body": "checking"}, actor="user:ann", author="ann"
        )
        await helpdesk.add_message(
            invoice, {"body": "Fixed, sorry"}, actor="user:ann", author="ann"
        )
        await item_state(desk, f"email-{invoice}", "completed")
        await assigned_to(db, refund, "ann")  # the reply freed ann for the waiting one

        await helpdesk.update_ticket(outage, {"status": "pending"}, actor="user:bob")
        await item_state(desk, f"email-{outage}", "completed")
        bob = await desk.acd.state.agent("bob")
        assert bob is not None
        assert bob.load["email"] == 0
        assert (await ticket(db, invoice)).assignee == "ann"  # answered, still hers
    finally:
        await desk.stop()


async def test_given_a_restart_when_the_dispatcher_comes_back_then_nothing_is_queued_twice_and_a_reply_still_ends_the_item(  # noqa: E501
    db: Database, redis: aioredis.Redis, site: str
) -> None:
    mail = await email_ticket(db, "dee@example.org", skills=["tech"])
    first = await start(db, redis, site)
    await item_state(first, f"email-{mail}", "waiting")  # nobody logged in yet
    await first.stop()

    second = await start(db, redis, site)
    await second.acd.started.wait()
    await second.acd.login("bob")
    await assigned_to(db, mail, "bob")
    await item_state(second, f"email-{mail}", "assigned")
    await second.stop()

    await HelpDesk(db.sessions).add_message(
        mail, {"body": "Restarted the router for you"}, actor="user:bob", author="bob"
    )
    third = await start(db, redis, site)
    try:
        await item_state(third, f"email-{mail}", "completed")  # found again by the sweep
        events = await third.acd.state.all_events()
        enqueued = [e for e in events if e.kind == "ItemEnqueued"]
        assert [e.fields["item"] for e in enqueued] == [f"email-{mail}"]
        assert [e.fields["queue"] for e in enqueued] == ["mail"]
    finally:
        await third.stop()


async def test_given_waiting_emails_when_a_person_takes_one_then_its_item_is_cancelled_and_automated_mail_never_queues(  # noqa: E501
    db: Database, redis: aioredis.Redis, site: str
) -> None:
    taken = await email_ticket(db, "eve@example.org", queue="no-such-queue")
    auto = await email_ticket(db, "mailer-daemon@example.org", tags=["email-automated"])
    desk = await start(db, redis, site)
    try:
        await item_state(desk, f"email-{taken}", "waiting")
        record = await desk.acd.state.item(f"email-{taken}")
        assert record is not None
        assert record.queue == "mail"  # an unknown queue: the default email queue
        await HelpDesk(db.sessions).update_ticket(
            taken, {"assignee": "sam"}, actor="user:supervisor1"
        )
        await item_state(desk, f"email-{taken}", "cancelled")
        assert await desk.acd.state.item(f"email-{auto}") is None
        assert (await ticket(db, taken)).assignee == "sam"
    finally:
        await desk.stop()


async def test_given_an_answered_email_when_it_is_handed_back_then_the_acd_routes_it_again(
    db: Database, redis: aioredis.Redis, site: str
) -> None:
    mail = await email_ticket(db, "fay@example.org", skills=["billing"])
    desk = await start(db, redis, site)
    try:
        await desk.acd.started.wait()
        await desk.acd.login("ann")
        await assigned_to(db, mail, "ann")
        helpdesk = HelpDesk(db.sessions)
        await helpdesk.add_message(mail, {"body": "On it"}, actor="user:ann", author="ann")
        await item_state(desk, f"email-{mail}", "completed")
        await helpdesk.update_ticket(mail, {"assignee": None}, actor="user:supervisor1")
        await assigned_to(db, mail, "ann")
        await item_state(desk, f"email-{mail}.2", "assigned")
    finally:
        await desk.stop()


async def claim_cut_short(
    db: Database, redis: aioredis.Redis, site: str, sender: str
) -> tuple[Desk, int]:
    """A node's dispatcher assigned the ticket to ann in the records and died before the accept;
    ann has paused since the offer. The ACD is running, the restarted node's dispatcher not yet."""
    mail = await email_ticket(db, sender)
    item_id = f"email-{mail}"
    state = AcdRedisState(redis, site)
    acd = AcdService(
        state, CallFacts(redis, state), config(site, ring_timeout=2), poll_interval=0.02
    )
    desk = Desk(acd, EmailDispatcher(acd, db.sessions, redis, interval=0.05), [])
    desk.tasks.append(asyncio.create_task(acd.run()))
    await acd.started.wait()
    dying = EmailDispatcher(acd, db.sessions, redis)
    await dying.reconcile()  # the item is queued
    await acd.login("ann")
    await item_state(desk, item_id, "offered")
    record = await state.item(item_id)
    assert record is not None
    assert record.agent_id == "ann"
    await acd.pause("ann", "lunch")  # the offer stands; once it expires, nobody takes the item
    assert await dying._assign(mail, item_id, "ann")  # the records say ann, then the node dies
    return desk, mail


async def restart(desk: Desk) -> None:
    """The node is back: its dispatcher runs."""
    desk.tasks.append(asyncio.create_task(desk.dispatcher.run()))


async def test_given_a_node_that_died_between_assignment_and_accept_when_the_offer_expired_then_the_ticket_is_handed_back_and_routed_again(  # noqa: E501
    db: Database, redis: aioredis.Redis, site: str
) -> None:
    desk, mail = await claim_cut_short(db, redis, site, "gus@example.org")
    item_id = f"email-{mail}"
    state = desk.acd.state
    try:
        await item_state(desk, item_id, "waiting")  # the offer expired: back at its place
        assert (await ticket(db, mail)).assignee == "ann"

        await restart(desk)
        await assigned_to(db, mail, None)  # handed back, not left with ann
        record = await state.item(item_id)
        assert record is not None
        assert record.state == "waiting"  # not cancelled: it keeps its place

        await desk.acd.login("bob")
        await assigned_to(db, mail, "bob")
        await item_state(desk, item_id, "assigned")
        bob = await state.agent("bob")
        assert bob is not None
        assert bob.load["email"] == 1  # the capacity counts the ticket bob has
        ann = await state.agent("ann")
        assert ann is not None
        assert ann.load["email"] == 0
        kinds = [e.kind for e in await state.all_events() if e.fields.get("item") == item_id]
        assert "ItemCancelled" not in kinds
    finally:
        await desk.stop()


async def test_given_a_claim_cut_short_when_the_agent_already_replied_then_the_ticket_stays_theirs(
    db: Database, redis: aioredis.Redis, site: str
) -> None:
    desk, mail = await claim_cut_short(db, redis, site, "hal@example.org")
    item_id = f"email-{mail}"
    try:
        await HelpDesk(db.sessions).add_message(
            mail, {"body": "Here is your answer"}, actor="user:ann", author="ann"
        )
        await item_state(desk, item_id, "waiting")
        await restart(desk)
        await item_state(desk, item_id, "cancelled")  # the work is done
        assert (await ticket(db, mail)).assignee == "ann"
    finally:
        await desk.stop()


def test_given_acd_without_email_queue_when_dispatcher_built_then_clear_error(db: Database) -> None:
    client = aioredis.Redis()  # never connected: nothing is asked of Redis
    state = AcdRedisState(client, "none")
    only_calls = parse_acd_config({"queues": [{"id": "phones"}]})
    acd = AcdService(state, CallFacts(client, state), only_calls)
    with pytest.raises(NoEmailQueue, match="channel: email"):
        EmailDispatcher(acd, db.sessions, client)
