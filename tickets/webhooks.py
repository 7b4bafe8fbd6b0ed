"""Outgoing webhooks: subscriptions per event type, a SQL outbox, HMAC-SHA256 signing, retries.

Theory of operation. `enqueue()` writes one `webhook_deliveries` row per matching subscription
in the caller's transaction (a transactional outbox): the ticket change and its notification
commit together or not at all, and a restart loses nothing. `WebhookDispatcher.run()` claims due
rows, POSTs them and records the outcome: 2xx is delivered; anything else (an error status, a
refused connection, a timeout) is retried after ``base * 2**(attempts-1)`` seconds (capped, with
jitter) until `max_attempts`, then the row is dead-lettered (status ``dead``, kept for an admin).

Signature (verify it like this on the receiving side)::

    X-Callcenter-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>." + raw body)>

Recompute the HMAC over the exact raw body bytes, compare in constant time, and refuse a
timestamp older than five minutes (`verify_signature` does all three). The ``X-Callcenter-Event``
and ``X-Callcenter-Delivery`` headers carry the event type and a delivery id that stays the
same across retries, so receivers can drop duplicates.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import logging
import random
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

import aiohttp
from sqlalchemy import JSON, Boolean, ForeignKey, Index, Integer, String, Text, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import Mapped, mapped_column

from tickets.errors import TicketsError
from tickets.models import Base, EnumText
from tickets.repository import Clock, utc_now

log = logging.getLogger(__name__)

SIGNATURE_HEADER = "X-Callcenter-Signature"
EVENT_HEADER = "X-Callcenter-Event"
DELIVERY_HEADER = "X-Callcenter-Delivery"
DEFAULT_TOLERANCE = timedelta(minutes=5)


class WebhookEvent(StrEnum):
    TICKET_CREATED = "ticket.created"
    TICKET_UPDATED = "ticket.updated"
    MESSAGE_ADDED = "message.added"
    CALL_TICKETED = "call.ticketed"


class DeliveryStatus(StrEnum):
    PENDING = "pending"
    DELIVERED = "delivered"
    DEAD = "dead"


class WebhookError(TicketsError):
    """A subscription that cannot be accepted, or a signature that does not verify."""

    error_id = "webhook-invalid"


class SignatureInvalid(WebhookError):
    error_id = "webhook-signature-invalid"


class WebhookSubscription(Base):
    """Where to POST which events; the secret signs them (kept readable: HMAC needs it)."""

    __tablename__ = "webhook_subscriptions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    url: Mapped[str] = mapped_column(String(500))
    secret: Mapped[str] = mapped_column(String(100))
    events: Mapped[list[str]] = mapped_column(JSON, default=list)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_by: Mapped[str] = mapped_column(String(200), default="")
    created_at: Mapped[datetime]


class WebhookDelivery(Base):
    """One event on its way to one subscription (the outbox row)."""

    __tablename__ = "webhook_deliveries"
    __table_args__ = (Index("ix_webhook_deliveries_due", "status", "next_attempt_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    subscription_id: Mapped[int] = mapped_column(
        ForeignKey("webhook_subscriptions.id", ondelete="CASCADE"), index=True
    )
    event: Mapped[str] = mapped_column(String(64))
    delivery_key: Mapped[str] = mapped_column(String(64), unique=True)
    payload: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    status: Mapped[DeliveryStatus] = mapped_column(EnumText(DeliveryStatus))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime]
    last_error: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime]
    delivered_at: Mapped[datetime | None]


# -- signing (pure) ----------------------------------------------------------------------------


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """The signature header value for `body` sent at `timestamp` (unix seconds)."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"t={timestamp},v1={mac.hexdigest()}"


def verify_signature(
    secret: str,
    header: str,
    body: bytes,
    *,
    now: datetime,
    tolerance: timedelta = DEFAULT_TOLERANCE,
) -> None:
    """Raise `SignatureInvalid` unless `header` signs `body` recently with `secret`."""
    parts = dict(item.partition("=")[::2] for item in header.split(",") if "=" in item)
    try:
        timestamp = int(parts["t"])
        given = parts["v1"]
    except (KeyError, ValueError) as err:
        raise SignatureInvalid("signature header needs t=<seconds>,v1=<hex>") from err
    if abs(now.timestamp() - timestamp) > tolerance.total_seconds():
        raise SignatureInvalid("signature timestamp outside the tolerance (replay?)")
    expected = sign(secret, timestamp, body).partition(",v1=")[2]
    if not hmac.compare_digest(expected, given):
        raise SignatureInvalid("signature does not match the body")


