"""Incremental budget snapshots (budgets/stored.py): only the sums changed since the last
snapshot are written, and a restore from them is exactly the live book, across period
rolls, reloads, failed writes and snapshots of an older costmeter (whole-book JSON)."""
from __future__ import annotations

import json
import random
import textwrap
from datetime import datetime

from freezegun import freeze_time

from costmeter.budgets.book import BudgetBook
from costmeter.budgets.config import loads_budgets
from costmeter.server.exporter import SNAPSHOT, Exporter
from costmeter.server.ledger import Ledger

CONFIG = """\
global: {daily: 100, monthly: 1000}
tenant_defaults: {daily: 2, monthly: 20}
tenants: {vip: {daily: 50}}
budgets:
  - {name: openai, selector: {provider: openai}, limits: {daily: 10, weekly: 40}}
  - {name: kathmandu, selector: {model: m1}, period: daily, limit_usd: 5, timezone: Asia/Kathmandu}
  - {name: adelaide, selector: {tenant: t3}, period: monthly, limit_usd: 5, timezone: Australia/Adelaide}
"""
# a reload: the weekly and Adelaide tracks go, quarterly and an India daily track come
RELOADED = """\
global: {daily: 100, monthly: 1000, quarterly: 5000}
tenant_defaults: {daily: 2, monthly: 20}
budgets:
  - {name: openai, selector: {provider: openai}, limits: {daily: 12}}
  - {name: kathmandu, selector: {model: m1}, period: daily, limit_usd: 5, timezone: Asia/Kathmandu}
  - {name: india, selector: {tenant: t1}, period: daily, limit_usd: 3, timezone: Asia/Kolkata}
"""


def ts(s: str) -> float:
    return datetime.fromisoformat(s).timestamp()


def conf(text: str):
    return loads_budgets(textwrap.dedent(text), "budgets.yaml", {})


class _Near(float):
    """A float equal to another within 1e-12 relative (the restore adds up in another order)."""

    def __eq__(self, other):
        return abs(self - other) <= 1e-12 * max(abs(self), abs(other), 1e-9)

    __hash__ = float.__hash__


def state_of(b: BudgetBook) -> dict:
    """Everything a restore must reproduce: the per-key sums of each track and the named
    budgets' spend exactly (they are what is saved); the tenants' totals and the statuses
    to 1e-12 (a restore adds a tenant's per-key sums up again, in another order than the
    events came: the last bit may differ, as with every earlier snapshot format)."""
    now = b._clock()
    with b._lock:
        st = b._st
        st.roll(now)
        tracks = {tr.sname: (tr.start, tr.end, dict(tr.cur), dict(tr.nxt),
                             {t: _Near(v) for t, v in tr.tcur.items()},
                             {t: _Near(v) for t, v in tr.tnxt.items()}) for tr in st.track_list}
        named = {i.ident: (i.spend, i.next_spend) for i in st.named}
    # a tenant seen in an earlier period only is listed at zero spend until a restart: that
    # is no saved figure, leave it out
    statuses = [{k: _Near(v) if isinstance(v, float) else v for k, v in s.to_dict().items()}
                for s in b.statuses(now) if s.spend_usd or not s.name.startswith("tenant:t")]
    return {"tracks": tracks, "named": named, "statuses": statuses}


def save(led: Ledger, b: BudgetBook, seq: int) -> tuple[int, int]:
    """What Exporter.snapshot does with the book; returns (rows written, JSON bytes)."""
    d = b.snapshot_delta()
    data = {"budgets": d.state()}
    led.save_snapshot(SNAPSHOT, seq, data, (), d)
    return len(d.rows), len(json.dumps(data))


def restore(led: Ledger, config_text: str, clock, sums=None) -> BudgetBook:
    _, state = led.load_snapshot(SNAPSHOT)
    b = BudgetBook(conf(config_text), clock=clock)

    def no_ledger(start, end):
        raise AssertionError("the snapshot holds every track: no ledger read")

    b.load_state(state["budgets"], sums or no_ledger, led.load_budget_sums())
    return b


