"""The ACD configuration: queues, agents with skills and endpoints, service timings (YAML or TOML).

Format (``acd/examples/queues.yaml`` is a complete example; TOML has the same shape)::

    service:                      # all optional
      site: main                  # the Redis hash tag of this contact center
      ring_timeout: 20            # seconds an agent's phone rings before the offer is missed
      pause_after_misses: 3       # missed offers in a row before an agent is paused (0: never)
      missed_cooldown: 10         # seconds a missed agent gets no offer (then ready again)
      resume_window: 120          # a caller who hung up and calls back within it keeps the place
      snapshot_items: 5000        # waiting items the engine sees (the head of the fair order)
      handle_time_window: 50      # recent handle times averaged for the expected wait
      offer_margin: 15            # seconds an offer outlives the ring timeout in Redis: room
                                  # for the answer to be reported before the offer expires
                                  # and the item is requeued (> 0)
      quiet_limit: 2              # longest a controller trusts its last decisions when no
                                  # event came (then it re-reads the snapshot anyway; > 0)
    queues:
      - id: support               # required, unique
        channel: call             # call | chat | email (default call)
        skills: "support>=2"      # skill expression (acd/domain/queues.py), default "*"
        strategy: longest_idle    # longest_idle | best_skill | least_occupied | round_robin
        relax: [{after: 60, level_drop: 1}, {after: 120, skills: "*", language: false}]
        boosts: [{after: 300, boost: 1}]
        overflow: {after: 600, to: operator}
        max_wait: 1800
        wrap_up: 15               # seconds of wrap-up after each item
        default_handle_time: 180  # the expected-wait figure before any call was handled
        announce_every: 30        # seconds between position / expected-wait announcements
        moh_class: default        # Asterisk music-on-hold class
        callback_key: "5"         # the key a waiting caller presses for a callback ("" : none)
    agents:
      - id: "1001"                # required, unique
        endpoint: PJSIP/agent-1001   # what the caller's AGI session dials
        skills: {support: 3, billing: 1}   # levels 1-5
        languages: [en, fr]
        capacity: {call: 1, chat: 3, email: 5, call_blocks_others: true}

Every mistake stops the load with :class:`AcdConfigError` naming the key (``queues[1].relax[0]
.after: must be a number of seconds >= 0``), never half a configuration.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from acd.domain.agents import AgentId, AgentProfile, Capacity, InvalidAgentProfile
from acd.domain.engine import EnginePolicy
from acd.domain.queues import (
    InvalidQueue,
    Overflow,
    PriorityBoost,
    Queue,
    RelaxationStep,
    SkillExpression,
    Strategy,
)
from acd.domain.work import Channel, QueueId
from acd.errors import AcdError

__all__ = [
    "AcdConfig",
    "AcdConfigError",
    "AgentConfig",
    "QueueConfig",
    "ServiceTimings",
    "load_acd_config",
    "parse_acd_config",
]

EXAMPLE = Path(__file__).parent / "examples" / "queues.yaml"


class AcdConfigError(AcdError):
    """The ACD configuration is malformed; the message names the key."""

    error_id = "acd-config-invalid"


@dataclass(frozen=True, slots=True)
class ServiceTimings:
    """Service-wide settings (see the module docstring)."""

    site: str = "main"
    ring_timeout: float = 20.0
    pause_after_misses: int = 3
    missed_cooldown: float = 10.0
    resume_window: float = 120.0
    snapshot_items: int = 5000
    handle_time_window: int = 50
    offer_margin: float = 15.0
    quiet_limit: float = 2.0

    def engine_policy(self) -> EnginePolicy:
        """The routing engine's policy from these settings. The service rebuilds its engine
        from a snapshot every cycle and reads agent states from Redis, so the engine does not
        report each agent's state changes (thousands of logins per rebuild)."""
        return EnginePolicy(
            pause_after_misses=self.pause_after_misses,
            missed_cooldown=self.missed_cooldown,
            report_agent_states=False,
        )


