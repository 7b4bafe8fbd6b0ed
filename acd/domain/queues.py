"""Queues as routing targets: skill expressions, relaxation over the wait, overflow, boosts, hours.

Theory of operation
-------------------

A queue does not own agents. It says which agents may take its items, as a *skill expression*
in disjunctive normal form, a small cousin of Twilio TaskRouter's ``TargetWorkers`` expressions
(callcenter-anchors.md section b)::

    billing>=3 & french>=2 | billing>=5      # "|"/"or" between terms, "&"/"and" inside a term
    support                                  # a bare skill means level >= 1
    *                                        # any agent (an empty expression means the same)

Parentheses are not supported: every expression is already an OR of ANDs.

*Relaxation steps* (Amazon Connect's routing-criteria steps, Asterisk's ``penaltychange``)
widen the requirement as the item waits: the step in force is the last one whose ``after``
(seconds in this queue) has passed; it may replace the expression, lower every minimum level by
``level_drop`` (never below 1) and stop requiring the item's language. Unlike Asterisk, which
copies the rules when the caller enters the queue, the engine recomputes the requirement from the
queue's *current* rules at every step boundary and after every change of the queue, so an edit
applies to items already waiting. *Priority boosts* add to the item's priority after a given
wait; *overflow* moves the item to another queue after a wait (it keeps its age); *max wait*
ends the wait; *hours* is a hook asked when an item arrives (closed: go to ``closed_to`` or be
refused).

Pure: times are seconds as floats.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Protocol

from acd.domain.agents import AgentProfile
from acd.domain.work import MAX_SKILL_LEVEL, MIN_SKILL_LEVEL, Channel, QueueId, WorkItem
from acd.errors import AcdError

__all__ = [
    "ANY_AGENT",
    "InvalidQueue",
    "InvalidSkillExpression",
    "OpenHours",
    "Overflow",
    "PriorityBoost",
    "Queue",
    "RelaxationStep",
    "Requirement",
    "RuleInForce",
    "SkillCondition",
    "SkillExpression",
    "Strategy",
]


class InvalidQueue(AcdError):
    """A queue definition is inconsistent (unsorted steps, overflow to itself, ...)."""

    error_id = "acd-invalid-queue"


class InvalidSkillExpression(InvalidQueue):
    """A skill expression does not parse."""

    error_id = "acd-invalid-skill-expression"


class Strategy(StrEnum):
    """How a queue picks one agent among the eligible ones."""

    LONGEST_IDLE = "longest_idle"
    BEST_SKILL = "best_skill"
    LEAST_OCCUPIED = "least_occupied"
    ROUND_ROBIN = "round_robin"


@dataclass(frozen=True, slots=True)
class SkillCondition:
    """``skill >= min_level``."""

    skill: str
    min_level: int = MIN_SKILL_LEVEL

    def __post_init__(self) -> None:
        if not MIN_SKILL_LEVEL <= self.min_level <= MAX_SKILL_LEVEL:
            raise InvalidSkillExpression(
                f"{self.skill}>={self.min_level}: level outside "
                f"{MIN_SKILL_LEVEL}..{MAX_SKILL_LEVEL}"
            )

    def __str__(self) -> str:
        if self.min_level == MIN_SKILL_LEVEL:
            return self.skill
        return f"{self.skill}>={self.min_level}"


_TOKEN = re.compile(r"\s*(?:(>=)|(\|\||\||&&|&)|(\*)|([A-Za-z0-9_.:-]+))")
_WORDS = {"or": "|", "and": "&"}


@dataclass(frozen=True, slots=True)
class SkillExpression:
    """An OR of ANDs of skill conditions; ``((),)`` is any agent, ``()`` is nobody."""

    alternatives: tuple[tuple[SkillCondition, ...], ...]

    @classmethod
    def parse(cls, text: str) -> SkillExpression:
        """Parse the expression syntax of the module docstring."""
        tokens = _tokenize(text)
        if not tokens or tokens == ["*"]:
            return ANY_AGENT
        alternatives: list[tuple[SkillCondition, ...]] = []
        term: list[SkillCondition] = []
        expect_condition = True
        index = 0
        while index < len(tokens):
            token = tokens[index]
            if expect_condition:
                if token in {"|", "&", ">=", "*"}:
                    raise InvalidSkillExpression(f"{text!r}: expected a skill, got {token!r}")
                level = MIN_SKILL_LEVEL
                if index + 1 < len(tokens) and tokens[index + 1] == ">=":
                    if index + 2 >= len(tokens) or not tokens[index + 2].isdigit():
                        raise InvalidSkillExpression(f"{text!r}: '>=' needs a level after it")
                    level = int(tokens[index + 2])
                    index += 2
                term.append(SkillCondition(token, level))
                expect_condition = False
            elif token == "&":
                expect_condition = True
            elif token == "|":
                alternatives.append(tuple(term))
                term = []
                expect_condition = True
            else:
                raise InvalidSkillExpression(f"{text!r}: expected '&' or '|', got {token!r}")
            index += 1
        if expect_condition:
            raise InvalidSkillExpression(f"{text!r}: ends with an operator")
        alternatives.append(tuple(term))
        return cls(tuple(alternatives))

    def __str__(self) -> str:
        if not self.alternatives:
            return "<nobody>"
        if any(not term for term in self.alternatives):
            return "*"
        return " | ".join(" & ".join(str(c) for c in term) for term in self.alternatives)


ANY_AGENT = SkillExpression(((),))


def _tokenize(text: str) -> list[str]:
    tokens: list[str] = []
    position = 0
    stripped = text.rstrip()
    while position < len(stripped):
        match = _TOKEN.match(stripped, position)
        if match is None or match.end() == position:
            raise InvalidSkillExpression(f"{text!r}: unexpected character at {position}")
        ge, op, star, name = match.groups()
        if ge:
            tokens.append(">=")
        elif op:
            tokens.append("|" if op.startswith("|") else "&")
        elif star:
            tokens.append("*")
        else:
            tokens.append(_WORDS.get(name.lower(), name))
        position = match.end()
    return tokens


@dataclass(frozen=True, slots=True)
class RelaxationStep:
    """From ``after`` seconds of wait in the queue on, route with a wider requirement."""

    after: float
    expression: SkillExpression | None = None
    level_drop: int = 0
    require_language: bool = True
    label: str = ""


@dataclass(frozen=True, slots=True)
class PriorityBoost:
    """From ``after`` seconds of wait in the queue on, add ``boost`` to the item's priority."""

    after: float
    boost: int


