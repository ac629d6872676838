"""How fast GET /v1/costs answers a 30-day report over a large ledger.

    python bench/bench_costs.py [--events 10000000] [--dir DIR]

Builds a ledger of N events spread over 60 days (50 tenants, 10 models, 5
endpoints; written by SQLite itself, so building is quick), then prints,
measured in this run:

* baseline: the same answer computed by a raw GROUP BY over the events
  (``CostsDB.raw_query``, using the ts index);
* the one-off catch-up that folds every event into the hourly rollup
  (what an existing ledger pays once, in the exporter's housekeeping);
* the 30-day report queries through the rollup (``CostsDB.query``), with
  1000 fresh events in the not-yet-folded tail, as in production.
"""
from __future__ import annotations

import argparse
import os
import shutil
import sqlite3
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "exporter"))

from costmeter.server.costs import CostQuery, CostsDB  # noqa: E402
from costmeter.server.ledger import Ledger  # noqa: E402

DAY = 86400.0
END = 1795305600.0          # 2026-11-22T00:00:00Z


def build(path: str, n: int) -> None:
    Ledger(os.path.dirname(path)).close()
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA synchronous=OFF")
    span = 60 * DAY
    db.execute("BEGIN")
    db.execute(f"""
        WITH RECURSIVE c(x) AS (SELECT 0 UNION ALL SELECT x + 1 FROM c WHERE x < {n - 1})
        INSERT INTO events(id, ts, provider, model, tenant, endpoint, input, cached_input, cache_write,
                           output, reasoning, cost, cost_given, duration, error, cache_hit, saved, batch, received)
        SELECT 'e' || x, {END - span} + (x * {span / n}), CASE x % 3 WHEN 0 THEN 'openai' WHEN 1 THEN 'anthropic' ELSE 'google' END,
               'model-' || (x % 10), 'tenant-' || ((x * 7) % 50), '/v1/ep' || (x % 5),
               1000 + x % 500, 0, 0, 200 + x % 100, 0, 0.0001 * (1 + x % 40), 0, 0.5, (x % 97 = 0),
               NULL, 0.0, 0, {END} FROM c""")
    db.execute("COMMIT")
    db.close()


def timed(fn, repeat: int = 3) -> tuple[float, object]:
    best, out = float("inf"), None
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t)
    return best, out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--events", type=int, default=10_000_000)
    ap.add_argument("--dir", help="where to build the ledger (default: a temporary directory, removed after)")
    a = ap.parse_args()
    d = a.dir or tempfile.mkdtemp(prefix="bench-costs-")
    path = os.path.join(d, "ledger.db")
    try:
        t = time.perf_counter()
        build(path, a.events)
        print(f"ledger: {a.events:,} events over 60 days, built in {time.perf_counter() - t:.1f}s, "
              f"{os.path.getsize(path) / 1e6:,.0f} MB")
        queries = {
            "tenant,day (report chart)": CostQuery(END - 30 * DAY, END, ("tenant", "day")),
            "tenant (report rows)": CostQuery(END - 30 * DAY, END, ("tenant",)),
            "provider,model (top models)": CostQuery(END - 30 * DAY, END, ("provider", "model")),
        }
        db = CostsDB(path)
        base = {}
        for name, q in queries.items():
            base[name] = timed(lambda: db.raw_query(q), repeat=1)
            print(f"baseline raw GROUP BY  {name:30s} {base[name][0] * 1000:9.1f} ms")
        t = time.perf_counter()
        n = db.catch_up()
        print(f"one-off rollup catch-up of {n:,} events: {time.perf_counter() - t:.1f}s")
        led = Ledger(d)
        led.append([(f"tail{i}", END - 3600 + i, "openai", "model-1", "tenant-1", "/v1/ep1", 1, 0, 0, 1, 0, 0.001,
                     1, 0.1, 0, None, 0.0, 0, END) for i in range(1000)])
        led.close()
        for name, q in queries.items():
            dt, ans = timed(lambda: db.query(q, catch_up=False))
            raw = db.raw_query(q)
            same = "same answer" if ans["rows"] == raw["rows"] else "DIFFERENT ANSWER"
            print(f"rollup + 1000-event tail {name:28s} {dt * 1000:9.1f} ms  ({len(ans['rows'])} rows, {same}; "
                  f"baseline {base[name][0] / dt:,.0f}x slower)")
        dt, _ = timed(lambda: db.query(queries["tenant,day (report chart)"]), repeat=1)
        print(f"query with catch-up of the 1000-event tail: {dt * 1000:.1f} ms")
    finally:
        if not a.dir:
            shutil.rmtree(d, ignore_errors=True)


if __name__ == "__main__":
    main()
