"""Outgoing webhooks against a real local receiver: signed, retried with back-off, dead-lettered."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from sqlalchemy import select

from tickets.db import Database
from tickets.webhooks import (
    SIGNATURE_HEADER,
    DeliveryStatus,
    DispatchPolicy,
    SignatureInvalid,
    WebhookDelivery,
    WebhookDispatcher,
    WebhookEvent,
    enqueue,
    subscribe,
    verify_signature,
)

from .conftest import FakeClock


class Receiver:
    def __init__(self) -> None:
        self.fail = 0
        self.bodies: list[tuple[bytes, str]] = []

    async def handle(self, request: web.Request) -> web.Response:
        if self.fail:
            self.fail -= 1
            return web.Response(status=503)
        self.bodies.append((await request.read(), request.headers[SIGNATURE_HEADER]))
        return web.Response(status=204)


@pytest.fixture
async def receiver() -> AsyncIterator[tuple[Receiver, str]]:
    recv = Receiver()
    app = web.Application()
    app.router.add_post("/hook", recv.handle)
    server = TestServer(app)
    await server.start_server()
    yield recv, str(server.make_url("/hook"))
    await server.close()


async def test_given_failing_receiver_when_retried_then_delivered_signed_after_backoff(
    db: Database, clock: FakeClock, receiver: tuple[Receiver, str]
) -> None:
    recv, url = receiver
    recv.fail = 2
    async with db.sessions.begin() as session:
        sub = await subscribe(session, url, ["ticket.created"], actor="test", clock=clock)
        secret = sub.secret
        assert await enqueue(session, WebhookEvent.TICKET_CREATED, {"n": 1}, clock=clock) == 1
        assert await enqueue(session, WebhookEvent.MESSAGE_ADDED, {"n": 2}, clock=clock) == 0
    dispatcher = WebhookDispatcher(db.sessions, DispatchPolicy(base_delay=10), clock=clock)
    async with aiohttp.ClientSession() as http:
        assert await dispatcher.deliver_due(http) == 1  # 503
        assert await dispatcher.deliver_due(http) == 0  # not due yet
        clock.advance(timedelta(seconds=12))
        assert await dispatcher.deliver_due(http) == 1  # 503 again, next in ~20 s
        clock.advance(timedelta(seconds=12))
        assert await dispatcher.deliver_due(http) == 0
        clock.advance(timedelta(seconds=12))
        assert await dispatcher.deliver_due(http) == 1
    body, header = recv.bodies[0]
    verify_signature(secret, header, body, now=clock())
    with pytest.raises(SignatureInvalid):
        verify_signature(secret, header, body + b" ", now=clock())
    with pytest.raises(SignatureInvalid):
        verify_signature(secret, header, body, now=clock() + timedelta(minutes=10))
    async with db.sessions() as session:
        row = (await session.execute(select(WebhookDelivery))).scalar_one()
    assert (row.status, row.attempts) == (DeliveryStatus.DELIVERED, 3)


async def test_given_receiver_down_when_attempts_exhausted_then_dead_lettered_and_kept(
    db: Database, clock: FakeClock
) -> None:
    async with db.sessions.begin() as session:
        await subscribe(session, "http://127.0.0.1:9/none", ["call.ticketed"], actor="t")
        await enqueue(session, WebhookEvent.CALL_TICKETED, {"call": "c1"}, clock=clock)
    policy = DispatchPolicy(max_attempts=3, base_delay=1, timeout=2)
    dispatcher = WebhookDispatcher(db.sessions, policy, clock=clock)
    async with aiohttp.ClientSession() as http:
        for _ in range(3):
            assert await dispatcher.deliver_due(http) == 1
            clock.advance(timedelta(minutes=1))
        assert await dispatcher.deliver_due(http) == 0
    async with db.sessions() as session:
        row = (await session.execute(select(WebhookDelivery))).scalar_one()
    assert row.status == DeliveryStatus.DEAD
    assert row.payload["data"] == {"call": "c1"}
