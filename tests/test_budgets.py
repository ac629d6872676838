"""Budgets: budgets.yaml (simple and rich form, env overrides, errors with file:line:key),
accounting by timestamp, period roll-over, restore, status/forecast, enforcement, governance."""
from __future__ import annotations

import json
import os
import textwrap
import threading
import time
from datetime import datetime

import pytest
from freezegun import freeze_time

from costmeter.budgets import governance
from costmeter.budgets.book import BudgetBook, BudgetStatus
from costmeter.budgets.config import Thresholds, load_budgets, loads_budgets
from costmeter.budgets.governance import GovernanceLog
from costmeter.config.loader import ConfigError, ConfigErrors

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
H = 3600.0


def ts(s: str) -> float:
    return datetime.fromisoformat(s).timestamp()


def conf(text: str, env: dict | None = None):
    return loads_budgets(textwrap.dedent(text), "budgets.yaml", env or {})


def err(text: str, env: dict | None = None) -> str:
    with pytest.raises((ConfigError, ConfigErrors)) as e:
        conf(text, env)
    return str(e.value)


def by_key(cfg):
    return {(b.name, b.period): b for b in cfg.budgets}


SIMPLE = """\
global:  {daily: 25.0, monthly: 500.0}
tenants:
  trial-tier: {daily: 1.0, monthly: 10.0}
  startup-tier:
    daily: 5.0
"""


# ---- configuration -------------------------------------------------------------

def test_simple_form():
    cfg = conf(SIMPLE)
    b = by_key(cfg)
    assert sorted(b) == [("global", "daily"), ("global", "monthly"), ("tenant:startup-tier", "daily"),
                         ("tenant:trial-tier", "daily"), ("tenant:trial-tier", "monthly")]
    assert b["global", "daily"].selector == () and b["global", "daily"].limit_usd == 25.0
    assert b["tenant:trial-tier", "monthly"].selector == (("tenant", "trial-tier"),)
    assert b["tenant:trial-tier", "monthly"].limit_usd == 10.0
    assert all(s.thresholds == Thresholds(0.80, 0.95, 1.00) and s.timezone == "UTC" for s in cfg.budgets)
    assert cfg.tenant_defaults == {}


def test_rich_form_combined_with_simple_form():
    cfg = conf("""\
        timezone: Europe/Berlin
        thresholds: {warning: 0.7, critical: 0.9, exceeded: 1.1}
        global: {monthly: 500}
        tenant_defaults: {daily: 2, weekly: 10}
        budgets:
          - name: openai-gpt-4o
            selector: {provider: openai, model: gpt-4o}
            period: monthly
            limit_usd: 300
            thresholds: {warning: 0.5}
            timezone: America/New_York
          - name: acme-search
            selector: {tenant: acme, endpoint: /v1/search}
            limits: {daily: 5, weekly: 30, quarterly: 250, annual: 900}
          - name: launch-week
            period: {start: 2026-11-23, end: 2026-11-30}
            limit_usd: 1000
        """)
    b = by_key(cfg)
    assert cfg.timezone == "Europe/Berlin" and cfg.tenant_defaults == {"daily": 2.0, "weekly": 10.0}
    assert b["global", "monthly"].timezone == "Europe/Berlin"
    assert b["global", "monthly"].thresholds == Thresholds(0.7, 0.9, 1.1)
    g = b["openai-gpt-4o", "monthly"]
    assert g.selector == (("model", "gpt-4o"), ("provider", "openai")) and g.limit_usd == 300.0
    assert g.thresholds == Thresholds(0.5, 0.9, 1.1) and g.timezone == "America/New_York"
    assert {p for (n, p) in b if n == "acme-search"} == {"daily", "weekly", "quarterly", "annual"}
    assert b["acme-search", "weekly"].selector == (("endpoint", "/v1/search"), ("tenant", "acme"))
    f = b["launch-week", "fixed"]
    # dates are local midnight in the budget's (here the file's) timezone
    assert f.fixed == (ts("2026-11-23T00:00:00+01:00"), ts("2026-11-30T00:00:00+01:00"))


def test_shipped_config_loads():
    cfg = load_budgets(os.path.join(ROOT, "config", "budgets.yaml"), env={})
    b = by_key(cfg)
    assert b["global", "daily"].limit_usd == 25.0 and b["tenant:trial-tier", "daily"].limit_usd == 1.0
    assert cfg.tenant_defaults == {"daily": 5.0, "monthly": 100.0}


