"""The analysis commands against ledgers seeded with known spend; every figure is worked out by hand.

Each test freezes time (freezegun) and reads the ledger with ``--storage.path``
through the real command line (``costmeter.cli.main``).
"""
from __future__ import annotations

import json
import math

import pytest
from freezegun import freeze_time

from analysis_support import BUDGET_ENV, Seeder, ts
from costmeter.budgets.governance import read as read_governance
from costmeter.cli.main import main


@pytest.fixture(autouse=True)
def _no_budget_env(monkeypatch):
    for k in BUDGET_ENV + ("COSTMETER_URL",):
        monkeypatch.delenv(k, raising=False)


def run_json(capsys, *argv) -> dict:
    capsys.readouterr()
    assert main(list(argv) + ["--json"]) == 0
    return json.loads(capsys.readouterr().out)


def days(first_day: int, n: int) -> list[str]:
    return [f"2026-11-{d:02d}" for d in range(first_day, first_day + n)]


# ---- report ----------------------------------------------------------------------------------------------

@pytest.fixture
def report_ledger(tmp_path):
    """acme: $2 every day of November on openai/gpt-4o; beta: $1 a day, $20 on the 30th, on
    anthropic/claude-sonnet-4-5; gamma: $0.50 on the 29th only (no budget); all at 10:00 UTC."""
    s = Seeder(str(tmp_path / "state"))
    s.daily("acme", "openai", "gpt-4o", "2026-11-01", [2.0] * 30)
    s.daily("beta", "anthropic", "claude-sonnet-4-5", "2026-11-01", [1.0] * 29 + [20.0])
    s.event(ts("2026-11-29"), "gamma", "openai", "gpt-4o", 0.5)
    s.event(ts("2026-11-29", 11), "gamma", "openai", "mystery-9000", input_tokens=500)    # no price: unpriced
    s.event(ts("2026-10-31"), "acme", "openai", "gpt-4o", 7.0)         # last month: only in a 31-day period
    s.close()
    budgets = tmp_path / "budgets.yaml"
    budgets.write_text("global: {daily: 100.0}\n"
                       "tenants:\n  acme: {daily: 1.5, monthly: 100.0}\n  beta: {daily: 50.0, monthly: 50.0}\n")
    return str(tmp_path / "state"), str(budgets)


@freeze_time("2026-11-30T12:00:00Z")
def test_report_by_hand(report_ledger, capsys):
    state, budgets = report_ledger
    rep = run_json(capsys, "report", "--storage.path", state, "--budgets.file", budgets, "--days", "7")
    # period = the 7 days Nov 24..30. today: acme 2 + beta 20; month: acme 30x2 + beta 29+20 + gamma 0.5;
    # period: acme 7x2 + beta 6+20 + gamma 0.5
    assert rep["days"] == 7 and (rep["start"], rep["end"]) == ("2026-11-24", "2026-11-30")
    assert rep["global"] == {"today_usd": 22.0, "month_usd": 109.5, "period_usd": 40.5}
    # acme: daily 2/1.5 exceeded, monthly 60/100 ok -> exceeded; beta: daily 20/50 ok, monthly 49/50 = 0.98
    # critical -> critical; gamma has no budget
    assert rep["tenants"] == [
        {"tenant": "beta", "today_usd": 20.0, "month_usd": 49.0, "period_usd": 26.0, "budget_status": "critical"},
        {"tenant": "acme", "today_usd": 2.0, "month_usd": 60.0, "period_usd": 14.0, "budget_status": "exceeded"},
        {"tenant": "gamma", "today_usd": 0.0, "month_usd": 0.5, "period_usd": 0.5, "budget_status": None},
    ]
    assert rep["models"] == [
        {"provider": "anthropic", "model": "claude-sonnet-4-5", "period_usd": 26.0, "calls": 7, "unpriced_calls": 0},
        {"provider": "openai", "model": "gpt-4o", "period_usd": 14.5, "calls": 8, "unpriced_calls": 0},
        {"provider": "openai", "model": "mystery-9000", "period_usd": 0.0, "calls": 1, "unpriced_calls": 1},
    ]
    assert rep["daily_budgets"] == [{"budget": "global", "limit_usd": 100.0}]
    assert sum(d["usd"] for d in rep["daily"]) == pytest.approx(40.5)
    assert {d["day"] for d in rep["daily"]} == set(days(24, 7))
    # the default 30 days reach back to Nov 1; --days 31 takes in October 31's $7
    rep30 = run_json(capsys, "report", "--storage.path", state, "--budgets.file", budgets)
    assert rep30["global"]["period_usd"] == 109.5
    rep31 = run_json(capsys, "report", "--storage.path", state, "--budgets.file", budgets, "--days", "31")
    assert rep31["global"] == {"today_usd": 22.0, "month_usd": 109.5, "period_usd": 116.5}


