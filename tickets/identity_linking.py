"""One customer across phone, email and chat: certain links, suggested links, agent merges, and
cross-channel duplicate requests.

The rules, strongest evidence first:

* **Linked automatically (certain).** A verified identity (a signed-in chat user, an address
  that confirmed a link we mailed) becomes a *known* identity of the customer. A reply that
  our threading matched to a ticket (our Message-ID in `In-Reply-To`/`References`, or the signed
  reply token) proves the sender is in that conversation: the address becomes known for the
  ticket's customer when nobody else knows it. When it is already known for a *different*
  customer, two records of (probably) one person meet on one thread: that is a suggestion, not a
  merge, because a colleague may answer for someone.
* **Suggested (likely).** `name_and_domain`: equal display names (case, accents and
  spacing ignored) and email addresses at one domain that is not a public mail provider.
  `signature_number`: a phone number written in an email body (a signature) that is known
  for another customer; the number is also kept as a *maybe* identity of the writer.
  `maybe_identity`: a *maybe* identity of one customer is a *known* identity of another.
* **Merged by an agent** (`merge`): identities, tickets, calls and history move to the
  survivor; before it the audit keeps what moved (`customer.merge_snapshot`: identity, ticket
  and call ids) so the merge can be undone by hand. Merging into itself or into (or from) a
  merged customer is refused.

Duplicates: one customer's new ticket on one channel, with an active ticket on another channel
created within `DUPLICATE_WINDOW` whose subject shares most words (Jaccard >= 0.5 over words of
four letters or more) or which names the same ticket number, is linked to it as a duplicate
(`LinkKind.DUPLICATE`, audited on both); an agent then merges or unlinks.
"""

from __future__ import annotations

import contextlib
import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from sqlalchemy import CheckConstraint, ForeignKey, Integer, String, UniqueConstraint, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from tickets.customers import CustomerDirectory
from tickets.errors import IdentityConflict, InvalidIdentity, InvalidMerge
from tickets.models import (
    Base,
    CallRecord,
    Confidence,
    Customer,
    CustomerIdentity,
    EnumText,
    IdentityKind,
    LinkKind,
    Ticket,
    TicketLink,
)
from tickets.phone import DEFAULT_REGION, normalise
from tickets.repository import ACTIVE_STATUSES, Clock, TicketRepository, record_audit, utc_now

DUPLICATE_WINDOW = timedelta(minutes=15)
FREEMAIL = frozenset(
    {
        "gmail.com",
        "googlemail.com",
        "yahoo.com",
        "yahoo.fr",
        "hotmail.com",
        "hotmail.fr",
        "outlook.com",
        "live.com",
        "msn.com",
        "icloud.com",
        "me.com",
        "aol.com",
        "gmx.de",
        "gmx.net",
        "web.de",
        "orange.fr",
        "free.fr",
        "laposte.net",
        "proton.me",
        "protonmail.com",
        "mail.ru",
        "yandex.ru",
    }
)
_PHONE_IN_TEXT = re.compile(r"(?:\+|\b00|\b0)[\d][\d ()./-]{6,18}\d")


class SuggestionStatus(StrEnum):
    OPEN = "open"
    ACCEPTED = "accepted"
    DISMISSED = "dismissed"


class LinkRule(StrEnum):
    SAME_THREAD = "same_thread"
    SAME_NAME_SAME_DOMAIN = "name_and_domain"
    NUMBER_IN_SIGNATURE = "signature_number"
    MAYBE_IDENTITY = "maybe_identity"


