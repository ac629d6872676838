"""A budget period's spend from GET /v1/costs' hourly rollup (whole hours) plus the raw
events at the edges and after the rollup's mark: exactly what the ledger scan gives, for
periods in time zones with :30 and :45 offsets, fixed ranges, selectors, and a rollup
behind or ahead of the sequence number asked for."""
from __future__ import annotations

import random
import textwrap
from datetime import datetime
from zoneinfo import ZoneInfo

from costmeter.budgets.book import BudgetBook
from costmeter.budgets.config import loads_budgets
from costmeter.budgets.periods import period_bounds
from costmeter.server import costs
from costmeter.server.ledger import COLUMNS, Ledger

ZONES = ("UTC", "Asia/Kathmandu", "Asia/Kolkata", "Australia/Adelaide", "Pacific/Chatham",
         "America/St_Johns", "Australia/Eucla")
NOW = datetime.fromisoformat("2026-11-22T13:37:00+00:00").timestamp()


def _row(rnd: random.Random, i: int, ts: float) -> tuple:
    r = {"id": f"e{i}", "ts": ts, "provider": rnd.choice(("openai", "anthropic")),
         "model": rnd.choice(("gpt-4o", "gpt-4o-mini", "claude")), "tenant": f"t{rnd.randrange(12)}",
         "endpoint": rnd.choice(("/chat", "/embed")),
         "cost": None if rnd.random() < 0.05 else rnd.randrange(1, 10**6) / 7.0e6,     # some unpriced
         "cost_given": 1, "saved": 0.0, "received": ts}
    return tuple(r.get(c, None if c in ("cache_hit", "duration") else 0) for c in COLUMNS)