def backoff(attempts: int, *, base: float, cap: float, jitter: float = 0.1) -> timedelta:
    """Delay before the next try after `attempts` failures: exponential, capped, jittered."""
    delay = min(cap, base * 2 ** max(attempts - 1, 0))
    return timedelta(seconds=delay * (1 + random.uniform(0, jitter)))


# -- the outbox --------------------------------------------------------------------------------


def check_subscription(url: str, events: list[str]) -> list[str]:
    if not url.startswith(("http://", "https://")) or len(url) > 500:
        raise WebhookError("a webhook url is http(s)://..., at most 500 characters")
    try:
        kinds = sorted({WebhookEvent(e).value for e in events})
    except ValueError as err:
        raise WebhookError(f"unknown event type: one of {', '.join(WebhookEvent)}") from err
    if not kinds:
        raise WebhookError("subscribe to at least one event type")
    return kinds


async def subscribe(
    session: AsyncSession, url: str, events: list[str], *, actor: str, clock: Clock = utc_now
) -> WebhookSubscription:
    """A new subscription with a fresh signing secret (show it to the admin once)."""
    subscription = WebhookSubscription(
        url=url,
        secret="whsec_" + secrets.token_urlsafe(24),
        events=check_subscription(url, events),
        active=True,
        created_by=actor,
        created_at=clock(),
    )
    session.add(subscription)
    await session.flush()
    return subscription


async def enqueue(
    session: AsyncSession,
    event: WebhookEvent,
    data: Mapping[str, Any],
    *,
    clock: Clock = utc_now,
    once: str | None = None,
) -> int:
    """Add one outbox row per active subscription to `event`; returns how many.

    ``once`` names the fact (a call id): the same event with the same ``once`` is queued once
    per subscription, however often the caller repeats it (its delivery id is derived from it).
    """
    now = clock()
    query = select(WebhookSubscription).where(WebhookSubscription.active.is_(True))
    count = 0
    for subscription in (await session.execute(query)).scalars():
        if event.value not in subscription.events:
            continue
        if once is None:
            key = secrets.token_hex(16)
        else:
            key = hashlib.sha256(f"{event.value}:{once}:{subscription.id}".encode()).hexdigest()
            key = key[:32]
            taken = select(WebhookDelivery.id).where(WebhookDelivery.delivery_key == key)
            if (await session.execute(taken)).first() is not None:
                continue
        delivery = WebhookDelivery(
            subscription_id=subscription.id,
            event=event.value,
            delivery_key=key,
            payload={"id": key, "event": event.value, "at": now.isoformat(), "data": data},
            status=DeliveryStatus.PENDING,
            attempts=0,
            next_attempt_at=now,
            last_error="",
            created_at=now,
        )
        if once is None:
            session.add(delivery)
        else:
            try:  # a concurrent transaction queued the same fact first
                async with session.begin_nested():
                    session.add(delivery)
                    await session.flush()
            except IntegrityError:
                continue
        count += 1
    return count


@dataclass(frozen=True, slots=True)
class DispatchPolicy:
    max_attempts: int = 8
    base_delay: float = 2.0
    max_delay: float = 3600.0
    timeout: float = 10.0
    batch: int = 50
    idle_poll: float = 1.0


@dataclass(frozen=True, slots=True)
class _Job:
    delivery_id: int
    url: str
    secret: str = field(repr=False)
    event: str = ""
    key: str = ""
    body: bytes = b""


