"""Service levels, pure: policies by priority and channel, business-time arithmetic, deadlines.

Calendars are the IVR's (`ivr.domain.flow.BusinessCalendar`: weekly opening hours in local
wall-clock time, dated and yearly holidays, one IANA zone; `ivr.domain.business_calendar` decides
"open now" for a flow), so the hours a caller hears and the hours an SLA counts are one object.
This module adds the arithmetic SLAs need: the business time between two instants and the
instant a business duration after a start. `None` as calendar means around the clock.

A policy has up to three targets (first response, next response, resolution), each a business
duration. Deadlines are set when the ticket starts; the next-response deadline whenever the
customer writes after an agent has answered. While the ticket waits on the customer the clock
stops: pausing keeps each open deadline's *remaining* business time, resuming sets it again
from the resume instant. A deadline is breached when it passes before it is met.

Nothing here does I/O; the clock is the caller's.
"""

from __future__ import annotations

import zoneinfo
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from enum import StrEnum

from ivr.domain.business_calendar import is_holiday
from ivr.domain.flow import BusinessCalendar, Interval
from tickets.errors import InvalidCalendar, InvalidPolicy
from tickets.models import Channel, Priority

__all__ = [
    "BusinessCalendar",
    "Interval",
    "SlaPolicy",
    "Target",
    "add_business_time",
    "business_time_between",
    "select_policy",
    "validate_calendar",
]

SEARCH_DAYS = 366 * 2  # a calendar without one open minute in two years cannot measure time


class Target(StrEnum):
    FIRST_RESPONSE = "first_response"
    NEXT_RESPONSE = "next_response"
    RESOLUTION = "resolution"


@dataclass(frozen=True, slots=True)
class SlaPolicy:
    """Targets for tickets of a priority and channel (None: any), counted on a calendar."""

    name: str
    first_response: timedelta | None = None
    next_response: timedelta | None = None
    resolution: timedelta | None = None
    priority: Priority | None = None
    channel: Channel | None = None
    calendar: BusinessCalendar | None = None
    phone_answer: timedelta | None = None  # a call answered within this met the phone SLA

    def __post_init__(self) -> None:
        for name in ("first_response", "next_response", "resolution", "phone_answer"):
            value = getattr(self, name)
            if value is not None and value <= timedelta(0):
                raise InvalidPolicy(f"policy {self.name!r}: {name} must be positive")
        if self.calendar is not None:
            validate_calendar(self.calendar)

    def target(self, which: Target) -> timedelta | None:
        return {
            Target.FIRST_RESPONSE: self.first_response,
            Target.NEXT_RESPONSE: self.next_response,
            Target.RESOLUTION: self.resolution,
        }[which]


def select_policy(
    policies: Iterable[SlaPolicy], priority: Priority, channel: Channel
) -> SlaPolicy | None:
    """The most specific matching policy: priority and channel, then priority, then channel, then
    neither; None when nothing matches."""
    best: tuple[int, SlaPolicy] | None = None
    for policy in policies:
        if policy.priority not in (None, priority) or policy.channel not in (None, channel):
            continue
        score = (2 if policy.priority is not None else 0) + (1 if policy.channel is not None else 0)
        if best is None or score > best[0]:
            best = (score, policy)
    return None if best is None else best[1]


def validate_calendar(calendar: BusinessCalendar) -> None:
    """Raise `InvalidCalendar` for an unknown zone, bad spans or a week without working hours."""
    try:
        zoneinfo.ZoneInfo(calendar.timezone)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError) as err:
        raise InvalidCalendar(f"calendar {calendar.name!r}: unknown time zone") from err
    spans = [span for day in range(7) for span in calendar.hours.get(day, ())]
    if any(day not in range(7) for day in calendar.hours):
        raise InvalidCalendar(f"calendar {calendar.name!r}: weekdays are 0 (Monday) to 6")
    if any(span.end <= span.start for span in spans):
        raise InvalidCalendar(f"calendar {calendar.name!r}: a span must end after it starts")
    if not spans:
        raise InvalidCalendar(f"calendar {calendar.name!r} has no working hours at all")


def _aware(at: datetime) -> datetime:
    if at.tzinfo is None:
        raise ValueError("service-level times must be timezone-aware")
    return at.astimezone(UTC)


def _open_spans(calendar: BusinessCalendar, day: date) -> list[tuple[datetime, datetime]]:
    """The day's working spans as UTC instants (empty on a holiday)."""
    if is_holiday(calendar, day):
        return []
    zone = zoneinfo.ZoneInfo(calendar.timezone)
    out: list[tuple[datetime, datetime]] = []
    for span in sorted(calendar.hours.get(day.weekday(), ()), key=lambda s: s.start):
        start = datetime.combine(day, span.start, tzinfo=zone).astimezone(UTC)
        if span.end == time.max:
            end_local = datetime.combine(day + timedelta(days=1), time(0), tzinfo=zone)
        else:
            end_local = datetime.combine(day, span.end, tzinfo=zone)
        end = end_local.astimezone(UTC)
        if end > start:
            out.append((start, end))
    return out


def _local_day(calendar: BusinessCalendar, at: datetime) -> date:
    return at.astimezone(zoneinfo.ZoneInfo(calendar.timezone)).date()


