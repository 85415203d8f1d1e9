"""Dates as the simulated Enedis reads and writes them: French days, ISO 8601 durations, its formats."""

from __future__ import annotations

import calendar
import datetime as dt
import re

try:  # Enedis's "today" is the French one
    from zoneinfo import ZoneInfo

    PARIS = ZoneInfo("Europe/Paris")
except Exception:  # pragma: no cover - no tz database
    PARIS = dt.UTC

DATE_RE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
DURATION_RE = re.compile(r"^P(?:(\d+)Y)?(?:(\d+)M)?(?:(\d+)D)?$")


def today(clock) -> dt.date:
    """The date in Paris at `clock()` seconds since the epoch."""
    return dt.datetime.fromtimestamp(clock(), PARIS).date()


def parse_date(value: str | None) -> dt.date | None:
    """The date of a "YYYY-MM-DD" parameter; None when absent or anything else."""
    if not value or not DATE_RE.match(value):
        return None
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        return None


def minus_months(day: dt.date, months: int) -> dt.date:
    """The same day `months` months earlier (later when negative), clamped to the month's last day."""
    month_index = day.year * 12 + day.month - 1 - months
    year, month = divmod(month_index, 12)
    month += 1
    return dt.date(year, month, min(day.day, calendar.monthrange(year, month)[1]))


def add_duration(day: dt.date, duration: str) -> dt.date:
    """`day` plus an ISO 8601 duration of years, months and days ("P3Y", "P1M15D")."""
    years, months, days = (int(x or 0) for x in DURATION_RE.match(duration).groups())
    return minus_months(day, -(12 * years + months)) + dt.timedelta(days=days)


def duration_days(duration: str | None) -> int | None:
    """The rough length in days of an ISO 8601 duration (a year is 365 days, a month 30); None if invalid."""
    match = DURATION_RE.match(duration or "")
    if not match or not any(match.groups()):
        return None
    years, months, days = (int(x or 0) for x in match.groups())
    return years * 365 + months * 30 + days


def _local_midnight(day: dt.date) -> dt.datetime:
    return dt.datetime.combine(day, dt.time(), PARIS)


def itc_date(day: dt.date) -> str:
    """ "2024-07-31T00:00:00+0200", the format of the 2026 contract (ITC) APIs."""
    return _local_midnight(day).strftime("%Y-%m-%dT%H:%M:%S%z")


def v5_contract_date(day: dt.date) -> str:
    """ "2013-08-14+01:00", the format of the v5 contract APIs."""
    offset = _local_midnight(day).strftime("%z")
    return f"{day.isoformat()}{offset[:3]}:{offset[3:]}"
