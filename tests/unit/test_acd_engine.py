"""The routing engine: fair order, re-evaluated relaxation, overflow, bad input, invariants."""

from __future__ import annotations

from dataclasses import dataclass

from hypothesis import given, settings
from hypothesis import strategies as st

from acd.domain.agents import AgentId, AgentProfile, AgentState, Capacity
from acd.domain.engine import (
    AgentAutoPaused,
    Decision,
    EnginePolicy,
    ItemExpired,
    ItemOffered,
    ItemOverflowed,
    ItemRefused,
    OfferMissed,
    OfferRescinded,
    RoutingEngine,
)
from acd.domain.queues import (
    Overflow,
    PriorityBoost,
    Queue,
    RelaxationStep,
    SkillExpression,
    Strategy,
)
from acd.domain.work import Channel, ItemId, ItemState, QueueId, SkillNeed, WorkItem

SUPPORT = QueueId("support")
SALES = QueueId("sales")


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def engine_with(*queues: Queue, policy: EnginePolicy | None = None) -> tuple[RoutingEngine, Clock]:
    clock = Clock()
    return RoutingEngine(queues, clock=clock, policy=policy), clock


def queue(queue_id: QueueId = SUPPORT, expression: str = "support", **kwargs: object) -> Queue:
    return Queue(queue_id, SkillExpression.parse(expression), **kwargs)  # type: ignore[arg-type]


def agent(engine: RoutingEngine, name: str, login: bool = True, **skills: int) -> AgentId:
    agent_id = AgentId(name)
    engine.set_agent(AgentProfile(agent_id, skills or {"support": 3}, frozenset({"en"})))
    if login:
        engine.login(agent_id)
    return agent_id


def work(
    name: str,
    queue_id: QueueId = SUPPORT,
    at: float = 0.0,
    priority: int = 0,
    channel: Channel = Channel.CALL,
    language: str | None = None,
    needs: tuple[SkillNeed, ...] = (),
) -> WorkItem:
    return WorkItem(ItemId(name), channel, queue_id, at, priority, needs, language)


def offers(decisions: list[Decision]) -> list[tuple[str, str]]:
    return [(d.item_id, d.agent_id) for d in decisions if isinstance(d, ItemOffered)]


def test_given_a_ready_agent_when_an_item_arrives_then_it_is_offered_with_a_reason() -> None:
    engine, _ = engine_with(queue())
    agent(engine, "a1")
    engine.enqueue(work("i1"))
    decisions = engine.tick()
    offered = [d for d in decisions if isinstance(d, ItemOffered)]
    assert [(d.item_id, d.agent_id) for d in offered] == [("i1", "a1")]
    explanation = offered[0].explanation
    assert explanation.eligible == ("a1",)
    assert explanation.step_label == "base"
    assert "i1 -> a1" in explanation.render()
    assert engine.agent_status(AgentId("a1")).state is AgentState.RESERVED
    assert engine.item_state(ItemId("i1")) is ItemState.OFFERED


def test_given_items_in_two_queues_when_an_agent_frees_then_the_oldest_goes_first() -> None:
    engine, clock = engine_with(queue(SUPPORT), queue(SALES, "sales"))
    engine.enqueue(work("sales-old", SALES, at=0))
    clock.now = 5
    engine.enqueue(work("support-new", SUPPORT, at=5))
    agent(engine, "both", support=3, sales=3)
    assert offers(engine.tick()) == [("sales-old", "both")]


def test_given_a_higher_priority_item_then_it_goes_first_whatever_its_age() -> None:
    engine, clock = engine_with(queue(SUPPORT), queue(SALES, "sales"))
    engine.enqueue(work("old", SUPPORT, at=0))
    clock.now = 5
    engine.enqueue(work("vip", SALES, at=5, priority=2))
    agent(engine, "both", support=3, sales=3)
    assert offers(engine.tick()) == [("vip", "both")]