@freeze_time("2026-11-30T12:00:00Z")
def test_report_one_tenant_and_the_table(report_ledger, capsys):
    state, budgets = report_ledger
    rep = run_json(capsys, "report", "--storage.path", state, "--budgets.file", budgets, "--days", "7",
                   "--tenant", "acme")
    assert rep["global"]["period_usd"] == 40.5          # the fleet's, for context
    assert [t["tenant"] for t in rep["tenants"]] == ["acme"]
    assert rep["models"] == [{"provider": "openai", "model": "gpt-4o", "period_usd": 14.0, "calls": 7,
                              "unpriced_calls": 0}]
    assert rep["daily_budgets"] == [{"budget": "tenant:acme", "limit_usd": 1.5}]
    assert main(["report", "--storage.path", state, "--budgets.file", budgets, "--days", "7"]) == 0
    out = capsys.readouterr().out
    assert "=== Cost Report (last 7 days: 2026-11-24 to 2026-11-30 UTC) ===" in out
    assert "  Last 7 days:  $40.50" in out
    line = next(ln for ln in out.splitlines() if ln.startswith("beta "))
    assert line.split() == ["beta", "$20.00", "$49.00", "$26.00", "critical"]
    assert "gamma" in out and "no budget" in out
    line = next(ln for ln in out.splitlines() if "mystery-9000" in ln)
    assert line.split() == ["openai", "mystery-9000", "$0.00", "1", "1"]
    assert "Unpriced calls have no price in pricing.yaml" in out


# ---- anomalies -------------------------------------------------------------------------------------------

@pytest.fixture
def anomaly_ledger(tmp_path):
    s = Seeder(str(tmp_path / "state"))
    s.daily("steady", "openai", "gpt-4o", "2026-11-01", [2.0] * 30)
    s.daily("spiky", "anthropic", "claude-sonnet-4-5", "2026-11-01", [1.0] * 29 + [20.0])
    # alternating $1 / $3 (odd days $3), then $6 on the 30th
    s.daily("wobbly", "openai", "gpt-4o-mini", "2026-11-01", [3.0 if d % 2 else 1.0 for d in range(1, 30)] + [6.0])
    # steady growth: $1 + $0.25 a day
    s.daily("growing", "google", "gemini-2.5-flash", "2026-11-01", [1.0 + 0.25 * k for k in range(30)])
    # a tiny tenant whose spike stays under the $1 floor
    s.daily("tiny", "meta", "llama-3.1-8b", "2026-11-01", [0.1] * 29 + [0.9])
    s.close()
    return str(tmp_path / "state")


@freeze_time("2026-11-30T12:00:00Z")
def test_anomalies_by_hand(anomaly_ledger, capsys):
    res = run_json(capsys, "anomalies", "--storage.path", anomaly_ledger)
    assert res["checked"] == days(24, 7) and (res["days"], res["sigma"], res["floor_usd"]) == (14, 3.0, 1.0)
    # spiky: baseline Nov 16-29 all $1: mean 1, std 0 -> floored to 5 % of the mean = 0.05; z = 19 / 0.05 = 380
    # wobbly: baseline alternates 1, 3: mean 2, sample std sqrt(14/13) = 1.037749; z = 4 / 1.037749 = 3.854 (warning)
    # growing: z = (8.25 - 6.375) / (0.25 sqrt(17.5)) = 1.793 < 3: steady growth is not an anomaly
    # tiny: z is large but $0.90 is under the $1 floor
    spiky = {"day": "2026-11-30", "spend_usd": 20.0, "baseline_mean_usd": 1.0, "baseline_std_usd": 0.05,
             "z_score": 380.0, "severity": "critical"}
    wobbly = {"day": "2026-11-30", "spend_usd": 6.0, "baseline_mean_usd": 2.0,
              "baseline_std_usd": round(math.sqrt(14 / 13), 6), "z_score": round(4 / math.sqrt(14 / 13), 3),
              "severity": "warning"}
    assert wobbly["z_score"] == 3.854
    assert res["anomalies"] == [
        {"tenant": "spiky", **spiky}, {"provider": "anthropic", "model": "claude-sonnet-4-5", **spiky},
        {"tenant": "wobbly", **wobbly}, {"provider": "openai", "model": "gpt-4o-mini", **wobbly},
    ]
    # a lower sigma catches growth: z = 1.793 > 1.5
    low = run_json(capsys, "anomalies", "--storage.path", anomaly_ledger, "--sigma", "1.5", "--check-days", "1",
                   "--governance.log", "none")
    assert {a.get("tenant") for a in low["anomalies"] if "tenant" in a} == {"spiky", "wobbly", "growing"}
    growing = next(a for a in low["anomalies"] if a.get("tenant") == "growing")
    assert growing["z_score"] == round(1.875 / (0.25 * math.sqrt(17.5)), 3) == 1.793
    # a floor of $0.50 lets the tiny tenant through
    low = run_json(capsys, "anomalies", "--storage.path", anomaly_ledger, "--floor", "0.5",
                   "--governance.log", "none")
    assert "tiny" in {a.get("tenant") for a in low["anomalies"]}


