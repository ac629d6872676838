"""Tenant sweep: budgets from tenant_defaults as the number of tenants grows (1k, 10k, 50k).

An in-process Exporter with ``tenant_defaults: {daily, monthly}`` (two budget
instances per tenant) and a global budget takes events of T distinct tenants
through Exporter.ingest (validation, ledger, metrics, budgets), in batches of
1,000. At each T it times:

* a batch of 1,000 events of 1,000 tenants never seen (first events: new budgets);
* the baseline, same run and same T: a batch of 1,000 events of tenants already seen;
* GET /v1/budgets as the HTTP handler builds it (budget figures and JSON);
* /metrics (Exporter.render_metrics, budget families included);
* BudgetBook.tick, as the housekeeping thread runs it every second;
* a snapshot (taken every 10 s) after 10 events, and after one event of each of 10 % of the
  tenants: its time, the part of it under the ingest lock, and what it writes (budget sums
  rows and JSON, metric cells); baseline, same run and same state: the budget book as one
  JSON document (what every snapshot wrote before budget sums were rows of their own), the
  time to build it under the lock and its size;
* restart to ready (snapshot present).

    .venv/bin/python bench/bench_tenants.py [--tenants 1000,10000,50000]

To measure another checkout with the same script: PYTHONPATH=/path/to/other/exporter.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time

BUDGETS = "global: {daily: 1000000, monthly: 10000000}\ntenant_defaults: {daily: 100, monthly: 1000}\n"


def batch(tag: str, tenants: range) -> list[dict]:
    return [{"id": f"{tag}-{t}", "provider": "openai", "model": "gpt-4o", "tenant": f"tenant-{t}",
             "cost_usd": 0.01} for t in tenants]


def budgets_json(exp) -> bytes:
    """The body of GET /v1/budgets as server/http.py builds it (in the code under test)."""
    fast = getattr(exp.budgets, "status_dicts", None)
    if fast is None:                                    # older code: statuses, to_dict, indent=1
        return json.dumps({"budgets": [b.to_dict() for b in exp.budgets.statuses()]}, indent=1).encode()
    body = fast()
    if len(body) > 1000:
        from costmeter.server import http as handler    # its compact encoder: orjson once it imports it
        fast_json = getattr(handler, "orjson", None)
        if fast_json is None:
            return json.dumps({"budgets": body}, separators=(",", ":")).encode()
        return fast_json.dumps({"budgets": body})
    return json.dumps({"budgets": body}, indent=1).encode()


class HoldTimer:
    """Stands in for the ledger's lock and adds up how long it is held."""

    def __init__(self, lock):
        self.lock, self.held = lock, 0.0

    def __enter__(self):
        self.lock.acquire()
        self.t = time.perf_counter()
        return self

    def __exit__(self, *exc):
        self.held += time.perf_counter() - self.t
        self.lock.release()

    def acquire(self, *a):
        return self.lock.acquire(*a)

    def release(self):
        self.lock.release()


def measure_snapshot(exp) -> dict:
    """One Exporter.snapshot: seconds, seconds under the ingest lock, what it wrote."""
    out = {"rows": 0, "row_bytes": 0}
    real = exp.ledger.save_snapshot

    def spy(name, seq, data, cells=(), sums=None):
        out["json"] = len(json.dumps(data, separators=(",", ":")))
        out["cells"] = len(cells)
        if sums is not None:
            rows = sums.rows
            out["rows"] = len(rows)
            out["row_bytes"] = sum(len(r[0]) + 8 + sum(map(len, r[2:6])) + 8 for r in rows)
        return real(name, seq, data, cells, *(() if sums is None else (sums,)))

    lock = exp.ledger.lock
    book = exp.budgets
    copy = getattr(book, "snapshot_delta", None) or book.state     # what the snapshot takes of the book
    name = copy.__name__

    def timed_copy():
        t = time.perf_counter()
        try:
            return copy()
        finally:
            out["budget_held"] = time.perf_counter() - t

    exp.ledger.save_snapshot, exp.ledger.lock = spy, HoldTimer(lock)
    setattr(book, name, timed_copy)
    try:
        t = time.perf_counter()
        exp.snapshot()
        out["time"] = time.perf_counter() - t
        out["held"] = exp.ledger.lock.held
    finally:
        exp.ledger.save_snapshot, exp.ledger.lock = real, lock
        delattr(book, name)
    return out


def whole_book(exp) -> tuple[float, int]:
    """Baseline: the budget book as one JSON document, built under the ingest lock as
    Exporter.snapshot did before (seconds under the lock, bytes)."""
    with exp.ledger.lock:
        t = time.perf_counter()
        state = exp.budgets.state()
        held = time.perf_counter() - t
    return held, len(json.dumps(state, separators=(",", ":")))