def test_given_a_boost_when_the_item_has_waited_then_it_overtakes_a_higher_base_priority() -> None:
    engine, clock = engine_with(
        queue(SUPPORT, boosts=(PriorityBoost(30, 2),)), queue(SALES, "sales")
    )
    engine.enqueue(work("patient", SUPPORT, at=0))
    engine.enqueue(work("vip", SALES, at=0, priority=1))
    engine.tick()
    clock.now = 31
    engine.tick()
    agent(engine, "both", support=3, sales=3)
    assert offers(engine.tick()) == [("patient", "both")]


def test_given_a_relaxation_step_when_the_wait_passes_it_then_a_lower_level_agent_gets_it() -> None:
    engine, clock = engine_with(
        queue(expression="support>=4", steps=(RelaxationStep(30, level_drop=2),))
    )
    agent(engine, "junior", support=2)
    engine.enqueue(work("i1"))
    assert offers(engine.tick()) == []
    clock.now = 29
    assert offers(engine.tick()) == []
    assert engine.next_due() == 30
    clock.now = 30
    decisions = engine.tick()
    assert offers(decisions) == [("i1", "junior")]
    offered = next(d for d in decisions if isinstance(d, ItemOffered))
    assert offered.explanation.step == 1


def test_given_a_waiting_item_when_the_queue_rules_change_then_the_new_rules_apply_at_once() -> (
    None
):
    engine, clock = engine_with(queue(expression="support>=4"))
    agent(engine, "junior", support=2)
    engine.enqueue(work("i1"))
    assert offers(engine.tick()) == []
    clock.now = 50
    engine.set_queue(queue(expression="support>=4", steps=(RelaxationStep(40, level_drop=2),)))
    assert offers(engine.tick()) == [("i1", "junior")]


def test_given_a_french_caller_when_language_is_relaxed_then_an_english_agent_takes_it() -> None:
    engine, clock = engine_with(
        queue(steps=(RelaxationStep(60, require_language=False, label="any language"),))
    )
    agent(engine, "english")
    engine.enqueue(work("fr", language="fr"))
    offered = engine.tick()
    assert offers(offered) == []
    clock.now = 60
    decisions = engine.tick()
    assert offers(decisions) == [("fr", "english")]


def test_given_an_overflow_when_the_wait_passes_then_the_item_moves_and_keeps_its_age() -> None:
    engine, clock = engine_with(
        queue(SALES, "sales", overflow=Overflow(20, SUPPORT)), queue(SUPPORT)
    )
    engine.enqueue(work("moved", SALES, at=0))
    clock.now = 10
    engine.enqueue(work("local", SUPPORT, at=10))
    engine.tick()
    clock.now = 20
    decisions = engine.tick()
    assert any(isinstance(d, ItemOverflowed) and d.to_queue == SUPPORT for d in decisions)
    assert engine.item_queue(ItemId("moved")) == SUPPORT
    assert engine.waiting_items(SUPPORT) == ["moved", "local"]
    assert engine.position(ItemId("local")) == 2
    agent(engine, "a1")
    assert offers(engine.tick()) == [("moved", "a1")]


def test_given_a_max_wait_when_it_passes_then_the_item_expires() -> None:
    engine, clock = engine_with(queue(max_wait=60))
    engine.enqueue(work("i1"))
    engine.tick()
    clock.now = 60
    decisions = engine.tick()
    assert [type(d) for d in decisions] == [ItemExpired]
    assert engine.item_state(ItemId("i1")) is None


@dataclass
class Hours:
    open: bool

    def is_open(self, at: float) -> bool:
        return self.open


def test_given_a_closed_queue_when_an_item_arrives_then_it_goes_elsewhere_or_is_refused() -> None:
    hours = Hours(open=False)
    engine, _ = engine_with(
        queue(SALES, "sales", hours=hours, closed_to=SUPPORT), queue(SUPPORT, hours=hours)
    )
    engine.enqueue(work("to-support", SALES))
    engine.enqueue(work("refused", SUPPORT))
    decisions = engine.tick()
    assert any(isinstance(d, ItemOverflowed) and d.reason == "closed" for d in decisions)
    assert any(isinstance(d, ItemRefused) and d.item_id == "refused" for d in decisions)
    assert engine.item_queue(ItemId("to-support")) == SUPPORT


