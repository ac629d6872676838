"""The budget book at scale: saved state instead of ledger scans, reload off the lock,
tenant defaults that cost nothing until a tenant spends, and reads that store nothing."""
from __future__ import annotations

import json
import textwrap
import threading
import tracemalloc
from datetime import datetime

import pytest

from costmeter.budgets import book as book_mod
from costmeter.budgets import governance
from costmeter.budgets.book import BudgetBook
from costmeter.budgets.config import loads_budgets
from costmeter.budgets.governance import GovernanceLog

CONFIG = """\
global: {daily: 100, monthly: 1000}
tenant_defaults: {daily: 2, monthly: 20}
tenants: {vip: {daily: 50}}
budgets:
  - {name: openai, selector: {provider: openai}, limits: {daily: 10, weekly: 40}}
  - {name: acme-gpt, selector: {tenant: acme, model: gpt-4o}, period: daily, limit_usd: 5}
"""


def ts(s: str) -> float:
    return datetime.fromisoformat(s).timestamp()


def conf(text: str):
    return loads_budgets(textwrap.dedent(text), "budgets.yaml", {})


def make(text: str = CONFIG, now: str = "2026-11-22T12:00:00+00:00", log=None):
    clock = [ts(now)]
    return BudgetBook(conf(text), log, clock=lambda: clock[0]), clock


EVENTS = [("openai", "gpt-4o", "acme", "/chat", 1.5, "2026-11-22T10:00:00+00:00"),
          ("anthropic", "claude", "zed", "/chat", 0.75, "2026-11-22T11:00:00+00:00"),
          ("openai", "gpt-4o-mini", "vip", "/e", 3.0, "2026-11-20T09:00:00+00:00"),    # this month, this week
          ("openai", "gpt-4o", "acme", "/chat", 2.0, "2026-11-23T00:30:00+00:00"),     # held for tomorrow
          ("google", "gemini", "old", "/e", 4.0, "2026-11-02T00:00:00+00:00"),         # this month only
          ("openai", "gpt-4o", "acme", "/chat", 8.0, "2026-10-31T23:00:00+00:00")]     # last month: not counted


def feed(b, events):
    for p, m, t, e, c, when in events:
        b.observe(p, m, t, e, c, ts(when))


def table(b):
    return {(s.name, s.period): round(s.spend_usd, 9) for s in b.statuses()}


def no_ledger(start, end):
    raise AssertionError(f"read the ledger for [{start}, {end}) although the saved state has it")


def test_saved_state_plus_replay_equals_live_and_never_reads_the_ledger():
    live, _ = make()
    feed(live, EVENTS)
    first, _ = make()
    feed(first, EVENTS[:3])
    saved = json.loads(json.dumps(first.state()))          # it goes through JSON in the snapshot
    restored, _ = make()
    restored.load_state(saved, no_ledger)
    feed(restored, EVENTS[3:])                             # the ledger rows after the snapshot
    assert table(restored) == table(live)
    assert table(live)[("tenant:old", "daily")] == 0.0 and table(live)[("global", "monthly")] == 11.25


def test_saved_state_survives_a_period_roll_while_down():
    first, _ = make(now="2026-11-22T23:00:00+00:00")
    feed(first, EVENTS[:4])
    saved = json.loads(json.dumps(first.state()))
    later, _ = make(now="2026-11-23T08:00:00+00:00")      # restarted the next morning
    later.load_state(saved, no_ledger)
    got = table(later)
    assert got[("global", "daily")] == 2.0                 # the event held for the 23rd
    assert got[("tenant:acme", "daily")] == 2.0 and got[("tenant:acme", "monthly")] == 3.5
    assert got[("global", "monthly")] == 7.25


def test_a_budget_new_to_the_saved_state_is_summed_from_its_period_and_only_new_periods_read_the_ledger():
    first, _ = make()
    feed(first, EVENTS)
    saved = json.loads(json.dumps(first.state()))
    calls = []

    def sums(start, end):
        calls.append((start, end))
        return [("openai", "gpt-4o", "acme", "/chat", 1.5)] if start <= ts("2026-11-22T10:00:00+00:00") < end else []

    changed = CONFIG + "  - {name: acme-all, selector: {tenant: acme}, limits: {daily: 9, quarterly: 90}}\n"
    b, _ = make(changed)
    b.load_state(saved, sums)
    got = table(b)
    assert got[("acme-all", "daily")] == 1.5               # from the saved daily sums, no ledger read
    assert got[("acme-all", "quarterly")] == 1.5           # quarterly is new: read from the ledger
    q = (ts("2026-10-01T00:00:00+00:00"), ts("2027-01-01T00:00:00+00:00"))
    assert calls == [q, (q[1], ts("2027-04-01T00:00:00+00:00"))]