def test_incremental_snapshots_restore_exactly_across_rolls_reloads_and_failed_writes(tmp_path):
    rnd = random.Random(9)
    led = Ledger(str(tmp_path / "state"))
    clock = [ts("2026-11-29T20:00:00+00:00")]      # rolls: days, a week, the month, a quarter in the run
    config = CONFIG
    live = BudgetBook(conf(config), clock=lambda: clock[0])
    events: list[tuple] = []          # the "ledger": what a sums() read for a new track sees

    def sums(start, end):
        out: dict[tuple, float] = {}
        for key, cost, t in events:
            if start <= t < end:
                out[key] = out.get(key, 0.0) + cost
        return [k + (v,) for k, v in out.items()]

    seq = 0
    changed: set = set()          # keys observed since the last snapshot saved
    whole = True                  # the next snapshot writes the whole book (first, after a failure)
    for step in range(60):
        clock[0] += rnd.choice((600.0, 3600.0, 5 * 3600.0, 20 * 3600.0))
        live.tick()
        for _ in range(rnd.randrange(1, 40)):
            key = (rnd.choice(("openai", "anthropic")), rnd.choice(("m1", "m2")), f"t{rnd.randrange(30)}",
                   rnd.choice(("/a", "/b")))
            t = clock[0] + rnd.uniform(-30 * 3600, 8 * 3600)       # some held for tomorrow, some too old
            cost = rnd.randrange(1, 1000) / 997.0                   # not exact in binary: order matters
            events.append((key, cost, t))
            live.observe(*key, cost, t)
            changed.add(key)
            seq += 1
        if step == 25:                                              # a reload: tracks go and come
            config = RELOADED
            live.reconfigure(conf(config), sums)
            whole = True                                            # new tracks are written whole
        if step % 7 == 3:                                           # a failed write: next one is whole
            live.snapshot_delta()
            live.snapshot_failed()
            whole = True
            continue
        rows, _ = save(led, live, seq)
        if not whole:         # incremental: the changed keys' sums, current and next period, per track
            assert rows <= len(changed) * 2 * len(live._st.track_list), f"step {step}"
        changed, whole = set(), False
        assert state_of(restore(led, config, lambda: clock[0])) == state_of(live), f"step {step}"
    # old periods' rows are gone: at most the current and the next period per track
    pstarts = {}
    for name, pstart, *_ in led.load_budget_sums():
        pstarts.setdefault(name, set()).add(pstart)
    assert max(map(len, pstarts.values())) <= 2
    assert set(pstarts) <= {tr.sname for tr in live._st.track_list}     # dropped tracks are deleted
    led.close()


def test_a_snapshot_writes_only_the_keys_changed_since_the_last(tmp_path):
    led = Ledger(str(tmp_path / "state"))
    clock = [ts("2026-11-22T12:00:00+00:00")]
    b = BudgetBook(conf("global: {daily: 1000}\ntenant_defaults: {daily: 10, monthly: 100}\n"),
                   clock=lambda: clock[0])
    for t in range(5000):
        b.observe("openai", "gpt-4o", f"tenant-{t}", "/chat", 0.25, clock[0])
    first, big = save(led, b, 5000)
    assert first == 5000 * 2            # the first snapshot: whole (two tracks)
    for t in range(10):
        b.observe("openai", "gpt-4o", f"tenant-{t}", "/chat", 0.5, clock[0])
    rows, small = save(led, b, 5010)
    assert rows == 10 * 2 and small < 2000 and big < 2000     # the JSON holds no per-key sums
    rows, _ = save(led, b, 5010)
    assert rows == 0
    again = restore(led, "global: {daily: 1000}\ntenant_defaults: {daily: 10, monthly: 100}\n", lambda: clock[0])
    assert state_of(again) == state_of(b)
    assert again.get("tenant:tenant-3")[0].spend_usd == 0.75
    led.close()