def test_given_an_agent_reserved_when_it_logs_out_then_the_item_goes_back_to_the_next_agent() -> (
    None
):
    engine, clock = engine_with(queue())
    first = agent(engine, "first")
    clock.now = 1
    second = agent(engine, "second")
    engine.enqueue(work("i1"))
    assert offers(engine.tick()) == [("i1", "first")]
    engine.logout(first)
    decisions = engine.tick()
    assert any(isinstance(d, OfferRescinded) and d.reason == "agent-logged-out" for d in decisions)
    assert offers(decisions) == [("i1", "second")]
    assert engine.agent_status(first).state is AgentState.LOGGED_OUT
    assert engine.agent_status(second).state is AgentState.RESERVED
    assert engine.verify() == []


def test_given_an_offered_item_when_the_customer_hangs_up_then_the_agent_is_free() -> None:
    engine, _ = engine_with(queue())
    a1 = agent(engine, "a1")
    engine.enqueue(work("i1"))
    engine.tick()
    assert engine.cancel(ItemId("i1"))
    decisions = engine.tick()
    assert any(isinstance(d, OfferRescinded) and d.reason == "item-cancelled" for d in decisions)
    assert engine.agent_status(a1).state is AgentState.READY
    assert engine.item_state(ItemId("i1")) is None
    assert engine.verify() == []


def test_given_duplicate_events_then_they_are_ignored_and_counted() -> None:
    engine, _ = engine_with(queue())
    a1 = agent(engine, "a1")
    assert engine.enqueue(work("i1"))
    assert not engine.enqueue(work("i1"))
    engine.tick()
    assert engine.accept(a1, ItemId("i1"))
    assert not engine.accept(a1, ItemId("i1"))
    assert engine.complete(a1, ItemId("i1"))
    assert not engine.complete(a1, ItemId("i1"))
    assert not engine.cancel(ItemId("i1"))
    assert not engine.enqueue(work("i1"))
    assert not engine.login(a1)
    assert engine.counters.ignored_total == 6
    assert engine.verify() == []


def test_given_the_clock_goes_backwards_then_the_engine_clamps_and_counts() -> None:
    engine, clock = engine_with(queue(steps=(RelaxationStep(30, level_drop=2),)))
    clock.now = 100
    engine.enqueue(work("i1", at=100))
    clock.now = 50
    engine.tick()
    assert engine.counters.clock_regressions == 1
    assert engine.now == 100
    assert engine.next_due() == 130
    clock.now = 120
    agent(engine, "a1")
    decisions = engine.tick()
    offered = next(d for d in decisions if isinstance(d, ItemOffered))
    assert offered.at == 120
    assert offered.explanation.waited >= 0


def test_given_the_clock_goes_backwards_then_the_longest_idle_order_is_kept() -> None:
    engine, clock = engine_with(queue())
    clock.now = 100
    first = agent(engine, "first")
    clock.now = 40  # the clock steps back: the next agent is not "idle longer" than the first
    second = agent(engine, "second")
    assert engine.agent_status(second).idle_since == 100
    clock.now = 110
    engine.enqueue(work("i1", at=110))
    engine.enqueue(work("i2", at=110))
    assert offers(engine.tick()) == [("i1", first), ("i2", second)]
    assert engine.counters.clock_regressions == 1
    assert engine.verify() == []


def test_given_an_indexed_agent_when_its_skills_change_then_routing_uses_the_new_skills() -> None:
    engine, clock = engine_with(queue(SUPPORT, "support>=3"), queue(SALES, "sales>=2"))
    a1 = agent(engine, "a1", support=5)
    engine.enqueue(work("s1", SALES))
    assert offers(engine.tick()) == []
    # a supervisor moves the ready agent from support to sales while it waits in the index
    engine.set_agent(AgentProfile(a1, {"sales": 2}, frozenset({"en"})))
    assert engine.verify() == []
    assert offers(engine.tick()) == [("s1", a1)]
    engine.accept(a1, ItemId("s1"))
    engine.complete(a1, ItemId("s1"))
    clock.now = 5
    engine.enqueue(work("p1", SUPPORT, at=5))
    assert offers(engine.tick()) == []  # no longer a support agent
    assert engine.unmatched() == []
    assert engine.verify() == []


