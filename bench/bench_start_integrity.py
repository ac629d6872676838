"""Start-up cost of the ledger integrity check (PRAGMA quick_check beside the restore).

Builds a ledger of --events events (snapshot included, as a stopped exporter leaves
it), then times Exporter start-up to ready with the check (as shipped) and without
it (the baseline, same run, same files), alternating, best of --runs each.

    .venv/bin/python bench/bench_start_integrity.py [--events 1000000]
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "exporter"))
from costmeter.server.exporter import Exporter  # noqa: E402
from costmeter.server.ledger import Ledger  # noqa: E402


def build(state: str, n: int) -> None:
    exp = Exporter.embedded(state_dir=state, listen_address=None)
    for b in range(0, n, 10_000):
        exp.ingest([{"id": f"{b + i}", "provider": "openai", "model": "gpt-4o-mini", "tenant": f"t{i % 50}",
                     "input_tokens": 600, "output_tokens": 300} for i in range(min(10_000, n - b))])
    exp.stop()


def start_seconds(state: str) -> float:
    t0 = time.perf_counter()
    exp = Exporter.embedded(state_dir=state, listen_address=None)
    took = time.perf_counter() - t0
    exp.stop()
    return took


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=1_000_000)
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    logging.disable(logging.INFO)
    with tempfile.TemporaryDirectory() as d:
        state = os.path.join(d, "state")
        t0 = time.perf_counter()
        build(state, args.events)
        size = os.path.getsize(os.path.join(state, "ledger.db"))
        print(f"ledger: {args.events:,} events, {size / 1e6:.0f} MB (built in {time.perf_counter() - t0:.0f} s)")
        real = (Ledger.start_integrity_check, Ledger.check_integrity)
        with_check, without = [], []
        for _ in range(args.runs):
            with_check.append(start_seconds(state))
            Ledger.start_integrity_check = Ledger.check_integrity = lambda self: None
            try:
                without.append(start_seconds(state))
            finally:
                Ledger.start_integrity_check, Ledger.check_integrity = real
        print(f"start to ready with the integrity check: {min(with_check):.2f} s (best of {args.runs})")
        print(f"baseline, same run, check switched off:  {min(without):.2f} s")


if __name__ == "__main__":
    main()
