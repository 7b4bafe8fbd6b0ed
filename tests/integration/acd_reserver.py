"""A routing controller in a process of its own, for the two-process test: races to reserve agents.

Usage: python tests/integration/acd_reserver.py <redis_url> <site> <worker_id> <attempts> <seed>
(with the repository root importable: installed, or on PYTHONPATH).

It waits until the key ``acd-test:{<site>}:go`` exists (so that all workers start together), then
``attempts`` times: reads a snapshot, picks one of the first few waiting items and one of the first
few agents ready for its channel (so that the workers collide as often as possible), and tries to
reserve it, with the versions it read or without version checks. On success it plays the rest
of the offer at random: accept then complete (and enqueue a fresh item), reject or no-answer
(then makes the agent ready again), cancel (and enqueue a fresh item), abandon with a tiny ttl
(for someone's ``expire_offers`` to clean up), or log the agent out and in again. It prints one
JSON line with its counters and exits 0; any unexpected error exits non-zero.
"""

from __future__ import annotations

import asyncio
import json
import random
import sys
from collections import Counter

import redis.asyncio as aioredis

from acd.adapters.redis_state import (
    AcdRedisState,
    AgentSpec,
    Availability,
    ItemSpec,
    Offer,
    Refused,
)

START_TIMEOUT = 30.0
HEAD = 3  # how far down the waiting list and the ready lists a worker picks


def go_key(site: str) -> str:
    """The key whose creation starts the workers."""
    return f"acd-test:{{{site}}}:go"


async def wait_for_go(client: aioredis.Redis, site: str) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + START_TIMEOUT
    while not await client.exists(go_key(site)):
        if loop.time() > deadline:
            raise TimeoutError("no go signal")
        await asyncio.sleep(0.005)


async def play_offer(
    state: AcdRedisState,
    offer: Offer,
    channel: str,
    caps: dict[str, int],
    rng: random.Random,
    fresh: list[int],
    worker: str,
    counts: Counter[str],
) -> None:
    roll = rng.random()
    if roll < 0.5:
        accepted = await state.accept(offer.item_id, offer.offer_id)
        counts[f"accept:{type(accepted).__name__}"] += 1
        if not isinstance(accepted, Refused):
            done = await state.complete(offer.item_id)
            assert not isinstance(done, Refused), done
            fresh[0] += 1
            await state.enqueue(ItemSpec(f"{worker}-{fresh[0]}", channel, "q1"))
    elif roll < 0.75:
        missed = await state.reject(offer.item_id, offer.offer_id, no_answer=rng.random() < 0.5)
        counts[f"reject:{type(missed).__name__}"] += 1
        await state.set_state(offer.agent_id, Availability.READY)
    elif roll < 0.93:
        cancelled = await state.cancel(offer.item_id, "abandoned")
        counts[f"cancel:{type(cancelled).__name__}"] += 1
        fresh[0] += 1
        await state.enqueue(ItemSpec(f"{worker}-{fresh[0]}", channel, "q1"))
    else:
        await state.agent_logout(offer.agent_id)
        await state.agent_login(
            AgentSpec(offer.agent_id, caps, {"en": 3}, call_blocks_others=False)
        )
        counts["relogin"] += 1


async def main(redis_url: str, site: str, worker: str, attempts: int, seed: int) -> None:
    client = aioredis.Redis.from_url(redis_url, socket_timeout=5.0)
    state = AcdRedisState(client, site)
    rng = random.Random(seed)
    counts: Counter[str] = Counter()
    fresh = [0]
    try:
        await wait_for_go(client, site)
        for _ in range(attempts):
            if rng.random() < 0.1:
                counts["expired"] += len(await state.expire_offers())
            snap = await state.snapshot(max_items=20, max_agents=20)
            if not snap.waiting:
                counts["nothing_waiting"] += 1
                continue
            item = rng.choice(snap.waiting[:HEAD])
            ready = snap.ready.get(item.channel, ())
            if not ready:
                counts["nobody_ready"] += 1
                continue
            agent = snap.agents[rng.choice(ready[:HEAD])]
            checked = rng.random() < 0.7
            abandon = rng.random() < 0.1
            result = await state.reserve(
                item.item_id,
                agent.agent_id,
                item_version=item.version if checked else None,
                agent_version=agent.version if checked else None,
                offer_ttl=0.02 if abandon else 5.0,
            )
            if isinstance(result, Refused):
                counts[f"refused:{result.reason.value}"] += 1
                continue
            counts["offers"] += 1
            if abandon:
                counts["abandoned"] += 1
                continue
            await play_offer(
                state, result, item.channel, dict(agent.capacity), rng, fresh, worker, counts
            )
        print(json.dumps({"worker": worker, **counts}), flush=True)
    finally:
        await client.aclose()


if __name__ == "__main__":
    url, site_name, worker_id, n, seed_text = sys.argv[1:6]
    asyncio.run(main(url, site_name, worker_id, int(n), int(seed_text)))
