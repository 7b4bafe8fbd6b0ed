"""The availability index chooses as the brute-force policy does, and keeps up with changes."""

from __future__ import annotations

from dataclasses import dataclass

from hypothesis import given, settings
from hypothesis import strategies as st

from acd.domain.agent_index import AgentIndex
from acd.domain.agents import ActiveWork, AgentId, AgentProfile, AgentStatus, Capacity
from acd.domain.queues import Queue, RelaxationStep, SkillExpression, Strategy
from acd.domain.routing import Selection, SelectionRequest, select
from acd.domain.work import Channel, ItemId, QueueId, SkillNeed, WorkItem

SKILLS = ("s1", "s2", "s3")
CHANNELS = tuple(Channel)


@dataclass
class Record:
    profile: AgentProfile
    status: AgentStatus
    ordinal: int


def channels_of(record: Record) -> tuple[Channel, ...]:
    return tuple(ch for ch in CHANNELS if record.status.can_take(record.profile.capacity, ch))


profiles = st.builds(
    lambda skills, english, capacity: (skills, english, capacity),
    st.dictionaries(st.sampled_from(SKILLS), st.integers(1, 5), max_size=3),
    st.booleans(),
    st.sampled_from(
        [
            Capacity(),
            Capacity(call=1, chat=2),
            Capacity(call=0, chat=3, email=2),
            Capacity(call=1, chat=1, call_blocks_others=False),
        ]
    ),
)

# few distinct times, so that ties on the idle order happen and must break on the ordinal
times = st.sampled_from([0.0, 1.0, 2.0, 5.0, 9.0])

statuses = st.builds(
    lambda kind, login, idle, assigned, busy, busy_seconds, chats: AgentStatus(
        logged_in=kind != "out",
        pause_reason="break" if kind == "paused" else None,
        active=tuple(
            ActiveWork(ItemId(f"w{n}"), Channel.CHAT, QueueId("q"), 0.0) for n in range(chats)
        ),
        logged_in_at=login,
        idle_since=max(login, idle),
        last_assigned_at=assigned,
        busy_since=max(login, busy) if chats else None,
        busy_seconds=busy_seconds,
    ),
    st.sampled_from(["ready", "ready", "ready", "paused", "out"]),
    st.sampled_from([0.0, 1.0, 4.0, 8.0]),
    times,
    times,
    times,
    st.sampled_from([0.0, 0.0, 0.5, 1.0, 3.0, 6.0]),
    st.integers(0, 2),
)

expressions = st.sampled_from(
    ["*", "s1", "s1>=3", "s2>=2 | s3>=4", "s1 & s2>=2", "s1>=4 | s2 & s3", "s3>=5 | s1"]
)


def request(queue: Queue, item: WorkItem, cursor: int, waited: float = 0.0) -> SelectionRequest:
    rule = queue.rule_at(item, waited)
    return SelectionRequest(
        item.item_id, queue.queue_id, queue.strategy, rule, 0, waited, 10.0 + waited, cursor, 3
    )


def brute_force(
    records: list[Record], queue: Queue, item: WorkItem, cursor: int
) -> Selection | None:
    return select(request(queue, item, cursor), records)


def indexed(
    index: AgentIndex, queue: Queue, item: WorkItem, cursor: int, waited: float = 0.0
) -> Selection | None:
    return index.select(request(queue, item, cursor, waited))


@settings(max_examples=400, deadline=None)
@given(
    agents=st.lists(st.tuples(profiles, statuses), min_size=0, max_size=16),
    changes=st.lists(
        st.tuples(st.integers(0, 11), st.one_of(st.none(), profiles), statuses), max_size=8
    ),
    expression=expressions,
    strategy=st.sampled_from(list(Strategy)),
    channel=st.sampled_from(CHANNELS),
    language=st.sampled_from([None, "en"]),
    need=st.sampled_from([None, SkillNeed("s2", 2)]),
    cursor=st.integers(-1, 12),
)
def test_the_index_chooses_as_the_brute_force_reference_after_any_changes(
    agents: list[tuple[tuple[dict[str, int], bool, Capacity], AgentStatus]],
    changes: list[tuple[int, tuple[dict[str, int], bool, Capacity] | None, AgentStatus]],
    expression: str,
    strategy: Strategy,
    channel: Channel,
    language: str | None,
    need: SkillNeed | None,
    cursor: int,
) -> None:
    def profile(n: int, spec: tuple[dict[str, int], bool, Capacity]) -> AgentProfile:
        skills, english, capacity = spec
        return AgentProfile(
            AgentId(f"a{n}"), skills, frozenset({"en"} if english else ()), capacity
        )

    index = AgentIndex()
    records = [Record(profile(n, spec), status, n) for n, (spec, status) in enumerate(agents)]
    for record in records:
        index.update(record, channels_of(record))
    # the agents change while indexed: new statuses (idle order, capacity) and new skills
    for target, spec, status in changes:
        if not records:
            break
        record = records[target % len(records)]
        if spec is not None:
            index.remove(record)
            record.profile = profile(record.ordinal, spec)
        record.status = status
        index.update(record, channels_of(record))
    for record in records:
        assert index.check(record, channels_of(record)) == []

    queue = Queue(QueueId("q"), SkillExpression.parse(expression), strategy=strategy)
    item = WorkItem(
        ItemId("i"), channel, queue.queue_id, 0.0, needs=(need,) if need else (), language=language
    )
    expected = brute_force(records, queue, item, cursor)
    got = indexed(index, queue, item, cursor)
    if expected is None:
        assert got is None
        return
    assert got is not None
    assert got.agent_id == expected.agent_id
    assert got.ordinal == expected.ordinal
    assert got.explanation.eligible == expected.explanation.eligible
    assert got.explanation.rule == expected.explanation.rule
    if got.explanation.counts_exact:
        assert got.explanation.eligible_count == expected.explanation.eligible_count
    else:
        assert len(got.explanation.eligible) <= got.explanation.eligible_count
        assert got.explanation.eligible_count <= expected.explanation.eligible_count