def snap_line(what: str, m: dict, base: tuple[float, int]) -> str:
    return (f"  snapshot after {what}: {m['time'] * 1000:7.1f} ms, under the ingest lock {m['held'] * 1000:6.2f} ms "
            f"(the budget book's part {m['budget_held'] * 1000:.2f} ms); "
            f"writes {m['rows']:,} budget rows ({m['row_bytes'] / 1e3:,.1f} kB) + {m['json'] / 1e3:,.1f} kB of JSON, "
            f"{m['cells']:,} metric cells\n"
            f"      baseline, the whole budget book as JSON: under the ingest lock {base[0] * 1000:6.2f} ms, "
            f"{base[1] / 1e6:.2f} MB")


def timed(fn, repeat: int = 3) -> float:
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tenants", default="1000,10000,50000")
    args = ap.parse_args()
    points = [int(x) for x in args.tenants.split(",")]
    import costmeter
    from costmeter.server.exporter import Exporter
    print(f"code under test: {os.path.dirname(costmeter.__file__)}")
    with tempfile.TemporaryDirectory() as d:
        budgets = os.path.join(d, "budgets.yaml")
        with open(budgets, "w") as f:
            f.write(BUDGETS)
        state = os.path.join(d, "state")
        config = os.path.join(d, "exporter.yaml")
        with open(config, "w") as f:             # the snapshots timed here are the only ones
            f.write("storage:\n  snapshot_interval_seconds: 3600\n")

        def start():
            """(exporter, seconds to ready); then waits out the housekeeping's first snapshot."""
            t = time.perf_counter()
            e = Exporter.embedded(state_dir=state, listen_address=None, budgets_file=budgets,
                                  config_file=config)
            took = time.perf_counter() - t
            time.sleep(1.5)
            return e, took

        exp, _ = start()
        seen = 0
        rep = 0
        for target in points:
            t0 = time.perf_counter()
            while seen + 1000 < target:
                exp.ingest(batch("fill", range(seen, seen + 1000)))
                seen += 1000
            fill = time.perf_counter() - t0
            t = time.perf_counter()
            exp.ingest(batch("new", range(seen, seen + 1000)))       # 1,000 first-seen tenants
            new = time.perf_counter() - t
            seen += 1000
            rep += 1
            known = timed(lambda: exp.ingest(batch(f"again{rep}-{time.perf_counter_ns()}", range(seen - 1000, seen))))
            api = timed(lambda: budgets_json(exp))
            metrics = timed(exp.render_metrics)
            tick = timed(exp.budgets.tick, 5)
            exp.snapshot()
            exp.ingest(batch(f"snap{rep}", range(seen - 10, seen)))      # 10 events since the last one
            base10 = whole_book(exp)
            snap10 = measure_snapshot(exp)
            exp.ingest(batch(f"tenth{rep}", range(0, seen, 10)))         # one event of each of 10 % of tenants
            base_tenth = whole_book(exp)
            snap_tenth = measure_snapshot(exp)
            n = len(exp.budgets.statuses())
            exp.stop()
            exp, restart = start()
            if hasattr(exp.budgets, "snapshot_failed"):
                exp.budgets.snapshot_failed()          # the next snapshot writes the whole book
                exp.ingest(batch(f"whole{rep}", range(seen - 10, seen)))
                snap_whole = measure_snapshot(exp)
            else:
                snap_whole = None
            print(f"\n{seen:>7,} tenants, {n:,} budget instances (fill {fill:.1f} s)")
            print(f"  batch of 1,000 events of 1,000 new tenants: {new * 1000:8.1f} ms   target < 50 ms "
                  f"(baseline, tenants already seen: {known * 1000:.1f} ms)")
            print(f"  GET /v1/budgets (as the handler builds it): {api * 1000:8.1f} ms   target < 200 ms")
            print(f"  /metrics render:                            {metrics * 1000:8.1f} ms   target < 200 ms")
            print(f"  BudgetBook.tick:                            {tick * 1000:8.2f} ms")
            print(f"  restart to ready:                           {restart * 1000:8.0f} ms")
            print(snap_line("10 events", snap10, base10))
            print(snap_line(f"1 event of each of {len(range(0, seen, 10)):,} tenants", snap_tenth, base_tenth))
            if snap_whole is not None:
                print(f"  a snapshot writing the whole book (after a failed write): {snap_whole['time'] * 1000:.1f} ms, "
                      f"under the ingest lock {snap_whole['held'] * 1000:.2f} ms (the book's part "
                      f"{snap_whole['budget_held'] * 1000:.2f} ms), {snap_whole['rows']:,} budget rows")
        exp.stop()


if __name__ == "__main__":
    main()
