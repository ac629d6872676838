"""Ingest throughput: acknowledged (durable) events per second over HTTP on loopback.

Starts the real `costmeter serve` with a fresh state directory, pre-encodes
batches of 1,000 unique events (so the client spends little CPU during the
run), then POSTs them from client processes over keep-alive connections and counts events the
exporter acknowledged with 200. Every acknowledged event was committed to
SQLite (WAL, synchronous=FULL) before the response. Bodies of 32 KiB or more
are parsed by the exporter's ingest workers (server/parsepool.py); the same run
repeats with --ingest.workers=0 (everything in the exporter's process) as the
baseline, and the CPU of the exporter and of its workers is printed apart.

    .venv/bin/python bench/bench_ingest.py [--events 200000] [--batch 1000] [--clients 2]
    .venv/bin/python bench/bench_ingest.py --batch 10 --clients 16 --events 100000   # the SDK's case
"""
from __future__ import annotations

import argparse
import http.client
import json
import multiprocessing
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


def warm_up(port: int, size: int) -> None:
    """A second of batches (ids of their own) before the clock starts: the exporter starts its
    ingest workers on the first large body, and makes the series of each (provider, model,
    tenant, endpoint) on its first event; a long-running exporter has both already."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    shapes = [json.loads(b) for b in batches(50 * size, size)]      # every tenant offset: every key
    deadline, n = time.monotonic() + 1.0, 0
    while time.monotonic() < deadline or n < len(shapes):
        body = shapes[n % len(shapes)]
        for e in body:
            e["id"] = f"warm-{n}-{e['id']}"
        conn.request("POST", "/v1/events", json.dumps(body).encode(), {"Content-Type": "application/json"})
        conn.getresponse().read()
        n += 1
    conn.close()


def _workers_cpu(server: psutil.Process) -> float:
    """CPU seconds of the exporter's ingest worker processes (parsepool.py) so far."""
    total = 0.0
    for child in server.children(recursive=True):
        try:
            total += sum(child.cpu_times()[:2])
        except psutil.NoSuchProcess:
            pass
    return total


def _client(port: int, bodies: list[bytes], go, out) -> None:
    """One client process: a keep-alive connection, its share of the bodies, after ``go``."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    conn.connect()
    go.wait()
    acked = failed = 0
    for body in bodies:
        conn.request("POST", "/v1/events", body, {"Content-Type": "application/json"})
        r = conn.getresponse()
        answer = r.read()
        if r.status == 200:
            acked += json.loads(answer)["accepted"]
        else:
            failed += 1
    out.put((acked, failed))


def in_process_rate(bodies: list[bytes], threads: int) -> float:
    """Events/s of Exporter.ingest called by ``threads`` threads in this process: the same
    validation, pricing, group commit and metrics, without HTTP."""
    from costmeter.server.exporter import Exporter
    with tempfile.TemporaryDirectory() as d:
        exp = Exporter.embedded(state_dir=d, listen_address=None)
        objs = [json.loads(b) for b in bodies]
        shares = [objs[i::threads] for i in range(threads)]

        def run(share):
            for o in share:
                exp.ingest(o)

        ts = [threading.Thread(target=run, args=(sh,)) for sh in shares]
        t0 = time.perf_counter()
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        elapsed = time.perf_counter() - t0
        exp.stop()
    return sum(map(len, objs)) / elapsed


def over_http(bodies: list[bytes], clients: int, exporter_args: tuple[str, ...] = ()) -> dict:
    """Run the real exporter (with ``exporter_args``) and the clients; return the figures."""
    ctx = multiprocessing.get_context("fork")
    with tempfile.TemporaryDirectory() as d, ExporterProcess(os.path.join(d, "state"), *exporter_args) as exp:
        go, out = ctx.Event(), ctx.Queue()
        procs = [ctx.Process(target=_client, args=(exp.port, bodies[c::clients], go, out))
                 for c in range(clients)]
        for p in procs:
            p.start()
        warm_up(exp.port, len(json.loads(bodies[0])))
        time.sleep(0.5)                       # every client connected and waiting
        server = psutil.Process(exp.proc.pid)
        cpu0, wcpu0 = sum(server.cpu_times()[:2]), _workers_cpu(server)
        t0 = time.perf_counter()
        go.set()
        results = [out.get() for _ in procs]
        elapsed = time.perf_counter() - t0
        server_cpu = sum(server.cpu_times()[:2]) - cpu0
        workers_cpu = _workers_cpu(server) - wcpu0
        for p in procs:
            p.join()
    acked, failed = sum(r[0] for r in results), sum(r[1] for r in results)
    return {"acked": acked, "failed": failed, "elapsed": elapsed, "cpu": server_cpu, "workers_cpu": workers_cpu}


def report(title: str, r: dict) -> None:
    acked, elapsed = r["acked"], r["elapsed"]
    print(f"{title}: {acked:,} events acknowledged in {elapsed:.2f} s = {acked / elapsed:,.0f} events/s "
          f"({r['failed']} failed requests)")
    print(f"  exporter CPU: {r['cpu'] / max(acked, 1) * 1e6:.1f} µs per event in its process "
          f"({r['cpu'] / elapsed:.2f} cores busy on average), {r['workers_cpu'] / max(acked, 1) * 1e6:.1f} µs "
          f"in its ingest workers ({r['workers_cpu'] / elapsed:.2f} cores)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=200_000)
    ap.add_argument("--batch", type=int, default=1000)
    ap.add_argument("--clients", type=int, default=2, help="client processes (each one keep-alive connection)")
    ap.add_argument("--quick", action="store_true", help="only the exporter as configured by default")
    args = ap.parse_args()
    bodies = batches(args.events, args.batch)
    print(f"batches of {args.batch}, {args.clients} client processes, durable: SQLite WAL synchronous=FULL")
    report("ingest over HTTP, default settings (ingest workers: CPUs less one, at most 4)",
           over_http(bodies, args.clients))
    if args.quick:
        return
    report("same run, --ingest.workers=0 (every body parsed in the exporter's own process)",
           over_http(bodies, args.clients, ("--ingest.workers=0",)))
    inproc = in_process_rate(bodies, args.clients)
    print(f"same run, Exporter.ingest in-process from {args.clients} threads (validation, pricing, "
          f"group commit, metrics; no HTTP): {inproc:,.0f} events/s")
    base = ledger_baseline(bodies)
    print(f"baseline, same run: the same rows appended in-process straight to the ledger "
          f"(no HTTP, no validation, no metrics; one thread): {base:,.0f} events/s")


if __name__ == "__main__":
    main()
