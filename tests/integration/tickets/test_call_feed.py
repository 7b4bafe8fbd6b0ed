"""The IVR path stream into tickets: real Redis (consumer group) and real SQLite/PostgreSQL."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any

import pytest
import redis.asyncio as aioredis
from sqlalchemy import func, select

from ivr.adapters.path_sink import RedisPathSink
from ivr.domain.call import CallId
from ivr.domain.flow import LookupKind, StepId, StepType
from ivr.domain.path import (
    IvrEnded,
    IvrStarted,
    LookupAnswered,
    LookupOutcome,
    Outcome,
    PathEvent,
    StepEntered,
    SurveyAnswered,
)
from tests.polling import eventually_true
from tickets.call_feed import DEAD_LETTER_STREAM, CallFeed, fold_call
from tickets.calls import CallTickets
from tickets.customers import CustomerDirectory
from tickets.db import Database
from tickets.hooks import HelpDeskHooks
from tickets.models import (
    CallRecord,
    Channel,
    Disposition,
    IdentityKind,
    LinkKind,
    Ticket,
    TicketLink,
)
from tickets.repository import TicketRepository
from tickets.sla import SlaPolicy
from tickets.sla_records import ServiceLevels, TicketSla
from tickets.surveys import SurveyResponse
from tickets.webhooks import WebhookDelivery, subscribe

STREAM = "test:events:ivr"
T0 = datetime(2026, 3, 3, 9, 0, tzinfo=UTC)


def session(call: str, caller: str, *, outcome: Outcome = Outcome.HUNG_UP) -> list[PathEvent]:
    cid = CallId(call)
    return [
        IvrStarted(cid, T0, "support", caller, "en"),
        StepEntered(cid, T0 + timedelta(seconds=1), StepId("menu"), StepType.MENU),
        IvrEnded(cid, T0 + timedelta(seconds=9), StepId("bye"), outcome, 9000),
    ]


@pytest.fixture
async def redis(redis_url: str) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(redis_url)
    try:
        yield client
    finally:
        await client.aclose()


def feed(
    redis: aioredis.Redis,
    db: Database,
    consumer: str = "node-a",
    claim_idle: float = 60.0,
    hooks: HelpDeskHooks | None = None,
) -> CallFeed:
    return CallFeed(
        redis,
        CallTickets(db.sessions),
        consumer=consumer,
        stream=STREAM,
        block_ms=50,
        claim_idle=claim_idle,
        hooks=hooks,
    )


async def test_given_finished_ivr_sessions_then_each_becomes_a_ticketed_call_and_is_acked(
    redis: aioredis.Redis, db: Database
) -> None:
    sink = RedisPathSink(redis, stream=STREAM)
    for event in session("c1", "+15551230001") + session("c2", "(555) 123-0002"):
        await sink.publish(event)
    consumer = feed(redis, db)
    task = asyncio.create_task(consumer.run())
    try:
        await eventually_true(lambda: consumer.stored == 2, 10.0, "both calls stored")
    finally:
        task.cancel()
    async with db.sessions() as s:
        records = list((await s.execute(select(CallRecord).order_by(CallRecord.call_id))).scalars())
        tickets = int((await s.execute(select(func.count()).select_from(Ticket))).scalar_one())
    assert [r.call_id for r in records] == ["c1", "c2"]
    assert all(r.ticket_id is not None for r in records)
    assert records[0].disposition is Disposition.SELF_SERVICE
    assert tickets == 2
    pending = await redis.xpending(STREAM, "tickets")
    assert pending["pending"] == 0


async def test_given_a_node_dies_mid_call_then_another_claims_the_entries_and_stores_the_call(
    redis: aioredis.Redis, db: Database
) -> None:
    sink = RedisPathSink(redis, stream=STREAM)
    first, *rest = session("c9", "+15551230009")
    await sink.publish(first)
    dying = feed(redis, db, consumer="node-a")
    await dying._ensure_group()
    await dying.step()  # read the first half, then "die" without acknowledging it
    assert dying.fold.open_calls == 1
    for event in rest:
        await sink.publish(event)
    heir = feed(redis, db, consumer="node-b", claim_idle=0.0)
    task = asyncio.create_task(heir.run())
    try:
        await eventually_true(lambda: heir.stored == 1, 10.0, "the call stored by the heir")
    finally:
        task.cancel()
    async with db.sessions() as s:
        record = (await s.execute(select(CallRecord))).scalar_one()
    assert len(record.ivr_path) == 3  # the whole path, including what node-a had read


async def test_given_a_garbled_entry_then_it_is_dead_lettered_and_the_next_call_still_flows(
    redis: aioredis.Redis, db: Database
) -> None:
    await redis.xadd(STREAM, {"type": "IvrStarted", "call_id": "x", "json": b"{not json"})
    sink = RedisPathSink(redis, stream=STREAM)
    for event in session("c3", "+15551230003"):
        await sink.publish(event)
    consumer = feed(redis, db)
    task = asyncio.create_task(consumer.run())
    try:
        await eventually_true(lambda: consumer.stored == 1, 10.0, "the good call stored")
    finally:
        task.cancel()
    dead: Any = await redis.xrange(DEAD_LETTER_STREAM)
    assert len(dead) == 1
    assert dead[0][1][b"raw"] == b"{not json"
    assert consumer.dead == 1
    await redis.delete(DEAD_LETTER_STREAM)


async def test_given_a_ticket_status_lookup_then_the_call_joins_the_named_ticket(
    redis: aioredis.Redis, db: Database
) -> None:
    sink = RedisPathSink(redis, stream=STREAM)
    for event in session("c4", "+15551230004"):
        await sink.publish(event)
    consumer = feed(redis, db)
    task = asyncio.create_task(consumer.run())
    try:
        await eventually_true(lambda: consumer.stored == 1, 10.0, "first call stored")
        async with db.sessions() as s:
            number = (await s.execute(select(Ticket.number))).scalar_one()
        cid = CallId("c5")
        for event in (
            IvrStarted(cid, T0, "support", "+15559990005", "en"),
            LookupAnswered(
                cid,
                T0,
                StepId("ticket-lookup"),
                LookupKind.TICKET_STATUS,
                LookupOutcome.OK,
                "",
                number,
            ),
            IvrEnded(cid, T0, StepId("bye"), Outcome.HUNG_UP, 1000),
        ):
            await sink.publish(event)
        await eventually_true(lambda: consumer.stored == 2, 10.0, "second call stored")
    finally:
        task.cancel()
    async with db.sessions() as s:
        ticket_ids = set((await s.execute(select(CallRecord.ticket_id))).scalars())
    assert len(ticket_ids) == 1  # the second caller named the first call's ticket


async def test_given_hooks_when_a_surveyed_call_is_ticketed_then_sla_survey_and_duplicate_follow(
    redis: aioredis.Redis, db: Database
) -> None:
    async with db.sessions.begin() as s:
        await ServiceLevels(s).add_policy(
            SlaPolicy(
                "phone",
                first_response=timedelta(hours=1),
                phone_answer=timedelta(seconds=30),
                channel=Channel.PHONE,
            )
        )
        found = await CustomerDirectory(s).find_or_create(
            IdentityKind.PHONE, "+15551230077", actor="test"
        )
        mailed = await TicketRepository(s).create(
            subject="Call to support about billing",
            channel=Channel.EMAIL,
            actor="test",
            customer_id=found.customer.id,
            queue="billing",  # another queue: the call does not join it, it is flagged instead
        )
    cid = CallId("c77")
    events: list[PathEvent] = [
        IvrStarted(cid, T0, "support", "+15551230077", "en"),
        SurveyAnswered(cid, T0 + timedelta(seconds=5), StepId("survey"), "satisfaction", 5),
        SurveyAnswered(cid, T0 + timedelta(seconds=7), StepId("survey"), "resolved", 1),
        IvrEnded(cid, T0 + timedelta(seconds=9), StepId("bye"), Outcome.HUNG_UP, 9000),
    ]
    sink = RedisPathSink(redis, stream=STREAM)
    for event in events:
        await sink.publish(event)
    consumer = feed(redis, db, hooks=HelpDeskHooks(db.sessions))
    task = asyncio.create_task(consumer.run())
    try:
        await eventually_true(lambda: consumer.stored == 1, 10.0, "the surveyed call stored")
    finally:
        task.cancel()
    async with db.sessions() as s:
        record = (await s.execute(select(CallRecord))).scalar_one()
        assert record.ticket_id is not None
        survey = (await s.execute(select(SurveyResponse))).scalar_one()
        sla = await s.get_one(TicketSla, record.ticket_id)
        link = (await s.execute(select(TicketLink))).scalar_one()
        ticket = await s.get_one(Ticket, record.ticket_id)
    assert (survey.ticket_id, survey.score, survey.resolved) == (record.ticket_id, 5, True)
    assert sla.policy_id is not None  # the call's new ticket got its clock
    assert ticket.first_response_due_at is not None
    assert sla.phone_abandoned is False
    assert (link.source_id, link.target_id, link.kind) == (
        record.ticket_id,
        mailed.id,
        LinkKind.DUPLICATE,
    )
    pending: Any = await redis.xpending(STREAM, "tickets")
    assert pending["pending"] == 0  # acknowledged only after the hooks ran


def stored(consumer: CallFeed, count: int) -> bool:
    return consumer.stored == count


async def call_ticketed_rows(db: Database) -> list[WebhookDelivery]:
    async with db.sessions() as s:
        query = select(WebhookDelivery).where(WebhookDelivery.event == "call.ticketed")
        return list((await s.execute(query.order_by(WebhookDelivery.id))).scalars())


async def test_given_a_call_handed_over_twice_then_one_call_ticketed_webhook_with_call_and_ticket(
    redis: aioredis.Redis, db: Database
) -> None:
    async with db.sessions.begin() as s:
        await subscribe(s, "https://hooks.example.org/cc", ["call.ticketed"], actor="test")
        await subscribe(s, "https://hooks.example.org/other", ["ticket.updated"], actor="test")
    sink = RedisPathSink(redis, stream=STREAM)
    consumer = feed(redis, db, hooks=HelpDeskHooks(db.sessions))
    task = asyncio.create_task(consumer.run())
    try:
        for handed in (1, 2):  # the IVR published the same call again (a reconnect)
            for event in session("w1", "+15551230042"):
                await sink.publish(event)
            await eventually_true(partial(stored, consumer, handed), 10.0, "call handed over")
    finally:
        task.cancel()
    (row,) = await call_ticketed_rows(db)
    async with db.sessions() as s:
        call = (await s.execute(select(CallRecord))).scalar_one()
        ticket = await s.get_one(Ticket, call.ticket_id)
    data = row.payload["data"]
    assert row.payload["event"] == "call.ticketed"
    assert data["call"]["call_id"] == "w1"
    assert data["call"]["id"] == call.id
    assert data["call"]["outcome"] == "new_ticket"
    assert data["call"]["caller_e164"] == "+15551230042"
    assert data["ticket"] == {
        "id": ticket.id,
        "number": ticket.number,
        "subject": ticket.subject,
        "status": str(ticket.status),
        "channel": "phone",
        "customer_id": ticket.customer_id,
    }


async def test_given_calls_joining_a_ticket_then_each_call_gets_its_own_call_ticketed_webhook(
    db: Database,
) -> None:
    async with db.sessions.begin() as s:
        await subscribe(s, "https://hooks.example.org/cc", ["call.ticketed"], actor="test")
    calls = CallTickets(db.sessions)
    hooks = HelpDeskHooks(db.sessions)
    for call_id in ("w2", "w3"):  # the same caller twice: the second call joins the ticket
        event = fold_call(call_id, session(call_id, "+15551230043"))
        for _ in range(2):  # a crash between the hooks and the stream's ack
            await hooks.call_ticketed(await calls.record_call(event), event)
    rows = await call_ticketed_rows(db)
    assert [r.payload["data"]["call"]["call_id"] for r in rows] == ["w2", "w3"]
    assert len({r.payload["data"]["ticket"]["id"] for r in rows}) == 1
    assert [r.payload["data"]["call"]["outcome"] for r in rows] == ["new_ticket", "repeat_caller"]


async def test_given_no_subscription_then_ticketing_a_call_queues_no_webhook(
    db: Database,
) -> None:
    event = fold_call("w4", session("w4", "+15551230044"))
    await HelpDeskHooks(db.sessions).call_ticketed(
        await CallTickets(db.sessions).record_call(event), event
    )
    assert await call_ticketed_rows(db) == []