def add_business_time(
    calendar: BusinessCalendar | None, start: datetime, duration: timedelta
) -> datetime:
    """The instant `duration` of working time after `start` (24/7 when calendar is None)."""
    start = _aware(start)
    if calendar is None:
        return start + duration
    if duration <= timedelta(0):
        return start
    remaining = duration
    day = _local_day(calendar, start) - timedelta(days=1)  # a span may start the evening before
    for _ in range(SEARCH_DAYS):
        for span_start, span_end in _open_spans(calendar, day):
            begin = max(span_start, start)
            if begin >= span_end:
                continue
            available = span_end - begin
            if remaining <= available:
                return begin + remaining
            remaining -= available
        day += timedelta(days=1)
    raise InvalidCalendar(f"calendar {calendar.name!r} has no working time within two years")


def business_time_between(
    calendar: BusinessCalendar | None, start: datetime, end: datetime
) -> timedelta:
    """Working time from `start` to `end`; negative when `end` is before `start`."""
    start, end = _aware(start), _aware(end)
    if end < start:
        return -business_time_between(calendar, end, start)
    if calendar is None:
        return end - start
    total = timedelta(0)
    day = _local_day(calendar, start) - timedelta(days=1)
    last = _local_day(calendar, end)
    while day <= last:
        for span_start, span_end in _open_spans(calendar, day):
            begin, finish = max(span_start, start), min(span_end, end)
            if finish > begin:
                total += finish - begin
        day += timedelta(days=1)
    return total


@dataclass(frozen=True, slots=True)
class Deadlines:
    """Due instants of a ticket's open targets (None: no such target, or already met)."""

    first_response: datetime | None = None
    next_response: datetime | None = None
    resolution: datetime | None = None

    def get(self, which: Target) -> datetime | None:
        return {
            Target.FIRST_RESPONSE: self.first_response,
            Target.NEXT_RESPONSE: self.next_response,
            Target.RESOLUTION: self.resolution,
        }[which]

    def items(self) -> list[tuple[Target, datetime]]:
        return [(t, due) for t in Target if (due := self.get(t)) is not None]


def start_deadlines(policy: SlaPolicy, started_at: datetime) -> Deadlines:
    """The first-response and resolution deadlines of a ticket starting at `started_at`."""

    def due(target: timedelta | None) -> datetime | None:
        return None if target is None else add_business_time(policy.calendar, started_at, target)

    return Deadlines(first_response=due(policy.first_response), resolution=due(policy.resolution))


def next_response_due(policy: SlaPolicy, customer_wrote_at: datetime) -> datetime | None:
    """When an agent must answer a customer's follow-up written at `customer_wrote_at`."""
    if policy.next_response is None:
        return None
    return add_business_time(policy.calendar, customer_wrote_at, policy.next_response)


def remaining_at_pause(
    policy: SlaPolicy, deadlines: Deadlines, paused_at: datetime
) -> dict[str, float]:
    """Seconds of working time left per open deadline when the clock stops (negative: late)."""
    return {
        str(which): business_time_between(policy.calendar, paused_at, due).total_seconds()
        for which, due in deadlines.items()
    }


def deadlines_on_resume(
    policy: SlaPolicy, remaining: Mapping[str, float], resumed_at: datetime
) -> Deadlines:
    """The deadlines again, each its remaining working time after `resumed_at`.

    A deadline that was already late when paused stays where it was late by: resuming at once
    puts it `-remaining` in the past (breaches are not forgiven by pausing).
    """
    values: dict[str, datetime] = {}
    for which, seconds in remaining.items():
        if seconds >= 0:
            values[which] = add_business_time(
                policy.calendar, resumed_at, timedelta(seconds=seconds)
            )
        else:
            values[which] = resumed_at + timedelta(seconds=seconds)
    return Deadlines(
        first_response=values.get(Target.FIRST_RESPONSE),
        next_response=values.get(Target.NEXT_RESPONSE),
        resolution=values.get(Target.RESOLUTION),
    )


@dataclass(frozen=True, slots=True)
class Breach:
    target: Target
    due_at: datetime


def breaches(deadlines: Deadlines, now: datetime, already: Iterable[Target] = ()) -> list[Breach]:
    """The open deadlines that have passed at `now` and were not reported before."""
    seen = set(already)
    return [
        Breach(which, due) for which, due in deadlines.items() if due <= now and which not in seen
    ]


@dataclass(frozen=True, slots=True)
class PhoneService:
    """A call's service level: time to answer and whether the caller gave up."""

    answer_s: float | None
    abandoned: bool
    within_target: bool | None = field(default=None)


def phone_service(
    policy: SlaPolicy | None,
    *,
    queue_wait_s: float | None,
    answered: bool,
    abandoned: bool,
) -> PhoneService:
    """Answer time and abandon of a call, judged against the policy's phone-answer target."""
    answer_s = queue_wait_s if answered else None
    within: bool | None = None
    if policy is not None and policy.phone_answer is not None:
        limit = policy.phone_answer.total_seconds()
        within = answer_s is not None and answer_s <= limit
    return PhoneService(answer_s=answer_s, abandoned=abandoned, within_target=within)
