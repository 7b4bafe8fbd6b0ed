"""`callcenter simulate SCENARIO`: a discrete-event contact-center simulation in virtual time.

Theory of operation
-------------------

A scenario (TOML or YAML, see ``scenarios/*.toml``) gives queues with arrival rates by time of
day (piecewise-constant Poisson processes), handle-time and patience distributions, and agent
groups with skills, languages, capacity and shifts. The simulation keeps one event heap in
virtual time (arrivals, abandons, work completions, shift starts and ends) and runs the *real*
:class:`~acd.domain.engine.RoutingEngine` on a virtual clock: before each step it advances to the
earlier of the next simulated event and the engine's next timer, then calls ``tick`` and plays
the decisions (an offered item is answered at once and completes after its handle time; the
queue's wrap-up is the engine's own timer).

The figures come from the same tally as production's: every item fact the simulation plays
(ItemEnqueued, ItemAssigned, ItemCompleted with its wrap-up, ItemCancelled for an abandon, a
max wait or a refusal, ItemOverflowed) is fed, as a stream entry in virtual milliseconds, to
:class:`~acd.domain.stats.QueueStatistics` (no short-abandon threshold), so the definitions are
that module's: an item counts in the queue and interval it entered (an overflow counts out of
the source and in the target, from the move); ``SL`` counts answers within the threshold
against everything that ended (answered, abandoned, expired or refused); ``SL ans`` against
answers only (Asterisk's first service level); AHT is talk plus wrap-up of the items whose
work ended. Items that arrive during the warm-up are simulated but not counted. ASA is the mean
wait of answered items, with a 95 % confidence half-width from 20 batch means of the waits the
simulation saw (as is P(wait) for the Erlang C comparison). Occupancy is the share of staffed
agent time spent reserved, working or in wrap-up, for all agents and for the agents skilled for
each queue.

For a single-skill queue without abandonment (constant rate, exponential handle times, a
dedicated always-on pool, one item per agent, no wrap-up, no relaxation, overflow or max wait)
the report prints the Erlang C prediction beside the simulated figures.
"""

from __future__ import annotations

import heapq
import itertools
import math
import random
import statistics
import sys
import tomllib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import yaml

from acd.adapters.redis_state import AcdEvent
from acd.domain.agents import AgentId, AgentProfile, AgentState, Capacity, InvalidAgentProfile
from acd.domain.engine import (
    AgentStateChanged,
    Decision,
    EnginePolicy,
    ItemExpired,
    ItemOffered,
    ItemOverflowed,
    ItemRefused,
    RoutingEngine,
)
from acd.domain.erlang import ErlangCPrediction, predict
from acd.domain.queues import (
    InvalidQueue,
    Overflow,
    PriorityBoost,
    Queue,
    RelaxationStep,
    Requirement,
    SkillExpression,
    Strategy,
)
from acd.domain.stats import IntervalStats, QueueStatistics, StatsConfig
from acd.domain.work import Channel, InvalidWorkItem, ItemId, QueueId, SkillNeed, WorkItem
from acd.errors import AcdError

__all__ = [
    "AgentGroup",
    "ArrivalSegment",
    "Distribution",
    "ErlangComparison",
    "QueueScenario",
    "Scenario",
    "ScenarioError",
    "SimulationReport",
    "load_scenario",
    "main_simulate",
    "parse_scenario",
    "render_report",
    "run_simulation",
]

_BATCHES = 20
_T_975_19 = 2.093  # Student t, 19 degrees of freedom, two-sided 95 %


class ScenarioError(AcdError):
    """The scenario file is invalid; the message names the key path."""

    error_id = "acd-scenario-invalid"


# -- scenario model -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Distribution:
    """A positive random duration: exponential(mean), constant(mean), uniform, lognormal."""

    kind: str
    mean: float
    low: float = 0.0
    high: float = 0.0
    sd: float = 0.0

    def sample(self, rng: random.Random) -> float:
        """One draw, in seconds."""
        if self.kind == "exponential":
            return rng.expovariate(1.0 / self.mean)
        if self.kind == "constant":
            return self.mean
        if self.kind == "uniform":
            return rng.uniform(self.low, self.high)
        sigma2 = math.log(1.0 + (self.sd / self.mean) ** 2)
        return rng.lognormvariate(math.log(self.mean) - sigma2 / 2, math.sqrt(sigma2))


@dataclass(frozen=True, slots=True)
class ArrivalSegment:
    """Poisson arrivals at ``per_hour`` between ``start`` and ``end`` (seconds of the day)."""

    start: float
    end: float
    per_hour: float