@freeze_time("2026-11-30T12:00:00Z")
def test_anomalies_go_to_the_governance_log_once(anomaly_ledger, capsys):
    run_json(capsys, "anomalies", "--storage.path", anomaly_ledger)
    run_json(capsys, "anomalies", "--storage.path", anomaly_ledger)
    recs = [r for r in read_governance(f"{anomaly_ledger}/governance.jsonl") if r["kind"] == "anomaly"]
    assert len(recs) == 4
    assert recs[0]["time"] == "2026-11-30T12:00:00.000Z"
    assert (recs[0]["tenant"], recs[0]["day"], recs[0]["z_score"], recs[0]["severity"]) == (
        "spiky", "2026-11-30", 380.0, "critical")


@freeze_time("2026-11-30T12:00:00Z")
def test_anomalies_table(anomaly_ledger, capsys):
    assert main(["anomalies", "--storage.path", anomaly_ledger, "--governance.log", "none"]) == 0
    out = capsys.readouterr().out
    row = next(ln for ln in out.splitlines() if "tenant spiky" in ln)
    assert row.split() == ["2026-11-30", "tenant", "spiky", "$20.00", "$1.00", "$0.05", "380.0", "critical"]


# ---- forecast --------------------------------------------------------------------------------------------

@pytest.fixture
def forecast_ledger(tmp_path):
    """acme: $3 on odd days, $1 on even days, Nov 1 to 10, at 10:00 UTC."""
    s = Seeder(str(tmp_path / "state"))
    s.daily("acme", "openai", "gpt-4o", "2026-11-01", [3.0 if d % 2 else 1.0 for d in range(1, 11)])
    s.close()
    budgets = tmp_path / "budgets.yaml"
    budgets.write_text("global: {monthly: 100.0}\ntenants: {acme: {daily: 1.2}}\n")
    return str(tmp_path / "state"), str(budgets)


@freeze_time("2026-11-10T12:00:00Z")
def test_forecast_by_hand(forecast_ledger, capsys):
    state, budgets = forecast_ledger
    fc = run_json(capsys, "forecast", "--storage.path", state, "--budgets.file", budgets)
    by = {(b["budget"], b["period"]): b for b in fc["budgets"]}
    assert set(by) == {("global", "monthly"), ("tenant:acme", "daily")}
    # global monthly: $20 spent in 9.5 days; rate 20/9.5; 20.5 days left
    g = by["global", "monthly"]
    rate = 20 / 9.5
    projected = 20 + rate * 20.5
    # complete days Nov 1-9 (k = 9): 3,1,3,1,3,1,3,1,3 -> sample std sqrt(80/9/8) = 1.054093;
    # n = 20.5 days left: half-width 1.959964 x 1.054093 x sqrt(20.5 + 20.5^2 / 9)
    half = 1.959964 * math.sqrt(80 / 72) * math.sqrt(20.5 + 20.5 ** 2 / 9)
    assert g["spend_usd"] == 20.0 and g["limit_usd"] == 100.0
    assert g["daily_burn_rate_usd"] == pytest.approx(rate, abs=1e-6)
    assert g["projected_usd"] == pytest.approx(projected, abs=1e-6) == pytest.approx(63.157895, abs=1e-6)
    assert g["projected_low_usd"] == pytest.approx(projected - half, abs=1e-6)
    assert g["projected_high_usd"] == pytest.approx(projected + half, abs=1e-6)
    assert half == pytest.approx(16.9353, abs=1e-4)     # 1.959964 x 1.054093 x 8.197290
    assert g["projected_exhaustion_date"] is None     # 80 more dollars take 38 days; 20.5 are left
    assert g["status"] == "ok" and g["complete_buckets"] == 9 and g["interval_buckets"] == "day"
    # tenant:acme daily: $1 at 10:00 of 12 h; elapsed 0.5 day -> $2/day; projected 1 + 2 x 0.5 = 2.0
    # hours 00-11 complete (k = 12): one $1, eleven $0 -> std sqrt(1/12); n = 12 hours left:
    # half-width 1.959964 x sqrt(1/12) x sqrt(12 + 144/12) = 1.959964 x sqrt(2)
    a = by["tenant:acme", "daily"]
    assert (a["spend_usd"], a["daily_burn_rate_usd"], a["projected_usd"]) == (1.0, 2.0, 2.0)
    assert a["projected_low_usd"] == 1.0                            # never below what is already spent
    assert a["projected_high_usd"] == pytest.approx(2.0 + 1.959964 * math.sqrt(2), abs=1e-6)
    assert a["projected_exhaustion_date"] == "2026-11-10"           # $0.20 more at $2/day: 14:24 today
    assert a["status"] == "warning"                                  # 1 / 1.2 = 0.83
    assert a["interval_buckets"] == "hour" and a["complete_buckets"] == 12
    assert "series" not in a                                        # chart data stays out of the JSON
    only = run_json(capsys, "forecast", "--storage.path", state, "--budgets.file", budgets, "--budget", "global")
    assert [b["budget"] for b in only["budgets"]] == ["global"]


