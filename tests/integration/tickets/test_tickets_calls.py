"""Every call becomes a ticket or joins one; nothing is lost, even for anonymous callers."""

from __future__ import annotations

import asyncio
import itertools
from datetime import timedelta

import pytest
from sqlalchemy import func, select

from tickets.calls import CallEvent, CallOutcome, CallPolicy, CallTickets, ivr_path_json
from tickets.customers import CustomerDirectory
from tickets.db import Database, open_database
from tickets.errors import DatabaseUnavailable, TicketNotFound
from tickets.models import (
    CallRecord,
    Disposition,
    IdentityKind,
    LinkKind,
    TicketStatus,
)
from tickets.phone import PhoneKind
from tickets.repository import TicketRepository

from .conftest import FakeClock

WINDOW = timedelta(hours=2)
_ids = itertools.count(1)


def _call(clock: FakeClock, caller: str = "+12125550100", **extra: object) -> CallEvent:
    fields: dict[str, object] = {
        "call_id": f"1700000000.{next(_ids)}",
        "caller": caller,
        "started_at": clock(),
        "queue": "support",
        "skills": ("en",),
        "disposition": Disposition.ANSWERED,
    }
    fields.update(extra)
    return CallEvent(**fields)  # type: ignore[arg-type]


@pytest.fixture
def service(db: Database, clock: FakeClock) -> CallTickets:
    return CallTickets(db.sessions, CallPolicy(repeat_window=WINDOW), clock)


async def test_given_first_call_when_recorded_then_new_ticket_with_call_and_customer(
    service: CallTickets, db: Database, clock: FakeClock
) -> None:
    path = ({"event": "StepEntered", "step": "menu"}, {"event": "DigitsEntered", "digits": "2"})
    result = await service.record_call(
        _call(clock, "(212) 555-0100", ivr_path=path, agent="agent:ann", talk_s=42.5)
    )
    assert result.outcome == CallOutcome.NEW_TICKET
    assert result.customer_id is not None
    async with db.sessions() as session:
        repo = TicketRepository(session, clock)
        ticket = await repo.get(result.ticket_id)
        [call] = await repo.calls(ticket)
        [note] = await repo.messages(ticket)
    assert ticket.channel == "phone"
    assert ticket.queue == "support"
    assert ticket.skills == ["en"]
    assert ticket.subject == "Call from +12125550100 (support)"
    assert ticket.customer_id == result.customer_id
    assert (call.caller_e164, call.agent, call.talk_s) == ("+12125550100", "agent:ann", 42.5)
    assert call.ivr_path == [dict(step) for step in path]
    assert note.internal
    assert note.call_record_id == call.id


async def test_given_caller_named_a_ticket_when_recorded_then_call_joins_it(
    service: CallTickets, clock: FakeClock
) -> None:
    first = await service.record_call(_call(clock, "+12125550100", queue="billing"))
    clock.advance(timedelta(days=3))  # far outside the repeat window
    joined = await service.record_call(
        _call(clock, "+12125550100", queue="support", named_ticket=first.ticket_number)
    )
    assert joined.outcome == CallOutcome.NAMED_TICKET
    assert joined.ticket_id == first.ticket_id


async def test_given_other_phone_names_a_customers_ticket_then_joins_and_number_is_a_maybe(
    service: CallTickets, db: Database, clock: FakeClock
) -> None:
    first = await service.record_call(_call(clock, "+12125550100"))
    other = await service.record_call(
        _call(clock, "+12125550177", named_ticket=first.ticket_number.replace("-", ""))
    )
    assert other.outcome == CallOutcome.NAMED_TICKET
    assert other.ticket_id == first.ticket_id
    async with db.sessions() as session:
        match = await CustomerDirectory(session, clock).match(IdentityKind.PHONE, "+12125550177")
    assert match.known is not None
    assert match.known.id == other.customer_id
    assert [c.id for c in match.maybe] == [first.customer_id]


async def test_given_named_ticket_was_merged_then_call_joins_the_survivor(
    service: CallTickets, db: Database, clock: FakeClock
) -> None:
    old = await service.record_call(_call(clock, queue="a"))
    survivor = await service.record_call(_call(clock, queue="b"))
    async with db.sessions.begin() as session:
        repo = TicketRepository(session, clock)
        await repo.merge(
            await repo.get(old.ticket_id), await repo.get(survivor.ticket_id), actor="agent:ann"
        )
    joined = await service.record_call(_call(clock, named_ticket=old.ticket_number))
    assert joined.ticket_id == survivor.ticket_id


