"""Customers: one person by phone, email and chat; known versus maybe matches; link and merge."""

from __future__ import annotations

import asyncio

import pytest

from tickets.customers import CustomerDirectory, normalise_identity
from tickets.db import Database
from tickets.errors import IdentityConflict, InvalidIdentity, InvalidMerge
from tickets.models import Channel, Confidence, IdentityKind, Ticket
from tickets.repository import TicketRepository

from .conftest import FakeClock

PHONE, EMAIL, CHAT = IdentityKind.PHONE, IdentityKind.EMAIL, IdentityKind.CHAT


def test_given_identities_in_loose_forms_when_normalised_then_one_stored_form() -> None:
    assert normalise_identity(PHONE, "(212) 555-0100") == "+12125550100"
    assert normalise_identity(PHONE, "0044 20 7946 0958") == "+442079460958"
    assert normalise_identity(EMAIL, "Alice <Alice@Example.ORG>") == "alice@example.org"
    assert normalise_identity(CHAT, "  widget:7f3a  ") == "widget:7f3a"
    for kind, value in ((PHONE, "anonymous"), (PHONE, "abc"), (EMAIL, "nobody"), (CHAT, " ")):
        with pytest.raises(InvalidIdentity) as caught:
            normalise_identity(kind, value)
        assert caught.value.error_id == "customer-identity-invalid"


async def test_given_unknown_number_when_found_or_created_then_new_customer_then_found_again(
    db: Database, clock: FakeClock
) -> None:
    async with db.sessions.begin() as session:
        directory = CustomerDirectory(session, clock)
        first = await directory.find_or_create(PHONE, "+1 212 555 0100", actor="t")
        again = await directory.find_or_create(PHONE, "(212) 555-0100", actor="t")
        identities = await directory.identities(first.customer)
    assert first.created
    assert not again.created
    assert again.customer.id == first.customer.id
    assert [(i.kind, i.value, i.confidence) for i in identities] == [
        (PHONE, "+12125550100", Confidence.KNOWN)
    ]


async def test_given_number_only_seen_in_an_email_when_matched_then_maybe_not_known(
    db: Database, clock: FakeClock
) -> None:
    async with db.sessions.begin() as session:
        directory = CustomerDirectory(session, clock)
        alice = (await directory.find_or_create(EMAIL, "alice@example.org", actor="t")).customer
        await directory.add_identity(
            alice, PHONE, "212 555 0100", actor="email", confidence=Confidence.MAYBE
        )
        match = await directory.match(PHONE, "+12125550100")
        caller = await directory.find_or_create(PHONE, "+12125550100", actor="calls")
    assert match.known is None
    assert [c.id for c in match.maybe] == [alice.id]
    assert caller.created
    assert caller.customer.id != alice.id
    assert [c.id for c in caller.suggestions] == [alice.id]


async def test_given_maybe_identity_when_agent_links_it_then_known_and_audited(
    db: Database, clock: FakeClock
) -> None:
    async with db.sessions.begin() as session:
        directory = CustomerDirectory(session, clock)
        alice = await directory.create(actor="agent:ann", display_name="Alice")
        await directory.add_identity(
            alice, CHAT, "widget:7f3a", actor="chat", confidence=Confidence.MAYBE
        )
        await directory.add_identity(alice, CHAT, "widget:7f3a", actor="agent:ann")
        match = await directory.match(CHAT, "widget:7f3a")
        actions = await directory.history_actions(alice)
    assert match.known is not None
    assert match.known.id == alice.id
    assert match.maybe == ()
    assert actions == ["customer.created", "identity.added", "identity.confirmed"]


async def test_given_identity_known_elsewhere_when_linked_then_conflict_asks_for_merge(
    db: Database, clock: FakeClock
) -> None:
    async with db.sessions.begin() as session:
        directory = CustomerDirectory(session, clock)
        await directory.find_or_create(EMAIL, "bob@example.org", actor="t")
        other = await directory.create(actor="t")
        with pytest.raises(IdentityConflict) as caught:
            await directory.add_identity(other, EMAIL, "BOB@example.org", actor="agent:ann")
    assert caught.value.error_id == "customer-identity-conflict"


async def test_given_phone_and_email_customers_when_merged_then_one_customer_owns_everything(
    db: Database, clock: FakeClock
) -> None:
    async with db.sessions.begin() as session:
        directory = CustomerDirectory(session, clock)
        tickets = TicketRepository(session, clock)
        by_phone = (await directory.find_or_create(PHONE, "+12125550100", actor="calls")).customer
        by_mail = (
            await directory.find_or_create(EMAIL, "carol@example.org", actor="mail")
        ).customer
        await directory.add_identity(
            by_mail, PHONE, "+12125550100", actor="mail", confidence=Confidence.MAYBE
        )
        ticket = await tickets.create(
            subject="call", channel=Channel.PHONE, actor="calls", customer_id=by_phone.id
        )
        await directory.merge(by_phone, by_mail, actor="agent:ann", reason="same person")
        identities = await directory.identities(by_mail)
        moved = await session.get(Ticket, ticket.id)
        phone_owner = (await directory.match(PHONE, "+12125550100")).known
        with pytest.raises(InvalidMerge):
            await directory.merge(by_phone, by_mail, actor="agent:ann")
        source_history = await directory.history_actions(by_phone)
    assert sorted((i.kind, i.value, i.confidence) for i in identities) == [
        (EMAIL, "carol@example.org", Confidence.KNOWN),
        (PHONE, "+12125550100", Confidence.KNOWN),
    ]
    assert moved is not None
    assert moved.customer_id == by_mail.id
    assert phone_owner is not None
    assert phone_owner.id == by_mail.id
    assert by_phone.merged_into_id == by_mail.id
    assert source_history[-1] == "customer.merged"


async def test_given_two_sessions_meeting_a_new_number_at_once_then_one_customer(
    db: Database, clock: FakeClock
) -> None:
    async def resolve() -> int:
        async with db.sessions.begin() as session:
            found = await CustomerDirectory(session, clock).find_or_create(
                PHONE, "+12125550199", actor="calls"
            )
            await asyncio.sleep(0)
            return found.customer.id

    first, second = await asyncio.gather(resolve(), resolve())
    assert first == second