def test_given_no_answer_when_the_ring_times_out_then_the_item_returns_and_agent_is_missed() -> (
    None
):
    engine, clock = engine_with(
        queue(offer_timeout=15), policy=EnginePolicy(pause_after_misses=2, missed_cooldown=10)
    )
    a1 = agent(engine, "a1")
    engine.enqueue(work("i1"))
    engine.tick()
    clock.now = 15
    decisions = engine.tick()
    assert any(isinstance(d, OfferMissed) and d.reason == "timeout" for d in decisions)
    assert engine.agent_status(a1).state is AgentState.MISSED
    assert engine.item_state(ItemId("i1")) is ItemState.WAITING
    clock.now = 25
    assert offers(engine.tick()) == [("i1", "a1")]
    clock.now = 40
    decisions = engine.tick()
    assert any(isinstance(d, AgentAutoPaused) and d.misses == 2 for d in decisions)
    assert engine.agent_status(a1).state is AgentState.PAUSED
    assert engine.item_state(ItemId("i1")) is ItemState.WAITING
    assert engine.verify() == []


def test_given_wrap_up_when_the_timer_ends_then_the_agent_takes_the_next_item() -> None:
    engine, clock = engine_with(queue(wrap_up=20))
    a1 = agent(engine, "a1")
    engine.enqueue(work("i1"))
    engine.enqueue(work("i2"))
    engine.tick()
    engine.accept(a1, ItemId("i1"))
    clock.now = 100
    engine.complete(a1, ItemId("i1"))
    assert offers(engine.tick()) == []
    assert engine.agent_status(a1).state is AgentState.WRAP_UP
    assert engine.next_due() == 120
    clock.now = 120
    assert offers(engine.tick()) == [("i2", "a1")]


def test_given_a_blended_agent_then_chats_fill_capacity_and_a_call_blocks_the_rest() -> None:
    chat = Queue(QueueId("chat"))
    calls = Queue(QueueId("calls"))
    engine, _ = engine_with(chat, calls)
    blended = AgentId("blended")
    engine.set_agent(AgentProfile(blended, {}, capacity=Capacity(call=1, chat=2)))
    engine.login(blended)
    for n in range(3):
        engine.enqueue(work(f"c{n}", QueueId("chat"), channel=Channel.CHAT))
    first = offers(engine.tick())
    assert first == [("c0", "blended")]
    engine.accept(blended, ItemId("c0"))
    assert offers(engine.tick()) == [("c1", "blended")]
    engine.accept(blended, ItemId("c1"))
    engine.enqueue(work("call", QueueId("calls")))
    assert offers(engine.tick()) == [("call", "blended")]
    engine.accept(blended, ItemId("call"))
    engine.complete(blended, ItemId("c0"))
    assert offers(engine.tick()) == []  # the call blocks the free chat slot
    assert engine.verify() == []


def test_strategies_pick_longest_idle_best_skill_least_occupied_and_round_robin() -> None:
    def first_offer(strategy: Strategy) -> str:
        engine, clock = engine_with(queue(strategy=strategy))
        agent(engine, "a-early", support=2)
        clock.now = 10
        agent(engine, "b-expert", support=5)
        clock.now = 20
        engine.enqueue(work("i1", at=20))
        return offers(engine.tick())[0][1]

    assert first_offer(Strategy.LONGEST_IDLE) == "a-early"
    assert first_offer(Strategy.BEST_SKILL) == "b-expert"

    engine, clock = engine_with(queue(strategy=Strategy.ROUND_ROBIN))
    names = [agent(engine, name) for name in ("r1", "r2", "r3")]
    chosen = []
    for n in range(4):
        engine.enqueue(work(f"i{n}"))
        offered = offers(engine.tick())
        chosen.append(offered[0][1])
        engine.cancel(ItemId(offered[0][0]))
        engine.tick()
    assert chosen == ["r1", "r2", "r3", "r1"]
    assert names == ["r1", "r2", "r3"]

    engine, clock = engine_with(queue(strategy=Strategy.LEAST_OCCUPIED))
    busy = agent(engine, "busy")
    idle = agent(engine, "idle")
    engine.enqueue(work("x"))
    engine.tick()
    engine.accept(busy, ItemId("x"))
    clock.now = 50
    engine.complete(busy, ItemId("x"))
    clock.now = 60
    engine.tick()
    engine.enqueue(work("y", at=60))
    assert offers(engine.tick()) == [("y", idle)]


