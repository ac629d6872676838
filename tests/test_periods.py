"""Period boundaries: local midnight in the budget's timezone, exact across DST."""
from __future__ import annotations

import time
from datetime import date, datetime
from zoneinfo import ZoneInfo

import pytest
from freezegun import freeze_time

from costmeter.budgets.periods import period_bounds

UTC = ZoneInfo("UTC")
NY = ZoneInfo("America/New_York")
BERLIN = ZoneInfo("Europe/Berlin")
H = 3600.0
D = 86400.0


def ts(s: str) -> float:
    return datetime.fromisoformat(s).timestamp()


def local(t: float, tz) -> str:
    return datetime.fromtimestamp(t, tz).isoformat()


# ---- UTC calendar arithmetic -------------------------------------------------------

@freeze_time("2026-11-22T23:59:59.999999Z")
def test_daily_last_instant_of_day_is_in_that_day():
    s, e = period_bounds("daily", UTC, time.time())
    assert (s, e) == (ts("2026-11-22T00:00:00+00:00"), ts("2026-11-23T00:00:00+00:00"))


@freeze_time("2026-11-23T00:00:00Z")
def test_daily_midnight_starts_the_next_day():
    s, e = period_bounds("daily", UTC, time.time())
    assert s == ts("2026-11-23T00:00:00+00:00") == time.time()
    assert e - s == D


@pytest.mark.parametrize("now, start, end, days", [
    ("2026-02-14T12:00:00+00:00", "2026-02-01", "2026-03-01", 28),
    ("2028-02-29T23:59:59+00:00", "2028-02-01", "2028-03-01", 29),   # leap year
    ("2026-04-30T23:59:59+00:00", "2026-04-01", "2026-05-01", 30),
    ("2026-01-31T23:59:59+00:00", "2026-01-01", "2026-02-01", 31),
    ("2026-12-31T23:59:59+00:00", "2026-12-01", "2027-01-01", 31),   # year end
])
def test_monthly_lengths(now, start, end, days):
    s, e = period_bounds("monthly", UTC, ts(now))
    assert local(s, UTC) == start + "T00:00:00+00:00"
    assert local(e, UTC) == end + "T00:00:00+00:00"
    assert e - s == days * D


def test_month_rolls_exactly_at_first_of_month():
    assert period_bounds("monthly", UTC, ts("2026-03-01T00:00:00+00:00"))[0] == ts("2026-03-01T00:00:00+00:00")
    assert period_bounds("monthly", UTC, ts("2026-02-28T23:59:59.5+00:00"))[1] == ts("2026-03-01T00:00:00+00:00")


def test_year_end():
    s, e = period_bounds("annual", UTC, ts("2026-12-31T23:59:59+00:00"))
    assert (local(s, UTC), local(e, UTC)) == ("2026-01-01T00:00:00+00:00", "2027-01-01T00:00:00+00:00")
    assert e - s == 365 * D
    s, e = period_bounds("annual", UTC, ts("2028-06-01T00:00:00+00:00"))
    assert e - s == 366 * D
    s, e = period_bounds("daily", UTC, ts("2026-12-31T12:00:00+00:00"))
    assert local(e, UTC) == "2027-01-01T00:00:00+00:00"


@pytest.mark.parametrize("now, start, end", [
    ("2026-01-01T00:00:00+00:00", "2026-01-01", "2026-04-01"),
    ("2026-03-31T23:59:59+00:00", "2026-01-01", "2026-04-01"),
    ("2026-04-01T00:00:00+00:00", "2026-04-01", "2026-07-01"),
    ("2026-08-15T00:00:00+00:00", "2026-07-01", "2026-10-01"),
    ("2026-12-31T23:59:59+00:00", "2026-10-01", "2027-01-01"),   # quarter end = year end
])
def test_quarters(now, start, end):
    s, e = period_bounds("quarterly", UTC, ts(now))
    assert (local(s, UTC)[:10], local(e, UTC)[:10]) == (start, end)


@pytest.mark.parametrize("now, monday", [
    ("2026-11-22T23:00:00+00:00", "2026-11-16"),    # a Sunday: still the week that began Monday 16th
    ("2026-11-23T00:00:00+00:00", "2026-11-23"),    # Monday 00:00 starts a new week
    ("2026-12-31T12:00:00+00:00", "2026-12-28"),    # ISO week 53 of 2026 spans the year end
    ("2027-01-03T23:59:59+00:00", "2026-12-28"),
    ("2027-01-04T00:00:00+00:00", "2027-01-04"),
])
def test_iso_weeks(now, monday):
    s, e = period_bounds("weekly", UTC, ts(now))
    assert local(s, UTC)[:10] == monday
    assert e - s == 7 * D
    start_day = datetime.fromtimestamp(s, UTC).date()
    assert start_day.isocalendar().weekday == 1
    assert start_day.isocalendar()[:2] == datetime.fromtimestamp(ts(now), UTC).date().isocalendar()[:2]


# ---- timezones and DST -----------------------------------------------------------

