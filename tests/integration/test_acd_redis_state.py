"""The ACD's Redis state against a real Redis: every script's happy path and refusals, bad input
(logout while reserved, cancel while offered, repeats, script cache flush, lost replies) and the
two-process race with zero double offers, checked from the event stream.

Waits are bounded polls; their deadlines are correctness bounds, not speed measurements.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import suppress
from dataclasses import dataclass, field, replace
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest
import redis.asyncio as aioredis
from redis.crc import key_slot

from acd.adapters.redis_state import (
    AcdEvent,
    AcdRedisState,
    AgentSpec,
    Availability,
    Changed,
    ItemSpec,
    Missed,
    Offer,
    Refusal,
    Refused,
)
from tests.polling import eventually

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
RESERVER = Path(__file__).with_name("acd_reserver.py")
SITE = "t1"
TTL = 30.0  # offers that must not expire during a test


@pytest.fixture
async def client(redis_url: str) -> AsyncIterator[aioredis.Redis]:
    c = aioredis.Redis.from_url(redis_url, socket_timeout=5.0, decode_responses=True)
    try:
        yield c
    finally:
        await c.aclose()


@pytest.fixture
async def state(client: aioredis.Redis) -> AcdRedisState:
    return AcdRedisState(client, SITE)


async def login(
    state: AcdRedisState,
    agent_id: str,
    *,
    call: int = 1,
    chat: int = 0,
    blocks: bool = True,
    pause: str | None = None,
) -> int:
    done = await state.agent_login(
        AgentSpec(agent_id, {"call": call, "chat": chat}, {"en": 3}, blocks, pause)
    )
    return done.version


async def enqueue(
    state: AcdRedisState,
    item_id: str,
    *,
    channel: str = "call",
    priority: int = 0,
    at: int | None = None,
) -> None:
    done = await state.enqueue(ItemSpec(item_id, channel, "sales", priority, {"en": 2}, at))
    assert done == Changed(1)


async def offer(state: AcdRedisState, item_id: str, agent_id: str, ttl: float = TTL) -> Offer:
    result = await state.reserve(
        item_id, agent_id, item_version=None, agent_version=None, offer_ttl=ttl
    )
    assert isinstance(result, Offer), result
    return result


async def waiting_ids(state: AcdRedisState) -> list[str]:
    return [w.item_id for w in (await state.snapshot()).waiting]


async def ready_ids(state: AcdRedisState, channel: str = "call") -> list[str]:
    return list((await state.snapshot()).ready[channel])


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


async def kinds(state: AcdRedisState) -> list[str]:
    return [e.kind for e in await state.all_events()]


# --- agents ---------------------------------------------------------------------------------


async def test_given_a_new_agent_when_it_logs_in_then_it_is_ready_and_the_fact_is_in_the_stream(
    state: AcdRedisState,
) -> None:
    assert await login(state, "a1", chat=2) == 1

    record = await state.agent("a1")
    assert record is not None
    assert (record.state, record.capacity, record.skills) == (
        "ready",
        {"call": 1, "chat": 2},
        {"en": 3},
    )
    assert await ready_ids(state, "call") == ["a1"]
    assert await ready_ids(state, "chat") == ["a1"]
    assert await ready_ids(state, "email") == []
    events = await state.all_events()
    assert [(e.kind, e.fields["agent"]) for e in events] == [("AgentLoggedIn", "a1")]


async def test_given_a_logged_in_agent_when_it_logs_in_again_then_only_a_profile_change_counts(
    state: AcdRedisState,
) -> None:
    await login(state, "a1")
    same = AgentSpec("a1", {"chat": 0, "call": 1}, {"en": 3})
    assert await state.agent_login(same) == Changed(1, already=True)
    assert await state.agent_login(AgentSpec("a1", {"call": 1, "chat": 3}, {"en": 3})) == Changed(2)
    assert await kinds(state) == ["AgentLoggedIn", "AgentProfileChanged"]
    assert await ready_ids(state, "chat") == ["a1"]


async def test_given_agents_when_they_log_out_then_they_leave_the_ready_sets_and_repeats_are_noops(
    state: AcdRedisState,
) -> None:
    await login(state, "a1")
    assert await state.agent_logout("a1") == Changed(2)
    assert await state.agent_logout("a1") == Changed(2, already=True)
    assert await state.agent_logout("nobody") == Refused(Refusal.AGENT_UNKNOWN)
    record = await state.agent("a1")
    assert record is not None
    assert record.state == "logged_out"
    assert await ready_ids(state) == []
    assert await login(state, "a1") == 3  # versions keep increasing across logins


async def test_given_a_ready_agent_when_paused_then_made_ready_then_it_is_routable_again(
    state: AcdRedisState,
) -> None:
    await login(state, "a1")
    assert await state.set_state("a1", Availability.PAUSED, reason="lunch") == Changed(2)
    assert await state.set_state("a1", Availability.PAUSED, reason="lunch") == Changed(2, True)
    record = await state.agent("a1")
    assert record is not None
    assert (record.state, record.pause_reason) == ("paused", "lunch")
    assert await ready_ids(state) == []
    assert await state.set_state("a1", Availability.READY) == Changed(3)
    assert await state.set_state("a1", Availability.READY) == Changed(3, True)
    assert await ready_ids(state) == ["a1"]
    assert await kinds(state) == ["AgentLoggedIn", "AgentPaused", "AgentMadeReady"]


async def test_given_an_agent_in_wrap_up_then_it_is_ready_by_itself_when_the_wrap_up_ends(
    state: AcdRedisState,
) -> None:
    await login(state, "a1")
    await enqueue(state, "i1")
    assert await state.set_state("a1", Availability.WRAP_UP, wrap_up=0.2) == Changed(2)
    record = await state.agent("a1")
    assert record is not None
    assert record.state == "wrap_up"
    refused = await state.reserve("i1", "a1", item_version=1, agent_version=2, offer_ttl=TTL)
    assert refused == Refused(Refusal.AGENT_WRAP_UP, "wrap_up")

    async def ready_again() -> bool:
        return await ready_ids(state) == ["a1"]

    await eventually(ready_again, 5.0, "the agent is ready after its wrap-up")
    assert isinstance(
        await state.reserve("i1", "a1", item_version=1, agent_version=2, offer_ttl=TTL), Offer
    )


async def test_given_set_state_when_the_agent_is_unknown_logged_out_or_changed_then_refused(
    state: AcdRedisState,
) -> None:
    assert await state.set_state("x", Availability.READY) == Refused(Refusal.AGENT_UNKNOWN)
    await login(state, "a1")
    assert await state.set_state("a1", Availability.MISSED, expected_version=7) == Refused(
        Refusal.AGENT_VERSION_MISMATCH, "1"
    )
    assert await state.set_state("a1", Availability.MISSED, expected_version=1) == Changed(2)
    assert await state.set_state("a1", Availability.MISSED) == Changed(2, True)
    await state.agent_logout("a1")
    assert await state.set_state("a1", Availability.READY) == Refused(Refusal.AGENT_LOGGED_OUT, "3")
    with pytest.raises(ValueError, match="reason"):
        await state.set_state("a1", Availability.PAUSED)


# --- items ----------------------------------------------------------------------------------


async def test_given_items_then_the_waiting_order_is_priority_then_age_then_id_across_queues(
    state: AcdRedisState,
) -> None:
    await enqueue(state, "late-low", at=3_000)
    await enqueue(state, "early-low", at=1_000)
    await enqueue(state, "late-high", priority=5, at=9_000)
    await enqueue(state, "b-tie", at=2_000)
    await enqueue(state, "a-tie", at=2_000)
    await enqueue(state, "urgent-old", priority=1000, at=2**42 - 1)
    await enqueue(state, "lowest", priority=-1000, at=0)
    assert await waiting_ids(state) == [
        "urgent-old",
        "late-high",
        "early-low",
        "a-tie",
        "b-tie",
        "late-low",
        "lowest",
    ]
    assert (await state.snapshot(max_items=2)).waiting_total == 7


async def test_given_agents_then_the_snapshot_lists_the_ready_ones_longest_idle_first(
    state: AcdRedisState,
) -> None:
    for agent_id in ("first", "second", "third", "fourth"):
        await login(state, agent_id, chat=1)
    await state.set_state("second", Availability.PAUSED, reason="coffee")
    await state.set_state("third", Availability.WRAP_UP, wrap_up=TTL)
    await state.set_state("first", Availability.MISSED)

    async def a_millisecond_later() -> bool:
        fourth = await state.agent("fourth")
        return fourth is not None and fourth.server_ms > fourth.idle_since_ms

    await eventually(a_millisecond_later, 5.0, "the server clock moves on")
    await state.set_state("first", Availability.READY)  # idle again from now: last in line
    await enqueue(state, "i1")

    snap = await state.snapshot()

    assert snap.ready == {"call": ("fourth", "first"), "chat": ("fourth", "first"), "email": ()}
    assert set(snap.agents) == {"fourth", "first"}
    fourth = snap.agents["fourth"]
    assert (fourth.version, fourth.capacity, fourth.skills) == (
        1,
        {"call": 1, "chat": 1},
        {"en": 3},
    )
    assert fourth.idle_since_ms <= snap.agents["first"].idle_since_ms <= snap.server_ms
    assert [w.item_id for w in snap.waiting] == ["i1"]
    empty = await state.snapshot(max_items=0, max_agents=0)
    assert (empty.waiting, empty.waiting_total, empty.agents) == ((), 1, {})


async def test_given_an_item_when_enqueued_twice_then_the_repeat_is_a_noop(
    state: AcdRedisState,
) -> None:
    await enqueue(state, "i1")
    again = await state.enqueue(ItemSpec("i1", "call", "sales"))
    assert again == Changed(1, already=True)
    assert await kinds(state) == ["ItemEnqueued"]
    record = await state.item("i1")
    assert record is not None
    assert (record.state, record.queue, record.skills) == ("waiting", "sales", {"en": 2})


async def test_given_bad_item_input_then_it_is_rejected_before_reaching_redis(
    state: AcdRedisState,
) -> None:
    with pytest.raises(ValueError, match="channel"):
        await state.enqueue(ItemSpec("i1", "fax", "sales"))
    with pytest.raises(ValueError, match="priority"):
        await state.enqueue(ItemSpec("i1", "call", "sales", priority=1001))
    with pytest.raises(ValueError, match="level"):
        await state.enqueue(ItemSpec("i1", "call", "sales", skills={"en": 6}))
    assert await kinds(state) == []


async def test_given_a_waiting_item_when_cancelled_then_it_leaves_the_queue_and_repeats_are_noops(
    state: AcdRedisState,
) -> None:
    await enqueue(state, "i1")
    assert await state.cancel("i1", "abandoned") == Changed(2)
    assert await state.cancel("i1") == Changed(2, already=True)
    assert await state.cancel("nope") == Refused(Refusal.ITEM_UNKNOWN)
    assert await waiting_ids(state) == []
    again = await state.enqueue(ItemSpec("i1", "call", "sales"))
    assert again == Refused(Refusal.ITEM_FINISHED, "2")


# --- reserve --------------------------------------------------------------------------------


async def test_given_a_waiting_item_and_a_ready_agent_when_reserved_then_both_are_marked(
    state: AcdRedisState,
) -> None:
    await login(state, "a1")
    await enqueue(state, "i1")
    snap = await state.snapshot()
    result = await state.reserve("i1", "a1", item_version=1, agent_version=1, offer_ttl=TTL)
    assert isinstance(result, Offer)
    assert (result.item_version, result.agent_version, result.already) == (2, 2, False)
    assert result.expires_at_ms >= snap.server_ms + TTL * 1000

    item = await state.item("i1")
    agent = await state.agent("a1")
    assert item is not None
    assert agent is not None
    assert (item.state, item.agent_id, item.offer_id) == ("offered", "a1", result.offer_id)
    assert (agent.state, agent.offer_id, agent.load["call"]) == ("reserved", result.offer_id, 1)
    assert await waiting_ids(state) == []
    assert await ready_ids(state) == []
    offered = (await state.all_events())[-1]
    assert offered.kind == "ItemOffered"
    assert offered.fields["offer"] == result.offer_id


async def test_given_a_reserve_is_retried_with_its_request_id_then_it_answers_the_same_offer(
    state: AcdRedisState,
) -> None:
    await login(state, "a1")
    await enqueue(state, "i1")
    first = await state.reserve(
        "i1", "a1", item_version=1, agent_version=1, offer_ttl=TTL, request_id="r1"
    )
    again = await state.reserve(
        "i1", "a1", item_version=1, agent_version=1, offer_ttl=TTL, request_id="r1"
    )
    assert isinstance(first, Offer)
    assert again == replace(first, already=True)
    assert (await kinds(state)).count("ItemOffered") == 1


async def test_given_another_controller_asks_for_the_same_pair_then_it_is_refused(
    state: AcdRedisState,
) -> None:
    await login(state, "a1")
    await enqueue(state, "i1")
    assert isinstance(
        await state.reserve("i1", "a1", item_version=None, agent_version=None, offer_ttl=TTL),
        Offer,
    )
    second = await state.reserve("i1", "a1", item_version=None, agent_version=None, offer_ttl=TTL)
    assert second == Refused(Refusal.ITEM_NOT_WAITING, "offered")


@dataclass
class Case:
    """One refusal of reserve: how to set it up, and the expected reason."""

    reason: Refusal
    setup: Callable[[AcdRedisState], Awaitable[None]]
    item: str = "i1"
    agent: str = "a1"
    versions: tuple[int | None, int | None] = (None, None)
    channel: str = "call"
    extra: dict[str, object] = field(default_factory=dict)


async def _nothing(state: AcdRedisState) -> None:
    pass


async def _logged_out(state: AcdRedisState) -> None:
    await state.agent_logout("a1")


async def _reserved(state: AcdRedisState) -> None:
    await login(state, "a1", chat=2, blocks=False)
    await enqueue(state, "other", channel="chat")
    await offer(state, "other", "a1")


async def _paused(state: AcdRedisState) -> None:
    await state.set_state("a1", Availability.PAUSED, reason="break")


async def _missed(state: AcdRedisState) -> None:
    await state.set_state("a1", Availability.MISSED)


async def _wrap_up(state: AcdRedisState) -> None:
    await state.set_state("a1", Availability.WRAP_UP, wrap_up=TTL)


async def _busy_on_call(state: AcdRedisState, blocks: bool) -> None:
    await login(state, "a1", call=1, chat=1, blocks=blocks)
    await enqueue(state, "call-1")
    o = await offer(state, "call-1", "a1")
    assert await state.accept("call-1", o.offer_id) == Changed(3)


async def _at_capacity(state: AcdRedisState) -> None:
    await _busy_on_call(state, blocks=False)


async def _on_call(state: AcdRedisState) -> None:
    await _busy_on_call(state, blocks=True)


async def _offered_elsewhere(state: AcdRedisState) -> None:
    await login(state, "a2")
    await offer(state, "i1", "a2")


REFUSALS = [
    Case(Refusal.ITEM_UNKNOWN, _nothing, item="nope"),
    Case(Refusal.ITEM_NOT_WAITING, _offered_elsewhere),
    Case(Refusal.ITEM_VERSION_MISMATCH, _nothing, versions=(9, None)),
    Case(Refusal.AGENT_UNKNOWN, _nothing, agent="nobody"),
    Case(Refusal.AGENT_LOGGED_OUT, _logged_out),
    Case(Refusal.AGENT_VERSION_MISMATCH, _nothing, versions=(1, 9)),
    Case(Refusal.AGENT_RESERVED, _reserved),
    Case(Refusal.AGENT_PAUSED, _paused),
    Case(Refusal.AGENT_MISSED, _missed),
    Case(Refusal.AGENT_WRAP_UP, _wrap_up),
    Case(Refusal.AGENT_NO_CHANNEL, _nothing, channel="email"),
    Case(Refusal.AGENT_AT_CAPACITY, _at_capacity),
    Case(Refusal.AGENT_ON_CALL, _on_call, channel="chat"),
]


@pytest.mark.parametrize("case", REFUSALS, ids=[c.reason.value for c in REFUSALS])
async def test_given_a_reserve_that_cannot_hold_then_it_is_refused_with_why_and_changes_nothing(
    state: AcdRedisState, client: aioredis.Redis, case: Case
) -> None:
    await login(state, "a1")
    await enqueue(state, "i1", channel=case.channel)
    if case.reason is Refusal.AGENT_AT_CAPACITY:
        await state.cancel("i1")
        await enqueue(state, "i2")
        case.item = "i2"
    await case.setup(state)
    before = await _dump(client)

    result = await state.reserve(
        case.item,
        case.agent,
        item_version=case.versions[0],
        agent_version=case.versions[1],
        offer_ttl=TTL,
    )

    assert isinstance(result, Refused), result
    assert result.reason is case.reason
    assert await _dump(client) == before


async def _dump(client: aioredis.Redis) -> dict[str, object]:
    """Every key of the site with its value (hashes, sets, stream length)."""
    out: dict[str, object] = {}
    for key in sorted(_text(k) for k in await client.keys("acd:*")):
        kind = await client.type(key)
        if kind == "hash":
            out[key] = await client.hgetall(key)
        elif kind == "zset":
            out[key] = await client.zrange(key, 0, -1, withscores=True)
        elif kind == "stream":
            out[key] = await client.xlen(key)
        else:
            out[key] = await client.get(key)
    return out


async def test_given_chat_capacity_then_an_agent_takes_chats_up_to_it_one_offer_at_a_time(
    state: AcdRedisState,
) -> None:
    await login(state, "a1", call=0, chat=2)
    for n in range(3):
        await enqueue(state, f"c{n}", channel="chat")
    for n in range(2):
        o = await offer(state, f"c{n}", "a1")
        assert await state.accept(f"c{n}", o.offer_id) == Changed(3)
    third = await state.reserve("c2", "a1", item_version=None, agent_version=None, offer_ttl=TTL)
    assert third == Refused(Refusal.AGENT_AT_CAPACITY, "on_work")
    assert await state.complete("c0") == Changed(4)
    assert isinstance(
        await state.reserve("c2", "a1", item_version=1, agent_version=None, offer_ttl=TTL), Offer
    )


async def test_given_calls_do_not_block_then_an_agent_on_a_call_still_gets_a_chat(
    state: AcdRedisState,
) -> None:
    await _busy_on_call(state, blocks=False)
    await enqueue(state, "chat-1", channel="chat")
    assert await ready_ids(state, "chat") == ["a1"]
    assert isinstance(
        await state.reserve("chat-1", "a1", item_version=1, agent_version=3, offer_ttl=TTL), Offer
    )


# --- accept, reject, complete ---------------------------------------------------------------


async def test_given_an_offer_when_accepted_twice_then_assigned_once(state: AcdRedisState) -> None:
    await login(state, "a1")
    await enqueue(state, "i1")
    o = await offer(state, "i1", "a1")
    assert await state.accept("i1", o.offer_id) == Changed(3)
    assert await state.accept("i1", o.offer_id) == Changed(3, already=True)
    assert await state.accept("i1", "o999") == Refused(Refusal.OFFER_UNKNOWN, "assigned")
    assert await state.accept("nope", o.offer_id) == Refused(Refusal.ITEM_UNKNOWN)
    agent = await state.agent("a1")
    assert agent is not None
    assert (agent.state, agent.offer_id, agent.load["call"]) == ("on_work", None, 1)
    assert (await kinds(state)).count("ItemAssigned") == 1


async def test_given_an_assigned_item_when_completed_twice_then_wrap_up_once_and_ready_after(
    state: AcdRedisState,
) -> None:
    await login(state, "a1")
    await enqueue(state, "i1")
    assert await state.complete("i1") == Refused(Refusal.ITEM_NOT_ASSIGNED, "waiting")
    o = await offer(state, "i1", "a1")
    await state.accept("i1", o.offer_id)
    assert await state.complete("i1", wrap_up=0.2) == Changed(4)
    assert await state.complete("i1", wrap_up=0.2) == Changed(4, already=True)
    agent = await state.agent("a1")
    assert agent is not None
    assert (agent.state, agent.load["call"]) == ("wrap_up", 0)
    assert await state.cancel("i1") == Refused(Refusal.ITEM_FINISHED, "4")

    async def ready_again() -> bool:
        return await ready_ids(state) == ["a1"]

    await eventually(ready_again, 5.0, "the agent is ready after the wrap-up")
    assert (await kinds(state)).count("ItemCompleted") == 1


async def assign(state: AcdRedisState, item_id: str, agent_id: str, channel: str) -> None:
    await enqueue(state, item_id, channel=channel)
    o = await offer(state, item_id, agent_id)
    assert await state.accept(item_id, o.offer_id) == Changed(3)


async def test_given_a_chat_in_wrap_up_then_it_holds_its_slot_and_the_agent_gets_other_chats(
    state: AcdRedisState,
) -> None:
    await login(state, "a1", call=0, chat=3)
    await assign(state, "c1", "a1", "chat")
    await assign(state, "c2", "a1", "chat")
    assert await state.complete("c1", wrap_up=TTL) == Changed(4)  # c1 wraps up, c2 goes on

    agent = await state.agent("a1")
    assert agent is not None
    assert (agent.state, agent.load["chat"], list(agent.wraps)) == ("on_work", 1, ["c1"])
    completed = [e for e in await state.all_events() if e.kind == "ItemCompleted"]
    end = agent.wraps["c1"][1]
    assert int(completed[0].fields["wrap_until"]) == end  # the item's own wrap-up end
    snap = await state.snapshot()
    assert snap.ready["chat"] == ("a1",)  # offerable: 1 on work + 1 wrapping < 3
    assert snap.agents["a1"].load["chat"] == 2  # the wrapping chat holds its slot
    await assign(state, "c3", "a1", "chat")  # the third slot
    await enqueue(state, "c4", channel="chat")
    refused = await state.reserve("c4", "a1", item_version=None, agent_version=None, offer_ttl=TTL)
    assert refused == Refused(Refusal.AGENT_WRAP_UP, "on_work")  # c1's wrap-up holds the slot
    assert await ready_ids(state, "chat") == []
    assert await state.next_ready_ms(snap.server_ms) == end  # back by itself when c1's ends

    done = await state.set_state("a1", Availability.READY)  # wrap-up done: the slot is free now
    assert isinstance(done, Changed)
    assert not done.already
    agent = await state.agent("a1")
    assert agent is not None
    assert agent.wraps == {}
    await offer(state, "c4", "a1")


async def test_given_short_chat_wrap_ups_then_their_slots_come_back_by_themselves(
    state: AcdRedisState,
) -> None:
    await login(state, "a1", call=0, chat=1)
    await assign(state, "c1", "a1", "chat")
    assert await state.complete("c1", wrap_up=0.3) == Changed(4)
    agent = await state.agent("a1")
    assert agent is not None
    assert (agent.state, agent.load["chat"]) == ("wrap_up", 0)
    assert await ready_ids(state, "chat") == []  # its only chat slot is wrapping up

    async def ready_again() -> bool:
        return await ready_ids(state, "chat") == ["a1"]

    await eventually(ready_again, 5.0, "the chat slot is free when its wrap-up ends")
    agent = await state.agent("a1")
    assert agent is not None
    assert (agent.state, agent.wraps) == ("ready", {})


async def test_given_a_call_in_wrap_up_when_calls_block_then_no_chat_until_it_ends(
    state: AcdRedisState,
) -> None:
    await login(state, "a1", call=1, chat=3, blocks=True)
    await login(state, "a2", call=1, chat=3, blocks=False)
    for agent_id, item_id in (("a1", "k1"), ("a2", "k2")):
        await assign(state, item_id, agent_id, "call")
        assert await state.complete(item_id, wrap_up=0.5) == Changed(4)
    await enqueue(state, "chat1", channel="chat")
    refused = await state.reserve(
        "chat1", "a1", item_version=None, agent_version=None, offer_ttl=TTL
    )
    assert refused == Refused(Refusal.AGENT_WRAP_UP, "wrap_up")  # the wrapping call blocks
    assert await ready_ids(state, "chat") == ["a2"]  # its call does not block its chats
    assert await ready_ids(state, "call") == []  # neither takes a call while its call wraps

    async def both_ready() -> bool:
        return sorted(await ready_ids(state, "chat")) == ["a1", "a2"]

    await eventually(both_ready, 5.0, "a1 takes chats again once the call's wrap-up ended")
    await offer(state, "chat1", "a1")


async def test_given_an_offer_when_rejected_then_the_item_is_back_at_its_place_and_the_agent_missed(
    state: AcdRedisState,
) -> None:
    await login(state, "a1")
    await login(state, "a2")
    await enqueue(state, "first", at=1_000)
    await enqueue(state, "second", at=2_000)
    o = await offer(state, "first", "a1")
    await enqueue(state, "third", at=3_000)

    missed = await state.reject("first", o.offer_id, no_answer=True)

    assert missed == Missed(item_version=3, consecutive_misses=1)
    assert await state.reject("first", o.offer_id, no_answer=True) == Missed(3, 0, already=True)
    assert await state.reject("first", o.offer_id) == Refused(Refusal.OFFER_ENDED, "no_answer")
    assert await waiting_ids(state) == ["first", "second", "third"]
    item = await state.item("first")
    assert item is not None
    assert (item.enqueued_at_ms, item.misses, item.state) == (1_000, 1, "waiting")
    agent = await state.agent("a1")
    assert agent is not None
    assert (agent.state, agent.missed, agent.load["call"], agent.offer_id) == (
        "missed",
        True,
        0,
        None,
    )
    assert await ready_ids(state) == ["a2"]
    events = await state.all_events()
    assert [e.kind for e in events[-2:]] == ["OfferMissed", "ItemRequeued"]
    assert events[-2].fields["cause"] == "no_answer"


async def test_given_misses_in_a_row_then_they_are_counted_until_an_accept(
    state: AcdRedisState,
) -> None:
    await login(state, "a1")
    await enqueue(state, "i1")
    for n in (1, 2):
        o = await offer(state, "i1", "a1")
        assert (await state.reject("i1", o.offer_id)) == Missed(1 + 2 * n, n)
        await state.set_state("a1", Availability.READY)
    o = await offer(state, "i1", "a1")
    await state.accept("i1", o.offer_id)
    agent = await state.agent("a1")
    assert agent is not None
    assert (agent.consecutive_misses, agent.missed_total) == (0, 2)


# --- bad input: logout, cancel, expiry, script flush, lost replies -------------------------


async def test_given_a_reserved_agent_when_it_logs_out_then_the_offer_ends_and_the_item_is_requeued(
    state: AcdRedisState,
) -> None:
    await login(state, "a1")
    await enqueue(state, "old", at=1_000)
    o = await offer(state, "old", "a1")
    await enqueue(state, "new", at=2_000)

    assert await state.agent_logout("a1") == Changed(4)

    agent = await state.agent("a1")
    assert agent is not None
    assert (agent.state, agent.offer_id, agent.load["call"]) == ("logged_out", None, 0)
    assert await waiting_ids(state) == ["old", "new"]
    assert await state.accept("old", o.offer_id) == Refused(Refusal.OFFER_UNKNOWN, "waiting")
    assert await state.reject("old", o.offer_id) == Refused(Refusal.OFFER_ENDED, "agent_logged_out")
    assert (await kinds(state))[-3:] == ["OfferRescinded", "ItemRequeued", "AgentLoggedOut"]
    assert await state.pending_offers() == {}


async def test_given_an_offered_item_when_cancelled_then_the_agent_is_free_without_a_miss(
    state: AcdRedisState,
) -> None:
    await login(state, "a1")
    await enqueue(state, "i1")
    o = await offer(state, "i1", "a1")

    assert await state.cancel("i1", "abandoned") == Changed(3)

    agent = await state.agent("a1")
    assert agent is not None
    assert (agent.state, agent.missed, agent.load["call"]) == ("ready", False, 0)
    assert await ready_ids(state) == ["a1"]
    assert await state.accept("i1", o.offer_id) == Refused(Refusal.OFFER_UNKNOWN, "cancelled")
    cancelled = (await state.all_events())[-1]
    assert (cancelled.kind, cancelled.fields["agent"], cancelled.fields["offer"]) == (
        "ItemCancelled",
        "a1",
        o.offer_id,
    )
    assert await state.pending_offers() == {}


async def test_given_an_assigned_item_when_cancelled_then_refused(state: AcdRedisState) -> None:
    await login(state, "a1")
    await enqueue(state, "i1")
    o = await offer(state, "i1", "a1")
    await state.accept("i1", o.offer_id)
    assert await state.cancel("i1") == Refused(Refusal.ITEM_ASSIGNED, "3")


async def test_given_a_controller_died_mid_offer_then_expiry_frees_the_agent_and_requeues_the_item(
    state: AcdRedisState,
) -> None:
    await login(state, "a1")
    await login(state, "a2")
    await enqueue(state, "lasting")
    lasting = await offer(state, "lasting", "a2", ttl=TTL)
    await enqueue(state, "i1", at=1_000)
    o = await offer(state, "i1", "a1", ttl=0.05)
    await enqueue(state, "later", at=2_000)
    expired = []

    async def expired_now() -> bool:
        expired.extend(await state.expire_offers())
        return bool(expired)

    await eventually(expired_now, 5.0, "the short offer expires")
    assert [(e.offer_id, e.item_id, e.agent_id) for e in expired] == [(o.offer_id, "i1", "a1")]
    assert await state.expire_offers() == []
    agent = await state.agent("a1")
    assert agent is not None
    assert (agent.state, agent.missed, agent.load["call"]) == ("ready", False, 0)
    assert await waiting_ids(state) == ["i1", "later"]
    assert list(await state.pending_offers()) == [lasting.offer_id]
    assert (await kinds(state))[-2:] == ["OfferTimedOut", "ItemRequeued"]


async def test_given_an_offer_past_its_expiry_when_accepted_then_refused_and_cleaned_up(
    state: AcdRedisState,
) -> None:
    await login(state, "a1")
    await enqueue(state, "i1")
    o = await offer(state, "i1", "a1", ttl=0.05)

    async def expired_on_the_server_clock() -> bool:
        agent = await state.agent("a1")
        return agent is not None and agent.server_ms > o.expires_at_ms

    await eventually(expired_on_the_server_clock, 5.0, "the server clock passes the expiry")
    assert await state.accept("i1", o.offer_id) == Refused(Refusal.OFFER_EXPIRED, "3")
    assert await waiting_ids(state) == ["i1"]
    assert await ready_ids(state) == ["a1"]
    assert await state.pending_offers() == {}
    assert (await kinds(state))[-2:] == ["OfferTimedOut", "ItemRequeued"]


async def test_given_the_script_cache_is_flushed_mid_reservation_then_the_scripts_are_reloaded(
    state: AcdRedisState, client: aioredis.Redis
) -> None:
    await login(state, "a1")
    await enqueue(state, "i1")
    o = await offer(state, "i1", "a1")
    await client.script_flush()
    assert await state.accept("i1", o.offer_id) == Changed(3)
    await client.script_flush()
    assert await state.complete("i1") == Changed(4)
    agent = await state.agent("a1")
    assert agent is not None
    assert agent.state == "ready"


async def test_given_every_key_of_a_site_then_they_share_one_cluster_slot(
    state: AcdRedisState, client: aioredis.Redis
) -> None:
    await login(state, "a1", chat=1, blocks=False)
    await login(state, "a2", chat=1)
    await enqueue(state, "i1")
    await enqueue(state, "i2", channel="chat")
    await offer(state, "i1", "a1")
    keys = [_text(k) for k in await client.keys("acd:*")]
    assert {k.rsplit(":", 1)[0] for k in keys} >= {
        "acd:{t1}:agent",
        "acd:{t1}:item",
        "acd:{t1}",  # events, waiting, offers, offer_expiry, offer_seq
        "acd:{t1}:ready",
    }
    assert len(keys) == 11, keys
    assert {key_slot(k.encode()) for k in keys} == {key_slot(b"acd:{t1}:events")}


class ReplyDroppingProxy:
    """A TCP proxy to Redis that can lose the reply to the next script call: the EVALSHA reaches
    Redis (the script runs), then the client's connection is closed instead of the reply being
    passed on. Other traffic (connection handshakes) passes untouched."""

    def __init__(self, host: str, port: int) -> None:
        self._upstream = (host, port)
        self._server: asyncio.Server | None = None
        self._writers: list[asyncio.StreamWriter] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self.drop_next_reply = False
        self._dropping = False
        self.dropped = 0

    async def start(self) -> int:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        return int(self._server.sockets[0].getsockname()[1])

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        for writer in self._writers:
            writer.close()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        for task in list(self._tasks):
            with suppress(asyncio.CancelledError):
                await task

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.wait_for(asyncio.open_connection(*self._upstream), 5.0)
        self._writers += [writer, up_writer]
        for src, dst, replies in ((reader, up_writer, False), (up_reader, writer, True)):
            task = asyncio.create_task(self._pump(src, dst, replies, (writer, up_writer)))
            self._tasks.add(task)

    async def _pump(
        self,
        src: asyncio.StreamReader,
        dst: asyncio.StreamWriter,
        replies: bool,
        both: tuple[asyncio.StreamWriter, asyncio.StreamWriter],
    ) -> None:
        with suppress(OSError):
            while data := await src.read(65536):
                if not replies and self.drop_next_reply and b"EVALSHA" in data.upper():
                    self.drop_next_reply = False
                    self._dropping = True
                if replies and self._dropping:
                    self._dropping = False
                    self.dropped += 1
                    for w in both:
                        w.close()
                    return
                dst.write(data)
                await asyncio.wait_for(dst.drain(), 5.0)


async def test_given_replies_are_lost_then_retried_calls_do_everything_exactly_once(
    state: AcdRedisState, redis_url: str
) -> None:
    parts = urlsplit(redis_url)
    if parts.scheme != "redis" or parts.hostname is None:
        pytest.skip(f"the proxy needs a TCP Redis URL, not {redis_url}")
    proxy = ReplyDroppingProxy(parts.hostname, parts.port or 6379)
    port = await proxy.start()
    proxied_url = urlunsplit(parts._replace(netloc=f"127.0.0.1:{port}"))
    proxied = aioredis.Redis.from_url(proxied_url, socket_timeout=5.0)
    try:
        via_proxy = AcdRedisState(proxied, SITE)
        await login(state, "a1")
        await login(state, "warm")
        await enqueue(state, "warm-up")
        await enqueue(state, "i1")
        # Load the scripts (an earlier test may have flushed them) and open the connection, so
        # that the reply lost is the script's own and not a NOSCRIPT or a handshake reply.
        warm = await offer(via_proxy, "warm-up", "warm")
        await via_proxy.accept("warm-up", warm.offer_id)
        await via_proxy.complete("warm-up")

        proxy.drop_next_reply = True
        reserved = await via_proxy.reserve(
            "i1", "a1", item_version=1, agent_version=1, offer_ttl=TTL
        )
        assert proxy.dropped == 1
        assert isinstance(reserved, Offer)
        assert reserved.already

        proxy.drop_next_reply = True
        assert await via_proxy.accept("i1", reserved.offer_id) == Changed(3, already=True)
        proxy.drop_next_reply = True
        assert await via_proxy.complete("i1", wrap_up=0.0) == Changed(4, already=True)
        assert proxy.dropped == 3
    finally:
        await proxied.aclose()
        await proxy.close()
    events = [e for e in await state.all_events() if e.fields.get("item") == "i1"]
    assert [e.kind for e in events] == [
        "ItemEnqueued",
        "ItemOffered",
        "ItemAssigned",
        "ItemCompleted",
    ]
    agent = await state.agent("a1")
    assert agent is not None
    assert (agent.state, agent.load["call"]) == ("ready", 0)


# --- two processes --------------------------------------------------------------------------

WORKERS = 3
ATTEMPTS = 1000
AGENTS = {  # agent -> capacity; a1-a3 also take chats while on a call
    "a1": {"call": 1, "chat": 2},
    "a2": {"call": 1, "chat": 2},
    "a3": {"call": 1, "chat": 3},
    "a4": {"call": 1},
    "a5": {"call": 1},
}
PROCESS_START = 20.0
RUN_TIME = 45.0


async def start_reserver(redis_url: str, worker: str, seed: int) -> asyncio.subprocess.Process:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
    return await asyncio.create_subprocess_exec(
        sys.executable,
        str(RESERVER),
        redis_url,
        "race",
        worker,
        str(ATTEMPTS),
        str(seed),
        cwd=ROOT,
        env=env,
        stdout=asyncio.subprocess.PIPE,
    )


class Replay:
    """Replays the event stream and fails on the first double offer or over-capacity offer."""

    def __init__(self) -> None:
        self.caps: dict[str, dict[str, int]] = {}
        self.load: dict[str, dict[str, int]] = {}
        self.pending: dict[str, str] = {}  # agent -> offer id
        self.holder: dict[str, str] = {}  # item -> agent (offered or assigned)
        self.offers = 0

    def apply(self, e: AcdEvent) -> None:
        f = e.fields
        if e.kind in ("AgentLoggedIn", "AgentProfileChanged"):
            self.caps[f["agent"]] = json.loads(f["caps"])
            self.load.setdefault(f["agent"], {})
        elif e.kind == "ItemOffered":
            item, agent, channel = f["item"], f["agent"], f["channel"]
            assert item not in self.holder, (
                f"{item} offered to {agent} while {self.holder.get(item)} holds it ({e})"
            )
            assert agent not in self.pending, (
                f"{agent} offered {item} with offer {self.pending.get(agent)} pending ({e})"
            )
            held = self.load[agent].get(channel, 0)
            assert held < self.caps[agent].get(channel, 0), (
                f"{agent} over capacity on {channel} ({e})"
            )
            self.holder[item] = agent
            self.pending[agent] = f["offer"]
            self.load[agent][channel] = held + 1
            self.offers += 1
        elif e.kind == "ItemAssigned":
            assert self.holder.get(f["item"]) == f["agent"], e
            assert self.pending.pop(f["agent"]) == f["offer"], e
        elif e.kind in ("ItemRequeued", "ItemCancelled", "ItemCompleted") and f.get("agent"):
            item, agent, channel = f["item"], f["agent"], f["channel"]
            assert self.holder.pop(item) == agent, e
            if self.pending.get(agent) == f["offer"]:
                del self.pending[agent]
            self.load[agent][channel] -= 1


async def test_given_racing_controller_processes_then_no_agent_or_item_is_ever_double_offered(
    state: AcdRedisState, client: aioredis.Redis, redis_url: str
) -> None:
    race = AcdRedisState(client, "race")
    await race.login_many(
        AgentSpec(a, caps, {"en": 3}, call_blocks_others=False) for a, caps in AGENTS.items()
    )
    await race.enqueue_many(
        ItemSpec(f"seed-{n}", "chat" if n % 3 else "call", "q1") for n in range(40)
    )
    procs = [await start_reserver(redis_url, f"w{n}", seed=n) for n in range(WORKERS)]
    try:
        await client.set("acd-test:{race}:go", "1")
        outputs = await asyncio.wait_for(
            asyncio.gather(*(p.communicate() for p in procs)), PROCESS_START + RUN_TIME
        )
    finally:
        for p in procs:
            if p.returncode is None:
                p.kill()
                await p.wait()
    assert [p.returncode for p in procs] == [0] * WORKERS
    reports = [json.loads(out.decode().strip().splitlines()[-1]) for out, _ in outputs]

    async def all_offers_ended() -> bool:
        await race.expire_offers()
        return await client.hlen(race.offers_key) == 0

    await eventually(all_offers_ended, 5.0, "the abandoned offers expire")

    events = await race.all_events()
    info = await client.xinfo_stream(race.events_key)
    assert info["entries-added"] == len(events), "the stream was trimmed: cannot verify"
    replay = Replay()
    for event in events:
        replay.apply(event)
    offered = sum(r.get("offers", 0) for r in reports)
    lost_races = sum(v for r in reports for k, v in r.items() if k.startswith("refused:"))
    assert replay.offers == offered > 100, reports
    assert lost_races > 0, reports
    assert replay.holder == {}
    assert replay.pending == {}
    await _check_final_state(race, client, replay)


async def _check_final_state(race: AcdRedisState, client: aioredis.Redis, replay: Replay) -> None:
    for agent_id in AGENTS:
        agent = await race.agent(agent_id)
        assert agent is not None
        assert agent.offer_id is None
        assert agent.state in ("ready", "missed"), agent
        assert all(v == 0 for v in agent.load.values()), agent
        assert all(v == 0 for v in replay.load[agent_id].values())
    waiting = set(await client.zrange(race.waiting_key, 0, -1))
    enqueued = {e.fields["item"] for e in await race.all_events() if e.kind == "ItemEnqueued"}
    assert waiting <= enqueued
    for item_id in enqueued:
        item = await race.item(item_id)
        assert item is not None, f"{item_id} lost"
        assert item.state in ("waiting", "completed", "cancelled"), item
        assert (item.state == "waiting") == (item_id in waiting), item


async def test_given_a_miss_with_a_cooldown_then_the_agent_is_ready_by_itself_when_it_ends(
    state: AcdRedisState,
) -> None:
    await login(state, "ann")
    await enqueue(state, "first")
    o = await offer(state, "first", "ann")
    missed = await state.reject("first", o.offer_id, no_answer=True, missed_for=0.3)
    assert isinstance(missed, Missed)
    agent = await state.agent("ann")
    assert agent is not None
    assert (agent.state, agent.missed) == ("missed", True)
    assert agent.missed_until_ms > agent.server_ms
    assert "ann" not in await ready_ids(state)
    refused = await state.reserve(
        "first", "ann", item_version=None, agent_version=None, offer_ttl=TTL
    )
    assert refused == Refused(Refusal.AGENT_MISSED, "missed")

    async def ready_again() -> bool:
        snap = await state.snapshot()
        return "ann" in snap.ready.get("call", ())

    await eventually(ready_again, 5.0, "ann back in the ready set by Redis's clock alone")
    agent = await state.agent("ann")
    assert agent is not None
    assert (agent.state, agent.missed, agent.consecutive_misses) == ("ready", False, 1)
    again = await offer(state, "first", "ann")
    assert again.agent_id == "ann"
    assert await state.set_state("ann", Availability.READY) == Changed(agent.version + 1, True)


async def test_given_an_overflow_then_the_item_changes_queue_keeps_its_place_and_repeats_are_noops(
    state: AcdRedisState,
) -> None:
    await enqueue(state, "old", at=1_000)
    await enqueue(state, "new", at=2_000)
    moved = await state.overflow("old", "sales", "billing")
    assert moved == Changed(2)
    assert await state.overflow("old", "sales", "billing") == Changed(2, already=True)
    assert await waiting_ids(state) == ["old", "new"]  # the place in the fair order is kept
    snap = await state.snapshot()
    old = next(w for w in snap.waiting if w.item_id == "old")
    assert old.queue == "billing"
    assert old.queue_since_ms >= snap.server_ms - 5_000
    record = await state.item("old")
    assert record is not None
    assert (record.queue, record.version) == ("billing", 2)
    assert await state.overflow("new", "support", "billing") == Refused(
        Refusal.ITEM_QUEUE_MISMATCH, "sales"
    )
    assert await state.overflow("nope", "sales", "billing") == Refused(Refusal.ITEM_UNKNOWN, "")
    await login(state, "ann")
    await offer(state, "new", "ann")
    assert await state.overflow("new", "sales", "billing") == Refused(
        Refusal.ITEM_NOT_WAITING, "offered"
    )
    with pytest.raises(ValueError, match="bad overflow"):
        await state.overflow("old", "billing", "billing")
    events = [e for e in await state.all_events() if e.kind == "ItemOverflowed"]
    assert [(e.fields["item"], e.fields["from"], e.fields["to"]) for e in events] == [
        ("old", "sales", "billing")
    ]