def test_reload_journals_events_observed_while_it_is_built(tmp_path):
    log = GovernanceLog(str(tmp_path / "gov.jsonl"))
    b, clock = make(log=log)
    feed(b, EVENTS)
    b.observe("openai", "x", "acme", "/e", 8.0, clock[0])       # openai daily 9.5 of 10: critical
    b.tick()
    before = governance.read(str(tmp_path / "gov.jsonl"))
    assert ("openai", "critical") in {(r["budget"], r["level"]) for r in before}
    rc = b.begin_reconfigure(conf(CONFIG.replace("daily: 10, weekly: 40", "daily: 12, weekly: 40")
                                  + "  - {name: acme-all, selector: {tenant: acme}, period: daily, limit_usd: 9}\n"))
    b.observe("openai", "gpt-4o", "acme", "/chat", 0.5, clock[0])   # during the rebuild: journaled
    b.finish_reconfigure(rc, no_ledger)
    got = table(b)
    assert got[("openai", "daily")] == 10.0 and got[("acme-all", "daily")] == 10.0
    assert got[("global", "daily")] == 10.25 + 0.5 - 0.0       # 1.5 + 0.75 + 8 + 0.5
    b.tick()
    after = governance.read(str(tmp_path / "gov.jsonl"))
    new = [(r["budget"], r["level"]) for r in after[len(before):]]
    assert ("openai", "critical") not in new                    # already logged this period
    assert ("acme-all", "exceeded") in new


def test_reading_unknown_tenants_stores_nothing():
    b, _ = make()
    feed(b, EVENTS)
    before = table(b)
    count = b.instance_count()
    name = "tenant:" + "x" * 60_000
    [p.spend_usd for p in b.get(name)]                           # warm up caches (iso, imports)
    tracemalloc.start()
    try:
        start = tracemalloc.take_snapshot()
        for i in range(1000):
            periods = b.get(f"tenant:{i}" + "y" * 60_000)
            assert [(p.period, p.limit_usd, p.spend_usd) for p in periods] == [("daily", 2.0, 0.0),
                                                                              ("monthly", 20.0, 0.0)]
            b.matching("openai", "m", f"{i}" + "z" * 60_000, "/e")
            b.should_deny(f"{i}" + "w" * 60_000, "openai")
        grown = sum(s.size_diff for s in tracemalloc.take_snapshot().compare_to(start, "filename"))
    finally:
        tracemalloc.stop()
    assert grown < 200_000, f"{grown} bytes kept after 1,000 reads of 60k-character tenants"
    assert table(b) == before and b.instance_count() == count
    assert b.get("nope") == []
    assert [p.limit_usd for p in b.get("tenant:vip")] == [50.0, 20.0]   # its own daily, the default monthly


def test_tenant_defaults_scale_without_per_tenant_objects_and_the_route_cache_has_no_cliff(monkeypatch):
    monkeypatch.setattr(book_mod, "MAX_ROUTES", 50)
    b, clock = make("global: {daily: 1000000000}\ntenant_defaults: {daily: 1}\n"
                    "budgets:\n  - {name: t-all, selector: {tenant: t7}, period: daily, limit_usd: 1000000000}\n")
    for i in range(5000):
        b.observe("p", "m", f"t{i % 1000}", "e", 0.25, clock[0])
    assert len(b._st.routes) <= 50                                # bounded, entries evicted one by one
    assert b.instance_count() == 2 + 999           # t7 has its own daily budget instead of the default
    got = table(b)
    assert got[("global", "daily")] == 1250.0 and got[("t-all", "daily")] == 1.25
    assert all(got[(f"tenant:t{i}", "daily")] == 1.25 for i in range(1000) if i != 7)
    assert ("tenant:t7", "daily") not in got


def test_concurrent_observe_during_reloads_counts_every_event_once():
    b, clock = make("global: {daily: 1000000000}\ntenant_defaults: {daily: 1000000000}\n")
    stop = threading.Event()
    n = [0]

    def work():
        while not stop.is_set() and n[0] < 40_000:
            b.observe("p", "m", f"t{n[0] % 13}", "e", 0.5, clock[0])
            n[0] += 1

    th = threading.Thread(target=work)
    th.start()
    for k in range(20):
        b.reconfigure(conf(f"global: {{daily: {1000000000 + k}}}\ntenant_defaults: {{daily: 1000000000}}\n"
                           + ("budgets:\n  - {name: t3, selector: {tenant: t3}, period: daily, limit_usd: 1000000000}\n"
                              if k % 2 else "")))
    stop.set()
    th.join()
    got = table(b)
    assert got[("global", "daily")] == n[0] * 0.5
    # t3 has its own daily budget in every other configuration (the last one included)
    assert sum(v for (name, _), v in got.items() if name.startswith("tenant:") or name == "t3") == n[0] * 0.5
    assert got[("t3", "daily")] == sum(0.5 for i in range(n[0]) if i % 13 == 3)


@pytest.mark.parametrize("amount", [0.5, 1.6])
def test_tick_logs_crossings_of_many_tenants_queued_by_observe(tmp_path, amount):
    path = str(tmp_path / "gov.jsonl")
    b, clock = make("tenant_defaults: {daily: 2}\n", log=GovernanceLog(path))
    for i in range(300):
        b.observe("p", "m", f"t{i}", "e", amount, clock[0])
    b.tick()
    b.tick()
    recs = governance.read(path)
    assert len(recs) == (300 if amount > 1.5 else 0)
    assert all(r["level"] == "warning" and r["period"] == "daily" for r in recs)


def test_status_dicts_are_the_statuses_as_dicts():
    b, clock = make(CONFIG)
    feed(b, EVENTS)
    b.observe("openai", "m", "zed", "/e", 5.0, clock[0])                # exhausted: projected_exhaustion now
    got = b.status_dicts()
    assert got == [s.to_dict() for s in b.statuses()]
    assert any(d["projected_exhaustion"] is not None for d in got)