class CustomerLinkSuggestion(Base):
    """Evidence that two customer records are one person, for an agent to accept or dismiss."""

    __tablename__ = "customer_link_suggestions"
    __table_args__ = (
        UniqueConstraint("customer_id", "other_customer_id", "rule"),
        CheckConstraint("customer_id <> other_customer_id", name="not_self"),
        CheckConstraint("status IN ('open', 'accepted', 'dismissed')", name="status"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    customer_id: Mapped[int] = mapped_column(
        ForeignKey("customers.id", ondelete="CASCADE"), index=True
    )
    other_customer_id: Mapped[int] = mapped_column(
        ForeignKey("customers.id", ondelete="CASCADE"), index=True
    )
    rule: Mapped[LinkRule] = mapped_column(EnumText(LinkRule))
    evidence: Mapped[dict[str, Any]] = mapped_column(default=dict)
    status: Mapped[SuggestionStatus] = mapped_column(EnumText(SuggestionStatus))
    created_at: Mapped[datetime]
    decided_at: Mapped[datetime | None]
    decided_by: Mapped[str | None] = mapped_column(String(200))


@dataclass(frozen=True, slots=True)
class LinkOutcome:
    """What a piece of evidence did: an identity added as known, or a suggestion made."""

    identity: CustomerIdentity | None = None
    suggestion: CustomerLinkSuggestion | None = None


def normalised_name(name: str) -> str:
    """`  Renée  DUPONT ` -> `renee dupont` (for comparing display names)."""
    decomposed = unicodedata.normalize("NFKD", name)
    plain = "".join(c for c in decomposed if not unicodedata.combining(c))
    return " ".join(plain.lower().split())


def subject_words(subject: str) -> set[str]:
    return {w for w in re.findall(r"[^\W_]+", subject.lower()) if len(w) >= 4}


def same_subject(a: str, b: str) -> bool:
    """Do two subjects say the same thing (Jaccard >= 0.5 over their longer words)?"""
    wa, wb = subject_words(a), subject_words(b)
    if not wa or not wb:
        return False
    return len(wa & wb) / len(wa | wb) >= 0.5


def numbers_in_text(body: str, default_region: str = DEFAULT_REGION) -> list[str]:
    """Phone numbers written in a text (a signature), E.164, at most five."""
    found: list[str] = []
    for match in _PHONE_IN_TEXT.finditer(body[-4000:]):  # signatures are at the end
        number = normalise(match.group(0), default_region)
        if number.e164 is not None and number.e164 not in found:
            found.append(number.e164)
    return found[:5]


class IdentityLinker:
    """Applies the linking rules inside the caller's transaction."""

    def __init__(
        self, session: AsyncSession, clock: Clock = utc_now, default_region: str = DEFAULT_REGION
    ) -> None:
        self.session = session
        self.clock = clock
        self.customers = CustomerDirectory(session, clock, default_region)
        self.default_region = default_region

    # -- certain evidence ----------------------------------------------------------------------

    async def verified(
        self, customer: Customer, kind: IdentityKind, value: str, *, source: str
    ) -> LinkOutcome:
        """A verified identity becomes known for the customer; if someone else knows it, suggest."""
        customer = await self.customers.surviving(customer)
        stored = self.customers.normalise(kind, value)
        owner = (await self.customers.match(kind, stored)).known
        if owner is not None and owner.id != customer.id:
            return LinkOutcome(
                suggestion=await self.suggest(
                    customer, owner, LinkRule.SAME_THREAD, {"kind": kind, "source": source}
                )
            )
        if owner is not None:
            return LinkOutcome()
        identity = await self.customers.add_identity(
            customer, kind, stored, confidence=Confidence.KNOWN, source=source, actor="system"
        )
        return LinkOutcome(identity=identity)

    async def reply_on_thread(self, ticket: Ticket, from_address: str) -> LinkOutcome:
        """An email our threading matched to `ticket` came from `from_address`."""
        if ticket.customer_id is None:
            return LinkOutcome()
        customer = await self.customers.get(ticket.customer_id)
        try:
            return await self.verified(
                customer, IdentityKind.EMAIL, from_address, source=f"thread:{ticket.number}"
            )
        except InvalidIdentity:
            return LinkOutcome()

    # -- likely evidence -----------------------------------------------------------------------

    async def suggestions_for(self, customer: Customer) -> list[CustomerLinkSuggestion]:
        """Run the likely-evidence rules for a customer; returns the open suggestions made."""
        customer = await self.customers.surviving(customer)
        made: list[CustomerLinkSuggestion] = []
        mine = await self.customers.identities(customer)
        name = normalised_name(customer.display_name)
        domains = {
            i.value.rsplit("@", 1)[1]
            for i in mine
            if i.kind == IdentityKind.EMAIL and i.value.rsplit("@", 1)[1] not in FREEMAIL
        }
        if name and domains:
            for domain in sorted(domains):
                query = select(CustomerIdentity).where(
                    CustomerIdentity.kind == IdentityKind.EMAIL,
                    CustomerIdentity.value.like(f"%@{_like_escape(domain)}", escape="\\"),
                    CustomerIdentity.customer_id != customer.id,
                )
                for identity in (await self.session.execute(query)).scalars():
                    other = await self.customers.surviving(
                        await self.customers.get(identity.customer_id)
                    )
                    if other.id != customer.id and normalised_name(other.display_name) == name:
                        evidence = {"name": customer.display_name, "domain": domain}
                        made.append(
                            await self.suggest(
                                customer, other, LinkRule.SAME_NAME_SAME_DOMAIN, evidence
                            )
                        )
        for identity in mine:
            if identity.confidence != Confidence.MAYBE:
                continue
            owner = (await self.customers.match(identity.kind, identity.value)).known
            if owner is not None and owner.id != customer.id:
                evidence = {"kind": identity.kind, "source": identity.source}
                made.append(await self.suggest(customer, owner, LinkRule.MAYBE_IDENTITY, evidence))
        return made

    async def email_body(self, customer: Customer, body: str) -> list[CustomerLinkSuggestion]:
        """Numbers in an email's signature: kept as maybe identities, suggested where known."""
        customer = await self.customers.surviving(customer)
        made: list[CustomerLinkSuggestion] = []
        for e164 in numbers_in_text(body, self.default_region):
            match = await self.customers.match(IdentityKind.PHONE, e164)
            if match.known is not None and match.known.id != customer.id:
                made.append(
                    await self.suggest(
                        customer, match.known, LinkRule.NUMBER_IN_SIGNATURE, {"number": e164}
                    )
                )
            if match.known is None or match.known.id != customer.id:
                with contextlib.suppress(IdentityConflict):  # known to someone: suggested above
                    await self.customers.add_identity(
                        customer,
                        IdentityKind.PHONE,
                        e164,
                        confidence=Confidence.MAYBE,
                        source="email-signature",
                        actor="system",
                    )
        return made

    async def suggest(
        self, customer: Customer, other: Customer, rule: LinkRule, evidence: dict[str, Any]
    ) -> CustomerLinkSuggestion:
        """Record (once) that two customers may be one person."""
        low, high = sorted((customer.id, other.id))
        query = select(CustomerLinkSuggestion).where(
            CustomerLinkSuggestion.customer_id == low,
            CustomerLinkSuggestion.other_customer_id == high,
            CustomerLinkSuggestion.rule == rule,
        )
        existing = (await self.session.execute(query)).scalar_one_or_none()
        if existing is not None:
            return existing
        suggestion = CustomerLinkSuggestion(
            customer_id=low,
            other_customer_id=high,
            rule=rule,
            evidence=dict(evidence),
            status=SuggestionStatus.OPEN,
            created_at=self.clock(),
        )
        self.session.add(suggestion)
        await self.session.flush()
        for customer_id in (low, high):
            record_audit(
                self.session,
                at=self.clock(),
                actor="system",
                action="customer.link_suggested",
                customer_id=customer_id,
                data={"rule": rule, "customers": [low, high], "suggestion": suggestion.id},
            )
        return suggestion

    async def open_suggestions(self, customer: Customer) -> list[CustomerLinkSuggestion]:
        query = select(CustomerLinkSuggestion).where(
            CustomerLinkSuggestion.status == SuggestionStatus.OPEN,
            (CustomerLinkSuggestion.customer_id == customer.id)
            | (CustomerLinkSuggestion.other_customer_id == customer.id),
        )
        return list(
            (await self.session.execute(query.order_by(CustomerLinkSuggestion.id))).scalars()
        )

    async def decide(
        self, suggestion: CustomerLinkSuggestion, *, accept: bool, actor: str
    ) -> Customer | None:
        """Accept (merge the newer record into the older one) or dismiss a suggestion."""
        if suggestion.status != SuggestionStatus.OPEN:
            raise InvalidMerge(f"suggestion {suggestion.id} was already {suggestion.status}")
        suggestion.status = SuggestionStatus.ACCEPTED if accept else SuggestionStatus.DISMISSED
        suggestion.decided_at = self.clock()
        suggestion.decided_by = actor
        if not accept:
            await self.session.flush()
            return None
        older = await self.customers.get(suggestion.customer_id)
        newer = await self.customers.get(suggestion.other_customer_id)
        return await self.merge(
            await self.customers.surviving(newer),
            await self.customers.surviving(older),
            actor=actor,
            reason=f"suggestion {suggestion.id} ({suggestion.rule})",
        )

    # -- agent merge ---------------------------------------------------------------------------

    async def merge(
        self, source: Customer, target: Customer, *, actor: str, reason: str = ""
    ) -> Customer:
        """Merge with a snapshot of what moves, so the merge can be undone from the history."""
        if source.id == target.id:
            raise InvalidMerge(f"customer {source.id} cannot be merged into itself")
        if source.merged_into_id is not None or target.merged_into_id is not None:
            raise InvalidMerge("a merged customer cannot be merged again; use the surviving one")
        identities = await self.customers.identities(source)
        tickets = await self._ids(select(Ticket.id).where(Ticket.customer_id == source.id))
        calls = await self._ids(select(CallRecord.id).where(CallRecord.customer_id == source.id))
        record_audit(
            self.session,
            at=self.clock(),
            actor=actor,
            action="customer.merge_snapshot",
            customer_id=source.id,
            data={
                "target": target.id,
                "display_name": source.display_name,
                "identities": [
                    {
                        "kind": i.kind,
                        "value": i.value,
                        "confidence": i.confidence,
                        "source": i.source,
                    }
                    for i in identities
                ],
                "tickets": tickets,
                "calls": calls,
            },
        )
        if not target.display_name and source.display_name:
            target.display_name = source.display_name
        return await self.customers.merge(source, target, actor=actor, reason=reason)

    async def _ids(self, query: Any) -> list[int]:
        return [int(v) for v in (await self.session.execute(query)).scalars()]

    # -- duplicates across channels ------------------------------------------------------------

    async def flag_duplicates(
        self, ticket: Ticket, *, actor: str = "system", window: timedelta = DUPLICATE_WINDOW
    ) -> list[TicketLink]:
        """Link `ticket` as a duplicate of the same customer's recent tickets on other channels."""
        if ticket.customer_id is None:
            return []
        customer = await self.customers.surviving(await self.customers.get(ticket.customer_id))
        related = [customer.id, *await self._merged_into(customer.id)]
        query = select(Ticket).where(
            Ticket.customer_id.in_(related),
            Ticket.id != ticket.id,
            Ticket.channel != ticket.channel,
            Ticket.merged_into_id.is_(None),
            Ticket.status.in_(sorted(ACTIVE_STATUSES)),
            Ticket.created_at >= ticket.created_at - window,
            Ticket.created_at <= ticket.created_at + window,
        )
        repository = TicketRepository(self.session, self.clock)
        links: list[TicketLink] = []
        for other in (await self.session.execute(query.order_by(Ticket.id))).scalars():
            if same_subject(ticket.subject, other.subject) or other.number in ticket.subject:
                links.append(
                    await repository.link(ticket, other, actor=actor, kind=LinkKind.DUPLICATE)
                )
        return links

    async def _merged_into(self, customer_id: int) -> Sequence[int]:
        query = select(Customer.id).where(Customer.merged_into_id == customer_id)
        return await self._ids(query)


def _like_escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
