"""Budget periods: where the current period starts and ends, in Unix seconds.

Every boundary is local midnight in the budget's timezone, computed with
:mod:`zoneinfo`, so a period is exactly as long as the wall clock says: the
day America/New_York springs forward (2026-03-08) is 23 hours long, the day it
falls back (2026-11-01) is 25 hours long, and a month is 28, 29, 30 or 31 such
days. Periods are half-open, ``[start, end)``: an event at exactly ``end``
belongs to the next period.

    >>> from zoneinfo import ZoneInfo
    >>> s, e = period_bounds("daily", ZoneInfo("America/New_York"), 1772946000.0)
    >>> (e - s) / 3600
    23.0

Periods: ``daily``, ``weekly`` (ISO week, Monday 00:00 to the next Monday),
``monthly``, ``quarterly`` (Jan, Apr, Jul, Oct), ``annual``, and ``fixed``
(an explicit ``(start, end)`` range, which does not roll).

Zones whose clocks jump at midnight are handled: when local midnight does not
exist, the day starts at the instant of the jump; when it exists twice, at the
first one.
"""
from __future__ import annotations

from datetime import date, datetime, timedelta, tzinfo
from zoneinfo import ZoneInfo

PERIODS = ("daily", "weekly", "monthly", "quarterly", "annual")
FIXED = "fixed"
ALL_PERIODS = PERIODS + (FIXED,)

# Nominal lengths, only for ordering and sanity checks; never for boundaries.
NOMINAL_SECONDS = {"daily": 86400.0, "weekly": 7 * 86400.0, "monthly": 30.5 * 86400.0,
                   "quarterly": 91.5 * 86400.0, "annual": 365.25 * 86400.0}


def local_midnight(day: date, tz: tzinfo) -> float:
    """Unix seconds of 00:00 local time on ``day`` in ``tz``."""
    return datetime(day.year, day.month, day.day, tzinfo=tz).timestamp()


def to_timestamp(value, tz: tzinfo) -> float:
    """A date (local midnight in ``tz``), a datetime (naive means local in ``tz``)
    or Unix seconds, as Unix seconds."""
    if isinstance(value, datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=tz)
        return value.timestamp()
    if isinstance(value, date):
        return local_midnight(value, tz)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"expected a date, datetime or Unix seconds, got {value!r}")
    return float(value)


def _first_day(period: str, d: date) -> date:
    if period == "daily":
        return d
    if period == "weekly":
        return d - timedelta(days=d.weekday())          # Monday; matches date.isocalendar()
    if period == "monthly":
        return d.replace(day=1)
    if period == "quarterly":
        return date(d.year, (d.month - 1) // 3 * 3 + 1, 1)
    if period == "annual":
        return date(d.year, 1, 1)
    raise ValueError(f"unknown period {period!r} (expected one of {', '.join(ALL_PERIODS)})")


def _add(period: str, d: date, n: int) -> date:
    """The first day of the period ``n`` periods after the one starting on ``d``."""
    if period == "daily":
        return d + timedelta(days=n)
    if period == "weekly":
        return d + timedelta(days=7 * n)
    months = {"monthly": 1, "quarterly": 3, "annual": 12}[period] * n
    m = d.month - 1 + months
    return date(d.year + m // 12, m % 12 + 1, 1)


def period_bounds(period: str, tz: tzinfo | str, now, fixed=None) -> tuple[float, float]:
    """``(start, end)`` in Unix seconds of the ``period`` that contains ``now``.

    ``now`` is Unix seconds or an aware datetime. ``tz`` is a tzinfo or an IANA
    name. For ``period="fixed"``, ``fixed`` is ``(start, end)`` (dates are local
    midnight in ``tz``) and is returned whatever ``now`` is.
    """
    if isinstance(tz, str):
        tz = ZoneInfo(tz)
    if period == FIXED:
        if fixed is None:
            raise ValueError("period 'fixed' needs fixed=(start, end)")
        start, end = to_timestamp(fixed[0], tz), to_timestamp(fixed[1], tz)
        if not start < end:
            raise ValueError(f"fixed period start {fixed[0]!r} is not before end {fixed[1]!r}")
        return start, end
    if isinstance(now, datetime):
        if now.tzinfo is None:
            raise ValueError("now must be timezone-aware (or Unix seconds)")
        ts = now.timestamp()
    else:
        ts = float(now)
    first = _first_day(period, datetime.fromtimestamp(ts, tz).date())
    start, end = local_midnight(first, tz), local_midnight(_add(period, first, 1), tz)
    # Only in zones that repeat the hour before midnight can the local date of
    # ``ts`` disagree with the instant of midnight; step to the period that holds ts.
    while ts >= end:
        first = _add(period, first, 1)
        start, end = end, local_midnight(_add(period, first, 1), tz)
    while ts < start:
        first = _add(period, first, -1)
        start, end = local_midnight(first, tz), start
    return start, end