def test_no_file_means_no_budgets_but_env_applies(tmp_path):
    assert load_budgets(None, env={}).budgets == []
    assert load_budgets(str(tmp_path / "missing.yaml"), env={}).budgets == []
    cfg = load_budgets(None, env={"GLOBAL_BUDGET_DAILY": "7.5", "TENANT_BUDGET_MONTHLY_DEFAULT": "40"})
    assert [(s.name, s.period, s.limit_usd, s.selector) for s in cfg.budgets] == [("global", "daily", 7.5, ())]
    assert cfg.tenant_defaults == {"monthly": 40.0}


def test_env_reads_os_environ_when_env_is_none(monkeypatch):
    monkeypatch.setenv("GLOBAL_BUDGET_MONTHLY", "123")
    for v in ("BUDGET_SOFT_THRESHOLD", "BUDGET_HARD_THRESHOLD", "GLOBAL_BUDGET_DAILY",
              "TENANT_BUDGET_DAILY_DEFAULT", "TENANT_BUDGET_MONTHLY_DEFAULT"):
        monkeypatch.delenv(v, raising=False)
    assert [(s.name, s.period, s.limit_usd) for s in load_budgets(None).budgets] == [("global", "monthly", 123.0)]


def test_env_overrides_beat_the_file():
    cfg = conf(SIMPLE + "tenant_defaults: {daily: 1, monthly: 2}\nthresholds: {warning: 0.6}\n", env={
        "BUDGET_SOFT_THRESHOLD": "0.75", "BUDGET_HARD_THRESHOLD": "1.2",
        "GLOBAL_BUDGET_DAILY": "30", "GLOBAL_BUDGET_MONTHLY": "600",
        "TENANT_BUDGET_DAILY_DEFAULT": "5.0", "TENANT_BUDGET_MONTHLY_DEFAULT": "",   # empty = unset
    })
    b = by_key(cfg)
    assert b["global", "daily"].limit_usd == 30.0 and b["global", "monthly"].limit_usd == 600.0
    assert b["tenant:trial-tier", "daily"].limit_usd == 1.0          # a tenant's own budget stays
    assert cfg.tenant_defaults == {"daily": 5.0, "monthly": 2.0}
    assert cfg.thresholds == Thresholds(0.75, 0.95, 1.2)
    assert all(s.thresholds == Thresholds(0.75, 0.95, 1.2) for s in cfg.budgets)


def test_env_thresholds_do_not_replace_a_budgets_own():
    cfg = conf("""\
        budgets:
          - {name: b, period: daily, limit_usd: 1, thresholds: {warning: 0.5, critical: 0.6, exceeded: 0.7}}
        """, env={"BUDGET_SOFT_THRESHOLD": "0.9"})
    assert cfg.budgets[0].thresholds == Thresholds(0.5, 0.6, 0.7)
    assert cfg.thresholds == Thresholds(0.9, 0.95, 1.0)


@pytest.mark.parametrize("var, value, message", [
    ("GLOBAL_BUDGET_DAILY", "abc", "environment: GLOBAL_BUDGET_DAILY: must be a number, got 'abc'"),
    ("GLOBAL_BUDGET_MONTHLY", "-5", "environment: GLOBAL_BUDGET_MONTHLY: must be a limit in USD greater than 0"),
    ("TENANT_BUDGET_DAILY_DEFAULT", "nan", "environment: TENANT_BUDGET_DAILY_DEFAULT: must be a finite number"),
    ("TENANT_BUDGET_MONTHLY_DEFAULT", "0", "environment: TENANT_BUDGET_MONTHLY_DEFAULT: must be a limit"),
    ("BUDGET_SOFT_THRESHOLD", "80", "environment: BUDGET_SOFT_THRESHOLD: must be a ratio in (0, 10], got '80'"),
    ("BUDGET_HARD_THRESHOLD", "0.9", "environment: BUDGET_HARD_THRESHOLD: thresholds must increase: "
                                     "warning 0.8 < critical 0.95 < exceeded 0.9"),
    ("BUDGET_SOFT_THRESHOLD", "0.97", "environment: BUDGET_SOFT_THRESHOLD: thresholds must increase"),
])
def test_bad_env_values_name_the_variable(var, value, message):
    assert message in err(SIMPLE, env={var: value})