def test_a_one_skill_requirement_counts_eligible_and_rejected_exactly() -> None:
    index = AgentIndex()
    records = []
    for n in range(20):
        status = AgentStatus(logged_in=True, idle_since=float(n))
        record = Record(AgentProfile(AgentId(f"a{n:02d}"), {"s1": 1 + n % 5}), status, n)
        records.append(record)
        index.update(record, channels_of(record))
    queue = Queue(QueueId("q"), SkillExpression.parse("s1>=4"))
    item = WorkItem(ItemId("i"), Channel.CALL, queue.queue_id, 0.0)
    got = indexed(index, queue, item, -1)
    assert got is not None
    explanation = got.explanation
    assert explanation.counts_exact
    assert explanation.eligible_count == 8
    assert explanation.eligible == ("a03", "a04", "a08")
    assert explanation.rejected_count == 12
    assert explanation.rejected[0].reason == "s1 1<4"
    assert "eligible 8" in explanation.render()


def test_a_language_requirement_stops_early_and_says_the_count_is_a_lower_bound() -> None:
    index = AgentIndex()
    for n in range(10):
        languages = frozenset({"fr"}) if n % 2 else frozenset()
        status = AgentStatus(logged_in=True, idle_since=float(n))
        record = Record(AgentProfile(AgentId(f"a{n}"), {"s1": 3}, languages), status, n)
        index.update(record, channels_of(record))
    queue = Queue(QueueId("q"), SkillExpression.parse("s1"))
    item = WorkItem(ItemId("i"), Channel.CALL, queue.queue_id, 0.0, language="fr")
    got = indexed(index, queue, item, -1)
    assert got is not None
    explanation = got.explanation
    assert explanation.eligible == ("a1", "a3", "a5")
    assert not explanation.counts_exact
    assert explanation.eligible_count == 3
    assert explanation.rejected_count == 3  # a0, a2, a4 were looked at before a5
    assert "eligible at least 3" in explanation.render()


def test_a_relaxed_step_reads_the_lower_level_buckets() -> None:
    index = AgentIndex()
    record = Record(AgentProfile(AgentId("novice"), {"s1": 1}), AgentStatus(logged_in=True), 0)
    index.update(record, channels_of(record))
    queue = Queue(
        QueueId("q"), SkillExpression.parse("s1>=3"), steps=(RelaxationStep(30, level_drop=2),)
    )
    item = WorkItem(ItemId("i"), Channel.CALL, queue.queue_id, 0.0)
    assert indexed(index, queue, item, -1) is None
    chosen = indexed(index, queue, item, -1, waited=31.0)
    assert chosen is not None
    assert chosen.agent_id == "novice"


@settings(max_examples=300, deadline=None)
@given(
    agents=st.lists(
        st.tuples(st.integers(1, 5), st.sampled_from([None, "fr"]), statuses),
        min_size=4,
        max_size=30,
    ),
    language=st.sampled_from([None, "fr"]),
)
def test_least_occupied_stops_early_only_when_no_later_agent_can_be_better(
    agents: list[tuple[int, str | None, AgentStatus]], language: str | None
) -> None:
    index = AgentIndex()
    records = []
    for n, (level, spoken, status) in enumerate(agents):
        languages = frozenset({spoken}) if spoken else frozenset()
        capacity = Capacity(call=1, chat=3, call_blocks_others=False)
        profile = AgentProfile(AgentId(f"a{n}"), {"s1": level}, languages, capacity)
        record = Record(profile, status, n)
        records.append(record)
        index.update(record, channels_of(record))
    queue = Queue(QueueId("q"), SkillExpression.parse("s1>=2"), strategy=Strategy.LEAST_OCCUPIED)
    item = WorkItem(ItemId("i"), Channel.CHAT, queue.queue_id, 0.0, language=language)
    expected = brute_force(records, queue, item, -1)
    got = indexed(index, queue, item, -1)
    assert (got is None) == (expected is None)
    if got is not None and expected is not None:
        assert got.explanation.eligible == expected.explanation.eligible
        assert got.explanation.rule == expected.explanation.rule


