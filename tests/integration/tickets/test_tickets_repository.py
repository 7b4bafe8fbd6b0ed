"""Tickets: human numbers, the status flow, messages and notes, merge, link and split, audit."""

from __future__ import annotations

import asyncio
import itertools
from datetime import timedelta

import pytest

from tickets.db import Database
from tickets.errors import (
    InvalidLink,
    InvalidMerge,
    InvalidSplit,
    InvalidTransition,
    TicketClosed,
    TicketMerged,
)
from tickets.models import AuthorKind, Channel, Direction, LinkKind, Priority, Ticket, TicketStatus
from tickets.repository import (
    TRANSITIONS,
    AttachmentMeta,
    TicketRepository,
    check_transition,
    format_number,
    parse_number,
)

from .conftest import FakeClock

S = TicketStatus


async def _ticket(db: Database, clock: FakeClock, subject: str = "Printer on fire") -> Ticket:
    async with db.sessions.begin() as session:
        return await TicketRepository(session, clock).create(
            subject=subject, channel=Channel.EMAIL, actor="agent:ann", queue="support"
        )


@pytest.mark.parametrize(("current", "target"), list(itertools.product(S, S)))
def test_given_any_status_pair_when_checked_then_only_table_transitions_pass(
    current: TicketStatus, target: TicketStatus
) -> None:
    if target in TRANSITIONS[current]:
        check_transition(current, target)
    else:
        with pytest.raises(InvalidTransition) as caught:
            check_transition(current, target)
        assert caught.value.error_id == "ticket-invalid-transition"


def test_given_human_numbers_when_formatted_and_parsed_then_round_trip() -> None:
    assert format_number(2026, 42) == "2026-000042"
    for text in ("2026-000042", "#2026-42", "2026000042", " 2026-42 "):
        assert parse_number(text) == (2026, 42)
    for text in ("", "42", "abcd-12", "2026-0", "2026-12-1"):
        assert parse_number(text) is None


async def test_given_new_tickets_when_created_then_numbers_count_up_per_year(
    db: Database, clock: FakeClock
) -> None:
    first = await _ticket(db, clock)
    second = await _ticket(db, clock)
    clock.now = clock.now.replace(year=2027, month=1, day=1)
    third = await _ticket(db, clock)
    assert [first.number, second.number, third.number] == [
        "2026-000001",
        "2026-000002",
        "2027-000001",
    ]
    assert first.status == S.NEW
    assert first.priority == Priority.NORMAL


async def test_given_two_sessions_creating_at_once_then_every_number_is_unique(
    db: Database, clock: FakeClock
) -> None:
    async def create_many(count: int) -> list[str]:
        numbers = []
        for _ in range(count):
            async with db.sessions.begin() as session:
                repo = TicketRepository(session, clock)
                ticket = await repo.create(subject="race", channel=Channel.PHONE, actor="t")
                await asyncio.sleep(0)  # let the other session interleave inside the transaction
                numbers.append(ticket.number)
        return numbers

    batches = await asyncio.gather(create_many(15), create_many(15))
    numbers = [n for batch in batches for n in batch]
    assert sorted(numbers) == [format_number(2026, seq) for seq in range(1, 31)]


async def test_given_a_rolled_back_ticket_then_its_number_is_drawn_again(
    db: Database, clock: FakeClock
) -> None:
    async with db.sessions() as session:
        await TicketRepository(session, clock).create(
            subject="lost", channel=Channel.WEB, actor="t"
        )
        await session.rollback()
    assert (await _ticket(db, clock)).number == "2026-000001"


async def test_given_ticket_when_walked_through_the_flow_then_history_records_each_step(
    db: Database, clock: FakeClock
) -> None:
    ticket = await _ticket(db, clock)
    async with db.sessions.begin() as session:
        repo = TicketRepository(session, clock)
        ticket = await repo.get(ticket.id)
        for status in (S.OPEN, S.PENDING, S.ON_HOLD, S.OPEN, S.SOLVED, S.OPEN, S.SOLVED, S.CLOSED):
            await repo.transition(ticket, status, actor="agent:ann")
        assert ticket.closed_at is not None
        assert ticket.solved_at is not None
        steps = [
            (e.data["from_status"], e.data["to_status"])
            for e in await repo.history(ticket)
            if e.action == "ticket.status_changed"
        ]
    assert steps[0] == ("new", "open")
    assert steps[-1] == ("solved", "closed")
    assert len(steps) == 8