@pytest.mark.parametrize("text, expected", [
    ("budget:\n  daily: 1\n",
     "budgets.yaml:1: budget: unknown key (allowed: budgets, global, tenant_defaults, tenants, thresholds, timezone)"),
    ("global:\n  daily: 1\n  hourly: 2\n",
     "budgets.yaml:3: global.hourly: unknown key (allowed: annual, daily, monthly, quarterly, weekly)"),
    ("global:\n  daily: -25\n", "budgets.yaml:2: global.daily: must be a limit in USD greater than 0, got -25"),
    ("tenants:\n  acme:\n    monthly: lots\n", "budgets.yaml:3: tenants.acme.monthly: must be a number, got 'lots'"),
    ("tenants:\n  acme:\n", "budgets.yaml:2: tenants.acme: needs limits"),
    ("tenants:\n  yes: {daily: 1}\n", "budgets.yaml:2: tenants[True]: a tenant name must be a string, got True (quote it)"),
    ("timezone: Mars/Olympus\n", "budgets.yaml:1: timezone: unknown timezone 'Mars/Olympus'"),
    ("thresholds: {warning: 0.9, critical: 0.8}\n",
     "budgets.yaml:1: thresholds: thresholds must increase: warning 0.9 < critical 0.8 < exceeded 1"),
    ("thresholds:\n  warning: 0\n", "budgets.yaml:2: thresholds.warning: must be a ratio in (0, 10], got 0"),
    ("thresholds:\n  exceeded: 80\n", "budgets.yaml:2: thresholds.exceeded: must be a ratio in (0, 10], got 80"),
    ("budgets:\n  - name: b\n    period: fortnightly\n    limit_usd: 1\n",
     "budgets.yaml:3: budgets[0].period: unknown period 'fortnightly'"),
    ("budgets:\n  - name: b\n    period: daily\n    limit_usd: -1\n",
     "budgets.yaml:4: budgets[0].limit_usd: must be a limit in USD greater than 0, got -1"),
    ("budgets:\n  - name: b\n    period: daily\n    limit_usd: 1\n    timezone: Europe/Nowhere\n",
     "budgets.yaml:5: budgets[0].timezone: unknown timezone 'Europe/Nowhere'"),
    ("budgets:\n  - name: b\n    period: daily\n    limit_usd: 1\n    selector: {team: x}\n",
     "budgets.yaml:5: budgets[0].selector.team: unknown key (allowed: endpoint, model, provider, tenant)"),
    ("budgets:\n  - name: b\n    period: daily\n    limit_usd: 1\n    colour: red\n",
     "budgets.yaml:5: budgets[0].colour: unknown key"),
    ("budgets:\n  - name: 'bad name!'\n    period: daily\n    limit_usd: 1\n",
     "budgets.yaml:2: budgets[0].name: 'bad name!' is not a valid budget name"),
    ("budgets:\n  - period: daily\n    limit_usd: 1\n", "budgets.yaml:2: budgets[0]: missing key 'name'"),
    ("budgets:\n  - name: b\n    limit_usd: 1\n", "budgets.yaml:2: budgets[0]: budget 'b' needs 'period' and 'limit_usd'"),
    ("budgets:\n  - name: b\n    period: daily\n", "budgets.yaml:2: budgets[0]: budget 'b' needs 'limit_usd'"),
    ("budgets:\n  - name: b\n    limits: {daily: 1}\n    limit_usd: 1\n",
     "budgets.yaml:4: budgets[0].limit_usd: use either 'limits'"),
    ("budgets:\n  - name: b\n    period: {start: 2026-12-01, end: 2026-11-01}\n    limit_usd: 1\n",
     "budgets.yaml:3: budgets[0].period.end: must be after start (2026-12-01 >= 2026-11-01)"),
    ("budgets:\n  - name: b\n    period: {start: 2026-11-01, end: 2026-11-01}\n    limit_usd: 1\n",
     "budgets.yaml:3: budgets[0].period.end: must be after start"),
    ("budgets:\n  - name: b\n    period: {start: 2026-11-01}\n    limit_usd: 1\n",
     "budgets.yaml:3: budgets[0].period: a fixed period needs 'end'"),
    ("budgets:\n  - name: b\n    period: {start: soon, end: 2026-12-01}\n    limit_usd: 1\n",
     "budgets.yaml:3: budgets[0].period.start: must be a date (2026-11-01) or an ISO 8601 time, got 'soon'"),
    ("budgets:\n  - name: b\n    period: daily\n    limit_usd: 1\n    thresholds: {critical: 1.5}\n",
     "budgets.yaml:5: budgets[0].thresholds: thresholds must increase: warning 0.8 < critical 1.5 < exceeded 1"),
    ("budgets:\n  - {name: b, period: daily, limit_usd: 1}\n  - {name: b, period: daily, limit_usd: 2}\n",
     "budgets.yaml:3: budgets[1].period: duplicate budget 'b' for period daily (first defined at line 2)"),
    ("global: {daily: 1}\nbudgets:\n  - name: global\n    limits: {daily: 2}\n",
     "budgets.yaml:4: budgets[0].limits.daily: duplicate budget 'global' for period daily (first defined at line 1)"),
    ("budgets: {name: b}\n", "budgets.yaml:1: budgets: must be a list of budgets, got dict"),
    ("global: {daily: 1, daily: 2}\n", "budgets.yaml:1: global.daily: duplicate key"),
    ("global: [1, 2\n", "budgets.yaml:2: invalid YAML"),
])
def test_validation_errors_name_file_line_and_key(text, expected):
    assert expected in err(text)