@settings(max_examples=400, deadline=None)
@given(
    agents=st.lists(st.tuples(profiles, statuses), min_size=0, max_size=12),
    levels=st.tuples(st.integers(1, 5), st.integers(1, 5), st.integers(1, 5)),
    login=st.sampled_from([0.0, 1.0, 4.0, 10.0]),
    idle=times,
    busy_seconds=st.sampled_from([0.0, 0.5, 3.0]),
    expression=st.sampled_from(["s1", "s1>=3", "s2>=4", "s1 & s2", "s2>=2 | s3>=4", "*"]),
    strategy=st.sampled_from(list(Strategy)),
    channel=st.sampled_from(CHANNELS),
    language=st.sampled_from([None, None, "en"]),
    cursor=st.integers(-1, 14),
    waited=st.sampled_from([0.0, 31.0]),
)
def test_select_alone_answers_only_what_select_would_answer_with_the_agent_indexed(
    agents: list[tuple[tuple[dict[str, int], bool, Capacity], AgentStatus]],
    levels: tuple[int, int, int],
    login: float,
    idle: float,
    busy_seconds: float,
    expression: str,
    strategy: Strategy,
    channel: Channel,
    language: str | None,
    cursor: int,
    waited: float,
) -> None:
    def record(n: int, spec: tuple[dict[str, int], bool, Capacity], status: AgentStatus) -> Record:
        skills, english, capacity = spec
        languages = frozenset({"en"} if english else ())
        return Record(AgentProfile(AgentId(f"a{n}"), skills, languages, capacity), status, n)

    index = AgentIndex()
    for n, (spec, status) in enumerate(agents):
        other = record(n, spec, status)
        index.update(other, channels_of(other))
    # the agent that just freed: ready, every skill, room on every channel
    capacity = Capacity(call=1, chat=3, email=2, call_blocks_others=False)
    status = AgentStatus(
        logged_in=True,
        logged_in_at=login,
        idle_since=max(login, idle),
        busy_seconds=busy_seconds,
    )
    free = record(len(agents), (dict(zip(SKILLS, levels, strict=True)), True, capacity), status)
    queue = Queue(
        QueueId("q"),
        SkillExpression.parse(expression),
        steps=(RelaxationStep(30, level_drop=1),),
        strategy=strategy,
    )
    item = WorkItem(ItemId("i"), channel, queue.queue_id, 0.0, language=language)
    wanted = request(queue, item, cursor, waited)
    if channel not in channels_of(free) or not wanted.rule.requirement.matches(free.profile):
        return  # the engine asks only for an agent that nominated the item
    got = index.select_alone(wanted, free)
    index.update(free, channels_of(free))
    expected = index.select(wanted)
    if got is not None:
        assert got == expected
        assert got.agent_id == free.profile.agent_id


def test_select_alone_answers_when_no_indexed_agent_meets_the_condition() -> None:
    index = AgentIndex()
    for n in range(6):
        other = Record(
            AgentProfile(AgentId(f"a{n}"), {"s1": 1 + n % 2}), AgentStatus(logged_in=True), n
        )
        index.update(other, channels_of(other))
    free = Record(AgentProfile(AgentId("free"), {"s1": 4}), AgentStatus(logged_in=True), 6)
    queue = Queue(QueueId("q"), SkillExpression.parse("s1>=3"))
    wanted = request(queue, WorkItem(ItemId("i"), Channel.CALL, queue.queue_id, 0.0), -1)
    got = index.select_alone(wanted, free)
    assert got is not None
    assert got.agent_id == "free"
    assert got.explanation.eligible_count == 1
    assert got.explanation.counts_exact
    assert got.explanation.rejected_count == 6
    index.update(free, channels_of(free))
    assert index.select(wanted) == got
    # once another agent meets the condition, only select can tell who is preferred
    rival = Record(AgentProfile(AgentId("rival"), {"s1": 3}), AgentStatus(logged_in=True), 7)
    index.remove(free)
    index.update(rival, channels_of(rival))
    assert index.select_alone(wanted, free) is None