def test_an_explanation_stays_bounded_with_many_agents() -> None:
    engine, _ = engine_with(
        queue(expression="support>=3"), policy=EnginePolicy(explanation_limit=3)
    )
    for n in range(50):
        agent(engine, f"a{n:02d}", support=1 + n % 5)
    engine.enqueue(work("i1"))
    offered = next(d for d in engine.tick() if isinstance(d, ItemOffered))
    explanation = offered.explanation
    assert explanation.eligible_count == 30
    assert len(explanation.eligible) == 3
    assert explanation.rejected_count == 20
    assert len(explanation.rejected) == 3
    assert explanation.rejected[0].reason == "support 1<3"


# -- property test: random command sequences against the engine ----------------------------------

AGENTS = [AgentId(f"a{n}") for n in range(4)]
ITEM_IDS = [ItemId(f"i{n}") for n in range(8)]
QUEUES = [
    Queue(QueueId("q1"), SkillExpression.parse("s1>=3"), steps=(RelaxationStep(5, level_drop=2),)),
    Queue(
        QueueId("q2"),
        SkillExpression.parse("s2 | s1>=4"),
        overflow=Overflow(7, QueueId("q1")),
        offer_timeout=3,
        wrap_up=2,
    ),
    Queue(QueueId("q3"), max_wait=9, boosts=(PriorityBoost(2, 1),)),
]
PROFILES = [
    AgentProfile(AgentId("a0"), {"s1": 3}, frozenset({"en"})),
    AgentProfile(AgentId("a1"), {"s1": 1, "s2": 2}, capacity=Capacity(call=1, chat=2, email=1)),
    AgentProfile(AgentId("a2"), {"s2": 5}, capacity=Capacity(call=0, chat=3)),
    AgentProfile(
        AgentId("a3"), {"s1": 5}, capacity=Capacity(call=1, chat=1, call_blocks_others=False)
    ),
]


def enqueues(queues: list[Queue]) -> st.SearchStrategy[tuple[object, ...]]:
    """An enqueue of one of the items into one of ``queues``, any channel and priority."""
    return st.tuples(
        st.just("enqueue"),
        st.sampled_from(ITEM_IDS),
        st.sampled_from([q.queue_id for q in queues]),
        st.sampled_from(list(Channel)),
        st.integers(0, 2),
    )


engine_commands = st.one_of(
    st.tuples(st.just("login"), st.sampled_from(AGENTS)),
    st.tuples(st.just("logout"), st.sampled_from(AGENTS)),
    st.tuples(st.just("ready"), st.sampled_from(AGENTS)),
    st.tuples(st.just("pause"), st.sampled_from(AGENTS)),
    enqueues(QUEUES),
    st.tuples(st.just("cancel"), st.sampled_from(ITEM_IDS)),
    st.tuples(st.just("accept"), st.sampled_from(AGENTS), st.sampled_from(ITEM_IDS)),
    st.tuples(st.just("no_answer"), st.sampled_from(AGENTS), st.sampled_from(ITEM_IDS)),
    st.tuples(st.just("complete"), st.sampled_from(AGENTS), st.sampled_from(ITEM_IDS)),
    st.tuples(st.just("time"), st.floats(-3, 6, allow_nan=False)),
    # the same on an item that is really offered / assigned, so that sequences get somewhere
    st.tuples(st.sampled_from(["accept_any", "miss_any", "complete_any"]), st.integers(0, 7)),
)


