"""Ledger-size sweep: ingest with random ids, restart to ready, and reload, as the ledger grows.

For each size (100k and 1M events by default; add 10M with --full, which takes
several minutes to fill) a state directory is filled with that many events of
the current day (1,000 tenants, random uuid4 ids), with budgets configured
(global and tenant defaults, daily and monthly). Then, in-process:

* Ledger.append of batches of 1,000 new random ids (the fsynced write path);
* 16 threads appending batches of 10 (the SDK shipper's common case: group commit);
* restart to ready: Exporter start on that state directory after a clean stop
  (snapshot present), budgets configured;
* reload with a budget of a new period (quarterly: its spend has to be read from
  the ledger) while one thread ingests batches of 10 and another renders /metrics:
  how long the reload takes and the longest ingest call / render during it. The new
  period's spend comes from GET /v1/costs' hourly rollup (caught up first: on a ledger
  filled outside the exporter that is a one-off, timed and printed); baseline, same run:
  the quarter summed from the raw events (Ledger.sums, what reload read before), and the
  rollup's answer for the same quarter alone.

Baseline, same run: Ledger.append of increasing ids on an empty ledger, batches
of 1,000, and the longest ingest call / render over the same time without a reload.

    .venv/bin/python bench/bench_ledger_size.py [--sizes 100000,1000000] [--full]

To measure another checkout with the same script: PYTHONPATH=/path/to/other/exporter.
"""
from __future__ import annotations

import argparse
import os
import random
import sqlite3
import sys
import tempfile
import threading
import time
import uuid

BUDGETS = "global: {daily: 1000000, monthly: 10000000}\ntenant_defaults: {daily: 1000, monthly: 10000}\n"
RELOADED = BUDGETS + "budgets:\n  - {name: quarter, period: quarterly, limit_usd: 100000000}\n"
MODELS = ("gpt-4o", "gpt-4o-mini", "claude-sonnet-4-5", "claude-3-haiku", "gemini-2.5-flash")


def row(rid: str, ts: float, rnd: random.Random) -> tuple:
    """A ledger row in the COLUMNS order of the code under test."""
    from costmeter.server.ledger import COLUMNS
    i = rnd.randrange(1 << 30)
    r = {"id": rid, "ts": ts, "provider": "openai", "model": MODELS[i % 5], "tenant": f"tenant-{i % 1000}",
         "endpoint": f"/v1/ep{i % 8}", "input": 600, "output": 300, "cost": 0.001 * (1 + i % 7),
         "cost_given": 1, "duration": 0.5, "saved": 0.0, "received": ts}
    return tuple(r.get(c, None if c == "cache_hit" else 0) for c in COLUMNS)


def fill(state: str, n: int) -> None:
    """n events of today, written straight into the ledger's events table (ids sorted, so the
    fill is quick whatever the index; the ledger then opens it as it would its own)."""
    from costmeter.server.ledger import COLUMNS, Ledger
    Ledger(state).close()                    # the schema of the code under test
    db = sqlite3.connect(os.path.join(state, "ledger.db"))
    db.execute("PRAGMA synchronous=OFF")
    rnd = random.Random(1)
    day0 = time.time() // 86400 * 86400
    span = max(time.time() - day0 - 60, 60)
    ins = f"INSERT INTO events({','.join(COLUMNS)}) VALUES ({','.join('?' * len(COLUMNS))})"
    step = 200_000
    for lo in range(0, n, step):
        ids = sorted(str(uuid.UUID(int=rnd.getrandbits(128), version=4)) for _ in range(min(step, n - lo)))
        db.execute("BEGIN")
        db.executemany(ins, (row(rid, day0 + rnd.random() * span, rnd) for rid in ids))
        db.execute("COMMIT")
    db.close()


def append_rate(led, batches: list[list[tuple]]) -> float:
    t0 = time.perf_counter()
    for b in batches:
        led.append(b)
    return sum(map(len, batches)) / (time.perf_counter() - t0)


def random_batches(k: int, size: int, rnd: random.Random) -> list[list[tuple]]:
    now = time.time()
    return [[row(str(uuid.uuid4()), now, rnd) for _ in range(size)] for _ in range(k)]


