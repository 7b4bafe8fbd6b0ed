"""Business hours and holidays: is a calendar open at a given instant, in its own time zone."""

from __future__ import annotations

import zoneinfo
from datetime import UTC, date, datetime, time

from ivr.domain.flow import BusinessCalendar


def local_time(calendar: BusinessCalendar, at: datetime) -> datetime:
    """``at`` (naive values are taken as UTC) in the calendar's time zone."""
    if at.tzinfo is None:
        at = at.replace(tzinfo=UTC)
    return at.astimezone(zoneinfo.ZoneInfo(calendar.timezone))


def is_holiday(calendar: BusinessCalendar, day: date) -> bool:
    """True if ``day`` (a local date) is a dated or yearly holiday."""
    return day in calendar.holidays or (day.month, day.day) in calendar.yearly_holidays


def is_open(calendar: BusinessCalendar, at: datetime) -> bool:
    """True if ``at`` falls inside the opening hours of its local weekday and is no holiday.

    Opening hours are local wall-clock times, so they follow daylight-saving changes: an
    office open 08:00-18:00 in Europe/Paris opens at 07:00 UTC in winter and 06:00 UTC in
    summer.
    """
    local = local_time(calendar, at)
    if is_holiday(calendar, local.date()):
        return False
    now = local.time().replace(tzinfo=None)
    spans = calendar.hours.get(local.weekday(), ())
    return any(span.start <= now < span.end or now == span.end == time.max for span in spans)
