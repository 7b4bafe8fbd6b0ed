"""Work items: the calls, chats and emails the ACD routes, and what each one requires of an agent.

A work item is immutable: what changes while it waits (its queue after an overflow, its effective
priority after boosts, the relaxation step that applies) is the routing engine's business and is
recomputed from the queue's current rules, never stored on the item.

Priority: a higher number is served sooner (as in Twilio TaskRouter); among equal priorities the
item that entered the system first (the smallest ``enqueued_at``) goes first.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import StrEnum
from typing import NewType

from acd.errors import AcdError

__all__ = [
    "MAX_SKILL_LEVEL",
    "MIN_SKILL_LEVEL",
    "Channel",
    "InvalidWorkItem",
    "ItemId",
    "ItemState",
    "QueueId",
    "SkillNeed",
    "WorkItem",
]

ItemId = NewType("ItemId", str)
QueueId = NewType("QueueId", str)

#: Skill levels run from 1 (novice) to 5 (expert); an agent without a skill has no level at all,
#: which is not the same as level 0: no requirement, however relaxed, matches a missing skill.
MIN_SKILL_LEVEL = 1
MAX_SKILL_LEVEL = 5


class Channel(StrEnum):
    """The media a work item arrives on; each has its own agent capacity."""

    CALL = "call"
    CHAT = "chat"
    EMAIL = "email"


class ItemState(StrEnum):
    """Where a live work item is: waiting in a queue, offered to (reserving) an agent, or worked."""

    WAITING = "waiting"
    OFFERED = "offered"
    ASSIGNED = "assigned"


class InvalidWorkItem(AcdError):
    """A work item's fields are out of range (bad level, empty id, non-finite time)."""

    error_id = "acd-invalid-work-item"


@dataclass(frozen=True, slots=True)
class SkillNeed:
    """One skill the item needs, at ``min_level`` or better."""

    skill: str
    min_level: int = MIN_SKILL_LEVEL

    def __post_init__(self) -> None:
        if not self.skill:
            raise InvalidWorkItem("a skill need has an empty skill name")
        if not MIN_SKILL_LEVEL <= self.min_level <= MAX_SKILL_LEVEL:
            raise InvalidWorkItem(
                f"skill {self.skill!r}: level {self.min_level} is outside "
                f"{MIN_SKILL_LEVEL}..{MAX_SKILL_LEVEL}"
            )


@dataclass(frozen=True, slots=True)
class WorkItem:
    """A call, chat or email waiting to be routed to one agent.

    ``needs`` are the item's own requirements (on top of its queue's skill expression);
    ``language``, when set, must be one of the agent's languages unless a relaxation step of the
    queue drops it. ``customer`` is an opaque customer reference (never logged unmasked).
    ``enqueued_at`` is when the item entered the system: overflows and re-queues after a missed
    offer keep it, so the item keeps its place in the fair order.
    """

    item_id: ItemId
    channel: Channel
    queue: QueueId
    enqueued_at: float
    priority: int = 0
    needs: tuple[SkillNeed, ...] = ()
    language: str | None = None
    customer: str = ""

    def __post_init__(self) -> None:
        if not self.item_id:
            raise InvalidWorkItem("a work item has an empty id")
        if not self.queue:
            raise InvalidWorkItem(f"work item {self.item_id!r} has an empty queue")
        if not math.isfinite(self.enqueued_at):
            raise InvalidWorkItem(f"work item {self.item_id!r}: enqueued_at is not finite")
        seen: set[str] = set()
        for need in self.needs:
            if need.skill in seen:
                raise InvalidWorkItem(
                    f"work item {self.item_id!r} needs skill {need.skill!r} twice"
                )
            seen.add(need.skill)
