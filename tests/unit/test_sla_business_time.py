"""Service-level arithmetic on the IVR's business calendar: working time, pauses, breaches."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta

import pytest

from ivr.domain.business_calendar import is_open
from tickets.errors import InvalidCalendar, InvalidPolicy
from tickets.models import Channel, Priority
from tickets.sla import (
    BusinessCalendar,
    Deadlines,
    Interval,
    SlaPolicy,
    Target,
    add_business_time,
    breaches,
    business_time_between,
    deadlines_on_resume,
    phone_service,
    remaining_at_pause,
    select_policy,
    start_deadlines,
    validate_calendar,
)

OFFICE = BusinessCalendar(
    name="office",
    timezone="Europe/Paris",
    hours={day: (Interval(time(9), time(12)), Interval(time(13), time(17))) for day in range(5)},
    holidays=frozenset({date(2026, 4, 6)}),  # Easter Monday
    yearly_holidays=frozenset({(12, 25)}),
)
H = timedelta(hours=1)


def utc(month: int, day: int, hour: int, minute: int = 0) -> datetime:
    return datetime(2026, month, day, hour, minute, tzinfo=UTC)


def test_given_friday_afternoon_when_two_hours_added_then_due_monday_morning() -> None:
    # Friday 27 March 15:00 Paris (14:00 UTC, CET): 2 h left on Friday, due at Friday 17:00
    assert add_business_time(OFFICE, utc(3, 27, 14), 2 * H) == utc(3, 27, 16)
    # 3 h: one more hour on Monday 30 March, now CEST: 09:00 + 1 h = 10:00 local = 08:00 UTC
    assert add_business_time(OFFICE, utc(3, 27, 14), 3 * H) == utc(3, 30, 8)


def test_given_lunch_break_and_holiday_when_time_added_then_both_skipped() -> None:
    # Thursday 2 April 11:00 CEST (09:00 UTC), 2 h: 1 h to noon, lunch, 1 h -> 14:00 CEST
    assert add_business_time(OFFICE, utc(4, 2, 9), 2 * H) == utc(4, 2, 12)
    # Friday 3 April 16:00 CEST + 2 h: 1 h Friday, Monday 6 April is a holiday -> Tuesday 10:00
    assert add_business_time(OFFICE, utc(4, 3, 14), 2 * H) == utc(4, 7, 8)


def test_given_an_instant_outside_hours_when_time_added_then_counting_starts_at_opening() -> None:
    saturday = utc(3, 28, 10)
    assert not is_open(OFFICE, saturday)  # the same calendar the IVR answers with
    assert add_business_time(OFFICE, saturday, H) == utc(3, 30, 8)


def test_given_two_instants_when_measured_then_only_working_time_counts() -> None:
    assert business_time_between(OFFICE, utc(3, 27, 14), utc(3, 30, 8)) == 3 * H
    assert business_time_between(OFFICE, utc(3, 30, 8), utc(3, 27, 14)) == -3 * H
    assert business_time_between(None, utc(3, 27, 14), utc(3, 28, 14)) == 24 * H


@pytest.mark.parametrize("hours", [{}, {0: ()}, {d: () for d in range(7)}])
def test_given_a_calendar_with_no_working_hours_when_validated_then_refused(
    hours: dict[int, tuple[Interval, ...]],
) -> None:
    empty = BusinessCalendar(name="never", timezone="UTC", hours=hours)
    with pytest.raises(InvalidCalendar) as caught:
        validate_calendar(empty)
    assert caught.value.error_id == "sla-calendar-invalid"
    with pytest.raises(InvalidCalendar):
        SlaPolicy(name="p", first_response=H, calendar=empty)


def test_given_every_day_a_holiday_when_time_added_then_refused_instead_of_looping() -> None:
    always_off = BusinessCalendar(
        name="closed",
        timezone="UTC",
        hours={0: (Interval(time(9), time(17)),)},
        yearly_holidays=frozenset((m, d) for m in range(1, 13) for d in range(1, 32)),
    )
    with pytest.raises(InvalidCalendar):
        add_business_time(always_off, utc(3, 2, 9), H)


def test_given_bad_zone_or_span_when_validated_then_refused() -> None:
    with pytest.raises(InvalidCalendar):
        validate_calendar(BusinessCalendar(name="x", timezone="Mars/Olympus", hours={0: ()}))
    with pytest.raises(InvalidCalendar):
        validate_calendar(
            BusinessCalendar(name="x", timezone="UTC", hours={0: (Interval(time(17), time(9)),)})
        )
    with pytest.raises(InvalidPolicy):
        SlaPolicy(name="neg", first_response=-H)


def test_given_policies_when_selected_then_most_specific_wins() -> None:
    default = SlaPolicy(name="default", first_response=8 * H)
    urgent = SlaPolicy(name="urgent", first_response=H, priority=Priority.URGENT)
    urgent_phone = SlaPolicy(
        name="urgent-phone", first_response=H / 4, priority=Priority.URGENT, channel=Channel.PHONE
    )
    chat = SlaPolicy(name="chat", first_response=H / 60, channel=Channel.CHAT)
    policies = [default, urgent, urgent_phone, chat]
    assert select_policy(policies, Priority.URGENT, Channel.PHONE) == urgent_phone
    assert select_policy(policies, Priority.URGENT, Channel.CHAT) == urgent
    assert select_policy(policies, Priority.LOW, Channel.CHAT) == chat
    assert select_policy(policies, Priority.LOW, Channel.EMAIL) == default
    assert select_policy([urgent], Priority.LOW, Channel.EMAIL) is None


def test_given_a_pause_over_the_weekend_when_resumed_then_remaining_time_is_kept() -> None:
    policy = SlaPolicy(name="p", first_response=4 * H, resolution=16 * H, calendar=OFFICE)
    deadlines = start_deadlines(policy, utc(3, 26, 8))  # Thursday 09:00 CET
    assert deadlines.first_response == utc(3, 26, 13)  # lunch skipped: 14:00 CET
    paused = utc(3, 26, 10)  # 11:00 CET: 2 h used
    remaining = remaining_at_pause(policy, deadlines, paused)
    assert remaining[Target.FIRST_RESPONSE] == 2 * 3600
    resumed = deadlines_on_resume(policy, remaining, utc(3, 30, 7))  # Monday 09:00 CEST
    assert resumed.first_response == utc(3, 30, 9)  # 11:00 CEST


def test_given_a_breached_deadline_when_paused_and_resumed_then_still_breached() -> None:
    policy = SlaPolicy(name="p", first_response=H)
    deadlines = Deadlines(first_response=utc(3, 2, 10))
    remaining = remaining_at_pause(policy, deadlines, utc(3, 2, 11))
    resumed = deadlines_on_resume(policy, remaining, utc(3, 3, 11))
    assert resumed.first_response is not None
    assert breaches(resumed, utc(3, 3, 11)) != []


def test_given_deadlines_when_checked_then_passed_ones_reported_once() -> None:
    deadlines = Deadlines(first_response=utc(3, 2, 10), resolution=utc(3, 5, 10))
    assert [b.target for b in breaches(deadlines, utc(3, 2, 10))] == [Target.FIRST_RESPONSE]
    assert breaches(deadlines, utc(3, 2, 11), already=[Target.FIRST_RESPONSE]) == []


def test_given_calls_when_phone_service_measured_then_answer_time_and_abandon() -> None:
    policy = SlaPolicy(name="p", first_response=H, phone_answer=timedelta(seconds=20))
    fast = phone_service(policy, queue_wait_s=12.0, answered=True, abandoned=False)
    assert (fast.answer_s, fast.within_target) == (12.0, True)
    gone = phone_service(policy, queue_wait_s=45.0, answered=False, abandoned=True)
    assert (gone.answer_s, gone.abandoned, gone.within_target) == (None, True, False)
    assert (
        phone_service(None, queue_wait_s=3.0, answered=True, abandoned=False).within_target is None
    )