def test_every_problem_is_reported_at_once():
    e = err("global: {daily: -1}\ntimezone: Nowhere\nbudgets:\n  - {name: a, period: hourly, limit_usd: 1}\n")
    lines = e.splitlines()
    assert len(lines) == 3
    assert lines[0].startswith("budgets.yaml:1: global.daily:")
    assert lines[1].startswith("budgets.yaml:2: timezone:")
    assert lines[2].startswith("budgets.yaml:4: budgets[0].period:")


def test_error_from_a_real_file_names_its_path(tmp_path):
    p = tmp_path / "budgets.yaml"
    p.write_text("global:\n  daily: 25\n  monthly: -500\n")
    with pytest.raises(ConfigError) as e:
        load_budgets(str(p), env={})
    assert str(e.value) == f"{p}:3: global.monthly: must be a limit in USD greater than 0, got -500 " \
                           "(remove the budget to disable it)"


# ---- accounting ----------------------------------------------------------------

def book(text: str, now: str, env=None, log=None):
    clock = [ts(now)]
    b = BudgetBook(conf(text, env), log, clock=lambda: clock[0])
    return b, clock


def spend(b: BudgetBook, name: str, period: str, now=None) -> float:
    [s] = [s for s in b.get(name, now) if s.period == period]
    return s.spend_usd


def test_events_count_by_labels_and_timestamp():
    b, _ = book("""\
        global: {daily: 100, monthly: 1000}
        budgets:
          - {name: openai, selector: {provider: openai}, period: daily, limit_usd: 10}
          - {name: acme-gpt, selector: {tenant: acme, model: gpt-4o}, period: daily, limit_usd: 10}
        """, "2026-11-22T12:00:00+00:00")
    now = ts("2026-11-22T12:00:00+00:00")
    b.observe("openai", "gpt-4o", "acme", "/v1/chat", 1.0, now)
    b.observe("openai", "gpt-4o-mini", "acme", "/v1/chat", 2.0, now)
    b.observe("anthropic", "gpt-4o", "acme", "/v1/chat", 4.0, now)       # provider differs
    b.observe("openai", "gpt-4o", "acme", "/v1/chat", 8.0, ts("2026-11-21T23:59:59+00:00"))  # yesterday
    b.observe("openai", "gpt-4o", "acme", "/v1/chat", 16.0, ts("2026-11-01T00:00:00+00:00"))  # this month only
    assert spend(b, "openai", "daily") == 3.0
    assert spend(b, "acme-gpt", "daily") == 5.0
    assert spend(b, "global", "daily") == 7.0
    assert spend(b, "global", "monthly") == 31.0


@freeze_time("2026-11-22T23:59:59.999Z")
def test_tick_resets_spend_exactly_at_local_midnight(tmp_path):
    b = BudgetBook(conf("global: {daily: 10, monthly: 100}\n"))          # real (frozen) clock
    b.observe("openai", "m", "t", "e", 4.0, time.time())
    b.observe("openai", "m", "t", "e", 0.5, ts("2026-11-23T00:00:00+00:00"))  # already tomorrow
    b.tick()
    assert spend(b, "global", "daily") == 4.0
    with freeze_time("2026-11-22T23:59:59.999999Z"):
        b.tick()
        assert spend(b, "global", "daily") == 4.0
    with freeze_time("2026-11-23T00:00:00Z"):
        b.tick()
        [d] = [s for s in b.get("global") if s.period == "daily"]
        assert d.spend_usd == 0.5 and d.period_start == time.time()
        assert spend(b, "global", "monthly") == 4.5                # the month did not roll