BUDGETS = "global: {daily: 1000, monthly: 10000}\ntenant_defaults: {daily: 10, monthly: 100}\n"


def _events(tag: str, n: int, tenants: int) -> list[dict]:
    return [{"id": f"{tag}-{i}", "provider": "openai", "model": "gpt-4o", "tenant": f"t{i % tenants}",
             "timestamp": "2026-11-22T11:00:00Z", "cost_usd": 0.125 * (1 + i % 5)} for i in range(n)]


def _expected(exp) -> dict:
    """Budget spend as the ledger sums it, for every budget instance."""
    day = exp.ledger.sums(ts("2026-11-22T00:00:00+00:00"), ts("2026-11-23T00:00:00+00:00"))
    month = exp.ledger.sums(ts("2026-11-01T00:00:00+00:00"), ts("2026-12-01T00:00:00+00:00"))
    out: dict = {}
    for period, rows in (("daily", day), ("monthly", month)):
        for _p, _m, tenant, _e, cost in rows:
            out[(f"tenant:{tenant}", period)] = out.get((f"tenant:{tenant}", period), 0.0) + cost
            out[("global", period)] = out.get(("global", period), 0.0) + cost
    return out


def _spend(exp) -> dict:
    return {(s.name, s.period): s.spend_usd for s in exp.budgets.statuses()}


def _crash(exp) -> None:
    """Stop without the final snapshot (as kill -9 would leave it)."""
    exp.snapshot = lambda: None
    exp.stop()


def test_a_state_dir_with_a_whole_book_snapshot_of_an_older_costmeter_restarts_exactly(tmp_path):
    """The snapshot of the costmeter before incremental budget sums held the whole book as
    JSON ("budgets": BudgetBook.state(), version 1): it loads, the next snapshot writes the
    table whole, and later ones only what changed."""
    budgets = tmp_path / "budgets.yaml"
    budgets.write_text(BUDGETS)
    state = str(tmp_path / "state")
    with freeze_time("2026-11-22T12:00:00Z", tick=True):
        def start():
            return Exporter.embedded(state_dir=state, listen_address=None, budgets_file=str(budgets))

        exp = start()
        exp.ingest(_events("a", 300, 40))
        # exactly what Exporter.snapshot wrote before this change
        with exp.ledger.lock:
            seq = exp.applied_seq
            old = {"guard": exp.store.guard.state(), "health": dict(exp.health), "resources": exp.resources.state(),
                   "billing": exp.billing.scheduler.state(), "budgets": exp.budgets.state()}
            cells = exp.store.delta()
        assert old["budgets"]["version"] == 1 and old["budgets"]["tracks"][0]["cur"]
        exp.ledger.save_snapshot(SNAPSHOT, seq, old, cells)
        exp.ingest(_events("b", 50, 40))                  # after that snapshot: replayed
        _crash(exp)
        assert Ledger(state).load_budget_sums() == []     # nothing in the new table yet

        exp = start()
        want = _expected(exp)
        assert _spend(exp) == want and want[("global", "daily")] == 350 * 0.375
        exp.snapshot()                                    # whole: the table was empty
        assert len(exp.ledger.load_budget_sums()) == 40 * 2
        assert "cur" not in exp.ledger.load_snapshot(SNAPSHOT)[1]["budgets"]["tracks"][0]
        exp.ingest(_events("c", 30, 3))
        d = {}
        real = exp.ledger.save_snapshot
        exp.ledger.save_snapshot = lambda *a: (d.setdefault("rows", len(a[4].rows)), real(*a))
        exp.snapshot()
        assert d["rows"] == 3 * 2                          # three tenants changed, two periods
        exp.ingest(_events("d", 20, 40))
        _crash(exp)

        exp = start()
        assert _spend(exp) == _expected(exp)
        exp.stop()
