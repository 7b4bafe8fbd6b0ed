"""Routing engine benchmark: reserve latency and decisions/s with 10,000 agents and 20,000 items.

Run ``python -m bench.acd_engine`` (``--help`` for options). Everything runs in the pure engine
(no Redis, no I/O), on a fake clock, in this process.

* Setup: ``--agents`` agents with 3-5 of ``--skills`` skills each (levels 1-5; voice, blended
  call+3 chats, and email-only agents), one queue per skill (``skill>=2``, some with an OR
  term, a relaxation step at 60 s, every strategy in turn); items are queued until every agent
  is busy and ``--waiting`` items wait.
* Busy center (the hot path when queues are long): an agent finishes an item and ``tick`` picks
  the best waiting item it can take, across all queues, and reserves it. Timed per decision:
  ``complete`` + ``tick``. A new item is then queued to keep the backlog.
* Idle center (the hot path when agents wait): every agent is ready and an item arrives; timed
  per decision: ``enqueue`` + ``tick``, which asks the availability index for the queue's agent
  (a walk of the ordered buckets of the item's primary skill). The same is run first with
  ``EnginePolicy(brute_force=True)`` for ``--reference-decisions`` decisions: the scan of every
  free agent with that skill the engine made before the index (same decisions), so the run
  prints the figures before and after.

Nothing is asserted; the goals (p99 < 2 ms in the engine, >= 5,000 decisions/s) are printed next
to the results.
"""

from __future__ import annotations

import argparse
import random
import statistics
import time

from acd.domain.agents import AgentId, AgentProfile, Capacity
from acd.domain.engine import EnginePolicy, ItemOffered, RoutingEngine
from acd.domain.queues import Queue, RelaxationStep, SkillExpression, Strategy
from acd.domain.work import Channel, ItemId, QueueId, WorkItem

GOAL_P99_MS = 2.0
GOAL_DECISIONS_PER_S = 5000.0
STRATEGIES = list(Strategy)


class _Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _build(
    rng: random.Random, agents: int, skills: int, brute_force: bool = False
) -> tuple[RoutingEngine, _Clock, list[QueueId]]:
    clock = _Clock()
    queues = []
    for k in range(skills):
        text = f"s{k}>=2" if k % 5 else f"s{k}>=2 | s{(k + 1) % skills}>=4"
        queues.append(
            Queue(
                QueueId(f"q{k}"),
                SkillExpression.parse(text),
                steps=(RelaxationStep(60, level_drop=1),),
                strategy=STRATEGIES[k % len(STRATEGIES)],
                offer_timeout=None,
            )
        )
    policy = EnginePolicy(report_agent_states=False, brute_force=brute_force)
    engine = RoutingEngine(queues, clock=clock, policy=policy)
    for n in range(agents):
        kind = rng.random()
        if kind < 0.7:
            capacity = Capacity(call=1)
        elif kind < 0.9:
            capacity = Capacity(call=1, chat=3)
        else:
            capacity = Capacity(call=0, email=5)
        chosen = rng.sample(range(skills), rng.randint(3, 5))
        profile = AgentProfile(
            AgentId(f"a{n}"),
            {f"s{k}": rng.randint(1, 5) for k in chosen},
            frozenset({"en"}),
            capacity,
        )
        engine.set_agent(profile)
        engine.login(profile.agent_id)
    engine.tick()
    return engine, clock, [q.queue_id for q in queues]


def _item(rng: random.Random, queue_ids: list[QueueId], serial: int, now: float) -> WorkItem:
    roll = rng.random()
    channel = Channel.CALL if roll < 0.8 else Channel.CHAT if roll < 0.95 else Channel.EMAIL
    return WorkItem(
        ItemId(f"i{serial}"), channel, rng.choice(queue_ids), now, priority=rng.choice((0, 0, 1))
    )


def _percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def _print(label: str, latencies: list[float], decisions: int, elapsed: float) -> None:
    p50 = _percentile(latencies, 0.50) * 1000
    p99 = _percentile(latencies, 0.99) * 1000
    rate = decisions / elapsed if elapsed else 0.0
    print(f"{label}")
    print(f"  reserve latency p50 {p50:.3f} ms, p99 {p99:.3f} ms (goal p99 < {GOAL_P99_MS:g} ms)")
    print(
        f"  {decisions} decisions in {elapsed:.2f} s of engine time: {rate:,.0f} decisions/s "
        f"(goal >= {GOAL_DECISIONS_PER_S:,.0f}/s)"
    )