@dataclass(frozen=True, slots=True)
class QueueScenario:
    """One queue of the scenario and the traffic it receives."""

    queue: Queue
    channel: Channel
    arrivals: tuple[ArrivalSegment, ...]
    handle_time: Distribution
    patience: Distribution | None = None
    priority: int = 0
    needs: tuple[SkillNeed, ...] = ()
    language: str | None = None

    def base_requirement(self) -> Requirement:
        """What an agent needs to take this queue's items before any relaxation."""
        probe = WorkItem(
            ItemId("probe"), self.channel, self.queue.queue_id, 0.0, 0, self.needs, self.language
        )
        return self.queue.rule_at(probe, 0.0).requirement


@dataclass(frozen=True, slots=True)
class AgentGroup:
    """``count`` agents alike; ``shifts`` are (start, end) seconds, None means always on."""

    prefix: str
    count: int
    skills: Mapping[str, int]
    languages: frozenset[str]
    capacity: Capacity
    shifts: tuple[tuple[float, float], ...] | None = None

    def profiles(self) -> list[AgentProfile]:
        """The group's agent profiles, ids ``prefix-001``..."""
        return [
            AgentProfile(
                AgentId(f"{self.prefix}-{n:03d}"), self.skills, self.languages, self.capacity
            )
            for n in range(1, self.count + 1)
        ]


@dataclass(frozen=True, slots=True)
class Scenario:
    """A whole simulation: window, reporting settings, queues and agents."""

    name: str
    start: float
    end: float
    interval: float
    threshold: float
    warmup: float
    seed: int
    max_items: int | None
    drain_limit: float
    queues: tuple[QueueScenario, ...]
    agents: tuple[AgentGroup, ...]


# -- scenario loading ---------------------------------------------------------------------------