async def test_given_closed_ticket_when_reopened_then_invalid_transition_with_error_id(
    db: Database, clock: FakeClock
) -> None:
    ticket = await _ticket(db, clock)
    async with db.sessions.begin() as session:
        repo = TicketRepository(session, clock)
        ticket = await repo.get(ticket.id)
        await repo.transition(ticket, S.CLOSED, actor="agent:ann")
        with pytest.raises(InvalidTransition) as caught:
            await repo.transition(ticket, S.OPEN, actor="agent:ann")
    assert caught.value.error_id == "ticket-invalid-transition"
    assert "closed" in str(caught.value)


async def test_given_pending_ticket_when_customer_replies_then_reopened_and_sla_pause_counted(
    db: Database, clock: FakeClock
) -> None:
    ticket = await _ticket(db, clock)
    async with db.sessions.begin() as session:
        repo = TicketRepository(session, clock)
        ticket = await repo.get(ticket.id)
        await repo.transition(ticket, S.PENDING, actor="agent:ann")
        clock.advance(timedelta(minutes=30))
        await repo.add_message(
            ticket,
            channel=Channel.EMAIL,
            direction=Direction.INBOUND,
            author_kind=AuthorKind.CUSTOMER,
            body="still broken",
            actor="customer",
        )
    assert ticket.status == S.OPEN
    assert ticket.sla_paused_seconds == pytest.approx(1800.0)
    assert ticket.sla_paused_at is None


async def test_given_notes_and_replies_when_listed_then_customer_view_hides_notes(
    db: Database, clock: FakeClock
) -> None:
    ticket = await _ticket(db, clock)
    async with db.sessions.begin() as session:
        repo = TicketRepository(session, clock)
        ticket = await repo.get(ticket.id)
        await repo.add_message(
            ticket,
            channel=Channel.EMAIL,
            direction=Direction.INBOUND,
            author_kind=AuthorKind.CUSTOMER,
            body="it smokes",
            actor="customer",
            attachments=[AttachmentMeta("smoke.jpg", "image/jpeg", 12_345, sha256="ab" * 32)],
        )
        await repo.add_message(
            ticket,
            channel=Channel.PHONE,
            direction=Direction.OUTBOUND,
            author_kind=AuthorKind.AGENT,
            body="customer sounds upset",
            actor="agent:ann",
            internal=True,
        )
        assert ticket.first_response_at is None  # a note is no response
        clock.advance(timedelta(minutes=5))
        reply = await repo.add_message(
            ticket,
            channel=Channel.EMAIL,
            direction=Direction.OUTBOUND,
            author_kind=AuthorKind.AGENT,
            body="unplug it",
            actor="agent:ann",
        )
        assert ticket.first_response_at == reply.created_at
        everything = await repo.messages(ticket)
        public = await repo.messages(ticket, include_internal=False)
        attachments = await repo.attachments(everything[0])
    assert [m.body for m in everything] == ["it smokes", "customer sounds upset", "unplug it"]
    assert [m.body for m in public] == ["it smokes", "unplug it"]
    assert everything[1].direction == Direction.INTERNAL
    assert everything[1].channel == Channel.PHONE
    assert [(a.filename, a.size) for a in attachments] == [("smoke.jpg", 12_345)]


async def test_given_closed_ticket_when_public_message_added_then_refused(
    db: Database, clock: FakeClock
) -> None:
    ticket = await _ticket(db, clock)
    async with db.sessions.begin() as session:
        repo = TicketRepository(session, clock)
        ticket = await repo.get(ticket.id)
        await repo.transition(ticket, S.CLOSED, actor="agent:ann")
        with pytest.raises(TicketClosed) as caught:
            await repo.add_message(
                ticket,
                channel=Channel.EMAIL,
                direction=Direction.INBOUND,
                author_kind=AuthorKind.CUSTOMER,
                body="hello?",
                actor="customer",
            )
        note = await repo.add_message(
            ticket,
            channel=Channel.WEB,
            direction=Direction.INTERNAL,
            author_kind=AuthorKind.AGENT,
            body="for the record",
            actor="agent:ann",
            internal=True,
        )
    assert caught.value.error_id == "ticket-closed"
    assert note.id is not None