@dataclass(frozen=True, slots=True)
class Overflow:
    """After ``after`` seconds of wait in this queue, move the item to ``to_queue``."""

    after: float
    to_queue: QueueId


class OpenHours(Protocol):
    """The business-hours hook: is the queue open at ``at`` (seconds, the engine's clock)?"""

    def is_open(self, at: float) -> bool:
        """True if items may enter the queue at ``at``."""
        ...


@dataclass(frozen=True, slots=True)
class Requirement:
    """What an agent must have to take one item now: an OR of ANDs of (skill, level), a language.

    ``((),)`` as alternatives means any agent with capacity on the channel.
    """

    channel: Channel
    alternatives: tuple[tuple[tuple[str, int], ...], ...]
    language: str | None = None

    def matches(self, profile: AgentProfile) -> bool:
        """True if ``profile`` satisfies the skills and language (capacity is not checked)."""
        if self.language is not None and self.language not in profile.languages:
            return False
        skills = profile.skills
        for term in self.alternatives:
            for skill, level in term:
                have = skills.get(skill)
                if have is None or have < level:
                    break
            else:
                return True
        return False

    def staffed_by(self, profile: AgentProfile) -> bool:
        """True if ``profile`` counts as staffed for the item: its skills and language match and
        it has capacity on the item's channel (a call-only agent never staffs a chat queue)."""
        return profile.capacity.of(self.channel) > 0 and self.matches(profile)

    def why_not(self, profile: AgentProfile) -> str | None:
        """None if ``profile`` matches, else a short reason (the first failing condition)."""
        if self.language is not None and self.language not in profile.languages:
            return f"no language {self.language}"
        reason = "no alternative matches"
        skills = profile.skills
        for term in self.alternatives:
            for skill, level in term:
                have = skills.get(skill)
                if have is None:
                    reason = f"lacks {skill}"
                    break
                if have < level:
                    reason = f"{skill} {have}<{level}"
                    break
            else:
                return None
        return reason

    def __str__(self) -> str:
        if not self.alternatives:
            text = "<nobody>"
        elif any(not term for term in self.alternatives):
            text = "*"
        else:
            text = " | ".join(
                " & ".join(f"{skill}>={level}" for skill, level in term)
                for term in self.alternatives
            )
        if self.language is not None:
            text = f"({text}) lang={self.language}"
        return f"{self.channel}: {text}"