@dataclass(frozen=True, slots=True)
class QueueConfig:
    """A routing queue plus what the caller's wait needs."""

    queue: Queue
    channel: Channel = Channel.CALL
    default_handle_time: float = 180.0
    announce_every: float = 30.0
    moh_class: str = "default"
    callback_key: str = "5"


@dataclass(frozen=True, slots=True)
class AgentConfig:
    """An agent's profile and the endpoint the caller's session dials."""

    profile: AgentProfile
    endpoint: str


@dataclass(frozen=True, slots=True)
class AcdConfig:
    """The whole ACD configuration, loaded once."""

    service: ServiceTimings = ServiceTimings()
    queues: Mapping[str, QueueConfig] = field(default_factory=dict)
    agents: Mapping[str, AgentConfig] = field(default_factory=dict)

    def queue(self, queue_id: str) -> QueueConfig:
        """The queue's configuration; raises :class:`AcdConfigError` for an unknown queue."""
        try:
            return self.queues[queue_id]
        except KeyError:
            raise AcdConfigError(f"unknown queue {queue_id!r}") from None

    def endpoint(self, agent_id: str) -> str:
        """The agent's endpoint (``PJSIP/<id>`` for an agent not in the file)."""
        agent = self.agents.get(agent_id)
        return agent.endpoint if agent is not None else f"PJSIP/{agent_id}"


