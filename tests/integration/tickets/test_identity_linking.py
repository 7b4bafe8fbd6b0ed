"""One customer across channels on real SQLite and PostgreSQL: certain, suggested, merged, dups."""

from __future__ import annotations

from datetime import timedelta

import pytest

from tickets.customers import CustomerDirectory
from tickets.db import Database
from tickets.errors import InvalidMerge
from tickets.identity_linking import IdentityLinker, LinkRule, same_subject
from tickets.models import AuditEvent, Channel, Confidence, Customer, IdentityKind, LinkKind
from tickets.repository import TicketRepository

from .conftest import FakeClock


async def _customer(
    db: Database, clock: FakeClock, kind: IdentityKind, value: str, name: str
) -> Customer:
    async with db.sessions.begin() as session:
        resolution = await CustomerDirectory(session, clock).find_or_create(
            kind, value, actor="system", display_name=name
        )
        return resolution.customer


async def test_given_reply_on_a_callers_thread_when_linked_then_address_known_for_that_customer(
    db: Database, clock: FakeClock
) -> None:
    caller = await _customer(db, clock, IdentityKind.PHONE, "+33612345678", "Renée Dupont")
    async with db.sessions.begin() as session:
        ticket = await TicketRepository(session, clock).create(
            subject="Line down", channel=Channel.PHONE, actor="system", customer_id=caller.id
        )
        outcome = await IdentityLinker(session, clock).reply_on_thread(
            ticket, "Renée <RENEE@Example.org>"
        )
        assert outcome.identity is not None
        assert (outcome.identity.value, outcome.identity.confidence) == (
            "renee@example.org",
            Confidence.KNOWN,
        )
    async with db.sessions() as session:
        match = await CustomerDirectory(session).match(IdentityKind.EMAIL, "renee@example.org")
        assert match.known is not None
        assert match.known.id == caller.id


async def test_given_address_known_for_someone_else_when_reply_on_thread_then_only_suggested(
    db: Database, clock: FakeClock
) -> None:
    caller = await _customer(db, clock, IdentityKind.PHONE, "+33612345678", "R. Dupont")
    writer = await _customer(db, clock, IdentityKind.EMAIL, "renee@example.org", "Renée Dupont")
    async with db.sessions.begin() as session:
        ticket = await TicketRepository(session, clock).create(
            subject="Line down", channel=Channel.PHONE, actor="system", customer_id=caller.id
        )
        outcome = await IdentityLinker(session, clock).reply_on_thread(ticket, "renee@example.org")
        assert outcome.identity is None
        assert outcome.suggestion is not None
        assert outcome.suggestion.rule == LinkRule.SAME_THREAD
        assert {outcome.suggestion.customer_id, outcome.suggestion.other_customer_id} == {
            caller.id,
            writer.id,
        }


async def test_given_same_name_and_company_domain_when_checked_then_suggested_not_for_freemail(
    db: Database, clock: FakeClock
) -> None:
    a = await _customer(db, clock, IdentityKind.EMAIL, "jan.novak@acme.cz", "Jan Novák")
    await _customer(db, clock, IdentityKind.EMAIL, "jnovak@acme.cz", "JAN  NOVAK")
    c = await _customer(db, clock, IdentityKind.EMAIL, "jan1@gmail.com", "Jan Novak")
    await _customer(db, clock, IdentityKind.EMAIL, "jan2@gmail.com", "Jan Novak")
    async with db.sessions.begin() as session:
        linker = IdentityLinker(session, clock)
        made = await linker.suggestions_for(a)
        assert [s.rule for s in made] == [LinkRule.SAME_NAME_SAME_DOMAIN]
        assert await linker.suggestions_for(c) == []  # gmail.com says nothing about the person
        assert len(await linker.suggestions_for(a)) == 1  # recorded once


async def test_given_number_in_email_signature_when_read_then_maybe_identity_and_suggestion(
    db: Database, clock: FakeClock
) -> None:
    caller = await _customer(db, clock, IdentityKind.PHONE, "+33612345678", "Caller")
    writer = await _customer(db, clock, IdentityKind.EMAIL, "renee@example.org", "Renée")
    body = "Hello,\nmy line is down.\n\n--\nRenée Dupont\nTel. +33 6 12 34 56 78\n"
    async with db.sessions.begin() as session:
        linker = IdentityLinker(session, clock)
        made = await linker.email_body(writer, body)
        assert [(s.rule, s.evidence["number"]) for s in made] == [
            (LinkRule.NUMBER_IN_SIGNATURE, "+33612345678")
        ]
        identities = await CustomerDirectory(session).identities(writer)
        assert ("+33612345678", Confidence.MAYBE) in [(i.value, i.confidence) for i in identities]
        assert await linker.email_body(writer, "no numbers here, call 12") == []
        assert caller.id != writer.id