@dataclass(frozen=True, slots=True)
class RuleInForce:
    """The queue's rule for an item at a given wait: which step, what it requires, the boost."""

    step: int
    label: str
    requirement: Requirement
    boost: int


@dataclass(frozen=True, slots=True)
class Queue:
    """A routing target. Seconds are measured from the item's entry into *this* queue."""

    queue_id: QueueId
    expression: SkillExpression = ANY_AGENT
    steps: tuple[RelaxationStep, ...] = ()
    strategy: Strategy = Strategy.LONGEST_IDLE
    overflow: Overflow | None = None
    max_wait: float | None = None
    boosts: tuple[PriorityBoost, ...] = ()
    wrap_up: float = 0.0
    offer_timeout: float | None = 20.0
    hours: OpenHours | None = field(default=None, compare=False)
    closed_to: QueueId | None = None

    def __post_init__(self) -> None:
        name = self.queue_id
        if not name:
            raise InvalidQueue("a queue has an empty id")
        last = 0.0
        for step in self.steps:
            if not math.isfinite(step.after) or step.after <= last:
                raise InvalidQueue(f"queue {name}: relaxation steps must have increasing after > 0")
            if step.level_drop < 0:
                raise InvalidQueue(f"queue {name}: level_drop must be >= 0")
            last = step.after
        previous = -1.0
        for boost in self.boosts:
            if not math.isfinite(boost.after) or boost.after < 0 or boost.after <= previous:
                raise InvalidQueue(f"queue {name}: boosts must have increasing after >= 0")
            previous = boost.after
        if self.overflow is not None and (
            self.overflow.to_queue == name or self.overflow.after < 0
        ):
            raise InvalidQueue(f"queue {name}: overflow must go elsewhere after >= 0 s")
        if self.max_wait is not None and not self.max_wait > 0:
            raise InvalidQueue(f"queue {name}: max_wait must be > 0")
        if self.wrap_up < 0:
            raise InvalidQueue(f"queue {name}: wrap_up must be >= 0")
        if self.offer_timeout is not None and not self.offer_timeout > 0:
            raise InvalidQueue(f"queue {name}: offer_timeout must be > 0")

    def rule_at(self, item: WorkItem, waited: float) -> RuleInForce:
        """The requirement and boost in force for ``item`` after ``waited`` s in this queue."""
        step_index = 0
        expression = self.expression
        level_drop = 0
        require_language = True
        label = "base"
        for index, step in enumerate(self.steps, start=1):
            if step.after > waited:
                break
            step_index = index
            if step.expression is not None:
                expression = step.expression
            level_drop = step.level_drop
            require_language = step.require_language
            label = step.label or f"step {index} (after {step.after:g} s)"
        boost = sum(b.boost for b in self.boosts if b.after <= waited)
        requirement = _requirement(item, expression, level_drop, require_language)
        return RuleInForce(step_index, label, requirement, boost)

    def next_change(self, waited: float) -> float | None:
        """The next wait (in this queue) at which the rule, overflow or max wait changes."""
        marks = [step.after for step in self.steps]
        marks.extend(b.after for b in self.boosts)
        if self.overflow is not None:
            marks.append(self.overflow.after)
        if self.max_wait is not None:
            marks.append(self.max_wait)
        later = [mark for mark in marks if mark > waited]
        return min(later) if later else None


def _requirement(
    item: WorkItem, expression: SkillExpression, level_drop: int, require_language: bool
) -> Requirement:
    alternatives: list[tuple[tuple[str, int], ...]] = []
    for term in expression.alternatives:
        levels: dict[str, int] = {}
        for condition in term:
            levels[condition.skill] = max(levels.get(condition.skill, 0), condition.min_level)
        for need in item.needs:
            levels[need.skill] = max(levels.get(need.skill, 0), need.min_level)
        relaxed = tuple(
            sorted(
                (skill, max(MIN_SKILL_LEVEL, level - level_drop)) for skill, level in levels.items()
            )
        )
        if relaxed not in alternatives:
            alternatives.append(relaxed)
    language = item.language if require_language else None
    return Requirement(item.channel, tuple(sorted(alternatives)), language)
