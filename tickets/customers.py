"""Customer identities across phone, email and chat: normalise, match (known or maybe), link, merge.

A *known* identity is certain evidence (the caller's network-delivered number, an address we
mailed and got a reply from, a signed-in chat user) and belongs to at most one customer (a
partial unique index enforces it). A *maybe* identity is weak evidence (a number typed into an
email body, a different phone naming someone's ticket in the IVR): it is shown as a suggestion and
becomes known only when an agent links it. Merging moves every identity, ticket and call of one
customer to another and leaves the merged customer pointing at the survivor; every change is
written to the audit history.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from email.utils import parseaddr

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from tickets.errors import CustomerNotFound, IdentityConflict, InvalidIdentity, InvalidMerge
from tickets.models import (
    AuditEvent,
    CallRecord,
    Confidence,
    Customer,
    CustomerIdentity,
    IdentityKind,
    Ticket,
)
from tickets.phone import DEFAULT_REGION, normalise
from tickets.repository import Clock, record_audit, utc_now

_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


def normalise_identity(
    kind: IdentityKind, value: str, *, default_region: str = DEFAULT_REGION
) -> str:
    """The stored form of an identity: E.164, a lower-case address, a trimmed chat handle."""
    if kind == IdentityKind.PHONE:
        number = normalise(value, default_region)
        if number.e164 is None:
            raise InvalidIdentity(f"not a usable phone number ({number.kind}: {number.reason})")
        return number.e164
    if kind == IdentityKind.EMAIL:
        address = parseaddr(value)[1].strip().lower()
        if not _EMAIL.match(address):
            raise InvalidIdentity("not an email address")
        return address
    handle = value.strip()
    if not handle:
        raise InvalidIdentity("empty chat handle")
    return handle


@dataclass(frozen=True, slots=True)
class CustomerMatch:
    """Who an identity points at: the certain owner, and people it may belong to."""

    known: Customer | None
    maybe: tuple[Customer, ...]


@dataclass(frozen=True, slots=True)
class Resolution:
    """The customer `find_or_create` settled on, and the maybe-matches to suggest to an agent."""

    customer: Customer
    created: bool
    suggestions: tuple[Customer, ...]


class CustomerDirectory:
    """Finds, creates, links and merges customers inside the caller's transaction."""

    def __init__(
        self,
        session: AsyncSession,
        clock: Clock = utc_now,
        default_region: str = DEFAULT_REGION,
    ) -> None:
        self.session = session
        self.clock = clock
        self.default_region = default_region

    def normalise(self, kind: IdentityKind, value: str) -> str:
        return normalise_identity(kind, value, default_region=self.default_region)

    async def get(self, customer_id: int) -> Customer:
        customer = await self.session.get(Customer, customer_id)
        if customer is None:
            raise CustomerNotFound(f"no customer with id {customer_id}")
        return customer

    async def surviving(self, customer: Customer) -> Customer:
        """The customer itself, or the one it was (transitively) merged into."""
        seen = {customer.id}
        while customer.merged_into_id is not None:
            customer = await self.get(customer.merged_into_id)
            if customer.id in seen:  # pragma: no cover - merge refuses cycles
                break
            seen.add(customer.id)
        return customer

    async def identities(self, customer: Customer) -> list[CustomerIdentity]:
        query = select(CustomerIdentity).where(CustomerIdentity.customer_id == customer.id)
        query = query.order_by(CustomerIdentity.kind, CustomerIdentity.value)
        return list((await self.session.execute(query)).scalars())

    async def match(self, kind: IdentityKind, value: str) -> CustomerMatch:
        """Look an identity up; a value that cannot identify anybody matches nobody."""
        try:
            stored = self.normalise(kind, value)
        except InvalidIdentity:
            return CustomerMatch(known=None, maybe=())
        query = select(CustomerIdentity).where(
            CustomerIdentity.kind == kind, CustomerIdentity.value == stored
        )
        known: Customer | None = None
        maybe: dict[int, Customer] = {}
        for identity in (await self.session.execute(query.order_by(CustomerIdentity.id))).scalars():
            owner = await self.surviving(await self.get(identity.customer_id))
            if identity.confidence == Confidence.KNOWN:
                known = owner
            else:
                maybe.setdefault(owner.id, owner)
        if known is not None:
            maybe.pop(known.id, None)
        return CustomerMatch(known=known, maybe=tuple(maybe.values()))

    async def create(self, *, actor: str, display_name: str = "") -> Customer:
        customer = Customer(display_name=display_name[:200], created_at=self.clock())
        self.session.add(customer)
        await self.session.flush()
        record_audit(
            self.session,
            at=self.clock(),
            actor=actor,
            action="customer.created",
            customer_id=customer.id,
            data={"display_name": customer.display_name},
        )
        return customer

    async def find_or_create(
        self, kind: IdentityKind, value: str, *, actor: str, display_name: str = ""
    ) -> Resolution:
        """The known owner of the identity, or a new customer holding it as a known identity.

        Two sessions racing for the same new identity end with one customer: the loser's insert
        hits the unique index inside a savepoint and it reads the winner's row instead.
        """
        stored = self.normalise(kind, value)
        found = await self.match(kind, stored)
        if found.known is not None:
            return Resolution(customer=found.known, created=False, suggestions=found.maybe)
        try:
            async with self.session.begin_nested():
                customer = await self.create(actor=actor, display_name=display_name or stored)
                self._insert_identity(customer, kind, stored, Confidence.KNOWN, "first contact")
                self._audit_identity(customer, "identity.added", actor, kind, Confidence.KNOWN)
                await self.session.flush()
        except IntegrityError:
            again = await self.match(kind, stored)
            if again.known is None:
                raise
            return Resolution(customer=again.known, created=False, suggestions=again.maybe)
        return Resolution(customer=customer, created=True, suggestions=found.maybe)

    async def add_identity(
        self,
        customer: Customer,
        kind: IdentityKind,
        value: str,
        *,
        actor: str,
        confidence: Confidence = Confidence.KNOWN,
        source: str = "",
    ) -> CustomerIdentity:
        """Attach an identity; linking a `maybe` one as known promotes it.

        Raises `IdentityConflict` when the identity is known to belong to somebody else (merge the
        two customers instead), and `InvalidIdentity` for values that identify nobody.
        """
        if customer.merged_into_id is not None:
            raise InvalidMerge(f"customer {customer.id} was merged; use {customer.merged_into_id}")
        stored = self.normalise(kind, value)
        if confidence == Confidence.KNOWN:
            owner = (await self.match(kind, stored)).known
            if owner is not None and owner.id != customer.id:
                raise IdentityConflict(
                    f"this {kind} already belongs to customer {owner.id}; merge the customers"
                )
        query = select(CustomerIdentity).where(
            CustomerIdentity.customer_id == customer.id,
            CustomerIdentity.kind == kind,
            CustomerIdentity.value == stored,
        )
        identity = (await self.session.execute(query)).scalar_one_or_none()
        if identity is not None:
            if identity.confidence == confidence or confidence == Confidence.MAYBE:
                return identity
            identity.confidence = Confidence.KNOWN
            action = "identity.confirmed"
        else:
            identity = self._insert_identity(customer, kind, stored, confidence, source)
            action = "identity.added"
        await self.session.flush()
        self._audit_identity(customer, action, actor, kind, confidence, source)
        return identity

    def _insert_identity(
        self,
        customer: Customer,
        kind: IdentityKind,
        stored: str,
        confidence: Confidence,
        source: str,
    ) -> CustomerIdentity:
        identity = CustomerIdentity(
            customer_id=customer.id,
            kind=kind,
            value=stored,
            confidence=confidence,
            source=source,
            created_at=self.clock(),
        )
        self.session.add(identity)
        return identity

    def _audit_identity(
        self,
        customer: Customer,
        action: str,
        actor: str,
        kind: IdentityKind,
        confidence: Confidence,
        source: str = "first contact",
    ) -> None:
        record_audit(
            self.session,
            at=self.clock(),
            actor=actor,
            action=action,
            customer_id=customer.id,
            data={"kind": kind, "confidence": confidence, "source": source},
        )

    async def merge(
        self, source: Customer, target: Customer, *, actor: str, reason: str = ""
    ) -> Customer:
        """Fold `source` into `target`: identities, tickets and calls move; `source` points on."""
        if source.id == target.id:
            raise InvalidMerge(f"customer {source.id} cannot be merged into itself")
        if source.merged_into_id is not None or target.merged_into_id is not None:
            raise InvalidMerge("a merged customer cannot be merged again; use the surviving one")
        kept = {(i.kind, i.value): i for i in await self.identities(target)}
        moving = await self.identities(source)
        promote: list[CustomerIdentity] = []
        for identity in moving:
            twin = kept.get((identity.kind, identity.value))
            if twin is None:
                continue
            if identity.confidence == Confidence.KNOWN:
                promote.append(twin)
            await self.session.delete(identity)
        await self.session.flush()  # the duplicates go before a twin becomes known (unique index)
        for twin in promote:
            twin.confidence = Confidence.KNOWN
        await self.session.flush()
        await self.session.execute(
            update(CustomerIdentity)
            .where(CustomerIdentity.customer_id == source.id)
            .values(customer_id=target.id)
            .execution_options(synchronize_session="fetch")
        )
        for model in (Ticket, CallRecord):
            await self.session.execute(
                update(model)
                .where(model.customer_id == source.id)
                .values(customer_id=target.id)
                .execution_options(synchronize_session="fetch")
            )
        source.merged_into_id = target.id
        await self.session.flush()
        data = {
            "source": source.id,
            "target": target.id,
            "reason": reason,
            "identities": len(moving),
        }
        for customer_id in (source.id, target.id):
            record_audit(
                self.session,
                at=self.clock(),
                actor=actor,
                action="customer.merged",
                customer_id=customer_id,
                data=data,
            )
        return target

    async def history_actions(self, customer: Customer) -> list[str]:
        """The audit actions recorded for a customer, oldest first."""
        query = select(AuditEvent.action).where(AuditEvent.customer_id == customer.id)
        return list((await self.session.execute(query.order_by(AuditEvent.id))).scalars())