@freeze_time("2026-11-10T12:00:00Z")
def test_forecast_unknown_budget(forecast_ledger, capsys):
    state, budgets = forecast_ledger
    assert main(["forecast", "--storage.path", state, "--budgets.file", budgets, "--budget", "nope"]) == 3
    assert "no budget named 'nope'" in capsys.readouterr().err


# ---- recommend -------------------------------------------------------------------------------------------

@pytest.fixture
def usage_ledger(tmp_path):
    s = Seeder(str(tmp_path / "state"))
    t0 = ts("2026-11-01")
    for d in range(30):
        # gpt-4o priced by the table: 1M input x $2.50 + 200k output x $10 per 1M = $4.50 a call
        s.event(t0 + d * 86400, "acme", "openai", "gpt-4o", input_tokens=1_000_000, output_tokens=200_000)
    for i in range(50):
        t = t0 + i * 3600
        if i < 10:      # cache hits: free
            s.event(t, "beta", "anthropic", "claude-sonnet-4-5", 0.0, cache_hit=True)
        elif i < 40:    # cache misses
            s.event(t, "beta", "anthropic", "claude-sonnet-4-5", 1.0, cache_hit=False, input_tokens=100_000)
        else:           # calls that do not look in the cache
            s.event(t, "beta", "anthropic", "claude-sonnet-4-5", 1.0, input_tokens=100_000)
    s.close()
    return str(tmp_path / "state")


@freeze_time("2026-11-30T12:00:00Z")
def test_recommend_by_hand(usage_ledger, capsys):
    res = run_json(capsys, "recommend", "--storage.path", usage_ledger)
    got = [(r["type"], r["provider"], r["from_model"], r["to_model"], r["estimated_monthly_savings_usd"],
            r["savings_ratio"], r["priority_score"], r["confidence"], r["difficulty"], r["quality_impact"])
           for r in res["recommendations"]]
    assert got == [
        # 30M input + 6M output: $135 at gpt-4o, 30M x $0.15 + 6M x $0.60 = $8.10 at gpt-4o-mini;
        # saves $126.90 (94 %); score 50 x min(126.9/100, 1) + 30 x 0.6 + 20 = 88
        ("model_downgrade", "openai", "gpt-4o", "gpt-4o-mini", 126.9, 0.94, 88.0, 0.6, "easy", "medium"),
        # 4M input: $12 at claude-sonnet-4-5 ($3), $4 at claude-haiku-4-5 ($1): saves $8 (2/3); 4 + 18 + 20
        ("model_downgrade", "anthropic", "claude-sonnet-4-5", "claude-haiku-4-5", 8.0, 0.6667, 42.0, 0.6, "easy",
         "medium"),
        # 10 hits in 40 lookups (25 %); misses cost $40 x 30/40 = $30; x (0.60 - 0.25)/(1 - 0.25) = $14;
        # 14/40 of the spend; score 7 + 15 + 12
        ("caching", "anthropic", "claude-sonnet-4-5", None, 14.0, 0.35, 34.0, 0.5, "medium", "none"),
        # no batch calls: $135 x 0.25 x 50 % = $16.875; score 8.4375 + 12 + 12
        ("batch", "openai", "gpt-4o", "gpt-4o", 16.875, 0.125, 32.4, 0.4, "medium", "none"),
        # $40 x 0.25 x 50 % = $5; 2.5 + 12 + 12
        ("batch", "anthropic", "claude-sonnet-4-5", "claude-sonnet-4-5", 5.0, 0.125, 26.5, 0.4, "medium", "none"),
    ]
    # over 15 days the same usage is half as much, scaled to a month: the same savings from Nov 15 on
    res15 = run_json(capsys, "recommend", "--storage.path", usage_ledger, "--days", "15")
    down = res15["recommendations"][0]
    assert (down["from_model"], down["estimated_monthly_savings_usd"]) == ("gpt-4o", 126.9)