def test_dst_day_resets_at_new_york_midnight():
    b, clock = book("timezone: America/New_York\nglobal: {daily: 10}\n", "2026-11-01T12:00:00+00:00")
    [s] = b.statuses()
    assert s.period_end - s.period_start == 25 * H
    b.observe("p", "m", "t", "e", 3.0, ts("2026-11-02T04:30:00+00:00"))   # 23:30 EST, still Nov 1
    for t, expected in (("2026-11-02T04:00:00+00:00", 3.0),                # UTC-5 midnight would be wrong
                        ("2026-11-02T04:59:59+00:00", 3.0),
                        ("2026-11-02T05:00:00+00:00", 0.0)):
        clock[0] = ts(t)
        b.tick()
        assert spend(b, "global", "daily") == expected, t
    [s] = b.statuses()
    assert (s.period_start, s.period_end - s.period_start) == (ts("2026-11-02T00:00:00-05:00"), 24 * H)


def test_fixed_period_counts_only_inside_its_range():
    b, clock = book("budgets:\n  - {name: launch, period: {start: 2026-11-23, end: 2026-11-30}, limit_usd: 100}\n",
                    "2026-11-22T12:00:00+00:00")
    for t, c in (("2026-11-22T23:59:59+00:00", 1.0), ("2026-11-23T00:00:00+00:00", 2.0),
                 ("2026-11-29T23:59:59+00:00", 4.0), ("2026-11-30T00:00:00+00:00", 8.0)):
        b.observe("p", "m", "t", "e", c, ts(t))
    clock[0] = ts("2026-12-15T00:00:00+00:00")
    b.tick()
    [s] = b.get("launch")
    assert (s.period, s.spend_usd, s.period_end) == ("fixed", 6.0, ts("2026-11-30T00:00:00+00:00"))


def test_tenant_defaults_are_instantiated_on_first_sight():
    b, _ = book("""\
        tenant_defaults: {daily: 2, monthly: 20}
        tenants: {vip: {daily: 50}}
        """, "2026-11-22T12:00:00+00:00")
    assert {s.name for s in b.statuses()} == {"tenant:vip"}
    now = ts("2026-11-22T12:00:00+00:00")
    b.observe("openai", "m", "newbie", "e", 1.5, now)
    b.observe("openai", "m", "vip", "e", 7.0, now)
    got = {(s.name, s.period): (s.limit_usd, s.spend_usd, s.selector) for s in b.statuses()}
    assert got == {
        ("tenant:newbie", "daily"): (2.0, 1.5, {"tenant": "newbie"}),
        ("tenant:newbie", "monthly"): (20.0, 1.5, {"tenant": "newbie"}),
        ("tenant:vip", "daily"): (50.0, 7.0, {"tenant": "vip"}),            # its own daily budget
        ("tenant:vip", "monthly"): (20.0, 7.0, {"tenant": "vip"}),          # default for the other period
    }


def test_matching_for_enforcement():
    b, _ = book("""\
        global: {daily: 100}
        tenant_defaults: {daily: 2}
        budgets:
          - {name: openai, selector: {provider: openai}, period: daily, limit_usd: 10}
        """, "2026-11-22T12:00:00+00:00")
    names = lambda ss: [(s.name, s.period) for s in ss]   # noqa: E731
    assert names(b.matching("openai", None, "stranger")) == [("global", "daily"), ("openai", "daily"),
                                                            ("tenant:stranger", "daily")]
    # an unknown provider cannot be matched against a provider selector
    assert names(b.matching(None, None, "stranger")) == [("global", "daily"), ("tenant:stranger", "daily")]
    assert names(b.matching("anthropic", "x", None, "/e")) == [("global", "daily")]
    assert b.get("nope") == []
    assert [s.spend_usd for s in b.get("tenant:later")] == [0.0]