async def test_given_two_tickets_when_merged_then_thread_moves_and_both_histories_say_so(
    db: Database, clock: FakeClock
) -> None:
    source = await _ticket(db, clock, "dup")
    target = await _ticket(db, clock, "original")
    async with db.sessions.begin() as session:
        repo = TicketRepository(session, clock)
        source, target = await repo.get(source.id), await repo.get(target.id)
        await repo.tag(source, actor="agent:ann", add=["printer"])
        await repo.add_message(
            source,
            channel=Channel.CHAT,
            direction=Direction.INBOUND,
            author_kind=AuthorKind.CUSTOMER,
            body="same problem",
            actor="customer",
        )
        await repo.merge(source, target, actor="agent:ann")
        assert [m.body for m in await repo.messages(target)] == ["same problem"]
        assert await repo.tags(target) == ["printer"]
        assert source.status == S.CLOSED
        assert source.merged_into_id == target.id
        assert (await repo.surviving(source)).id == target.id
        links = [(link.source_id, link.target_id, link.kind) for link in await repo.links(target)]
        assert links == [(source.id, target.id, LinkKind.MERGED_INTO)]
        assert "ticket.merged" in [e.action for e in await repo.history(source)]
        assert "ticket.merged" in [e.action for e in await repo.history(target)]
        with pytest.raises(TicketMerged) as merged:
            await repo.transition(source, S.OPEN, actor="agent:ann")
        with pytest.raises(InvalidMerge):
            await repo.merge(target, target, actor="agent:ann")
        with pytest.raises(InvalidMerge):
            await repo.merge(source, target, actor="agent:ann")
    assert merged.value.error_id == "ticket-merged"


async def test_given_two_tickets_when_linked_twice_then_one_link_audited_on_both(
    db: Database, clock: FakeClock
) -> None:
    a = await _ticket(db, clock)
    b = await _ticket(db, clock)
    async with db.sessions.begin() as session:
        repo = TicketRepository(session, clock)
        a, b = await repo.get(a.id), await repo.get(b.id)
        first = await repo.link(a, b, actor="agent:ann", kind=LinkKind.DUPLICATE)
        again = await repo.link(a, b, actor="agent:ann", kind=LinkKind.DUPLICATE)
        with pytest.raises(InvalidLink):
            await repo.link(a, a, actor="agent:ann")
        assert first.id == again.id
        assert len(await repo.links(b)) == 1
        assert [e.action for e in await repo.history(b)].count("ticket.linked") == 1


async def test_given_ticket_with_two_messages_when_one_split_off_then_new_ticket_linked(
    db: Database, clock: FakeClock
) -> None:
    ticket = await _ticket(db, clock)
    async with db.sessions.begin() as session:
        repo = TicketRepository(session, clock)
        ticket = await repo.get(ticket.id)
        ids = []
        for body in ("printer", "also my password"):
            message = await repo.add_message(
                ticket,
                channel=Channel.EMAIL,
                direction=Direction.INBOUND,
                author_kind=AuthorKind.CUSTOMER,
                body=body,
                actor="customer",
            )
            ids.append(message.id)
        with pytest.raises(InvalidSplit):
            await repo.split(ticket, actor="agent:ann", message_ids=ids)
        with pytest.raises(InvalidSplit):
            await repo.split(ticket, actor="agent:ann")
        new = await repo.split(ticket, actor="agent:ann", message_ids=[ids[1]], subject="Password")
        assert [m.body for m in await repo.messages(ticket)] == ["printer"]
        assert [m.body for m in await repo.messages(new)] == ["also my password"]
        assert new.subject == "Password"
        assert new.queue == ticket.queue
        assert [(x.source_id, x.target_id, x.kind) for x in await repo.links(ticket)] == [
            (new.id, ticket.id, LinkKind.SPLIT_FROM)
        ]


async def test_given_ticket_when_assigned_prioritised_routed_tagged_then_each_change_audited(
    db: Database, clock: FakeClock
) -> None:
    ticket = await _ticket(db, clock)
    async with db.sessions.begin() as session:
        repo = TicketRepository(session, clock)
        ticket = await repo.get(ticket.id)
        await repo.assign(ticket, "agent:bob", actor="agent:ann", tier=2)
        await repo.set_priority(ticket, Priority.URGENT, actor="agent:ann")
        await repo.route(ticket, queue="tier2", skills=["printers", "de"], actor="agent:ann")
        assert await repo.tag(ticket, actor="agent:ann", add=["vip", "fire"]) == ["fire", "vip"]
        assert await repo.tag(ticket, actor="agent:ann", remove=["fire"]) == ["vip"]
        actions = [e.action for e in await repo.history(ticket)]
    assert (ticket.assignee, ticket.tier, ticket.priority) == ("agent:bob", 2, Priority.URGENT)
    assert (ticket.queue, ticket.skills) == ("tier2", ["printers", "de"])
    assert actions == [
        "ticket.created",
        "ticket.assigned",
        "ticket.priority_changed",
        "ticket.routed",
        "ticket.tagged",
        "ticket.tagged",
    ]
