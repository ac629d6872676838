"""Restart to ready with each storage.integrity_check mode, beside a baseline with no check.

Builds a ledger of --events events (snapshot included, as a stopped exporter leaves it;
--state DIR keeps it for the next run), then times Exporter start-up to ready, best of
--runs, alternating between:

    baseline    no integrity check at all (WAL header, fast and full checks switched off)
    background  the fast check before ready; the full PRAGMA quick_check after ready
    auto        (the default) as start on a ledger up to FULL_CHECK_BEFORE_READY_BYTES, else as background
    start       the fast check and the full check, both before ready

and how long the fast and the full checks themselves take. Page cache warm (the files were
just read), as on a restart; a cold cache after a reboot is slower for every mode.

    .venv/bin/python bench/bench_start_integrity.py                 # 1M events (~110 MB)
    .venv/bin/python bench/bench_start_integrity.py --10m           # and 10M (~1.1 GB, builds in ~4 min)
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "exporter"))
from costmeter.server import integrity, ledger  # noqa: E402
from costmeter.server.exporter import Exporter  # noqa: E402
from costmeter.server.ledger import Ledger  # noqa: E402

MODES = ("baseline", "background", "auto", "start")


def build(state: str, n: int) -> None:
    exp = Exporter.embedded(state_dir=state, listen_address=None)
    for b in range(0, n, 10_000):
        exp.ingest([{"id": f"{b + i}", "provider": "openai", "model": "gpt-4o-mini", "tenant": f"t{i % 50}",
                     "input_tokens": 600, "output_tokens": 300} for i in range(min(10_000, n - b))])
    exp.stop()


def _no_check(self, *a, **k):
    return None


def run_point(state: str, n: int, runs: int) -> None:
    if not os.path.exists(os.path.join(state, "ledger.db")):
        t0 = time.perf_counter()
        build(state, n)
        print(f"built {n:,} events in {time.perf_counter() - t0:.0f} s")
    size = sum(os.path.getsize(os.path.join(state, f)) for f in ("ledger.db", "ledger.db-wal")
               if os.path.exists(os.path.join(state, f)))
    small = size <= ledger.FULL_CHECK_BEFORE_READY_BYTES
    print(f"ledger: {n:,} events, {size / 1e6:.0f} MB ({'at most' if small else 'over'} "
          f"FULL_CHECK_BEFORE_READY_BYTES = {ledger.FULL_CHECK_BEFORE_READY_BYTES / 1e6:.0f} MB)")
    best = {m: [float("inf")] * 3 for m in MODES}
    for _ in range(runs):
        for mode in MODES:
            t = start_seconds(state, mode)
            best[mode] = [min(a, b) for a, b in zip(best[mode], t)]
    print(f"  {'mode':<11} {'start to ready':>15} {'fast check':>11} {'full check':>11}   (best of {runs})")
    for mode in MODES:
        ready, fast, full = best[mode]
        when = "" if mode == "baseline" else ("before ready" if mode == "start" or (mode == "auto" and small)
                                               else "after ready")
        print(f"  {mode:<11} {ready:>13.3f} s {fast:>9.3f} s {full:>9.3f} s   {when}")
    full = best["start"][2]
    print(f"  full check reads {size / 1e6 / full:.0f} MB/s")


def start_seconds(state: str, mode: str) -> tuple[float, float, float]:
    """(start to ready, fast check, full check) in seconds; a full check after ready is waited for."""
    cfg = os.path.join(os.path.dirname(state), f"exporter-{mode}.yaml")
    with open(cfg, "w") as f:
        f.write(f"storage: {{integrity_check: {'auto' if mode == 'baseline' else mode}}}\n")
    saved = (Ledger.start_integrity_check, Exporter._check_before_ready, integrity.wal_problem)
    if mode == "baseline":
        Ledger.start_integrity_check = Exporter._check_before_ready = _no_check
        integrity.wal_problem = lambda path: None
    try:
        t0 = time.perf_counter()
        exp = Exporter.embedded(state_dir=state, listen_address=None, config_file=cfg)
        took = time.perf_counter() - t0
    finally:
        Ledger.start_integrity_check, Exporter._check_before_ready, integrity.wal_problem = saved
    for t in exp._threads:              # a full check after ready: wait, so runs do not overlap
        if t.name == "costmeter-integrity-wait":
            t.join()
    led = exp.ledger
    fast = led.fast.seconds if led.fast is not None else 0.0
    full = led.full.seconds if led.full is not None else 0.0
    exp.stop()
    return took, fast, full


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=1_000_000)
    ap.add_argument("--10m", dest="ten_million", action="store_true", help="also 10M events (~1.1 GB)")
    ap.add_argument("--state", metavar="DIR", help="keep the built ledgers in DIR (reused when there)")
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    logging.disable(logging.INFO)
    points = [args.events] + ([10_000_000] if args.ten_million else [])
    with tempfile.TemporaryDirectory() as tmp:
        base = args.state or tmp
        for n in points:
            run_point(os.path.join(base, f"events-{n}", "state"), n, args.runs)


if __name__ == "__main__":
    main()