async def test_given_suggestion_when_accepted_then_merged_with_a_snapshot_to_undo_it(
    db: Database, clock: FakeClock
) -> None:
    caller = await _customer(db, clock, IdentityKind.PHONE, "+33612345678", "Caller")
    writer = await _customer(db, clock, IdentityKind.EMAIL, "renee@example.org", "Renée")
    async with db.sessions.begin() as session:
        ticket = await TicketRepository(session, clock).create(
            subject="Mail", channel=Channel.EMAIL, actor="system", customer_id=writer.id
        )
        linker = IdentityLinker(session, clock)
        suggestion = await linker.suggest(caller, writer, LinkRule.MAYBE_IDENTITY, {})
        survivor = await linker.decide(suggestion, accept=True, actor="agent:ann")
        assert survivor is not None
        assert survivor.id == caller.id
        with pytest.raises(InvalidMerge):
            await linker.decide(suggestion, accept=True, actor="agent:ann")
    async with db.sessions() as session:
        moved = await TicketRepository(session).get(ticket.id)
        assert moved.customer_id == caller.id
        snapshot = [
            e
            for e in (await session.execute(AuditEvent.__table__.select())).all()
            if e.action == "customer.merge_snapshot"
        ]
        assert snapshot[0].data["tickets"] == [ticket.id]
        assert snapshot[0].data["identities"][0]["value"] == "renee@example.org"


async def test_given_bad_merges_when_attempted_then_refused_and_nothing_changes(
    db: Database, clock: FakeClock
) -> None:
    a = await _customer(db, clock, IdentityKind.PHONE, "+33612345678", "A")
    b = await _customer(db, clock, IdentityKind.PHONE, "+33698765432", "B")
    c = await _customer(db, clock, IdentityKind.PHONE, "+33611111111", "C")
    async with db.sessions.begin() as session:
        linker = IdentityLinker(session, clock)
        a = await linker.customers.get(a.id)
        with pytest.raises(InvalidMerge, match="itself"):
            await linker.merge(a, a, actor="agent:ann")
        await linker.merge(await linker.customers.get(b.id), a, actor="agent:ann")
    async with db.sessions.begin() as session:
        linker = IdentityLinker(session, clock)
        merged = await linker.customers.get(b.id)
        with pytest.raises(InvalidMerge, match="merged"):
            await linker.merge(await linker.customers.get(c.id), merged, actor="agent:ann")
        with pytest.raises(InvalidMerge, match="merged"):
            await linker.merge(merged, await linker.customers.get(c.id), actor="agent:ann")
    async with db.sessions() as session:
        still = await CustomerDirectory(session).get(c.id)
        assert still.merged_into_id is None


async def test_given_same_request_by_phone_and_email_within_minutes_when_checked_then_linked(
    db: Database, clock: FakeClock
) -> None:
    person = await _customer(db, clock, IdentityKind.PHONE, "+33612345678", "Renée")
    async with db.sessions.begin() as session:
        repository = TicketRepository(session, clock)
        call = await repository.create(
            subject="Internet connection down since morning",
            channel=Channel.PHONE,
            actor="system",
            customer_id=person.id,
        )
        clock.advance(timedelta(minutes=6))
        mail = await repository.create(
            subject="Re: internet connection down",
            channel=Channel.EMAIL,
            actor="system",
            customer_id=person.id,
        )
        other = await repository.create(
            subject="Invoice address change",
            channel=Channel.CHAT,
            actor="system",
            customer_id=person.id,
        )
        linker = IdentityLinker(session, clock)
        links = await linker.flag_duplicates(mail)
        assert [(link.source_id, link.target_id, link.kind) for link in links] == [
            (mail.id, call.id, LinkKind.DUPLICATE)
        ]
        assert await linker.flag_duplicates(other) == []
        clock.advance(timedelta(hours=2))
        late = await repository.create(
            subject="internet connection down again",
            channel=Channel.CHAT,
            actor="system",
            customer_id=person.id,
        )
        assert await linker.flag_duplicates(late) == []  # outside the window


def test_given_subjects_when_compared_then_most_long_words_shared_means_same() -> None:
    assert same_subject("Internet connection down", "RE: internet connection DOWN!")
    assert not same_subject("Internet connection down", "Invoice address")
    assert not same_subject("Hi", "Hi")  # nothing long enough to compare