async def test_given_named_ticket_closed_or_unknown_then_new_ticket_with_a_note(
    service: CallTickets, db: Database, clock: FakeClock
) -> None:
    first = await service.record_call(_call(clock, "anonymous"))
    async with db.sessions.begin() as session:
        repo = TicketRepository(session, clock)
        await repo.transition(await repo.get(first.ticket_id), TicketStatus.CLOSED, actor="t")
    follow_up = await service.record_call(_call(clock, named_ticket=first.ticket_number))
    unknown = await service.record_call(_call(clock, "anonymous", named_ticket="2026-999999"))
    assert follow_up.outcome == CallOutcome.NEW_TICKET
    assert follow_up.ticket_id != first.ticket_id
    assert "closed" in follow_up.note
    assert unknown.outcome == CallOutcome.NEW_TICKET
    assert "not found" in unknown.note
    async with db.sessions() as session:
        repo = TicketRepository(session, clock)
        links = await repo.links(await repo.get(follow_up.ticket_id))
    assert [(x.source_id, x.target_id, x.kind) for x in links] == [
        (follow_up.ticket_id, first.ticket_id, LinkKind.RELATED)
    ]


async def test_given_repeat_caller_within_window_same_queue_then_joins_open_ticket(
    service: CallTickets, clock: FakeClock
) -> None:
    first = await service.record_call(_call(clock))
    clock.advance(WINDOW - timedelta(minutes=1))
    second = await service.record_call(_call(clock, "212-555-0100"))
    assert second.outcome == CallOutcome.REPEAT_CALLER
    assert second.ticket_id == first.ticket_id


async def test_given_repeat_caller_outside_window_or_other_queue_then_new_ticket(
    service: CallTickets, clock: FakeClock
) -> None:
    first = await service.record_call(_call(clock))
    other_queue = await service.record_call(_call(clock, queue="billing"))
    clock.advance(WINDOW + timedelta(minutes=1))
    late = await service.record_call(_call(clock))
    assert other_queue.outcome == CallOutcome.NEW_TICKET
    assert late.outcome == CallOutcome.NEW_TICKET
    assert len({first.ticket_id, other_queue.ticket_id, late.ticket_id}) == 3


async def test_given_repeat_caller_whose_ticket_is_solved_then_new_ticket(
    service: CallTickets, db: Database, clock: FakeClock
) -> None:
    first = await service.record_call(_call(clock))
    async with db.sessions.begin() as session:
        repo = TicketRepository(session, clock)
        await repo.transition(await repo.get(first.ticket_id), TicketStatus.SOLVED, actor="t")
    again = await service.record_call(_call(clock))
    assert again.outcome == CallOutcome.NEW_TICKET
    assert again.ticket_id != first.ticket_id


@pytest.mark.parametrize("caller", ["anonymous", "", "unknown", "not a number"])
async def test_given_anonymous_or_invalid_caller_then_call_stored_and_new_ticket_each_time(
    service: CallTickets, db: Database, clock: FakeClock, caller: str
) -> None:
    first = await service.record_call(_call(clock, caller))
    second = await service.record_call(_call(clock, caller))
    assert first.customer_id is None
    assert second.customer_id is None
    assert first.caller.kind in (PhoneKind.ANONYMOUS, PhoneKind.INVALID)
    assert first.ticket_id != second.ticket_id
    async with db.sessions() as session:
        calls = list((await session.execute(select(CallRecord))).scalars())
    assert [(c.caller_raw, c.caller_e164, c.ticket_id) for c in calls] == [
        (caller, None, first.ticket_id),
        (caller, None, second.ticket_id),
    ]


async def test_given_same_call_reported_twice_then_one_record_updated_and_one_ticket(
    service: CallTickets, db: Database, clock: FakeClock
) -> None:
    started = _call(clock, disposition=Disposition.IN_PROGRESS)
    first = await service.record_call(started)
    ended = CallEvent(
        call_id=started.call_id,
        caller=started.caller,
        started_at=started.started_at,
        ended_at=clock() + timedelta(minutes=3),
        talk_s=170.0,
        hold_s=10.0,
        agent="agent:ann",
        recording_url="file:///recordings/x.wav",
        transcript_url="file:///transcripts/x.json",
        transfers=({"from": "agent:ann", "to": "agent:bob"},),
        disposition=Disposition.ANSWERED,
    )
    second = await service.record_call(ended)
    assert second.outcome == CallOutcome.ALREADY_TICKETED
    assert second.ticket_id == first.ticket_id
    async with db.sessions() as session:
        [call] = list((await session.execute(select(CallRecord))).scalars())
    assert (call.disposition, call.talk_s, call.queue) == (Disposition.ANSWERED, 170.0, "support")
    assert call.transfers == [{"from": "agent:ann", "to": "agent:bob"}]