def apply_command(engine: RoutingEngine, clock: Clock, command: tuple[object, ...]) -> None:
    name = command[0]
    if name == "time":
        clock.now += float(command[1])  # type: ignore[arg-type]
    elif name == "enqueue":
        _, item_id, queue_id, channel, priority = command
        engine.enqueue(
            WorkItem(item_id, channel, queue_id, clock.now, priority)  # type: ignore[arg-type]
        )
    elif name == "cancel":
        engine.cancel(command[1])  # type: ignore[arg-type]
    elif name == "pause":
        engine.pause(command[1], "break")  # type: ignore[arg-type]
    elif name in {"accept", "no_answer", "complete"}:
        getattr(engine, name)(command[1], command[2])
    elif name in {"accept_any", "miss_any", "complete_any"}:
        wanted = ItemState.ASSIGNED if name == "complete_any" else ItemState.OFFERED
        candidates = sorted(i for i, state in engine.live_items() if state is wanted)
        if candidates:
            item_id = candidates[int(command[1]) % len(candidates)]  # type: ignore[call-overload]
            agent_id = engine.item_agent(item_id)
            assert agent_id is not None
            method = {"accept_any": "accept", "miss_any": "no_answer"}.get(name, "complete")
            assert getattr(engine, method)(agent_id, item_id)
    else:
        getattr(engine, str(name))(command[1])


@settings(max_examples=150, deadline=None)
@given(
    logged_in=st.sets(st.sampled_from(AGENTS)),
    commands=st.lists(engine_commands, min_size=10, max_size=60),
)
def test_random_engine_commands_never_lose_an_item_or_strand_an_agent(
    logged_in: set[AgentId], commands: list[tuple[object, ...]]
) -> None:
    clock = Clock()
    engine = RoutingEngine(
        QUEUES, clock=clock, policy=EnginePolicy(pause_after_misses=2, missed_cooldown=1)
    )
    for profile in PROFILES:
        engine.set_agent(profile)
    for agent_id in sorted(logged_in):
        engine.login(agent_id)
    enqueued: set[ItemId] = set()
    ended: set[ItemId] = set()
    last_time = engine.now
    offers_made = 0
    for command in commands:
        before = dict(engine.live_items())
        apply_command(engine, clock, command)
        decisions = engine.tick()
        after = dict(engine.live_items())
        assert engine.verify() == []
        assert engine.now >= last_time
        last_time = engine.now
        for decision in decisions:
            if isinstance(decision, ItemExpired | ItemRefused):
                ended.add(decision.item_id)
        # every item that disappeared was cancelled, completed, expired or refused: never lost
        for item_id in set(before) - set(after):
            cancelled = command[0] == "cancel" and command[1] == item_id
            completed = command[0] in {"complete", "complete_any"}
            if cancelled or completed:
                ended.add(item_id)
            assert item_id in ended, f"{item_id} vanished after {command}"
        enqueued |= set(after)
        # after a tick no waiting item has a free eligible agent (nothing is left unmatched)
        assert engine.unmatched() == []
        offers_made += sum(1 for d in decisions if isinstance(d, ItemOffered))
    assert offers_made <= engine.counters.offers
    for agent_id in AGENTS:
        status = engine.agent_status(agent_id)
        if not status.logged_in:
            assert status.reservation is None
            assert not status.active


def decided(decisions: list[Decision]) -> list[tuple[object, ...]]:
    """What a decision chose and why, without the counts (the index may count lazily)."""
    out: list[tuple[object, ...]] = []
    for d in decisions:
        if isinstance(d, ItemOffered):
            why = d.explanation
            out.append((d.item_id, d.agent_id, d.queue, why.eligible, why.rule, why.step))
        else:
            out.append((type(d).__name__, d))
    return out


STRATEGY_QUEUES = [
    Queue(
        QueueId(f"q-{strategy}"),
        SkillExpression.parse("s1>=2 | s2>=3"),
        steps=(RelaxationStep(4, level_drop=1),),
        strategy=strategy,
        offer_timeout=3,
        wrap_up=1,
    )
    for strategy in Strategy
]