def _ledger(tmp_path, n: int = 3000) -> Ledger:
    rnd = random.Random(9)
    led = Ledger(str(tmp_path / "state"))
    edges = [b for tz in ZONES for p in ("daily", "weekly", "monthly")
             for b in period_bounds(p, ZoneInfo(tz), NOW)]
    rows = []
    for i in range(n):
        x = rnd.random()
        if x < 0.1:          # exactly on a period or hour boundary, or one microsecond either side
            ts = rnd.choice(edges + [NOW // 3600 * 3600 - k * 3600 for k in range(48)]) + rnd.choice((-1e-6, 0.0, 1e-6))
        else:
            ts = NOW - rnd.uniform(0, 45 * 86400) + rnd.uniform(-86400, 3 * 86400) * (x > 0.95)
        rows.append(_row(rnd, i, ts))
    for k in range(0, n, 500):
        led.append(rows[k:k + 500])
    return led


def test_budget_sums_from_the_rollup_equal_the_ledger_scan(tmp_path, monkeypatch):
    led = _ledger(tmp_path)
    db = costs.CostsDB(led.path)
    rnd = random.Random(4)
    periods = [period_bounds(p, ZoneInfo(tz), NOW) for tz in ZONES for p in ("daily", "weekly", "monthly", "quarterly")]
    periods += [(NOW - 86400 * 3.3 + 17.25, NOW - 3600 * 5 - 0.5), (NOW - 1800, NOW + 1800), (NOW - 100, NOW - 50)]
    monkeypatch.setattr(costs, "CHUNK", 1200)
    checked = 0
    for mark_step in range(4):          # rollup empty, partly caught up (twice), caught up
        for start, end in periods:
            for max_seq in (None, rnd.randrange(1, 3001), 10):
                got = db.budget_sums(start, end, max_seq)
                want = db.raw_budget_sums(start, end, max_seq)
                assert got == want, (mark_step, start, end, max_seq, db.mark())
                # and within half a nano-dollar per event of the raw floats (Ledger.sums)
                floats = {k[:4]: k[4] for k in led.sums(start, end, max_seq)}
                assert {k[:4] for k in got} == set(floats)
                for k in got:
                    assert abs(k[4] - floats[k[:4]]) <= 3000 * 0.5e-9
                checked += bool(got)
        db.catch_up(limit=1)           # folds 1,200 more events
    assert db.mark() == 3000 and checked > 100


CONFIG = """\
global: {daily: 100, monthly: 1000, quarterly: 5000}
tenant_defaults: {daily: 2, weekly: 10}
budgets:
  - {name: kathmandu, selector: {provider: openai, model: gpt-4o}, period: daily, limit_usd: 5, timezone: Asia/Kathmandu}
  - {name: chatham, selector: {tenant: t3}, period: weekly, limit_usd: 5, timezone: Pacific/Chatham}
  - {name: stjohns, selector: {endpoint: /embed}, period: monthly, limit_usd: 5, timezone: America/St_Johns}
  - {name: adelaide, selector: {tenant: t1, endpoint: /chat}, period: quarterly, limit_usd: 5, timezone: Australia/Adelaide}
  - {name: sprint, selector: {model: claude}, limit_usd: 5,
     period: {start: "2026-11-03T04:45:00+05:45", end: "2026-11-20T10:30:00-03:30"}}
"""


def test_a_book_summed_from_the_rollup_equals_one_summed_from_the_ledger(tmp_path):
    led = _ledger(tmp_path)
    db = costs.CostsDB(led.path)
    db.catch_up()
    config = loads_budgets(textwrap.dedent(CONFIG), "budgets.yaml", {})
    books = []
    for sums in (db.budget_sums, db.raw_budget_sums):
        b = BudgetBook(config, clock=lambda: NOW)
        b.load_state(None, lambda start, end, f=sums: f(start, end, 2500))
        books.append([s.to_dict() for s in b.statuses()])
    assert books[0] == books[1]
    spend = {(s["name"], s["period"]): s["spend_usd"] for s in books[0]}
    assert all(spend[(n, p)] > 0 for n, p in (("kathmandu", "daily"), ("chatham", "weekly"), ("stjohns", "monthly"),
                                             ("adelaide", "quarterly"), ("sprint", "fixed"), ("global", "quarterly")))


def test_reload_and_restart_sum_new_periods_through_the_rollup_exactly_once(tmp_path):
    """In the exporter: a reload adds periods while the rollup lags behind the ledger; a
    restart adds more while the rollup has gone past the snapshot: every new budget's
    spend is the ledger's sum of its period (costs are multiples of 1/8: exact in any order)."""
    from freezegun import freeze_time
    from costmeter.server.exporter import Exporter

    budgets = tmp_path / "budgets.yaml"
    budgets.write_text("global: {daily: 1000}\n")
    state = str(tmp_path / "state")
    when = datetime.fromisoformat("2026-11-22T13:37:00+00:00")

    def evs(tag, n):
        return [{"id": f"{tag}{i}", "provider": "openai", "model": "gpt-4o", "tenant": f"t{i % 5}",
                 "timestamp": when.timestamp() - i * 997.0, "cost_usd": (1 + i % 4) / 8} for i in range(n)]

    def spend(exp):
        return {(s.name, s.period): s.spend_usd for s in exp.budgets.statuses()}

    def want(exp, name, period, tz="UTC"):
        start, end = period_bounds(period, ZoneInfo(tz), when.timestamp())
        rows = exp.ledger.sums(start, end)
        return sum(r[4] for r in rows if name != "t1" or r[2] == "t1")

    with freeze_time(when, tick=True):
        exp = Exporter.embedded(state_dir=state, listen_address=None, budgets_file=str(budgets))
        exp.ingest(evs("a", 1500))
        costs.for_ledger(exp.ledger.path).catch_up()
        exp.ingest(evs("b", 700))                      # past the rollup's mark
        budgets.write_text("global: {daily: 1000, quarterly: 5000}\nbudgets:\n"
                           "  - {name: t1, selector: {tenant: t1}, period: weekly, limit_usd: 9, timezone: Asia/Kathmandu}\n")
        exp.reload()
        got = spend(exp)
        assert got[("global", "quarterly")] == want(exp, "global", "quarterly") > 0
        assert got[("t1", "weekly")] == want(exp, "t1", "weekly", "Asia/Kathmandu") > 0
        exp.snapshot()
        exp.ingest(evs("c", 300))
        costs.for_ledger(exp.ledger.path).catch_up()   # the rollup goes past the snapshot
        exp.snapshot = lambda: None                    # and the process dies
        exp.stop()
        budgets.write_text("global: {daily: 1000, quarterly: 5000, monthly: 3000}\nbudgets:\n"
                           "  - {name: t1, selector: {tenant: t1}, period: weekly, limit_usd: 9, timezone: Asia/Kathmandu}\n"
                           "  - {name: t1, selector: {tenant: t1}, period: daily, limit_usd: 9, timezone: America/St_Johns}\n")
        exp = Exporter.embedded(state_dir=state, listen_address=None, budgets_file=str(budgets))
        got = spend(exp)
        for key, tz in ((("global", "monthly"), "UTC"), (("t1", "daily"), "America/St_Johns"),
                        (("global", "quarterly"), "UTC"), (("t1", "weekly"), "Asia/Kathmandu")):
            assert got[key] == want(exp, key[0], key[1], tz) > 0, key
        exp.stop()