def test_restore_recomputes_from_the_ledger():
    calls = []
    day = (ts("2026-11-22T00:00:00+00:00"), ts("2026-11-23T00:00:00+00:00"))
    month = (ts("2026-11-01T00:00:00+00:00"), ts("2026-12-01T00:00:00+00:00"))
    ledger = {
        day: [("openai", "gpt-4o", "acme", "/chat", 3.0), ("anthropic", "claude", "zed", "/chat", 1.25)],
        month: [("openai", "gpt-4o", "acme", "/chat", 30.0), ("anthropic", "claude", "zed", "/chat", 2.5),
                ("openai", "gpt-4o", "old", "/chat", 10.0)],
    }

    def sums(start, end):
        calls.append((start, end))
        return ledger.get((start, end), [])

    b, _ = book("""\
        global: {daily: 100, monthly: 1000}
        tenant_defaults: {daily: 5}
        budgets:
          - {name: openai, selector: {provider: openai}, limits: {daily: 10, monthly: 100}}
        """, "2026-11-22T12:00:00+00:00")
    b.observe("openai", "gpt-4o", "acme", "/chat", 99.0, ts("2026-11-22T11:00:00+00:00"))   # replaced by restore
    b.restore(sums)
    nday = (day[1], ts("2026-11-24T00:00:00+00:00"))
    nmonth = (month[1], ts("2027-01-01T00:00:00+00:00"))
    # one query per distinct range, and one for the period after it (events held for it)
    assert sorted(calls) == sorted([day, month, nday, nmonth])
    got = {(s.name, s.period): s.spend_usd for s in b.statuses()}
    assert got == {("global", "daily"): 4.25, ("global", "monthly"): 42.5,
                   ("openai", "daily"): 3.0, ("openai", "monthly"): 40.0,
                   ("tenant:acme", "daily"): 3.0, ("tenant:zed", "daily"): 1.25,
                   ("tenant:old", "daily"): 0.0}                 # seen this month, not today


def test_restore_reads_events_already_held_for_the_next_period():
    tomorrow = (ts("2026-11-23T00:00:00+00:00"), ts("2026-11-24T00:00:00+00:00"))
    ledger = {tomorrow: [("p", "m", "t", "e", 2.0)]}   # a client clock a little ahead
    b, clock = book("global: {daily: 10}\n", "2026-11-22T23:00:00+00:00")
    b.restore(lambda s, e: ledger.get((s, e), []))
    b.observe("p", "m", "t", "e", 1.0, ts("2026-11-22T23:30:00+00:00"))
    assert spend(b, "global", "daily") == 1.0
    clock[0] = ts("2026-11-23T00:00:01+00:00")
    b.tick()
    assert spend(b, "global", "daily") == 2.0


def test_status_numbers_are_hand_computed():
    b, clock = book("budgets:\n  - {name: b, period: daily, limit_usd: 10}\n", "2026-11-22T06:00:00+00:00")
    b.observe("p", "m", "t", "e", 3.0, ts("2026-11-22T05:00:00+00:00"))
    [s] = b.statuses()
    # 6 h elapsed (> the 2.4 h floor): rate 0.5 $/h = 12 $/day; 18 h left -> 3 + 9 = 12;
    # 7 $ left at 0.5 $/h = 14 h -> 20:00.
    assert s.utilization_ratio == pytest.approx(0.3) and s.status == "ok"
    assert s.daily_burn_rate_usd == pytest.approx(12.0)
    assert s.forecast_usd == pytest.approx(12.0)
    assert s.projected_exhaustion == pytest.approx(ts("2026-11-22T20:00:00+00:00"))
    assert s.to_dict() == {
        "name": "b", "period": "daily", "selector": {}, "timezone": "UTC", "limit_usd": 10.0, "spend_usd": 3.0,
        "utilization_ratio": 0.3, "thresholds": {"warning": 0.8, "critical": 0.95, "exceeded": 1.0},
        "period_start": "2026-11-22T00:00:00Z", "period_end": "2026-11-23T00:00:00Z",
        "daily_burn_rate_usd": pytest.approx(12.0), "forecast_usd": pytest.approx(12.0),
        "projected_exhaustion": "2026-11-22T20:00:00Z", "status": "ok"}
    json.dumps(s.to_dict())

    # Early in the period the 2.4 h floor damps the rate: 1 $ after 1 h -> 1/2.4 $/h = 10 $/day,
    # forecast 1 + 23/2.4 = 10.5833; 9 $ left at 1/2.4 $/h = 21.6 h after 01:00 -> 22:36.
    b2, _ = book("budgets:\n  - {name: b, period: daily, limit_usd: 10}\n", "2026-11-22T01:00:00+00:00")
    b2.observe("p", "m", "t", "e", 1.0, ts("2026-11-22T00:10:00+00:00"))
    [s] = b2.statuses()
    assert s.daily_burn_rate_usd == pytest.approx(10.0)
    assert s.forecast_usd == pytest.approx(1 + 23 / 2.4)
    assert s.projected_exhaustion == pytest.approx(ts("2026-11-22T22:36:00+00:00"))

    # Slow spend: exhaustion would be after the period end -> None. Monthly floor is 1 day.
    b3, _ = book("budgets:\n  - {name: b, period: monthly, limit_usd: 300}\n", "2026-11-11T00:00:00+00:00")
    b3.observe("p", "m", "t", "e", 50.0, ts("2026-11-05T00:00:00+00:00"))
    [s] = b3.statuses()
    assert s.daily_burn_rate_usd == pytest.approx(5.0)               # 50 $ over 10 days
    assert s.forecast_usd == pytest.approx(150.0)                    # + 5 $/day * 20 days
    assert s.projected_exhaustion is None and s.status == "ok"