def load_acd_config(path: Path) -> AcdConfig:
    """Read a YAML (``.yaml``/``.yml``) or TOML file."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as err:
        raise AcdConfigError(f"{path}: cannot read: {err.strerror or err}") from err
    try:
        data = yaml.safe_load(text) if path.suffix in {".yaml", ".yml"} else tomllib.loads(text)
    except (tomllib.TOMLDecodeError, yaml.YAMLError) as err:
        raise AcdConfigError(f"{path}: not valid {path.suffix.lstrip('.')}: {err}") from err
    try:
        return parse_acd_config(data)
    except AcdConfigError as err:
        raise AcdConfigError(f"{path}: {err}") from err


def parse_acd_config(data: Any) -> AcdConfig:
    """Build and validate the configuration from parsed YAML/TOML data."""
    root = _mapping(data if data is not None else {}, "(top level)")
    _known(root, {"service", "queues", "agents"}, "(top level)")
    service = _service(_mapping(root.get("service", {}), "service"))
    queues: dict[str, QueueConfig] = {}
    for index, raw in enumerate(_list(root.get("queues", []), "queues")):
        where = f"queues[{index}]"
        queue = _queue(_mapping(raw, where), where)
        if queue.queue.queue_id in queues:
            raise AcdConfigError(f"{where}.id: queue {queue.queue.queue_id!r} is defined twice")
        queues[queue.queue.queue_id] = queue
    for queue_id, config in queues.items():
        target = config.queue.overflow.to_queue if config.queue.overflow else None
        if target is not None and target not in queues:
            raise AcdConfigError(f"queue {queue_id}: overflow.to {target!r} is not a queue")
    agents: dict[str, AgentConfig] = {}
    for index, raw in enumerate(_list(root.get("agents", []), "agents")):
        where = f"agents[{index}]"
        agent = _agent(_mapping(raw, where), where)
        if agent.profile.agent_id in agents:
            raise AcdConfigError(f"{where}.id: agent {agent.profile.agent_id!r} is defined twice")
        agents[agent.profile.agent_id] = agent
    return AcdConfig(service, queues, agents)


# -- parts --------------------------------------------------------------------------------------


def _mapping(value: Any, where: str) -> Mapping[str, Any]:
    if not isinstance(value, dict):
        raise AcdConfigError(f"{where}: must be a mapping")
    return value


def _list(value: Any, where: str) -> list[Any]:
    if not isinstance(value, list):
        raise AcdConfigError(f"{where}: must be a list")
    return value


def _known(table: Mapping[str, Any], keys: set[str], where: str) -> None:
    unknown = sorted(set(table) - keys)
    if unknown:
        raise AcdConfigError(
            f"{where}.{unknown[0]}: unknown key (known: {', '.join(sorted(keys))})"
        )


def _number(table: Mapping[str, Any], key: str, where: str, default: float) -> float:
    value = table.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise AcdConfigError(f"{where}.{key}: must be a number of seconds >= 0")
    return float(value)


def _count(table: Mapping[str, Any], key: str, where: str, default: int, low: int = 0) -> int:
    value = table.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise AcdConfigError(f"{where}.{key}: must be an integer >= {low}")
    return value


def _text(table: Mapping[str, Any], key: str, where: str, default: str | None = None) -> str:
    value = table.get(key, default)
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str) or (default is None and not value):
        raise AcdConfigError(f"{where}.{key}: must be a non-empty string")
    return value


def _service(table: Mapping[str, Any]) -> ServiceTimings:
    where = "service"
    _known(table, set(ServiceTimings.__dataclass_fields__), where)
    ring = _number(table, "ring_timeout", where, 20.0)
    if ring < 1:
        raise AcdConfigError(f"{where}.ring_timeout: must be at least 1 second")
    margin = _number(table, "offer_margin", where, 15.0)
    if margin <= 0:
        raise AcdConfigError(f"{where}.offer_margin: must be a number of seconds > 0")
    quiet = _number(table, "quiet_limit", where, 2.0)
    if quiet <= 0:
        raise AcdConfigError(f"{where}.quiet_limit: must be a number of seconds > 0")
    site = _text(table, "site", where, "main")
    if not site or any(c in site for c in "{}"):
        raise AcdConfigError(f"{where}.site: must be a non-empty name without braces")
    return ServiceTimings(
        site=site,
        ring_timeout=ring,
        pause_after_misses=_count(table, "pause_after_misses", where, 3),
        missed_cooldown=_number(table, "missed_cooldown", where, 10.0),
        resume_window=_number(table, "resume_window", where, 120.0),
        snapshot_items=_count(table, "snapshot_items", where, 5000, low=1),
        handle_time_window=_count(table, "handle_time_window", where, 50, low=1),
        offer_margin=margin,
        quiet_limit=quiet,
    )


def _expression(value: Any, where: str) -> SkillExpression:
    if not isinstance(value, str):
        raise AcdConfigError(f"{where}: must be a skill expression string")
    try:
        return SkillExpression.parse(value)
    except InvalidQueue as err:
        raise AcdConfigError(f"{where}: {err}") from err


_QUEUE_KEYS = {
    "id",
    "channel",
    "skills",
    "strategy",
    "relax",
    "boosts",
    "overflow",
    "max_wait",
    "wrap_up",
    "default_handle_time",
    "announce_every",
    "moh_class",
    "callback_key",
}


def _queue(table: Mapping[str, Any], where: str) -> QueueConfig:
    _known(table, _QUEUE_KEYS, where)
    queue_id = _text(table, "id", where)
    try:
        channel = Channel(table.get("channel", "call"))
    except ValueError:
        raise AcdConfigError(f"{where}.channel: one of call, chat, email") from None
    try:
        strategy = Strategy(table.get("strategy", "longest_idle"))
    except ValueError:
        names = ", ".join(s.value for s in Strategy)
        raise AcdConfigError(f"{where}.strategy: one of {names}") from None
    steps = []
    for i, raw in enumerate(_list(table.get("relax", []), f"{where}.relax")):
        step_where = f"{where}.relax[{i}]"
        step = _mapping(raw, step_where)
        _known(step, {"after", "skills", "level_drop", "language", "label"}, step_where)
        steps.append(
            RelaxationStep(
                after=_number(step, "after", step_where, -1),
                expression=(
                    _expression(step["skills"], f"{step_where}.skills")
                    if "skills" in step
                    else None
                ),
                level_drop=_count(step, "level_drop", step_where, 0),
                require_language=bool(step.get("language", True)),
                label=str(step.get("label", "")),
            )
        )
    boosts = []
    for i, raw in enumerate(_list(table.get("boosts", []), f"{where}.boosts")):
        boost_where = f"{where}.boosts[{i}]"
        boost = _mapping(raw, boost_where)
        _known(boost, {"after", "boost"}, boost_where)
        amount = boost.get("boost", 1)
        if isinstance(amount, bool) or not isinstance(amount, int):
            raise AcdConfigError(f"{boost_where}.boost: must be an integer")
        boosts.append(PriorityBoost(_number(boost, "after", boost_where, -1), amount))
    overflow = None
    if "overflow" in table:
        over_where = f"{where}.overflow"
        over = _mapping(table["overflow"], over_where)
        _known(over, {"after", "to"}, over_where)
        overflow = Overflow(
            _number(over, "after", over_where, -1), QueueId(_text(over, "to", over_where))
        )
    max_wait = None if table.get("max_wait") is None else _number(table, "max_wait", where, 0)
    callback_key = str(table.get("callback_key", "5"))
    if callback_key not in ("", *"0123456789*#"):
        raise AcdConfigError(f"{where}.callback_key: one key of 0-9 * #, or empty for none")
    announce = _number(table, "announce_every", where, 30.0)
    if announce < 5:
        raise AcdConfigError(f"{where}.announce_every: must be at least 5 seconds")
    try:
        queue = Queue(
            queue_id=QueueId(queue_id),
            expression=_expression(table.get("skills", "*"), f"{where}.skills"),
            steps=tuple(steps),
            strategy=strategy,
            overflow=overflow,
            max_wait=max_wait,
            boosts=tuple(boosts),
            wrap_up=_number(table, "wrap_up", where, 0.0),
            offer_timeout=None,  # the ring timeout is the telephony glue's, Redis expires offers
        )
    except InvalidQueue as err:
        raise AcdConfigError(f"{where}: {err}") from err
    return QueueConfig(
        queue=queue,
        channel=channel,
        default_handle_time=_number(table, "default_handle_time", where, 180.0),
        announce_every=announce,
        moh_class=_text(table, "moh_class", where, "default") or "default",
        callback_key=callback_key,
    )


def _agent(table: Mapping[str, Any], where: str) -> AgentConfig:
    _known(table, {"id", "endpoint", "skills", "languages", "capacity"}, where)
    agent_id = _text(table, "id", where)
    endpoint = _text(table, "endpoint", where, f"PJSIP/{agent_id}")
    if "/" not in endpoint:
        raise AcdConfigError(f"{where}.endpoint: must be TECH/resource such as PJSIP/agent-1001")
    skills_table = _mapping(table.get("skills", {}), f"{where}.skills")
    skills: dict[str, int] = {}
    for skill, level in skills_table.items():
        if isinstance(level, bool) or not isinstance(level, int):
            raise AcdConfigError(f"{where}.skills.{skill}: level must be an integer 1-5")
        skills[str(skill)] = level
    languages = _list(table.get("languages", []), f"{where}.languages")
    cap = _mapping(table.get("capacity", {}), f"{where}.capacity")
    _known(cap, {"call", "chat", "email", "call_blocks_others"}, f"{where}.capacity")
    try:
        profile = AgentProfile(
            agent_id=AgentId(agent_id),
            skills=skills,
            languages=frozenset(str(x) for x in languages),
            capacity=Capacity(
                call=_count(cap, "call", f"{where}.capacity", 1),
                chat=_count(cap, "chat", f"{where}.capacity", 0),
                email=_count(cap, "email", f"{where}.capacity", 0),
                call_blocks_others=bool(cap.get("call_blocks_others", True)),
            ),
        )
    except InvalidAgentProfile as err:
        raise AcdConfigError(f"{where}: {err}") from err
    return AgentConfig(profile, endpoint)