# ---- roi -------------------------------------------------------------------------------------------------

@freeze_time("2026-11-30T12:00:00Z")
def test_roi_by_hand(usage_ledger, capsys):
    common = ["roi", "--storage.path", usage_ledger, "--model", "gpt-4o", "--gpu-hour-usd", "2",
              "--tokens-per-second", "1000", "--utilization", "0.5", "--ops-month-usd", "500", "--setup-usd", "10000"]
    r = run_json(capsys, *common)
    # observed: 36M tokens, $135 in 30 days -> $3.75 per 1M. One GPU serves 1000 x 0.5 x 2,592,000 = 1.296B a month.
    # self-hosted: 1 GPU x $2 x 720 h + $500 = $1,940; API $135: never pays off.
    assert (r["tokens_per_month"], r["api_usd_per_million_tokens"], r["api_monthly_usd"]) == (36_000_000, 3.75, 135.0)
    assert (r["gpus_needed"], r["self_hosted_monthly_usd"], r["monthly_savings_usd"]) == (1, 1940.0, -1805.0)
    assert r["payback_months"] is None and r["gpu_capacity_tokens_per_month"] == 1_296_000_000
    # break-even: N x 3.75e-6 = 1940 -> N = 517,333,333 (under one GPU's 1.296B)
    assert r["break_even_tokens_per_month"] == 517_333_333
    s = {(x["volume_factor"], x["gpu_price_factor"]): x for x in r["sensitivity"]}
    assert len(s) == 9
    # 72M tokens, $1/GPU-hour: API $270, self-hosted 720 + 500 = $1,220
    assert (s[2.0, 0.5]["api_monthly_usd"], s[2.0, 0.5]["self_hosted_monthly_usd"]) == (270.0, 1220.0)
    # a given volume of 2B: 2 GPUs ($2,880 + $500 = $3,380) against $7,500: saves $4,120; payback 10000/4120
    r = run_json(capsys, *common, "--tokens-per-month", "2e9")
    assert (r["gpus_needed"], r["self_hosted_monthly_usd"], r["api_monthly_usd"]) == (2, 3380.0, 7500.0)
    assert r["payback_months"] == 2.43 and r["volume_from"] == "given"


def test_roi_without_usage_prices_from_the_table(capsys):
    # claude-sonnet-4-5: $3 input, $15 output per 1M; 25 % output -> $6 per 1M tokens
    r = run_json(capsys, "roi", "--no-source", "--model", "claude-sonnet-4-5", "--tokens-per-month", "1e9",
                 "--gpu-hour-usd", "4", "--tokens-per-second", "500", "--utilization", "1")
    assert (r["provider"], r["api_usd_per_million_tokens"], r["api_monthly_usd"]) == ("anthropic", 6.0, 6000.0)
    # one GPU: 500 x 2,592,000 = 1.296B a month; $2,880; payback 0 with no setup cost
    assert (r["gpus_needed"], r["self_hosted_monthly_usd"], r["payback_months"]) == (1, 2880.0, 0.0)
    assert r["break_even_tokens_per_month"] == 480_000_000          # 2880 / 6e-6


def test_roi_break_even_never_and_across_gpus():
    from costmeter.analysis.roi import break_even
    # one GPU-month ($1,440) buys more than the 1M tokens it serves at $1 per 1M: never
    assert break_even(1e-6, 1_000_000, 1, 2.0, 0.0) is None
    # GPUs of 1M tokens a month at $1,440, no ops, $2 per 1k tokens: 1440 / 2e-3 = 720k tokens, on one GPU
    assert break_even(2e-3, 1_000_000, 1, 2.0, 0.0) == pytest.approx(720_000)
    # with $3,000 of ops: k GPUs break even at (1440 k + 3000) / 2e-3 = 720k k + 1.5M tokens, which fits
    # in k GPUs (k x 1M) first for k = 6: 5.82M
    assert break_even(2e-3, 1_000_000, 1, 2.0, 3000.0) == pytest.approx(5_820_000)