def busy_center(args: argparse.Namespace) -> None:
    rng = random.Random(args.seed)
    started = time.perf_counter()
    engine, clock, queue_ids = _build(rng, args.agents, args.skills)
    serial = 0
    working: list[tuple[AgentId, ItemId]] = []
    while engine.waiting_count() < args.waiting:
        clock.now += 0.01
        for _ in range(1000):
            serial += 1
            engine.enqueue(_item(rng, queue_ids, serial, clock.now))
        for decision in engine.tick():
            if isinstance(decision, ItemOffered):
                engine.accept(decision.agent_id, decision.item_id)
                working.append((decision.agent_id, decision.item_id))
    # let every item reach its relaxation step, so the backlog is as wide as it gets
    clock.now += 61
    for decision in engine.tick():
        if isinstance(decision, ItemOffered):
            engine.accept(decision.agent_id, decision.item_id)
            working.append((decision.agent_id, decision.item_id))
    print(
        f"setup: {args.agents} agents, {args.skills} skills, {engine.waiting_count()} waiting, "
        f"{len(working)} in work ({time.perf_counter() - started:.1f} s)"
    )
    latencies: list[float] = []
    decisions = 0
    engine_time = 0.0
    for _ in range(args.decisions):
        clock.now += 0.001
        index = rng.randrange(len(working))
        agent_id, item_id = working[index]
        working[index] = working[-1]
        working.pop()
        t0 = time.perf_counter()
        engine.complete(agent_id, item_id)
        made = engine.tick()
        t1 = time.perf_counter()
        latencies.append(t1 - t0)
        offered = [d for d in made if isinstance(d, ItemOffered)]
        serial += 1
        t2 = time.perf_counter()
        for decision in offered:
            engine.accept(decision.agent_id, decision.item_id)
        engine.enqueue(_item(rng, queue_ids, serial, clock.now))
        extra = engine.tick()
        t3 = time.perf_counter()
        engine_time += (t1 - t0) + (t3 - t2)
        for decision in extra:
            if isinstance(decision, ItemOffered):
                offered.append(decision)
                engine.accept(decision.agent_id, decision.item_id)
        decisions += len(offered)
        working.extend((d.agent_id, d.item_id) for d in offered)
    _print(
        f"busy center ({engine.waiting_count()} waiting): an agent frees -> best item reserved",
        latencies,
        decisions,
        engine_time,
    )
    problems = engine.verify()
    print(f"  invariants: {'ok' if not problems else problems[:3]}")


def idle_center(args: argparse.Namespace, brute_force: bool = False) -> None:
    rng = random.Random(args.seed + 1)
    engine, clock, queue_ids = _build(rng, args.agents, args.skills, brute_force)
    latencies: list[float] = []
    decisions = 0
    engine_time = 0.0
    count = args.reference_decisions if brute_force else args.decisions
    for serial in range(count):
        clock.now += 0.001
        item = _item(rng, queue_ids, serial, clock.now)
        t0 = time.perf_counter()
        engine.enqueue(item)
        made = engine.tick()
        t1 = time.perf_counter()
        latencies.append(t1 - t0)
        engine_time += t1 - t0
        for decision in made:
            if isinstance(decision, ItemOffered):
                decisions += 1
                engine.accept(decision.agent_id, decision.item_id)
                engine.complete(decision.agent_id, decision.item_id)
        engine.tick()
    how = "brute-force scan, before the index" if brute_force else "ordered index"
    _print(
        f"idle center ({args.agents} ready agents, {how}): an item arrives -> best agent reserved",
        latencies,
        decisions,
        engine_time,
    )
    print(f"  median latency {statistics.median(latencies) * 1e6:.0f} us")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--agents", type=int, default=10_000)
    parser.add_argument("--skills", type=int, default=50)
    parser.add_argument("--waiting", type=int, default=20_000)
    parser.add_argument("--decisions", type=int, default=5_000)
    parser.add_argument("--reference-decisions", type=int, default=1_000)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    busy_center(args)
    idle_center(args, brute_force=True)
    idle_center(args)


if __name__ == "__main__":
    main()