@pytest.mark.parametrize("amount, status", [(7.99, "ok"), (8.0, "warning"), (9.5, "critical"),
                                            (10.0, "exceeded"), (12.0, "exceeded")])
def test_status_levels(amount, status):
    b, clock = book("global: {daily: 10}\n", "2026-11-22T12:00:00+00:00")
    b.observe("p", "m", "t", "e", amount, clock[0])
    [s] = b.statuses()
    assert s.status == status
    if amount >= 10:
        assert s.projected_exhaustion == clock[0]        # already exhausted: the time of the status


def test_threshold_crossing_logged_once_per_level_and_period(tmp_path):
    path = str(tmp_path / "gov.jsonl")
    log = GovernanceLog(path)
    b, clock = book("tenants: {trial: {daily: 1.0}}\n", "2026-11-22T10:00:00+00:00", log=log)
    t = clock[0]
    b.observe("p", "m", "trial", "e", 0.5, t)
    b.tick()
    assert governance.read(path) == []
    b.observe("p", "m", "trial", "e", 0.35, t)         # 0.85: warning
    b.tick()
    b.tick()
    recs = governance.read(path)
    assert [(r["kind"], r["budget"], r["period"], r["level"]) for r in recs] == [
        ("threshold_crossed", "tenant:trial", "daily", "warning")]
    assert recs[0]["spend_usd"] == 0.85 and recs[0]["threshold_ratio"] == 0.8 and recs[0]["limit_usd"] == 1.0
    b.observe("p", "m", "trial", "e", 0.5, t)          # 1.35: critical and exceeded at once
    b.tick()
    b.tick()
    assert [r["level"] for r in governance.read(path)] == ["warning", "critical", "exceeded"]
    clock[0] = ts("2026-11-23T10:00:00+00:00")          # next day: fresh period, fresh crossings
    b.observe("p", "m", "trial", "e", 0.9, clock[0])
    b.tick()
    recs = governance.read(path)
    assert [r["level"] for r in recs] == ["warning", "critical", "exceeded", "warning"]
    assert recs[-1]["period_start"] == "2026-11-23T00:00:00Z"


def test_should_deny_and_should_throttle_reasons(tmp_path):
    path = str(tmp_path / "gov.jsonl")
    b, clock = book("""\
        global: {daily: 100}
        tenants: {trial: {daily: 1.0, monthly: 10.0}}
        """, "2026-11-22T10:00:00+00:00", log=GovernanceLog(path))
    assert b.should_deny("trial") == (False, "")
    assert b.should_throttle("trial") == (False, "")
    b.observe("openai", "m", "trial", "e", 0.85, clock[0])
    assert b.should_throttle("trial") == (True, (
        "budget tenant:trial (daily) is at 85.0% of its $1.00 limit (spend $0.8500; warning threshold 80%); "
        "resets 2026-11-23T00:00:00Z"))
    assert b.should_deny("trial") == (False, "")
    deny, reason = b.should_deny("trial", extra_usd=0.15)
    assert deny and reason == ("budget tenant:trial (daily) would exceed its limit: spend $0.8500 + $0.1500 "
                               "for this call >= $1.0000 (100% of limit $1.00); resets 2026-11-23T00:00:00Z")
    assert b.should_deny("other") == (False, "")
    b.observe("openai", "m", "trial", "e", 0.15, clock[0])
    deny, reason = b.should_deny("trial")
    assert deny and reason.startswith("budget tenant:trial (daily) would exceed its limit: spend $1.0000 >= $1.0000")
    kinds = [(r["kind"], r["budget"], r["tenant"], r["repeats_since_last"]) for r in governance.read(path)]
    # the second deny within a minute is folded into the next line
    assert kinds == [("throttle", "tenant:trial", "trial", 0), ("deny", "tenant:trial", "trial", 0)]
    clock[0] += 61
    assert b.should_deny("trial")[0]
    assert governance.read(path)[-1]["repeats_since_last"] == 1


