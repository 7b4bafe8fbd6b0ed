"""Business hours and holidays in a time zone, across daylight-saving changes."""

from __future__ import annotations

from datetime import UTC, date, datetime, time

from ivr.domain.business_calendar import is_holiday, is_open
from ivr.domain.flow import BusinessCalendar, Interval

OFFICE = BusinessCalendar(
    name="office",
    timezone="Europe/Paris",
    hours={day: (Interval(time(8), time(18)),) for day in range(5)},
    holidays=frozenset({date(2026, 4, 6)}),
    yearly_holidays=frozenset({(12, 25)}),
)


def utc(year: int, month: int, day: int, hour: int, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=UTC)


def test_given_winter_time_when_0730_utc_then_open_because_it_is_0830_in_paris() -> None:
    # Friday 27 March 2026, CET (UTC+1)
    assert is_open(OFFICE, utc(2026, 3, 27, 7, 30))
    assert not is_open(OFFICE, utc(2026, 3, 27, 6, 30))


def test_given_summer_time_after_the_change_when_0630_utc_then_open_at_0830_local() -> None:
    # DST starts Sunday 29 March 2026; Monday 30 March is CEST (UTC+2)
    assert is_open(OFFICE, utc(2026, 3, 30, 6, 30))
    assert not is_open(OFFICE, utc(2026, 3, 30, 5, 30))
    assert not is_open(OFFICE, utc(2026, 3, 30, 16, 0))  # 18:00 local: closed (end excluded)


def test_given_weekend_when_checked_then_closed() -> None:
    assert not is_open(OFFICE, utc(2026, 3, 28, 10, 0))


def test_given_dated_and_yearly_holidays_when_checked_then_closed_all_day() -> None:
    assert is_holiday(OFFICE, date(2026, 4, 6))
    assert not is_open(OFFICE, utc(2026, 4, 6, 9, 0))
    assert not is_open(OFFICE, utc(2030, 12, 25, 9, 0))
    assert is_open(OFFICE, utc(2026, 4, 7, 9, 0))


def test_given_a_holiday_in_local_time_when_utc_date_differs_then_the_local_date_counts() -> None:
    # 23:30 UTC on 5 April is 01:30 on 6 April in Paris: the holiday
    late = BusinessCalendar("late", "Europe/Paris", {0: (Interval(time(0), time.max),)})
    assert is_open(late, utc(2026, 4, 5, 23, 30))
    holiday = BusinessCalendar(
        "late", "Europe/Paris", late.hours, holidays=frozenset({date(2026, 4, 6)})
    )
    assert not is_open(holiday, utc(2026, 4, 5, 23, 30))


def test_given_a_naive_instant_when_checked_then_it_is_taken_as_utc() -> None:
    assert is_open(OFFICE, datetime(2026, 3, 27, 7, 30))
