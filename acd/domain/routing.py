"""The routing policy: one fair order for items, one agent choice per queue, and why.

Theory of operation
-------------------

*Items* are served in one order across all queues (the fix for Asterisk's per-queue, caller-
centric design, callcenter-anchors.md sections b and d-5): higher effective priority first
(priority plus the boosts earned by waiting), then the item that entered the system first, then
arrival sequence. :func:`fair_key` is that order; the engine keeps waiting items sorted by it.

*Agents*: among the agents that can take the item now (skills, language and free capacity on
the item's channel), :func:`select` picks one by the item's queue :class:`Strategy`:

* ``longest_idle``: the agent free of all work the longest (time since it became READY); agents
  that still hold work on another item come after, by time since their last assignment
  (Amazon Connect's "longest Available", TaskRouter's default);
* ``best_skill``: the highest sum of levels over the skills of the best-matching term, then
  longest idle (TaskRouter ``order_by``);
* ``least_occupied``: the lowest occupancy since login (busy time / logged-in time), then the
  lowest current load, then longest idle (unlike FreeSWITCH's talk-time counters, the measure
  does not favour whoever logged in last: a fresh login starts at 0 and rises with work);
* ``round_robin``: the next agent after the queue's last chosen one, in registration order.

Ties end on the agent's registration order, so every decision is deterministic.

Every selection carries an :class:`Explanation`: the queue, the relaxation step and requirement
in force, the effective priority and wait, the strategy and the value that decided, how many
agents were eligible (the best few named) and how many were rejected and why (a few named).
Its size is bounded by ``limit`` whatever the number of agents.

:func:`select` scans the candidates it is given: it is the reference (brute force) that the
engine's :class:`~acd.domain.agent_index.AgentIndex` reproduces without the scan, and the
fallback the index uses where no static order exists (``least_occupied`` when its bound does
not apply, ``best_skill`` over multi-skill terms). There the index's counts may be lazy: see
``counts_exact``.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol

from acd.domain.agents import AgentId, AgentProfile, AgentStatus
from acd.domain.queues import Requirement, RuleInForce, Strategy
from acd.domain.work import ItemId, QueueId

__all__ = [
    "AgentView",
    "Explanation",
    "Rejection",
    "Selection",
    "SelectionRequest",
    "chosen",
    "describe_rule",
    "fair_key",
    "rank_key",
    "select",
]

#: How many eligible and rejected agents an explanation names, by default.
EXPLANATION_LIMIT = 5


def fair_key(priority: int, enqueued_at: float, sequence: int) -> tuple[int, float, int]:
    """The one order of waiting items across all queues: smaller is served first."""
    return (-priority, enqueued_at, sequence)


class AgentView(Protocol):
    """What the policy reads about a candidate agent."""

    profile: AgentProfile
    status: AgentStatus
    ordinal: int


@dataclass(frozen=True, slots=True)
class Rejection:
    """One agent that was considered and why it could not take the item."""

    agent_id: AgentId
    reason: str


@dataclass(frozen=True, slots=True)
class Explanation:
    """Why an item went to an agent; bounded in size."""

    item_id: ItemId
    queue: QueueId
    step: int
    step_label: str
    requirement: Requirement
    priority: int
    waited: float
    strategy: Strategy
    rule: str
    eligible_count: int
    eligible: tuple[AgentId, ...]
    rejected_count: int
    rejected: tuple[Rejection, ...]
    #: False when the counts are lower bounds (the index stopped after ``limit`` eligible).
    counts_exact: bool = True

    def render(self) -> str:
        """A one-paragraph human account, for the console and logs."""
        chosen = self.eligible[0] if self.eligible else "?"
        others = ", ".join(self.eligible[1:])
        lines = [
            f"{self.item_id} -> {chosen} (queue {self.queue}, {self.step_label}, "
            f"priority {self.priority}, waited {self.waited:.1f} s)",
            f"  requirement {self.requirement}",
            f"  {self.strategy}: {self.rule}",
            f"  eligible {'' if self.counts_exact else 'at least '}{self.eligible_count}"
            + (f" (next: {others})" if others else ""),
        ]
        if self.rejected_count:
            named = ", ".join(f"{r.agent_id}: {r.reason}" for r in self.rejected)
            seen = "" if self.counts_exact else " seen"
            lines.append(f"  not eligible{seen} {self.rejected_count} ({named})")
        return "\n".join(lines)


@dataclass(frozen=True, slots=True)
class Selection:
    """The chosen agent, its registration ordinal (round-robin cursor) and the explanation."""

    agent_id: AgentId
    ordinal: int
    explanation: Explanation


_Key = tuple[float, float, float, int]


@dataclass(frozen=True, slots=True)
class SelectionRequest:
    """One item asking for an agent: what the policy needs to choose and to explain why."""

    item_id: ItemId
    queue: QueueId
    strategy: Strategy
    rule: RuleInForce
    priority: int
    waited: float
    now: float
    rr_cursor: int = -1
    limit: int = EXPLANATION_LIMIT


def select(
    request: SelectionRequest, candidates: Iterable[AgentView], *, check_capacity: bool = True
) -> Selection | None:
    """Choose the agent for an item among ``candidates``, or None if none is eligible.

    ``candidates`` may include agents that do not match; they are counted and a few are named
    as rejected. ``check_capacity=False`` skips the free-capacity check when the caller
    guarantees it (the engine's availability index holds only agents that can take the channel
    now).
    """
    requirement = request.rule.requirement
    limit = request.limit
    channel = requirement.channel
    matches = requirement.matches
    key = rank_key(request.strategy, requirement, request.now, request.rr_cursor)
    eligible: list[tuple[_Key, AgentId, AgentView]] = []
    rejected: list[Rejection] = []
    rejected_count = 0
    for view in candidates:
        profile = view.profile
        if matches(profile) and (
            not check_capacity or view.status.can_take(profile.capacity, channel)
        ):
            eligible.append((key(view), profile.agent_id, view))
            continue
        rejected_count += 1
        if len(rejected) < limit:
            reason = requirement.why_not(profile) or f"no free {channel} capacity"
            rejected.append(Rejection(profile.agent_id, reason))
    if not eligible:
        return None
    if len(eligible) == 1:
        ranked = eligible
    else:
        ranked = heapq.nsmallest(limit, eligible, key=lambda entry: (entry[0], entry[1]))
    return chosen(
        request,
        [(entry[0], entry[2]) for entry in ranked],
        eligible_count=len(eligible),
        rejected_count=rejected_count,
        rejected=rejected,
    )


def chosen(
    request: SelectionRequest,
    ranked: Sequence[tuple[_Key, AgentView]],
    *,
    eligible_count: int,
    rejected_count: int,
    rejected: Sequence[Rejection],
    counts_exact: bool = True,
) -> Selection:
    """The selection of ``ranked[0]`` (best first, with rank keys) and its explanation."""
    best_key, best = ranked[0]
    rule = request.rule
    explanation = Explanation(
        item_id=request.item_id,
        queue=request.queue,
        step=rule.step,
        step_label=rule.label,
        requirement=rule.requirement,
        priority=request.priority,
        waited=request.waited,
        strategy=request.strategy,
        rule=describe_rule(request.strategy, best_key, best, request.now),
        eligible_count=eligible_count,
        eligible=tuple(view.profile.agent_id for _, view in ranked),
        rejected_count=rejected_count,
        rejected=tuple(rejected),
        counts_exact=counts_exact,
    )
    return Selection(best.profile.agent_id, best.ordinal, explanation)


def _idle_key(view: AgentView) -> tuple[float, float]:
    return view.status.idle_key


def rank_key(
    strategy: Strategy, requirement: Requirement, now: float, rr_cursor: int
) -> Callable[[AgentView], _Key]:
    """The strategy's rank of an agent (smaller is preferred); ties end on the ordinal."""
    if strategy is Strategy.BEST_SKILL:
        terms = requirement.alternatives

        def best_skill(view: AgentView) -> _Key:
            skills = view.profile.skills
            score = max(
                (
                    sum(skills.get(skill, 0) for skill, _ in term)
                    for term in terms
                    if all(skills.get(skill, 0) >= level for skill, level in term)
                ),
                default=0,
            )
            idle = _idle_key(view)
            return (-float(score), idle[0], idle[1], view.ordinal)

        return best_skill
    if strategy is Strategy.LEAST_OCCUPIED:

        def least_occupied(view: AgentView) -> _Key:
            status = view.status
            return (
                round(status.occupancy(now), 6),
                status.utilisation(view.profile.capacity),
                _idle_key(view)[1],
                view.ordinal,
            )

        return least_occupied
    if strategy is Strategy.ROUND_ROBIN:

        def round_robin(view: AgentView) -> _Key:
            wrapped = 0.0 if view.ordinal > rr_cursor else 1.0
            return (wrapped, float(view.ordinal), 0.0, view.ordinal)

        return round_robin

    def longest_idle(view: AgentView) -> _Key:
        return (*view.status.idle_key, 0.0, view.ordinal)

    return longest_idle


def describe_rule(strategy: Strategy, key: _Key, view: AgentView, now: float) -> str:
    """The value that decided, in words, from the winner's rank key (see :func:`select`)."""
    if strategy is Strategy.BEST_SKILL:
        return f"best level sum {-key[0]:g}"
    if strategy is Strategy.LEAST_OCCUPIED:
        return f"occupancy {key[0]:.0%} since login, load {key[1]:.0%}"
    if strategy is Strategy.ROUND_ROBIN:
        return f"next in turn (#{view.ordinal})"
    if key[0] == 0.0:
        return f"idle {max(0.0, now - key[1]):.1f} s"
    return f"holds other work; last assigned {max(0.0, now - key[1]):.1f} s ago"