def load_scenario(path: Path) -> Scenario:
    """Read a TOML (``.toml``) or YAML (``.yaml``/``.yml``) scenario."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as err:
        raise ScenarioError(f"{path}: cannot read: {err.strerror}") from err
    try:
        data = yaml.safe_load(text) if path.suffix in {".yaml", ".yml"} else tomllib.loads(text)
    except (tomllib.TOMLDecodeError, yaml.YAMLError) as err:
        raise ScenarioError(f"{path}: {err}") from err
    if not isinstance(data, dict):
        raise ScenarioError(f"{path}: the top level must be a table")
    return parse_scenario(data, default_name=path.stem)


def parse_scenario(data: Mapping[str, Any], *, default_name: str = "scenario") -> Scenario:
    """Build a scenario from already-parsed data (the TOML/YAML structure)."""
    sim = _table(data.get("simulation", {}), "simulation")
    start = _time(sim.get("start", 0), "simulation.start")
    if "end" in sim:
        end = _time(sim["end"], "simulation.end")
    elif "duration" in sim:
        end = start + _seconds(sim["duration"], "simulation.duration")
    else:
        end = math.inf
    max_items = sim.get("max_items")
    if max_items is not None and (not isinstance(max_items, int) or max_items <= 0):
        raise ScenarioError("simulation.max_items: must be a positive integer")
    if end == math.inf and max_items is None:
        raise ScenarioError("simulation: give end, duration or max_items")
    if end <= start:
        raise ScenarioError("simulation.end: must be after start")
    interval = _seconds(sim.get("interval", 1800), "simulation.interval")
    if interval <= 0:
        raise ScenarioError("simulation.interval: must be > 0")
    queues_data = data.get("queues")
    if not isinstance(queues_data, list) or not queues_data:
        raise ScenarioError("queues: at least one [[queues]] table is required")
    queues = tuple(
        _queue(_table(q, f"queues[{i}]"), f"queues[{i}]", start, end)
        for i, q in enumerate(queues_data)
    )
    names = [q.queue.queue_id for q in queues]
    if len(set(names)) != len(names):
        raise ScenarioError("queues: queue ids must be unique")
    for i, q in enumerate(queues):
        target = q.queue.overflow.to_queue if q.queue.overflow else None
        if target is not None and target not in names:
            raise ScenarioError(f"queues[{i}].overflow.to: unknown queue {target!r}")
    agents_data = data.get("agents")
    if not isinstance(agents_data, list) or not agents_data:
        raise ScenarioError("agents: at least one [[agents]] table is required")
    agents = tuple(
        _agent_group(_table(a, f"agents[{i}]"), f"agents[{i}]") for i, a in enumerate(agents_data)
    )
    prefixes = [g.prefix for g in agents]
    if len(set(prefixes)) != len(prefixes):
        raise ScenarioError("agents: prefixes must be unique")
    seed = sim.get("seed", 1)
    if not isinstance(seed, int):
        raise ScenarioError("simulation.seed: must be an integer")
    return Scenario(
        name=str(sim.get("name", default_name)),
        start=start,
        end=end,
        interval=interval,
        threshold=_seconds(
            sim.get("service_level_seconds", 20), "simulation.service_level_seconds"
        ),
        warmup=_seconds(sim.get("warmup", 0), "simulation.warmup"),
        seed=seed,
        max_items=max_items,
        drain_limit=_seconds(sim.get("drain_limit", 4 * 3600), "simulation.drain_limit"),
        queues=queues,
        agents=agents,
    )


def _table(value: Any, where: str) -> Mapping[str, Any]:
    if not isinstance(value, dict):
        raise ScenarioError(f"{where}: must be a table")
    return value


def _seconds(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise ScenarioError(f"{where}: must be a number of seconds >= 0")
    return float(value)


def _time(value: Any, where: str) -> float:
    """Seconds, or a time of day ``HH:MM`` / ``HH:MM:SS`` (up to ``48:00`` for a second day)."""
    if isinstance(value, str):
        parts = value.split(":")
        if not 2 <= len(parts) <= 3 or not all(p.isdigit() for p in parts):
            raise ScenarioError(f"{where}: {value!r} is not HH:MM or HH:MM:SS")
        hours, minutes = int(parts[0]), int(parts[1])
        secs = int(parts[2]) if len(parts) == 3 else 0
        if minutes > 59 or secs > 59 or hours > 48:
            raise ScenarioError(f"{where}: {value!r} is not a valid time of day")
        return float(hours * 3600 + minutes * 60 + secs)
    return _seconds(value, where)


def _distribution(value: Any, where: str) -> Distribution:
    table = _table(value, where)
    kind = table.get("dist", "exponential")
    if kind not in {"exponential", "constant", "uniform", "lognormal"}:
        raise ScenarioError(f"{where}.dist: one of exponential, constant, uniform, lognormal")
    if kind == "uniform":
        low = _seconds(table.get("low"), f"{where}.low")
        high = _seconds(table.get("high"), f"{where}.high")
        if high <= low:
            raise ScenarioError(f"{where}.high: must be greater than low")
        return Distribution(kind, (low + high) / 2, low=low, high=high)
    mean = _seconds(table.get("mean"), f"{where}.mean")
    if mean <= 0:
        raise ScenarioError(f"{where}.mean: must be > 0")
    sd = _seconds(table.get("sd", mean), f"{where}.sd") if kind == "lognormal" else 0.0
    return Distribution(kind, mean, sd=sd)


def _expression(value: Any, where: str) -> SkillExpression:
    if not isinstance(value, str):
        raise ScenarioError(f"{where}: must be a skill expression string")
    try:
        return SkillExpression.parse(value)
    except InvalidQueue as err:
        raise ScenarioError(f"{where}: {err}") from err


def _queue(table: Mapping[str, Any], where: str, start: float, end: float) -> QueueScenario:
    queue_id = table.get("id")
    if not isinstance(queue_id, str) or not queue_id:
        raise ScenarioError(f"{where}.id: a queue needs a non-empty id")
    try:
        channel = Channel(table.get("channel", "call"))
    except ValueError:
        raise ScenarioError(f"{where}.channel: one of call, chat, email") from None
    try:
        strategy = Strategy(table.get("strategy", "longest_idle"))
    except ValueError:
        names = ", ".join(s.value for s in Strategy)
        raise ScenarioError(f"{where}.strategy: one of {names}") from None
    steps = []
    for i, step in enumerate(table.get("relax", [])):
        step_where = f"{where}.relax[{i}]"
        step_table = _table(step, step_where)
        expression = (
            _expression(step_table["skills"], f"{step_where}.skills")
            if "skills" in step_table
            else None
        )
        steps.append(
            RelaxationStep(
                after=_seconds(step_table.get("after"), f"{step_where}.after"),
                expression=expression,
                level_drop=int(step_table.get("level_drop", 0)),
                require_language=bool(step_table.get("language", True)),
                label=str(step_table.get("label", "")),
            )
        )
    boosts = tuple(
        PriorityBoost(
            _seconds(_table(b, f"{where}.boosts[{i}]").get("after"), f"{where}.boosts[{i}].after"),
            int(b.get("boost", 1)),
        )
        for i, b in enumerate(table.get("boosts", []))
    )
    overflow = None
    if "overflow" in table:
        overflow_table = _table(table["overflow"], f"{where}.overflow")
        target = overflow_table.get("to")
        if not isinstance(target, str):
            raise ScenarioError(f"{where}.overflow.to: must be a queue id")
        overflow = Overflow(
            _seconds(overflow_table.get("after"), f"{where}.overflow.after"), QueueId(target)
        )
    max_wait = table.get("max_wait")
    try:
        queue = Queue(
            queue_id=QueueId(queue_id),
            expression=_expression(table.get("skills", "*"), f"{where}.skills"),
            steps=tuple(steps),
            strategy=strategy,
            overflow=overflow,
            max_wait=None if max_wait is None else _seconds(max_wait, f"{where}.max_wait"),
            boosts=boosts,
            wrap_up=_seconds(table.get("wrap_up", 0), f"{where}.wrap_up"),
            offer_timeout=None,
        )
    except InvalidQueue as err:
        raise ScenarioError(f"{where}: {err}") from err
    arrivals_data = table.get("arrivals")
    if isinstance(arrivals_data, dict):
        arrivals_data = [arrivals_data]
    if not isinstance(arrivals_data, list) or not arrivals_data:
        raise ScenarioError(f"{where}.arrivals: give {{ per_hour = N }} or a list of segments")
    segments = []
    for i, segment in enumerate(arrivals_data):
        seg_where = f"{where}.arrivals[{i}]"
        seg = _table(segment, seg_where)
        seg_start = _time(seg.get("from", start), f"{seg_where}.from")
        seg_end = _time(seg["to"], f"{seg_where}.to") if "to" in seg else end
        if seg_end <= seg_start:
            raise ScenarioError(f"{seg_where}.to: must be after from")
        segments.append(
            ArrivalSegment(
                seg_start, seg_end, _seconds(seg.get("per_hour"), f"{seg_where}.per_hour")
            )
        )
    segments.sort(key=lambda s: s.start)
    for before, after in itertools.pairwise(segments):
        if after.start < before.end:
            raise ScenarioError(f"{where}.arrivals: segments overlap")
    needs_table = _table(table.get("needs", {}), f"{where}.needs")
    try:
        needs = tuple(SkillNeed(skill, int(level)) for skill, level in needs_table.items())
    except InvalidWorkItem as err:
        raise ScenarioError(f"{where}.needs: {err}") from err
    patience = table.get("patience")
    language = table.get("language")
    return QueueScenario(
        queue=queue,
        channel=channel,
        arrivals=tuple(segments),
        handle_time=_distribution(table.get("handle_time"), f"{where}.handle_time"),
        patience=None if patience is None else _distribution(patience, f"{where}.patience"),
        priority=int(table.get("priority", 0)),
        needs=needs,
        language=None if language is None else str(language),
    )


def _agent_group(table: Mapping[str, Any], where: str) -> AgentGroup:
    prefix = table.get("prefix")
    if not isinstance(prefix, str) or not prefix:
        raise ScenarioError(f"{where}.prefix: an agent group needs a non-empty prefix")
    count = table.get("count", 1)
    if not isinstance(count, int) or count <= 0:
        raise ScenarioError(f"{where}.count: must be a positive integer")
    skills = {str(k): v for k, v in _table(table.get("skills", {}), f"{where}.skills").items()}
    if not all(isinstance(v, int) for v in skills.values()):
        raise ScenarioError(f"{where}.skills: levels must be integers 1-5")
    capacity_table = _table(table.get("capacity", {}), f"{where}.capacity")
    shifts_data = table.get("shifts")
    shifts = None
    if shifts_data is not None:
        shifts = tuple(
            (
                _time(_table(s, f"{where}.shifts[{i}]").get("from"), f"{where}.shifts[{i}].from"),
                _time(s.get("to"), f"{where}.shifts[{i}].to"),
            )
            for i, s in enumerate(shifts_data)
        )
    try:
        capacity = Capacity(
            call=int(capacity_table.get("call", 1)),
            chat=int(capacity_table.get("chat", 0)),
            email=int(capacity_table.get("email", 0)),
            call_blocks_others=bool(capacity_table.get("call_blocks_others", True)),
        )
        group = AgentGroup(
            prefix=prefix,
            count=count,
            skills=skills,
            languages=frozenset(str(x) for x in table.get("languages", [])),
            capacity=capacity,
            shifts=shifts,
        )
        group.profiles()  # validates the skill levels
    except InvalidAgentProfile as err:
        raise ScenarioError(f"{where}: {err}") from err
    return group


# -- results ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ErlangComparison:
    """Erlang C beside the simulation for one queue."""

    queue: QueueId
    prediction: ErlangCPrediction
    simulated_p_wait: float
    simulated_asa: float
    asa_half_width: float
    simulated_service_level: float

    @property
    def asa_gap(self) -> float:
        """(simulated - predicted) / predicted ASA."""
        predicted = self.prediction.asa
        return (self.simulated_asa - predicted) / predicted if predicted else 0.0


@dataclass(slots=True)
class SimulationReport:
    """Everything the simulation measured."""

    scenario: Scenario
    seed: int
    queues: dict[QueueId, IntervalStats] = field(default_factory=dict)
    intervals: dict[tuple[int, QueueId], IntervalStats] = field(default_factory=dict)
    asa_half_width: dict[QueueId, float] = field(default_factory=dict)
    p_wait: dict[QueueId, float] = field(default_factory=dict)
    occupancy: dict[str, float] = field(default_factory=dict)
    interval_occupancy: dict[tuple[int, str], float] = field(default_factory=dict)
    erlang: list[ErlangComparison] = field(default_factory=list)
    erlang_skipped: dict[QueueId, str] = field(default_factory=dict)
    items: int = 0
    unfinished: int = 0
    agents: int = 0
    end_time: float = 0.0
    clock_regressions: int = 0
    ignored_commands: int = 0


# -- the simulation -----------------------------------------------------------------------------


class _VirtualClock:
    __slots__ = ("now",)

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class _Occupancy:
    """Integrates staffed and busy agent counts over time, per pool and interval."""

    __slots__ = ("busy", "busy_time", "interval", "last", "staffed", "staffed_time", "start")

    def __init__(self, start: float, interval: float) -> None:
        self.start = start
        self.interval = interval
        self.last = start
        self.staffed = 0
        self.busy = 0
        self.staffed_time: dict[int, float] = {}
        self.busy_time: dict[int, float] = {}

    def advance(self, now: float) -> None:
        while self.last < now:
            index = int((self.last - self.start) // self.interval)
            boundary = self.start + (index + 1) * self.interval
            end = min(now, boundary)
            span = end - self.last
            if self.staffed:
                self.staffed_time[index] = self.staffed_time.get(index, 0.0) + self.staffed * span
                self.busy_time[index] = self.busy_time.get(index, 0.0) + self.busy * span
            self.last = end

    def totals(self) -> tuple[float, float]:
        return sum(self.staffed_time.values()), sum(self.busy_time.values())


_ARRIVAL, _ABANDON, _COMPLETE, _LOGIN, _LOGOUT = 0, 1, 2, 3, 4
_BUSY_STATES = frozenset({AgentState.RESERVED, AgentState.ON_WORK, AgentState.WRAP_UP})


@dataclass(slots=True)
class _SimItem:
    queue: QueueId
    arrived: float
    handle: float
    counted: bool
    answered: bool = False


def _ms(seconds: float) -> int:
    return round(seconds * 1000)


class _Simulation:
    """One run: the event heap, the engine on a virtual clock, and the tallies."""

    def __init__(
        self, scenario: Scenario, seed: int, progress: Callable[[float], None] | None
    ) -> None:
        self.scenario = scenario
        self.rng = random.Random(seed)
        self.clock = _VirtualClock(scenario.start)
        self.engine = RoutingEngine(
            (q.queue for q in scenario.queues),
            clock=self.clock,
            policy=EnginePolicy(pause_after_misses=0, missed_cooldown=0.0),
        )
        self.report = SimulationReport(scenario, seed)
        self.progress = progress
        self.by_id = {q.queue.queue_id: q for q in scenario.queues}
        self.requirements = {q.queue.queue_id: q.base_requirement() for q in scenario.queues}
        self.pools = {
            name: _Occupancy(scenario.start, scenario.interval) for name in ["all", *self.by_id]
        }
        self.agent_pools: dict[AgentId, list[_Occupancy]] = {}
        self.events: list[tuple[float, int, int, str, str]] = []
        self.seq = 0
        self.segment_of: dict[QueueId, int] = {}
        self.items: dict[ItemId, _SimItem] = {}
        self.completing: dict[ItemId, QueueId] = {}  # answered items: the queue they ended in
        self.waits: dict[QueueId, list[float]] = {q: [] for q in self.by_id}
        self.waited: dict[QueueId, int] = dict.fromkeys(self.by_id, 0)
        self.counter = 0
        self.stop_arrivals = False
        self.stats = QueueStatistics(
            StatsConfig(
                interval=scenario.interval,
                threshold=scenario.threshold,
                short_abandon=0.0,
                origin_ms=_ms(scenario.start),
            )
        )
        self.facts = 0

    def fact(self, subject: _SimItem, kind: str, now: float, /, **fields: str) -> None:
        """Feed one fact about a counted item to the statistics."""
        if not subject.counted:
            return
        self.facts += 1
        self.stats.apply(AcdEvent(str(self.facts), kind, _ms(now), fields))

    def push(self, at: float, kind: int, first: str = "", second: str = "") -> None:
        self.seq += 1
        heapq.heappush(self.events, (at, self.seq, kind, first, second))

    def staff(self) -> None:
        scenario = self.scenario
        for group in scenario.agents:
            for profile in group.profiles():
                self.engine.set_agent(profile)
                self.agent_pools[profile.agent_id] = [self.pools["all"]] + [
                    self.pools[queue_id]
                    for queue_id, requirement in self.requirements.items()
                    if requirement.staffed_by(profile)
                ]
                for shift_start, shift_end in group.shifts or ((scenario.start, math.inf),):
                    self.push(shift_start, _LOGIN, profile.agent_id)
                    if shift_end != math.inf:
                        self.push(shift_end, _LOGOUT, profile.agent_id)
        self.report.agents = len(self.agent_pools)

    def schedule_arrival(self, queue: QueueScenario, after: float) -> None:
        """The next Poisson arrival, moving through the piecewise-constant rate segments."""
        queue_id = queue.queue.queue_id
        index = self.segment_of.get(queue_id, 0)
        at = after
        while index < len(queue.arrivals):
            segment = queue.arrivals[index]
            at = max(at, segment.start)
            if segment.per_hour > 0:
                candidate = at + self.rng.expovariate(segment.per_hour / 3600.0)
                if candidate < segment.end:
                    self.segment_of[queue_id] = index
                    self.push(candidate, _ARRIVAL, queue_id)
                    return
            at = segment.end
            index += 1
        self.segment_of[queue_id] = index

    def run(self) -> SimulationReport:
        scenario = self.scenario
        engine = self.engine
        events = self.events
        self.staff()
        for queue in scenario.queues:
            self.schedule_arrival(queue, scenario.start)
        span = (scenario.end if scenario.end != math.inf else scenario.start + 1.0) - scenario.start
        hard_stop = scenario.end + scenario.drain_limit
        last_progress = -1.0
        while True:
            next_event = events[0][0] if events else math.inf
            due = engine.next_due()
            now = min(next_event, due if due is not None else math.inf)
            if now == math.inf or now > hard_stop or (now > scenario.end and not self.items):
                break
            self.clock.now = now
            if next_event <= now:
                _, _, kind, first, second = heapq.heappop(events)
                self.on_event(kind, first, second, now)
            while decisions := engine.tick():
                self.on_decisions(decisions, now)
            if self.progress is not None:
                done = (now - scenario.start) / span
                if scenario.max_items is not None:
                    done = max(done, self.counter / scenario.max_items)
                done = min(1.0, done)
                if done - last_progress >= 0.01:
                    last_progress = done
                    self.progress(done)
        self.finish()
        if self.progress is not None:
            self.progress(1.0)
        return self.report

    def on_event(self, kind: int, first: str, second: str, now: float) -> None:
        engine = self.engine
        if kind == _ARRIVAL:
            self.arrive(self.by_id[QueueId(first)], now)
        elif kind == _ABANDON:
            item_id = ItemId(first)
            item = self.items.get(item_id)
            if item is None or item.answered or not engine.cancel(item_id, "abandoned"):
                return
            del self.items[item_id]
            self.fact(item, "ItemCancelled", now, item=item_id, reason="abandoned")
        elif kind == _COMPLETE:
            item_id = ItemId(second)
            engine.complete(AgentId(first), item_id)
            done = self.items.pop(item_id, None)
            if done is not None:
                queue = engine.queue(QueueId(self.completing.pop(item_id, done.queue)))
                wrap_until = str(_ms(now + queue.wrap_up))
                self.fact(
                    done, "ItemCompleted", now, item=item_id, agent=first, wrap_until=wrap_until
                )
        elif kind == _LOGIN:
            engine.login(AgentId(first))
        else:
            engine.logout(AgentId(first))

    def arrive(self, queue: QueueScenario, now: float) -> None:
        scenario = self.scenario
        if self.stop_arrivals or now >= scenario.end:
            return
        self.counter += 1
        queue_id = queue.queue.queue_id
        item_id = ItemId(f"{queue_id}-{self.counter}")
        item = _SimItem(
            queue_id,
            now,
            queue.handle_time.sample(self.rng),
            now >= scenario.start + scenario.warmup,
        )
        self.items[item_id] = item
        self.fact(
            item,
            "ItemEnqueued",
            now,
            item=item_id,
            queue=queue_id,
            channel=queue.channel.value,
            enq=str(_ms(now)),
        )
        self.engine.enqueue(
            WorkItem(
                item_id, queue.channel, queue_id, now, queue.priority, queue.needs, queue.language
            )
        )
        if queue.patience is not None:
            self.push(now + queue.patience.sample(self.rng), _ABANDON, item_id)
        if scenario.max_items is not None and self.counter >= scenario.max_items:
            self.stop_arrivals = True
        else:
            self.schedule_arrival(queue, now)

    def on_decisions(self, decisions: Sequence[Decision], now: float) -> None:
        for decision in decisions:
            if isinstance(decision, AgentStateChanged):
                self.on_agent(decision, now)
            elif isinstance(decision, ItemOffered):
                self.answer(decision, now)
            elif isinstance(decision, ItemExpired | ItemRefused):
                item = self.items.pop(decision.item_id)
                reason = "expired" if isinstance(decision, ItemExpired) else "refused"
                self.fact(item, "ItemCancelled", now, item=decision.item_id, reason=reason)
            elif isinstance(decision, ItemOverflowed):
                item = self.items[decision.item_id]
                fields = {"from": decision.from_queue, "to": decision.to_queue}
                self.fact(item, "ItemOverflowed", now, item=decision.item_id, **fields)

    def on_agent(self, change: AgentStateChanged, now: float) -> None:
        was_busy = change.previous in _BUSY_STATES
        busy = change.current in _BUSY_STATES
        was_on = change.previous is not AgentState.LOGGED_OUT
        on = change.current is not AgentState.LOGGED_OUT
        if was_busy != busy or was_on != on:
            for pool in self.agent_pools[change.agent_id]:
                pool.advance(now)
                pool.busy += busy - was_busy
                pool.staffed += on - was_on

    def answer(self, offer: ItemOffered, now: float) -> None:
        """The simulated agent answers at once and completes after the item's handle time."""
        item = self.items[offer.item_id]
        item.answered = True
        self.engine.accept(offer.agent_id, offer.item_id)
        self.completing[offer.item_id] = offer.queue
        self.push(now + item.handle, _COMPLETE, offer.agent_id, offer.item_id)
        if not item.counted:
            return
        self.fact(item, "ItemAssigned", now, item=offer.item_id, agent=offer.agent_id)
        wait = now - item.arrived
        self.waits[item.queue].append(wait)
        if wait > 1e-9:
            self.waited[item.queue] += 1

    def finish(self) -> None:
        report = self.report
        end_time = self.clock.now
        report.end_time = end_time
        report.items = self.counter
        report.unfinished = sum(1 for item in self.items.values() if not item.answered)
        report.clock_regressions = self.engine.counters.clock_regressions
        report.ignored_commands = self.engine.counters.ignored_total
        totals = self.stats.totals()
        for queue_id in self.by_id:
            report.queues[queue_id] = totals.get(queue_id) or IntervalStats(queue_id, -1)
        for (queue, index), figures in self.stats.intervals().items():
            report.intervals[(index, QueueId(queue))] = figures
        for name, pool in self.pools.items():
            pool.advance(end_time)
            staffed, busy = pool.totals()
            report.occupancy[name] = busy / staffed if staffed else 0.0
            for index, staffed_time in pool.staffed_time.items():
                busy_time = pool.busy_time.get(index, 0.0)
                report.interval_occupancy[(index, name)] = (
                    busy_time / staffed_time if staffed_time else 0.0
                )
        for queue_id, queue_waits in self.waits.items():
            report.asa_half_width[queue_id] = _batch_half_width(queue_waits)
            answered = report.queues[queue_id].answered
            report.p_wait[queue_id] = self.waited[queue_id] / answered if answered else 0.0
        _compare_with_erlang(self.scenario, report, self.requirements)


