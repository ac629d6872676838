"""Ingest throughput: acknowledged (durable) events per second over HTTP on loopback.

Starts the real `costmeter serve` with a fresh state directory, pre-encodes
batches of 1,000 unique events (so the client spends little CPU during the
run), then POSTs them over keep-alive connections and counts events the
exporter acknowledged with 200. Every acknowledged event was committed to
SQLite (WAL, synchronous=FULL) before the response.

    .venv/bin/python bench/bench_ingest.py [--events 200000] [--clients 2]
"""
from __future__ import annotations

import argparse
import http.client
import json
import os
import sys
import tempfile
import threading
import time

import psutil

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests"))
from exporter_support import ExporterProcess  # noqa: E402

TENANTS = [f"tenant-{i}" for i in range(50)]
MODELS = ["gpt-4o-mini-2024-07-18", "gpt-4o", "claude-sonnet-4-5-20250929", "claude-3-haiku", "gemini-2.5-flash"]


def batches(n_events: int, size: int) -> list[bytes]:
    out = []
    for b in range(n_events // size):
        out.append(json.dumps([{
            "id": f"{b}-{i}", "provider": "openai" if i % 5 < 2 else ("anthropic" if i % 5 < 4 else "google"),
            "model": MODELS[i % 5], "tenant": TENANTS[(b + i) % 50], "endpoint": f"/v1/ep{i % 8}",
            "input_tokens": 600 + i, "cached_input_tokens": 400, "output_tokens": 300, "reasoning_tokens": 20,
            "duration_seconds": 0.5 + (i % 10) / 10} for i in range(size)]).encode())
    return out


def ledger_baseline(bodies: list[bytes]) -> float:
    """Events/s of Ledger.append alone on the same events: the durable-storage ceiling."""
    from costmeter.server.ledger import Ledger
    from costmeter.pricing import PricingTable
    from costmeter.events import parse_event
    price, now = PricingTable.load().cost, time.time()
    batches_rows = [[parse_event(e, now, price) for e in json.loads(b)] for b in bodies]
    with tempfile.TemporaryDirectory() as d:
        led = Ledger(d)
        t0 = time.perf_counter()
        for rows in batches_rows:
            led.append(rows)
        elapsed = time.perf_counter() - t0
        led.close()
    return sum(len(r) for r in batches_rows) / elapsed


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=200_000)
    ap.add_argument("--batch", type=int, default=1000)
    ap.add_argument("--clients", type=int, default=2)
    args = ap.parse_args()
    bodies = batches(args.events, args.batch)
    with tempfile.TemporaryDirectory() as d, ExporterProcess(os.path.join(d, "state")) as exp:
        port = exp.port
        next_i = iter(range(len(bodies)))
        lock = threading.Lock()
        acked = [0]
        errors = [0]

        def client():
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
            while True:
                with lock:
                    i = next(next_i, None)
                if i is None:
                    return
                conn.request("POST", "/v1/events", bodies[i], {"Content-Type": "application/json"})
                r = conn.getresponse()
                body = r.read()
                if r.status == 200:
                    with lock:
                        acked[0] += json.loads(body)["accepted"]
                else:
                    errors[0] += 1

        threads = [threading.Thread(target=client) for _ in range(args.clients)]
        server = psutil.Process(exp.proc.pid)
        cpu0 = sum(server.cpu_times()[:2])
        t0 = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        elapsed = time.perf_counter() - t0
        server_cpu = sum(server.cpu_times()[:2]) - cpu0
        print(f"ingest: {acked[0]:,} events acknowledged in {elapsed:.2f} s "
              f"= {acked[0] / elapsed:,.0f} events/s (batches of {args.batch}, {args.clients} clients, "
              f"durable: SQLite WAL synchronous=FULL; {errors[0]} failed requests)")
        print(f"exporter CPU: {server_cpu / max(acked[0], 1) * 1e6:.1f} µs per event "
              f"({server_cpu / elapsed:.2f} cores busy on average)")
        base = ledger_baseline(bodies)
        print(f"baseline, same run: the same events appended in-process straight to the ledger "
              f"(no HTTP, no validation, no metrics): {base:,.0f} events/s")
        print("target: >= 50,000 events/s")


if __name__ == "__main__":
    main()