def test_hard_threshold_from_env_moves_the_deny_point():
    b, clock = book("global: {daily: 10}\n", "2026-11-22T10:00:00+00:00",
                    env={"BUDGET_HARD_THRESHOLD": "1.5", "BUDGET_SOFT_THRESHOLD": "0.5"})
    b.observe("p", "m", "t", "e", 12.0, clock[0])
    assert b.should_deny("t") == (False, "")
    assert b.should_throttle("t")[0]
    deny, reason = b.should_deny("t", extra_usd=3.0)
    assert deny and ">= $15.0000 (150% of limit $10.00)" in reason


def test_observe_is_thread_safe():
    b, clock = book("global: {daily: 1000000}\ntenant_defaults: {daily: 1000000}\n", "2026-11-22T10:00:00+00:00")
    t = clock[0]

    def work(k):
        for i in range(20000):
            b.observe("p", "m", f"t{i % 7}", "e", 0.25, t)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert spend(b, "global", "daily") == 4 * 20000 * 0.25
    assert sum(spend(b, f"tenant:t{k}", "daily") for k in range(7)) == 4 * 20000 * 0.25


def test_governance_log_format_and_torn_line(tmp_path):
    path = str(tmp_path / "sub" / "gov.jsonl")
    with freeze_time("2026-11-22T10:11:12.345Z"):
        log = GovernanceLog(path)
        log.append("anomaly", tenant="acme", sigma=3.4)
    with open(path) as f:
        assert json.loads(f.readline()) == {"time": "2026-11-22T10:11:12.345Z", "kind": "anomaly",
                                            "tenant": "acme", "sigma": 3.4}
    log.append("deny", budget="b")
    log.close()
    with open(path, "a") as f:
        f.write('{"time": "2026-11-22T10:12:00Z", "ki')            # process died mid-write
    assert [r["kind"] for r in governance.read(path)] == ["anomaly", "deny"]
    with open(path, "a") as f:
        f.write('\n{"kind": "deny"}\n')
    with pytest.raises(ValueError, match=r"gov.jsonl:3: not a JSON object"):
        governance.read(path)
    assert governance.read(str(tmp_path / "none.jsonl")) == []
    with pytest.raises(ValueError, match="'time' and 'kind' are set by the log"):
        GovernanceLog(str(tmp_path / "x.jsonl")).append("deny", time="now")


def test_governance_log_is_thread_safe(tmp_path):
    path = str(tmp_path / "gov.jsonl")
    log = GovernanceLog(path)
    threads = [threading.Thread(target=lambda k=k: [log.append("throttle", worker=k, i=i) for i in range(500)])
               for k in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    recs = governance.read(path)
    assert len(recs) == 2000
    assert sorted((r["worker"], r["i"]) for r in recs) == [(k, i) for k in range(4) for i in range(500)]


def test_budget_status_is_a_dataclass_with_the_documented_fields():
    fields = set(BudgetStatus.__dataclass_fields__)
    assert {"name", "period", "selector", "limit_usd", "spend_usd", "utilization_ratio", "thresholds",
            "period_start", "period_end", "daily_burn_rate_usd", "forecast_usd", "projected_exhaustion",
            "status"} <= fields


def test_roll_after_sleeping_through_a_whole_period_starts_at_zero():
    b, clock = book("global: {daily: 10, weekly: 50}\n", "2026-11-22T23:00:00+00:00")   # Sunday
    b.observe("p", "m", "t", "e", 1.0, ts("2026-11-22T23:30:00+00:00"))
    b.observe("p", "m", "t", "e", 2.0, ts("2026-11-23T00:30:00+00:00"))   # held for Monday
    clock[0] = ts("2026-11-24T12:00:00+00:00")                             # Tuesday: Monday was skipped
    b.tick()
    got = {s.period: (s.spend_usd, s.period_start) for s in b.statuses()}
    assert got == {"daily": (0.0, ts("2026-11-24T00:00:00+00:00")),
                   "weekly": (2.0, ts("2026-11-23T00:00:00+00:00"))}      # the new week kept Monday's event
