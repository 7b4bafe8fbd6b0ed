"""Queue statistics and queue_log from a real Redis event stream, with a rebuild from scratch."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from acd.adapters.redis_state import AcdRedisState, AgentSpec, ItemSpec, Offer
from acd.adapters.stats_stream import StatsStreamReader

pytestmark = pytest.mark.integration


@pytest.fixture
async def state(redis_url: str) -> AsyncIterator[AcdRedisState]:
    client = aioredis.Redis.from_url(redis_url, decode_responses=True)
    try:
        yield AcdRedisState(client, "stats")
    finally:
        await client.aclose()


async def test_given_calls_through_redis_when_read_then_stats_and_queue_log_follow_and_rebuild(
    state: AcdRedisState, tmp_path: Path
) -> None:
    await state.agent_login(AgentSpec("a1", skills={"support": 3}))
    for n in (1, 2):
        await state.enqueue(ItemSpec(f"c{n}", "call", "support"))
    offer = await state.reserve("c1", "a1", item_version=None, agent_version=None, offer_ttl=30)
    assert isinstance(offer, Offer)
    await state.accept("c1", offer.offer_id)
    await state.cancel("c2", "abandoned")
    reader = StatsStreamReader(state, queue_log=tmp_path / "queue_log")
    assert await reader.catch_up() > 0
    totals = reader.stats.totals()["support"]
    assert (totals.offered, totals.answered, totals.abandoned) == (2, 1, 1)
    await state.complete("c1")
    assert await reader.catch_up() == 1
    assert reader.stats.totals()["support"].handled == 1
    events = [line.split("|")[4] for line in (tmp_path / "queue_log").read_text().splitlines()]
    assert events == [
        "ADDMEMBER",
        "ENTERQUEUE",
        "ENTERQUEUE",
        "CONNECT",
        "ABANDON",
        "COMPLETEAGENT",
    ]
    reader.close()
    before = reader.stats.intervals()
    assert await reader.rebuild() > 0
    assert reader.stats.intervals() == before
    assert len((tmp_path / "queue_log").read_text().splitlines()) == 6  # rebuild writes nothing


async def test_given_an_overflow_through_redis_then_stats_count_it_and_queue_log_moves_the_call(
    state: AcdRedisState, tmp_path: Path
) -> None:
    await state.agent_login(AgentSpec("a1", skills={"sales": 3}))
    await state.enqueue(ItemSpec("c1", "call", "support"))
    await state.overflow("c1", "support", "sales")
    await state.overflow("c1", "support", "sales")  # another controller's retry: already moved
    offer = await state.reserve("c1", "a1", item_version=None, agent_version=None, offer_ttl=30)
    assert isinstance(offer, Offer)
    await state.accept("c1", offer.offer_id)
    reader = StatsStreamReader(state, queue_log=tmp_path / "queue_log")
    assert await reader.catch_up() > 0
    totals = reader.stats.totals()
    assert (totals["support"].offered, totals["support"].overflowed) == (1, 1)
    assert totals["support"].answered == 0
    assert (totals["sales"].offered, totals["sales"].overflowed_in) == (1, 1)
    assert totals["sales"].answered == 1
    lines = [line.split("|") for line in (tmp_path / "queue_log").read_text().splitlines()]
    assert [(fields[2], fields[4]) for fields in lines] == [
        ("NONE", "ADDMEMBER"),
        ("support", "ENTERQUEUE"),
        ("support", "EXITWITHTIMEOUT"),
        ("sales", "ENTERQUEUE"),
        ("sales", "CONNECT"),
    ]
    assert lines[2][5:7] == ["1", "1"]  # position | original position (| wait in support)
    assert lines[2][7].isdigit()
    reader.close()