def run_simulation(
    scenario: Scenario,
    *,
    seed: int | None = None,
    progress: Callable[[float], None] | None = None,
) -> SimulationReport:
    """Simulate ``scenario``; ``progress`` is called with 0..1 as virtual time passes."""
    return _Simulation(scenario, scenario.seed if seed is None else seed, progress).run()


def _batch_half_width(values: Sequence[float]) -> float:
    """95 % half-width of the mean from batch means (autocorrelated waits)."""
    size = len(values) // _BATCHES
    if size < 2:
        return math.inf
    means = [statistics.fmean(values[i * size : (i + 1) * size]) for i in range(_BATCHES)]
    return _T_975_19 * statistics.stdev(means) / math.sqrt(_BATCHES)


def _compare_with_erlang(
    scenario: Scenario, report: SimulationReport, requirements: Mapping[QueueId, Requirement]
) -> None:
    profiles = [(group, profile) for group in scenario.agents for profile in group.profiles()]
    overflow_targets = {
        q.queue.overflow.to_queue for q in scenario.queues if q.queue.overflow is not None
    }
    for queue in scenario.queues:
        queue_id = queue.queue.queue_id
        reason = _erlang_blocker(queue, overflow_targets)
        pool = []
        if reason is None:
            for group, profile in profiles:
                mine = requirements[queue_id]
                if not mine.staffed_by(profile):
                    continue
                others = [
                    other
                    for other, requirement in requirements.items()
                    if other != queue_id and requirement.staffed_by(profile)
                ]
                if others:
                    reason = f"agents shared with {others[0]}"
                    break
                if group.shifts is not None:
                    reason = "agents work shifts"
                    break
                if profile.capacity.of(queue.channel) != 1:
                    reason = "agents take more than one item at once"
                    break
                pool.append(profile)
        if reason is None and not pool:
            reason = "no agents"
        if reason is not None:
            report.erlang_skipped[queue_id] = reason
            continue
        rate = queue.arrivals[0].per_hour / 3600.0
        prediction = predict(len(pool), rate, queue.handle_time.mean, scenario.threshold)
        tally = report.queues[queue_id]
        report.erlang.append(
            ErlangComparison(
                queue_id,
                prediction,
                report.p_wait[queue_id],
                tally.asa,
                report.asa_half_width[queue_id],
                tally.service_level,
            )
        )