async def test_given_ticketing_fails_then_call_is_kept_and_ticketed_later(
    db: Database, clock: FakeClock
) -> None:
    broken = CallTickets(db.sessions, CallPolicy(repeat_window=WINDOW), clock)

    async def fail(record_id: int, **_: object) -> None:
        raise RuntimeError("database went away")

    broken._ticket = fail  # type: ignore[method-assign,assignment]
    with pytest.raises(RuntimeError):
        await broken.record_call(_call(clock, "anonymous"))
    async with db.sessions() as session:
        [call] = list((await session.execute(select(CallRecord))).scalars())
    assert call.ticket_id is None
    healed = await CallTickets(db.sessions, CallPolicy(), clock).ticket_unticketed()
    assert [r.call_id for r in healed] == [call.call_id]
    assert healed[0].outcome == CallOutcome.NEW_TICKET


async def test_given_call_joined_a_ticket_when_split_then_it_has_its_own_linked_ticket(
    service: CallTickets, db: Database, clock: FakeClock
) -> None:
    first = await service.record_call(_call(clock))
    second = await service.record_call(_call(clock))
    assert second.ticket_id == first.ticket_id
    new = await service.split_call(second.call_id, actor="agent:ann", subject="Other problem")
    async with db.sessions() as session:
        repo = TicketRepository(session, clock)
        old = await repo.get(first.ticket_id)
        assert [c.call_id for c in await repo.calls(old)] == [first.call_id]
        assert [c.call_id for c in await repo.calls(new)] == [second.call_id]
        assert len(await repo.messages(new)) == 1
        assert new.customer_id == old.customer_id
        assert new.subject == "Other problem"
        assert "ticket.split" in [e.action for e in await repo.history(old)]
    with pytest.raises(TicketNotFound):
        await service.split_call("no-such-call", actor="agent:ann")


async def test_given_one_caller_calling_twice_at_once_then_both_calls_share_one_ticket(
    service: CallTickets, db: Database, clock: FakeClock
) -> None:
    results = await asyncio.gather(
        service.record_call(_call(clock, "+12125550123")),
        service.record_call(_call(clock, "+12125550123")),
    )
    assert {r.ticket_id for r in results} == {results[0].ticket_id}
    assert sorted(r.outcome for r in results) == [
        CallOutcome.NEW_TICKET,
        CallOutcome.REPEAT_CALLER,
    ]
    async with db.sessions() as session:
        customers = await session.execute(select(func.count()).select_from(CallRecord))
    assert customers.scalar_one() == 2


async def test_given_database_unreachable_when_call_recorded_then_database_unavailable(
    clock: FakeClock,
) -> None:
    database = open_database("postgresql+asyncpg://postgres@127.0.0.1:1/none")
    try:
        with pytest.raises(DatabaseUnavailable) as caught:
            await CallTickets(database.sessions, clock=clock).record_call(_call(clock))
    finally:
        await database.close()
    assert caught.value.error_id == "tickets-database-unavailable"


def test_given_ivr_path_events_when_serialised_then_json_ready() -> None:
    from dataclasses import fields
    from datetime import UTC, datetime

    from ivr.domain.call import CallId
    from ivr.domain.flow import StepId
    from ivr.domain.path import IvrEnded, IvrStarted, Outcome

    at = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
    ended = IvrEnded(CallId("c1"), at, StepId("queue"), Outcome.QUEUED, 1200, "support")
    path = ivr_path_json([IvrStarted(CallId("c1"), at, "main", "+12125550100", "en"), ended])
    assert path[0]["event"] == "IvrStarted"
    assert path[0]["at"] == at.isoformat()
    assert path[1]["outcome"] == "queued"
    assert path[1]["destination"] == "support"
    assert {f.name for f in fields(IvrEnded)} <= set(path[1])  # every field copied
    with pytest.raises(TypeError):
        ivr_path_json(["not an event"])
