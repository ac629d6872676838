"""Period and forecast logic on frozen dates far from today: a year end, a leap day and
both DST changes. Every BudgetBook and GovernanceLog here uses its default clock, so a
reading of the real clock anywhere in them (instead of the clock they were given) shows up
as a wrong period, whatever day the suite runs on."""
from __future__ import annotations

import json
import textwrap
import time
from datetime import datetime

import pytest
from freezegun import freeze_time

from costmeter.budgets.book import BudgetBook
from costmeter.budgets.config import loads_budgets
from costmeter.budgets.governance import GovernanceLog

H = 3600.0
D = 86400.0


def ts(s: str) -> float:
    return datetime.fromisoformat(s).timestamp()


def conf(text: str):
    return loads_budgets(textwrap.dedent(text), "budgets.yaml", {})


# (frozen instant, budgets.yaml, period, expected start, expected end, next instant, next start)
CASES = [
    pytest.param("2026-12-31T23:00:00+00:00", "global: {daily: 10, monthly: 100}\n", "monthly",
                 "2026-12-01T00:00:00+00:00", "2027-01-01T00:00:00+00:00",
                 "2027-01-01T00:00:00+00:00", "2027-01-01T00:00:00+00:00", id="year-end-monthly"),
    pytest.param("2026-12-31T23:00:00+00:00",
                 "budgets: [{name: y, period: annual, limit_usd: 1000}]\n", "annual",
                 "2026-01-01T00:00:00+00:00", "2027-01-01T00:00:00+00:00",
                 "2027-01-01T00:00:00+00:00", "2027-01-01T00:00:00+00:00", id="year-end-annual"),
    pytest.param("2028-02-29T12:00:00+00:00", "global: {daily: 10, monthly: 100}\n", "daily",
                 "2028-02-29T00:00:00+00:00", "2028-03-01T00:00:00+00:00",
                 "2028-03-01T00:00:00+00:00", "2028-03-01T00:00:00+00:00", id="leap-day-daily"),
    pytest.param("2028-02-29T12:00:00+00:00", "global: {daily: 10, monthly: 100}\n", "monthly",
                 "2028-02-01T00:00:00+00:00", "2028-03-01T00:00:00+00:00",
                 "2028-03-01T00:00:00+00:00", "2028-03-01T00:00:00+00:00", id="leap-month"),
    pytest.param("2027-03-14T17:00:00+00:00", "timezone: America/New_York\nglobal: {daily: 10}\n", "daily",
                 "2027-03-14T00:00:00-05:00", "2027-03-15T00:00:00-04:00",
                 "2027-03-15T04:00:00+00:00", "2027-03-15T00:00:00-04:00", id="dst-spring-forward-23h"),
    pytest.param("2027-11-07T17:00:00+00:00", "timezone: America/New_York\nglobal: {daily: 10}\n", "daily",
                 "2027-11-07T00:00:00-04:00", "2027-11-08T00:00:00-05:00",
                 "2027-11-08T05:00:00+00:00", "2027-11-08T00:00:00-05:00", id="dst-fall-back-25h"),
    pytest.param("2030-06-30T23:59:59+00:00",
                 "budgets: [{name: q, period: quarterly, limit_usd: 500}]\n", "quarterly",
                 "2030-04-01T00:00:00+00:00", "2030-07-01T00:00:00+00:00",
                 "2030-07-01T00:00:00+00:00", "2030-07-01T00:00:00+00:00", id="quarter-end-2030"),
]


@pytest.mark.parametrize("now,yaml,period,start,end,later,later_start", CASES)
def test_periods_and_forecast_on_far_dates(tmp_path, now, yaml, period, start, end, later, later_start):
    with freeze_time(now):
        gov = GovernanceLog(str(tmp_path / "governance.jsonl"))
        book = BudgetBook(conf(yaml), governance=gov)
        name = book.config.budgets[0].name
        book.observe("openai", "m", "t", "e", 4.0, time.time())
        book.tick()
        [s] = [s for s in book.get(name) if s.period == period]
        assert (s.period_start, s.period_end) == (ts(start), ts(end))
        assert s.spend_usd == 4.0
        # burn rate = spend / max(elapsed, 10 % of the period capped at one day)
        elapsed = time.time() - s.period_start
        floor = min(0.1 * (s.period_end - s.period_start), D)
        rate = 4.0 / max(elapsed, floor)
        assert s.daily_burn_rate_usd == pytest.approx(rate * D)
        assert s.forecast_usd == pytest.approx(4.0 + rate * (s.period_end - time.time()))
        # the governance log stamps the frozen time, not the real one
        if s.utilization_ratio >= 0.8:
            rec = json.loads((tmp_path / "governance.jsonl").read_text().splitlines()[0])
            assert rec["time"].startswith(now[:10])
    with freeze_time(later):
        book.tick()
        [s] = [s for s in book.get(name) if s.period == period]
        assert s.period_start == ts(later_start)
        assert s.spend_usd == 0.0


def test_governance_log_uses_frozen_clock(tmp_path):
    with freeze_time("2028-02-29T12:34:56Z"):
        gov = GovernanceLog(str(tmp_path / "g.jsonl"))
        gov.append("deny", budget="global")
    rec = json.loads((tmp_path / "g.jsonl").read_text())
    assert rec["time"] == "2028-02-29T12:34:56.000Z"


def test_dst_day_lengths_from_default_clock():
    for now, hours in (("2027-03-14T17:00:00+00:00", 23), ("2027-11-07T17:00:00+00:00", 25),
                       ("2027-07-01T17:00:00+00:00", 24)):
        with freeze_time(now):
            book = BudgetBook(conf("timezone: America/New_York\nglobal: {daily: 10}\n"))
            [s] = book.statuses()
            assert s.period_end - s.period_start == hours * H, now