def _erlang_blocker(queue: QueueScenario, overflow_targets: set[QueueId]) -> str | None:
    definition = queue.queue
    if queue.patience is not None:
        return "callers abandon (Erlang C assumes nobody does)"
    if definition.steps or definition.overflow or definition.max_wait is not None:
        return "relaxation, overflow or max wait"
    if definition.queue_id in overflow_targets:
        return "receives overflow"
    if definition.wrap_up > 0:
        return "wrap-up time"
    if queue.handle_time.kind != "exponential":
        return "handle time is not exponential"
    rates = {segment.per_hour for segment in queue.arrivals}
    if len(rates) != 1 or len(queue.arrivals) != 1:
        return "arrival rate varies over the day"
    return None


# -- rendering ----------------------------------------------------------------------------------


def _clock(seconds: float) -> str:
    seconds = round(seconds)
    return f"{seconds // 3600:02d}:{seconds % 3600 // 60:02d}"


def render_report(report: SimulationReport) -> str:
    """The report as text tables."""
    scenario = report.scenario
    t = f"{scenario.threshold:g}s"
    lines = [
        f"scenario {scenario.name}: seed {report.seed}, {report.agents} agents, "
        f"{report.items} items, virtual {_clock(scenario.start)}-{_clock(report.end_time)}",
        "",
        f"{'queue':<14}{'offered':>8}{'answered':>9}{'aband.':>7}{'expired':>8}{'overfl.':>8}"
        f"{'SL ' + t:>9}{'SL ans':>8}{'ASA s':>8}{'±95%':>7}{'AHT s':>7}{'aband%':>7}{'occ.':>6}",
    ]
    for queue_id, tally in report.queues.items():
        lines.append(
            f"{queue_id:<14}{tally.offered:>8}{tally.answered:>9}{tally.abandoned:>7}"
            f"{tally.timed_out:>8}{tally.overflowed:>8}{tally.service_level:>9.1%}"
            f"{tally.service_level_answered:>8.1%}{tally.asa:>8.1f}"
            f"{report.asa_half_width[queue_id]:>7.1f}{tally.aht:>7.0f}"
            f"{tally.abandon_rate:>7.1%}{report.occupancy.get(queue_id, 0.0):>6.0%}"
        )
    lines.append(f"{'all agents':<14}{'':>83}{report.occupancy['all']:>6.0%}")
    if report.unfinished:
        lines.append(f"({report.unfinished} items still unanswered when the simulation stopped)")
    lines.append("")
    for comparison in report.erlang:
        p = comparison.prediction
        lines.append(
            f"Erlang C {comparison.queue}: N={p.agents} A={p.load:.2f} E "
            f"(occupancy {p.occupancy:.1%})"
        )
        lines.append(f"  {'':<10}{'P(wait)':>9}{'ASA s':>9}{'SL ' + t:>9}")
        lines.append(f"  {'Erlang C':<10}{p.p_wait:>9.1%}{p.asa:>9.2f}{p.service_level:>9.1%}")
        lines.append(
            f"  {'simulated':<10}{comparison.simulated_p_wait:>9.1%}"
            f"{comparison.simulated_asa:>9.2f}{comparison.simulated_service_level:>9.1%}"
            f"   ASA gap {comparison.asa_gap:+.1%} (±{comparison.asa_half_width:.2f} s at 95 %)"
        )
    for queue_id, reason in report.erlang_skipped.items():
        lines.append(f"Erlang C {queue_id}: not applicable ({reason})")
    lines.append("")
    lines.append(
        f"{'interval':<9}{'queue':<14}{'offered':>8}{'answered':>9}{'aband.':>7}"
        f"{'SL ' + t:>9}{'ASA s':>8}{'occ.':>6}"
    )
    for (index, queue_id), tally in sorted(report.intervals.items()):
        start = scenario.start + index * scenario.interval
        occupancy = report.interval_occupancy.get((index, queue_id), 0.0)
        lines.append(
            f"{_clock(start):<9}{queue_id:<14}{tally.offered:>8}{tally.answered:>9}"
            f"{tally.abandoned:>7}{tally.service_level:>9.1%}{tally.asa:>8.1f}{occupancy:>6.0%}"
        )
    if report.clock_regressions or report.ignored_commands:
        lines.append(
            f"engine: {report.clock_regressions} clock regressions, "
            f"{report.ignored_commands} ignored commands"
        )
    return "\n".join(lines) + "\n"


class _ProgressBar:
    def __init__(self, stream: TextIO, width: int = 40) -> None:
        self.stream = stream
        self.width = width

    def __call__(self, fraction: float) -> None:
        filled = round(fraction * self.width)
        self.stream.write(f"\r[{'#' * filled}{'.' * (self.width - filled)}] {fraction:4.0%}")
        if fraction >= 1.0:
            self.stream.write("\n")
        self.stream.flush()


def main_simulate(path: Path, *, seed: int | None, out: TextIO) -> int:
    """The ``callcenter simulate SCENARIO`` command: 0 on success, 2 for a bad scenario."""
    try:
        scenario = load_scenario(path)
    except ScenarioError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    report = run_simulation(scenario, seed=seed, progress=_ProgressBar(sys.stderr))
    out.write(render_report(report))
    return 0