@settings(max_examples=150, deadline=None)
@given(
    logged_in=st.sets(st.sampled_from(AGENTS)),
    commands=st.lists(
        st.one_of(engine_commands, enqueues(STRATEGY_QUEUES)),
        min_size=10,
        max_size=60,
    ),
)
def test_the_indexed_engine_decides_exactly_as_the_brute_force_engine(
    logged_in: set[AgentId], commands: list[tuple[object, ...]]
) -> None:
    engines = []
    for brute_force in (False, True):
        clock = Clock()
        policy = EnginePolicy(pause_after_misses=2, missed_cooldown=1, brute_force=brute_force)
        engine = RoutingEngine([*QUEUES, *STRATEGY_QUEUES], clock=clock, policy=policy)
        for profile in PROFILES:
            engine.set_agent(profile)
        for agent_id in sorted(logged_in):
            engine.login(agent_id)
        engines.append((engine, clock))
    for command in commands:
        outcomes = []
        for engine, clock in engines:
            apply_command(engine, clock, command)
            outcomes.append(decided(engine.tick()))
        assert outcomes[0] == outcomes[1], command
    (indexed, _), (reference, _) = engines
    assert dict(indexed.live_items()) == dict(reference.live_items())
    assert indexed.verify() == []


BUSY_QUEUES = [
    Queue(
        QueueId(f"busy-{strategy}"),
        SkillExpression.parse(expression),
        steps=(RelaxationStep(4, level_drop=1),),
        strategy=strategy,
        wrap_up=wrap_up,
    )
    for strategy, expression, wrap_up in [
        (Strategy.LONGEST_IDLE, "s1>=2", 0),
        (Strategy.BEST_SKILL, "s2>=3", 1),
        (Strategy.LEAST_OCCUPIED, "s1>=4", 0),
        (Strategy.ROUND_ROBIN, "s2", 0),
        (Strategy.LONGEST_IDLE, "s1>=3 | s2>=4", 0),
    ]
]


@settings(max_examples=100, deadline=None)
@given(
    levels=st.lists(st.tuples(st.integers(1, 5), st.integers(1, 5)), min_size=1, max_size=8),
    items=st.lists(
        st.tuples(st.sampled_from(BUSY_QUEUES), st.sampled_from([Channel.CALL, Channel.CHAT])),
        min_size=10,
        max_size=30,
    ),
    steps=st.lists(
        st.tuples(st.integers(0, 30), st.sampled_from([0.0, 0.0, 0.0, 0.5, 5.0])),
        min_size=15,
        max_size=40,
    ),
)
def test_in_a_busy_center_an_agent_that_frees_takes_what_the_brute_force_engine_gives_it(
    levels: list[tuple[int, int]],
    items: list[tuple[Queue, Channel]],
    steps: list[tuple[int, float]],
) -> None:
    """More items than agents: each completion frees one agent, who is matched without entering
    the availability index first (when that is sure to be the same choice)."""
    engines = []
    for brute_force in (False, True):
        clock = Clock()
        policy = EnginePolicy(brute_force=brute_force)
        engine = RoutingEngine(BUSY_QUEUES, clock=clock, policy=policy)
        for n, (s1, s2) in enumerate(levels):
            capacity = Capacity(call=1, chat=2) if n % 3 == 2 else Capacity(call=1)
            engine.set_agent(
                AgentProfile(AgentId(f"a{n}"), {"s1": s1, "s2": s2}, capacity=capacity)
            )
            engine.login(AgentId(f"a{n}"))
        for n, (target, channel) in enumerate(items):
            clock.now += 0.1
            engine.enqueue(WorkItem(ItemId(f"i{n}"), channel, target.queue_id, clock.now))
        engines.append((engine, clock))
    outcomes = []
    for engine, _ in engines:
        outcomes.append(decided(engine.tick()))
    assert outcomes[0] == outcomes[1]
    for pick, wait in steps:
        outcomes = []
        for engine, clock in engines:
            clock.now += wait
            made = engine.tick()
            for decision in made:
                if isinstance(decision, ItemOffered):
                    engine.accept(decision.agent_id, decision.item_id)
            working = sorted(i for i, state in engine.live_items() if state is ItemState.ASSIGNED)
            if working:
                item_id = working[pick % len(working)]
                agent_id = engine.item_agent(item_id)
                assert agent_id is not None
                engine.complete(agent_id, item_id)
            made += engine.tick()
            outcomes.append(decided(made))
        assert outcomes[0] == outcomes[1]
        indexed = engines[0][0]
        assert indexed.verify() == []
        assert indexed.unmatched() == []
