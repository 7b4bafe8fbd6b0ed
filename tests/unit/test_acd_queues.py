"""Queues: skill expressions, relaxation steps by wait, boosts, boundaries, validation."""

from __future__ import annotations

import pytest

from acd.domain.agents import AgentId, AgentProfile, Capacity
from acd.domain.queues import (
    ANY_AGENT,
    InvalidQueue,
    InvalidSkillExpression,
    Overflow,
    PriorityBoost,
    Queue,
    RelaxationStep,
    SkillCondition,
    SkillExpression,
)
from acd.domain.work import Channel, ItemId, QueueId, SkillNeed, WorkItem


def item(*needs: SkillNeed, language: str | None = None) -> WorkItem:
    return WorkItem(ItemId("i"), Channel.CALL, QueueId("q"), 0.0, 0, needs, language)


def test_an_expression_parses_into_an_or_of_ands() -> None:
    expression = SkillExpression.parse("billing>=3 & french>=2 | billing>=5")
    assert expression.alternatives == (
        (SkillCondition("billing", 3), SkillCondition("french", 2)),
        (SkillCondition("billing", 5),),
    )
    assert str(expression) == "billing>=3 & french>=2 | billing>=5"


def test_words_and_bare_skills_are_accepted() -> None:
    expression = SkillExpression.parse("support and english or general")
    assert expression == SkillExpression(
        ((SkillCondition("support"), SkillCondition("english")), (SkillCondition("general"),))
    )


@pytest.mark.parametrize("text", ["", "*", "  "])
def test_an_empty_expression_or_star_means_any_agent(text: str) -> None:
    assert SkillExpression.parse(text) == ANY_AGENT


@pytest.mark.parametrize("text", ["a &", "| a", "a >=", "a>=9", "a b", "a ! b", "a>=x"])
def test_a_malformed_expression_is_refused(text: str) -> None:
    with pytest.raises(InvalidSkillExpression):
        SkillExpression.parse(text)


def test_the_requirement_merges_the_item_needs_into_every_term() -> None:
    queue = Queue(QueueId("q"), SkillExpression.parse("support>=2 | general>=4"))
    rule = queue.rule_at(item(SkillNeed("support", 3)), 0.0)
    assert rule.requirement.alternatives == (
        (("general", 4), ("support", 3)),
        (("support", 3),),
    )


def test_a_missing_skill_never_matches_even_after_relaxation() -> None:
    queue = Queue(
        QueueId("q"),
        SkillExpression.parse("support>=3"),
        steps=(RelaxationStep(10, level_drop=4),),
    )
    requirement = queue.rule_at(item(), 20).requirement
    assert requirement.matches(AgentProfile(AgentId("a"), {"support": 1}))
    assert not requirement.matches(AgentProfile(AgentId("b"), {"general": 5}))
    assert requirement.why_not(AgentProfile(AgentId("b"), {"general": 5})) == "lacks support"


def test_only_agents_with_capacity_on_the_channel_staff_a_queue() -> None:
    chat = WorkItem(ItemId("i"), Channel.CHAT, QueueId("q"), 0.0)
    requirement = Queue(QueueId("q"), SkillExpression.parse("support")).rule_at(chat, 0).requirement
    skills = {"support": 3}
    call_only = AgentProfile(AgentId("c"), skills, capacity=Capacity(call=1, chat=0))
    chatter = AgentProfile(AgentId("h"), skills, capacity=Capacity(call=0, chat=2))
    unskilled = AgentProfile(AgentId("u"), {"sales": 5}, capacity=Capacity(call=0, chat=2))
    assert requirement.matches(call_only)  # the skills match ...
    assert not requirement.staffed_by(call_only)  # ... but a call-only agent staffs no chat
    assert requirement.staffed_by(chatter)
    assert not requirement.staffed_by(unskilled)


def test_steps_widen_with_the_wait_and_drop_the_language() -> None:
    queue = Queue(
        QueueId("q"),
        SkillExpression.parse("support>=4"),
        steps=(
            RelaxationStep(30, level_drop=1),
            RelaxationStep(60, SkillExpression.parse("general"), require_language=False),
        ),
    )
    french = item(language="fr")
    assert queue.rule_at(french, 0).step == 0
    assert str(queue.rule_at(french, 0).requirement) == "call: (support>=4) lang=fr"
    assert str(queue.rule_at(french, 30).requirement) == "call: (support>=3) lang=fr"
    late = queue.rule_at(french, 61)
    assert late.step == 2
    assert str(late.requirement) == "call: general>=1"


def test_boosts_add_up_as_the_item_waits() -> None:
    queue = Queue(QueueId("q"), boosts=(PriorityBoost(10, 1), PriorityBoost(20, 2)))
    assert [queue.rule_at(item(), w).boost for w in (0, 10, 25)] == [0, 1, 3]


def test_the_next_change_is_the_next_boundary_of_any_rule() -> None:
    queue = Queue(
        QueueId("q"),
        steps=(RelaxationStep(30),),
        boosts=(PriorityBoost(45, 1),),
        overflow=Overflow(90, QueueId("other")),
        max_wait=120,
    )
    assert queue.next_change(0) == 30
    assert queue.next_change(30) == 45
    assert queue.next_change(50) == 90
    assert queue.next_change(100) == 120
    assert queue.next_change(120) is None


@pytest.mark.parametrize(
    "kwargs",
    [
        {"steps": (RelaxationStep(30), RelaxationStep(20))},
        {"steps": (RelaxationStep(0),)},
        {"overflow": Overflow(10, QueueId("q"))},
        {"max_wait": 0},
        {"wrap_up": -1},
        {"offer_timeout": 0},
        {"boosts": (PriorityBoost(10, 1), PriorityBoost(10, 1))},
    ],
)
def test_an_inconsistent_queue_is_refused(kwargs: dict[str, object]) -> None:
    with pytest.raises(InvalidQueue):
        Queue(QueueId("q"), **kwargs)  # type: ignore[arg-type]
