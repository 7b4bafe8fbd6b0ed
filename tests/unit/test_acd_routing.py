"""The routing policy: the fair order and the agent choice with its explanation."""

from __future__ import annotations

from dataclasses import dataclass

from acd.domain.agents import AgentId, AgentProfile, AgentStatus, Capacity
from acd.domain.queues import Queue, SkillExpression, Strategy
from acd.domain.routing import SelectionRequest, fair_key, select
from acd.domain.work import Channel, ItemId, QueueId, WorkItem


@dataclass
class View:
    profile: AgentProfile
    status: AgentStatus
    ordinal: int


def view(name: str, ordinal: int, idle_since: float = 0.0, **skills: int) -> View:
    profile = AgentProfile(AgentId(name), skills, frozenset({"en"}), Capacity())
    return View(profile, AgentStatus(logged_in=True, idle_since=idle_since), ordinal)


def choose(strategy: Strategy, views: list[View], rr_cursor: int = -1) -> str | None:
    queue = Queue(QueueId("q"), SkillExpression.parse("support>=2"), strategy=strategy)
    item = WorkItem(ItemId("i"), Channel.CALL, QueueId("q"), 0.0)
    request = SelectionRequest(
        item.item_id, queue.queue_id, strategy, queue.rule_at(item, 0.0), 0, 0.0, 100.0, rr_cursor
    )
    selection = select(request, views)
    return None if selection is None else selection.agent_id


def test_the_fair_order_is_priority_then_age_then_arrival() -> None:
    keys = [
        ("old", fair_key(0, 1.0, 1)),
        ("vip", fair_key(5, 9.0, 3)),
        ("twin", fair_key(0, 1.0, 2)),
    ]
    assert [name for name, _ in sorted(keys, key=lambda pair: pair[1])] == ["vip", "old", "twin"]


def test_each_strategy_picks_its_agent() -> None:
    views = [
        view("novice", 0, idle_since=50, support=2),
        view("expert", 1, idle_since=80, support=5),
        view("veteran", 2, idle_since=10, support=3),
        view("outsider", 3, idle_since=0, sales=5),
    ]
    assert choose(Strategy.LONGEST_IDLE, views) == "veteran"
    assert choose(Strategy.BEST_SKILL, views) == "expert"
    assert choose(Strategy.ROUND_ROBIN, views, rr_cursor=0) == "expert"
    assert choose(Strategy.ROUND_ROBIN, views, rr_cursor=2) == "novice"


def test_no_eligible_agent_gives_no_selection() -> None:
    assert choose(Strategy.LONGEST_IDLE, [view("outsider", 0, sales=5)]) is None


def test_an_agent_without_free_capacity_is_rejected_with_the_reason() -> None:
    queue = Queue(QueueId("q"))
    item = WorkItem(ItemId("i"), Channel.CHAT, QueueId("q"), 0.0)
    request = SelectionRequest(
        item.item_id, queue.queue_id, Strategy.LONGEST_IDLE, queue.rule_at(item, 0.0), 0, 0.0, 1.0
    )
    selection = select(request, [view("voice-only", 0, support=3)])
    assert selection is None