def group_rate(led, clients: int = 16, seconds: float = 3.0) -> float:
    """Events/s of ``clients`` threads appending batches of 10 (rows made beforehand, so the
    figure is the ledger's and not the row generator's)."""
    rnd = random.Random(2)
    now = time.time()
    per = int(seconds * 8_000 / clients) + 1          # enough batches for ``seconds`` at ~80k/s
    work = [[[row(str(uuid.uuid4()), now, rnd) for _ in range(10)] for _ in range(per)] for _ in range(clients)]
    done = [0] * clients

    def client(c):
        for b in work[c]:
            led.append(b)
            done[c] += 10

    t0 = time.perf_counter()
    threads = [threading.Thread(target=client, args=(c,)) for c in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return sum(done) / (time.perf_counter() - t0)


def start(state: str, budgets: str):
    from costmeter.server.exporter import Exporter
    return Exporter.embedded(state_dir=state, listen_address=None, budgets_file=budgets)


class HoldTimer:
    """Stands in for the ledger's RLock and records the longest hold by each thread role."""

    def __init__(self, lock):
        self.lock, self.local, self.longest = lock, threading.local(), {}

    def __enter__(self):
        self.lock.acquire()
        d = getattr(self.local, "depth", 0)
        if d == 0:
            self.local.t0 = time.perf_counter()
        self.local.depth = d + 1
        return self

    def __exit__(self, *exc):
        self.local.depth -= 1
        if self.local.depth == 0:
            held = time.perf_counter() - self.local.t0
            role = threading.current_thread().name.split("-")[0]
            self.longest[role] = max(self.longest.get(role, 0.0), held)
        self.lock.release()

    acquire = lambda self, *a, **k: self.lock.acquire(*a, **k)      # noqa: E731
    release = lambda self: self.lock.release()                       # noqa: E731


def stalls(exp, seconds: float | None, during=None) -> tuple[float, float, float, dict]:
    """(seconds `during` took, longest ingest call, longest render, longest ingest-lock hold by
    role) while one thread ingests batches of 10 and another renders /metrics."""
    timer = exp.ledger.lock = HoldTimer(exp.ledger.lock)
    stop = threading.Event()
    worst = {"ingest": 0.0, "render": 0.0}
    n = [0]

    def ingest():
        while not stop.is_set():
            evs = [{"id": str(uuid.uuid4()), "provider": "openai", "model": "gpt-4o", "tenant": f"tenant-{n[0] % 1000}",
                    "cost_usd": 0.001} for _ in range(10)]
            t = time.perf_counter()
            exp.ingest(evs)
            worst["ingest"] = max(worst["ingest"], time.perf_counter() - t)
            n[0] += 1

    def scrape():
        while not stop.is_set():
            t = time.perf_counter()
            exp.render_metrics()
            worst["render"] = max(worst["render"], time.perf_counter() - t)
            time.sleep(0.05)

    threads = [threading.Thread(target=ingest, name="ingest"), threading.Thread(target=scrape, name="scrape")]
    for t in threads:
        t.start()
    time.sleep(0.3)
    t0 = time.perf_counter()
    if during is not None:
        during()
    else:
        time.sleep(seconds)
    took = time.perf_counter() - t0
    time.sleep(0.3)
    stop.set()
    for t in threads:
        t.join()
    exp.ledger.lock = timer.lock
    return took, worst["ingest"], worst["render"], timer.longest


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="100000,1000000")
    ap.add_argument("--full", action="store_true", help="add the 10M-event point (several minutes)")
    args = ap.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")] + ([10_000_000] if args.full else [])
    import costmeter
    from costmeter.server.ledger import Ledger
    print(f"code under test: {os.path.dirname(costmeter.__file__)}")
    rnd = random.Random(3)
    with tempfile.TemporaryDirectory() as d:
        led = Ledger(os.path.join(d, "empty"))
        now = time.time()
        base = append_rate(led, [[row(f"{k:08d}-{i:04d}", now, rnd) for i in range(1000)] for k in range(100)])
        led.close()
    print(f"baseline: Ledger.append, increasing ids, empty ledger, batches of 1,000: {base:,.0f} events/s")
    for n in sizes:
        with tempfile.TemporaryDirectory() as d:
            state = os.path.join(d, "state")
            budgets = os.path.join(d, "budgets.yaml")
            with open(budgets, "w") as f:
                f.write(BUDGETS)
            t = time.perf_counter()
            fill(state, n)
            t_fill = time.perf_counter() - t
            t = time.perf_counter()
            exp = start(state, budgets)             # first start: no snapshot yet, replays everything
            t_first = time.perf_counter() - t
            exp.stop()
            t = time.perf_counter()
            exp = start(state, budgets)
            t_restart = time.perf_counter() - t
            n_budgets = len(exp.budgets.statuses())
            _, base_ingest, base_render, _ = stalls(exp, 2.0)
            from costmeter.server import costs
            rollup = costs.for_ledger(exp.ledger.path)
            t = time.perf_counter()
            rollup.catch_up()                       # the housekeeping does it 200k events a second
            t_catch = time.perf_counter() - t
            from costmeter.budgets.periods import period_bounds
            from zoneinfo import ZoneInfo
            q0, q1 = period_bounds("quarterly", ZoneInfo("UTC"), time.time())
            t = time.perf_counter()
            exp.ledger.sums(q0, q1, max_seq=exp.applied_seq)
            t_scan = time.perf_counter() - t
            t_rollup = None
            if hasattr(rollup, "budget_sums"):
                t = time.perf_counter()
                rollup.budget_sums(q0, q1, max_seq=exp.applied_seq)
                t_rollup = time.perf_counter() - t
            with open(budgets, "w") as f:
                f.write(RELOADED)
            threading.current_thread().name = "reload"
            t_reload, worst_ingest, worst_render, holds = stalls(exp, None, exp.reload)
            exp.ingest([{"id": str(uuid.uuid4()), "provider": "openai", "cost_usd": 0.001}])
            threading.current_thread().name = "snapshot"   # once more, timed, as housekeeping runs it
            timer = exp.ledger.lock = HoldTimer(exp.ledger.lock)
            exp.snapshot()
            exp.ledger.lock = timer.lock
            holds["snapshot"] = timer.longest.get("snapshot", 0.0)
            exp.stop()
            led = Ledger(state)
            rand = append_rate(led, random_batches(50, 1000, rnd))
            grp = group_rate(led)
            led.close()
            print(f"\n{n:>11,} events this period (filled in {t_fill:.0f} s; first start without a snapshot "
                  f"{t_first:.1f} s), {n_budgets} budget instances")
            print(f"  restart to ready (snapshot present):      {t_restart * 1000:9.0f} ms   target <= 1,000 ms")
            print(f"  append, random ids, batches of 1,000:     {rand:9,.0f} events/s   target >= 100,000 "
                  f"(baseline above: {base:,.0f})")
            print(f"  append, 16 threads, batches of 10:        {grp:9,.0f} events/s   target >= 60,000")
            print(f"  reload adding a quarterly budget:         {t_reload * 1000:9.0f} ms")
            print(f"    the quarter summed from the raw events (Ledger.sums, baseline): {t_scan * 1000:.0f} ms; "
                  + (f"from the hourly rollup: {t_rollup * 1000:.1f} ms" if t_rollup is not None else "no rollup sums")
                  + f" (rollup caught up first, one-off: {t_catch:.1f} s)")
            print(f"    longest ingest call during it:          {worst_ingest * 1000:9.0f} ms   target <= 100 "
                  f"(baseline, no reload: {base_ingest * 1000:.0f} ms)")
            print(f"    longest /metrics render during it:      {worst_render * 1000:9.0f} ms   "
                  f"(baseline, no reload: {base_render * 1000:.0f} ms)")
            print("  longest hold of the ingest lock by:      " + ", ".join(
                f"{role} {holds.get(role, 0.0) * 1000:.1f} ms" for role in ("reload", "scrape", "snapshot"))
                + "   target: reload and scrape <= 100 ms")


if __name__ == "__main__":
    main()
