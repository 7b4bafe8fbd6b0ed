"""ACD Redis state benchmark: reserve latency and reservations/s with a loaded site.

Run ``python -m bench.acd_redis`` (``--help`` for options; default Redis DB 12). It loads a
site of its own (``acd:{bench-<pid>}:*``) through pipelines: ``--agents`` agents (1 call and up
to 3 chats each, 3-6 of ``--skills`` skills) and ``--items`` waiting items (calls and chats
with 1-2 required skills), reads a snapshot, then reserves each agent once for a waiting item
of a channel it can take: the first half one call at a time (latency of ``reserve``, measured
around the awaited call, so it includes the client and the round trip), the second half with
``--concurrency`` reserves in flight (reservations/s). Every reserve carries the versions read
at load time, as the engine would. The site's keys are deleted at the end; nothing else in the
database is touched. Nothing is asserted; the goals of issue 4 are printed beside the figures.

Then the service cycle on that site (every agent now holds an offer, half the items wait): an
:class:`~acd.service.AcdService` cycle that reads the whole waiting set (``snapshot_items`` =
all of it: the cycle as it was), one with the default bound (``snapshot_items`` = 5000), and a
quiet cycle (no event since the last one: the snapshot and the rebuild are skipped).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import statistics
import sys
import time

import redis.asyncio as aioredis

from acd.adapters.redis_calls import CallFacts
from acd.adapters.redis_state import AcdRedisState, AgentSpec, ItemSpec, Offer
from acd.config import parse_acd_config
from acd.service import AcdService

GOAL_P99_MS = 10.0
GOAL_PER_S = 5000.0
BASELINE_SNAPSHOT_CYCLE_MS = 108.0  # issue 4's measure of a cycle over the full snapshot
OFFER_TTL = 300.0


def _agents(count: int, skills: list[str], rng: random.Random) -> list[AgentSpec]:
    return [
        AgentSpec(
            f"agent-{n:05d}",
            {"call": 1, "chat": rng.randint(0, 3)},
            {s: rng.randint(1, 5) for s in rng.sample(skills, rng.randint(3, 6))},
            call_blocks_others=True,
        )
        for n in range(count)
    ]


def _items(count: int, skills: list[str], rng: random.Random, now_ms: int) -> list[ItemSpec]:
    return [
        ItemSpec(
            f"item-{n:05d}",
            "call" if n % 3 else "chat",
            f"queue-{n % 20}",
            priority=rng.choice((0, 0, 0, 1, 5)),
            skills={s: rng.randint(1, 3) for s in rng.sample(skills, rng.randint(1, 2))},
            enqueued_at_ms=now_ms - count + n,
        )
        for n in range(count)
    ]


def _pairs(agents: list[AgentSpec], items: list[ItemSpec]) -> list[tuple[str, str]]:
    """One waiting item per agent, of a channel the agent can take."""
    by_channel: dict[str, list[str]] = {"call": [], "chat": []}
    for item in items:
        by_channel[item.channel].append(item.item_id)
    pairs = []
    for agent in agents:
        channel = "chat" if agent.capacity.get("chat") and by_channel["chat"] else "call"
        if by_channel[channel]:
            pairs.append((by_channel[channel].pop(), agent.agent_id))
    return pairs


def _pct(sorted_ms: list[float], q: float) -> float:
    return sorted_ms[min(len(sorted_ms) - 1, int(q * len(sorted_ms)))]


async def _delete_site(client: aioredis.Redis, prefix: str) -> None:
    batch: list[bytes] = []
    async for key in client.scan_iter(match=prefix + "*", count=1000):
        batch.append(key)
        if len(batch) >= 1000:
            await client.unlink(*batch)
            batch.clear()
    if batch:
        await client.unlink(*batch)


async def run(args: argparse.Namespace) -> None:
    rng = random.Random(args.seed)
    client = aioredis.Redis.from_url(args.url, socket_timeout=10.0)
    site = f"bench-{os.getpid()}"
    state = AcdRedisState(client, site, stream_maxlen=200_000)
    skills = [f"skill-{n:02d}" for n in range(args.skills)]
    try:
        agents = _agents(args.agents, skills, rng)
        items = _items(args.items, skills, rng, int(time.time() * 1000))
        started = time.perf_counter()
        logged_in = await state.login_many(agents)
        enqueued = await state.enqueue_many(items)
        load_s = time.perf_counter() - started
        print(
            f"loaded {logged_in} agents, {enqueued} waiting items, {args.skills} skills "
            f"in {load_s:.2f} s (pipelined)"
        )

        snapshot_ms = []
        for _ in range(5):
            t0 = time.perf_counter()
            snap = await state.snapshot(max_items=1000, max_agents=1000)
            snapshot_ms.append((time.perf_counter() - t0) * 1000)
        print(
            f"snapshot (1000 items, <=1000 agents per channel, {snap.waiting_total} waiting): "
            f"median {statistics.median(snapshot_ms):.2f} ms"
        )

        pairs = _pairs(agents, items)
        half = len(pairs) // 2
        latencies: list[float] = []
        refused = 0
        for item_id, agent_id in pairs[:half]:
            t0 = time.perf_counter()
            result = await state.reserve(
                item_id, agent_id, item_version=1, agent_version=1, offer_ttl=OFFER_TTL
            )
            latencies.append((time.perf_counter() - t0) * 1000)
            refused += not isinstance(result, Offer)
        latencies.sort()

        queue = list(pairs[half:])

        async def reserver() -> int:
            done = 0
            while queue:
                item_id, agent_id = queue.pop()
                result = await state.reserve(
                    item_id, agent_id, item_version=1, agent_version=1, offer_ttl=OFFER_TTL
                )
                done += isinstance(result, Offer)
            return done

        t0 = time.perf_counter()
        counts = await asyncio.gather(*(reserver() for _ in range(args.concurrency)))
        elapsed = time.perf_counter() - t0
        per_s = sum(counts) / elapsed if elapsed > 0 else 0.0

        print(
            f"reserve latency over {len(latencies)} sequential reserves ({refused} refused): "
            f"p50 {_pct(latencies, 0.50):.3f} ms, p99 {_pct(latencies, 0.99):.3f} ms, "
            f"max {latencies[-1]:.3f} ms   (goal: p99 < {GOAL_P99_MS:.0f} ms)"
        )
        print(
            f"reservations/s with {args.concurrency} in flight: {per_s:,.0f} "
            f"({sum(counts)} in {elapsed:.2f} s)   (goal for decisions: >= {GOAL_PER_S:,.0f}/s)"
        )
        await _cycles(client, state, site, args.items)
    finally:
        await _delete_site(client, state.prefix)
        await client.aclose()


async def _cycles(client: aioredis.Redis, state: AcdRedisState, site: str, items: int) -> None:
    """Median cost of a service cycle over the whole waiting set, a bounded one, a quiet one."""

    def service(snapshot_items: int) -> AcdService:
        config = parse_acd_config(
            {
                "service": {"site": site, "snapshot_items": snapshot_items},
                "queues": [{"id": f"queue-{n}", "skills": "*"} for n in range(20)],
            }
        )
        return AcdService(state, CallFacts(client, state), config)

    async def timed(node: AcdService, full: bool, runs: int = 5) -> float:
        spent = []
        for _ in range(runs):
            t0 = time.perf_counter()
            await node.cycle(full=full)
            spent.append((time.perf_counter() - t0) * 1000)
        return statistics.median(spent)

    whole, bounded = service(items), service(5000)
    for node in (whole, bounded):
        await node.cycle()  # learns every item's attributes once
    whole_ms = await timed(whole, full=True)
    bounded_ms = await timed(bounded, full=True)
    quiet_ms = await timed(bounded, full=False)
    waiting = (await state.snapshot(max_items=0)).waiting_total
    print(
        f"service cycle, {waiting} waiting: whole waiting set {whole_ms:.1f} ms, "
        f"bounded to 5000 items {bounded_ms:.1f} ms, quiet (no event) {quiet_ms:.2f} ms "
        f"(baseline: {BASELINE_SNAPSHOT_CYCLE_MS:g} ms for the 20,000-item snapshot alone; "
        f"{bounded.quiet_cycles} of the bounded node's cycles were quiet)"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.acd_redis", description=__doc__)
    parser.add_argument("--url", default="redis://127.0.0.1:6379/12", help="Redis URL (DB 12)")
    parser.add_argument("--agents", type=int, default=10_000)
    parser.add_argument("--items", type=int, default=20_000)
    parser.add_argument("--skills", type=int, default=50)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    if args.skills < 6 or args.agents < 2 or args.items < 2:
        parser.error("need at least 6 skills, 2 agents and 2 items")
    asyncio.run(run(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