class WebhookDispatcher:
    """Delivers due outbox rows; `run()` loops until cancelled, `deliver_due()` does one pass."""

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        policy: DispatchPolicy | None = None,
        clock: Clock = utc_now,
        wake: asyncio.Event | None = None,
        timestamp: Callable[[], int] | None = None,
    ) -> None:
        self.sessions = sessions
        self.policy = policy or DispatchPolicy()
        self.clock = clock
        self.wake = wake or asyncio.Event()
        self._timestamp = timestamp or (lambda: int(self.clock().timestamp()))

    async def run(self) -> None:
        timeout = aiohttp.ClientTimeout(total=self.policy.timeout)
        async with aiohttp.ClientSession(timeout=timeout) as http:
            while True:
                try:
                    sent = await self.deliver_due(http)
                except (OSError, TimeoutError) as err:  # database briefly unreachable
                    log.warning("webhook dispatch pass failed: %s", err)
                    sent = 0
                if sent == 0:
                    self.wake.clear()
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self.wake.wait(), self.policy.idle_poll)

    async def deliver_due(self, http: aiohttp.ClientSession) -> int:
        """Try every due row once; returns how many were tried.

        Rows are claimed in a short transaction (their next attempt moved past the POST's
        timeout, a lease: a node that dies mid-POST leaves them to be retried), POSTed outside
        any transaction, and the outcomes recorded in a second one. Delivery is at least once.
        """
        claimed = await self._claim()
        if not claimed:
            return 0
        errors = await asyncio.gather(*(self._post(http, job) for job in claimed))
        async with self.sessions.begin() as session:
            for job, error in zip(claimed, errors, strict=True):
                delivery = await session.get(WebhookDelivery, job.delivery_id)
                if delivery is not None:
                    self._record(delivery, error)
        return len(claimed)

    async def _claim(self) -> list[_Job]:
        now = self.clock()
        async with self.sessions.begin() as session:
            query = (
                select(WebhookDelivery, WebhookSubscription)
                .join(
                    WebhookSubscription, WebhookSubscription.id == WebhookDelivery.subscription_id
                )
                .where(
                    WebhookDelivery.status == DeliveryStatus.PENDING,
                    WebhookDelivery.next_attempt_at <= now,
                )
                .order_by(WebhookDelivery.next_attempt_at, WebhookDelivery.id)
                .limit(self.policy.batch)
            )
            if session.get_bind().dialect.name == "postgresql":
                query = query.with_for_update(skip_locked=True, of=WebhookDelivery)
            jobs: list[_Job] = []
            lease = timedelta(seconds=self.policy.timeout * 3)
            for delivery, subscription in (await session.execute(query)).all():
                delivery.next_attempt_at = now + lease
                body = json.dumps(delivery.payload, separators=(",", ":"), sort_keys=True)
                jobs.append(
                    _Job(
                        delivery.id,
                        subscription.url,
                        subscription.secret,
                        delivery.event,
                        delivery.delivery_key,
                        body.encode(),
                    )
                )
        return jobs

    async def _post(self, http: aiohttp.ClientSession, job: _Job) -> str:
        headers = {
            "Content-Type": "application/json",
            SIGNATURE_HEADER: sign(job.secret, self._timestamp(), job.body),
            EVENT_HEADER: job.event,
            DELIVERY_HEADER: job.key,
        }
        try:
            async with http.post(job.url, data=job.body, headers=headers) as response:
                if 200 <= response.status < 300:
                    return ""
                return f"HTTP {response.status}"
        except (aiohttp.ClientError, TimeoutError, OSError) as err:
            return f"{type(err).__name__}: {err}"[:500]

    def _record(self, delivery: WebhookDelivery, error: str) -> None:
        now = self.clock()
        delivery.attempts += 1
        if not error:
            delivery.status = DeliveryStatus.DELIVERED
            delivery.delivered_at = now
            delivery.last_error = ""
            return
        delivery.last_error = error
        if delivery.attempts >= self.policy.max_attempts:
            delivery.status = DeliveryStatus.DEAD
            log.warning("webhook delivery %s dead after %d tries", delivery.id, delivery.attempts)
            return
        delivery.next_attempt_at = now + backoff(
            delivery.attempts, base=self.policy.base_delay, cap=self.policy.max_delay
        )


async def delivery_counts(session: AsyncSession) -> dict[str, int]:
    """How many outbox rows are in each status (for /metrics)."""
    query = select(WebhookDelivery.status, func.count()).group_by(WebhookDelivery.status)
    counts = {status.value: 0 for status in DeliveryStatus}
    for status, count in (await session.execute(query)).all():
        counts[str(status)] = int(count)
    return counts