@pytest.mark.parametrize("tz, day, hours", [
    (NY, "2026-03-08", 23),       # spring forward: 02:00 -> 03:00
    (NY, "2026-11-01", 25),       # fall back: 02:00 -> 01:00
    (NY, "2026-11-22", 24),
    (BERLIN, "2026-03-29", 23),
    (BERLIN, "2026-10-25", 25),
])
def test_dst_day_length_and_local_midnight(tz, day, hours):
    noon = datetime.fromisoformat(day + "T12:00:00").replace(tzinfo=tz)
    s, e = period_bounds("daily", tz, noon)
    assert e - s == hours * H
    assert local(s, tz)[11:19] == "00:00:00" and local(s, tz)[:10] == day
    assert local(e, tz)[11:19] == "00:00:00"


def test_new_york_fall_back_day_resets_at_local_midnight_not_utc():
    # 2026-11-01 00:00 EDT = 04:00Z; 2026-11-02 00:00 EST = 05:00Z.
    s, e = period_bounds("daily", NY, ts("2026-11-01T04:00:00+00:00"))
    assert (s, e) == (ts("2026-11-01T04:00:00+00:00"), ts("2026-11-02T05:00:00+00:00"))
    # one microsecond before local midnight is still the previous day
    s2, e2 = period_bounds("daily", NY, ts("2026-11-01T03:59:59.999999+00:00"))
    assert e2 == s and e2 - s2 == 24 * H
    # both 01:30 local times (EDT then EST) are in the same 25 h day
    assert period_bounds("daily", NY, ts("2026-11-01T05:30:00+00:00")) == (s, e)
    assert period_bounds("daily", NY, ts("2026-11-01T06:30:00+00:00")) == (s, e)


def test_monthly_and_weekly_across_dst():
    s, e = period_bounds("monthly", NY, ts("2026-03-15T12:00:00+00:00"))
    assert e - s == 31 * D - H
    s, e = period_bounds("monthly", NY, ts("2026-11-15T12:00:00+00:00"))
    assert e - s == 30 * D + H
    s, e = period_bounds("weekly", NY, ts("2026-03-08T12:00:00+00:00"))   # Monday 2 March .. Monday 9 March
    assert local(s, NY) == "2026-03-02T00:00:00-05:00" and local(e, NY) == "2026-03-09T00:00:00-04:00"
    assert e - s == 7 * D - H
    s, e = period_bounds("annual", BERLIN, ts("2026-06-01T00:00:00+00:00"))
    assert local(s, BERLIN) == "2026-01-01T00:00:00+01:00" and e - s == 365 * D


@pytest.mark.parametrize("zone, now, start, hours", [
    # Havana springs forward at midnight: 00:00 does not exist, the day starts at the jump.
    ("America/Havana", "2026-03-08T12:00:00+00:00", "2026-03-08T05:00:00+00:00", 23),
    ("America/Santiago", "2026-09-06T12:00:00+00:00", "2026-09-06T04:00:00+00:00", 23),
    # Beirut falls back at midnight: 23:00-24:00 on the 24th happens twice.
    ("Asia/Beirut", "2026-10-24T21:30:00+00:00", "2026-10-23T21:00:00+00:00", 25),
])
def test_zones_that_jump_at_midnight(zone, now, start, hours):
    s, e = period_bounds("daily", zone, ts(now))
    assert s == ts(start) and e - s == hours * H
    assert s <= ts(now) < e


@freeze_time("2026-11-22T10:00:00Z")
def test_fixed_range_ignores_now():
    fixed = (date(2026, 11, 1), date(2026, 12, 1))
    assert period_bounds("fixed", NY, time.time(), fixed) == (ts("2026-11-01T00:00:00-04:00"),
                                                             ts("2026-12-01T00:00:00-05:00"))
    assert period_bounds("fixed", UTC, 0.0, (10.0, 20.0)) == (10.0, 20.0)


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="unknown period 'fortnightly'"):
        period_bounds("fortnightly", UTC, 0.0)
    with pytest.raises(ValueError, match="timezone-aware"):
        period_bounds("daily", UTC, datetime(2026, 11, 22))
    with pytest.raises(ValueError, match="not before end"):
        period_bounds("fixed", UTC, 0.0, (date(2026, 12, 1), date(2026, 11, 1)))
    with pytest.raises(ValueError, match="fixed=.start, end."):
        period_bounds("fixed", UTC, 0.0)


def test_every_instant_of_a_dst_year_lies_in_its_period():
    # Hourly sweep of 2026 in New York: bounds contain the instant, consecutive periods tile.
    t = ts("2026-01-01T05:00:00+00:00")
    prev = None
    while t < ts("2027-01-01T05:00:00+00:00"):
        for p in ("daily", "weekly", "monthly", "quarterly"):
            s, e = period_bounds(p, NY, t)
            assert s <= t < e
            assert datetime.fromtimestamp(s, NY).time().isoformat() == "00:00:00"
        s, e = period_bounds("daily", NY, t)
        if prev is not None and prev != (s, e):
            assert s == prev[1]
        prev = (s, e)
        t += 1800.0


def test_module_examples():
    import doctest

    from costmeter.budgets import periods
    assert doctest.testmod(periods).failed == 0
