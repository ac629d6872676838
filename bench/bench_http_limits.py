"""Hostile connections: idle and slow (slowloris) sockets against the real exporter.

Starts `costmeter serve` (its own default fd limit, 1024), measures the latency
of GET /metrics on a fresh connection with no other clients (the baseline, same
run), then opens --sockets connections that send half a request and stall, and
measures again: whether /metrics still answers and how fast, how many
connections and threads the exporter holds, its RSS, and its CPU use while
the sockets sit there (a spinning accept loop shows as ~1 core).

    .venv/bin/python bench/bench_http_limits.py [--sockets 2000]
"""
from __future__ import annotations

import argparse
import os
import resource
import socket
import statistics
import sys
import tempfile
import time

import psutil

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests"))
from exporter_support import ExporterProcess  # noqa: E402


def scrape(port: int, timeout: float = 5.0) -> float | None:
    """Seconds for GET /metrics on a new connection, or None if it failed."""
    t0 = time.perf_counter()
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
            s.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            data = b""
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                data += chunk
        return time.perf_counter() - t0 if data.startswith(b"HTTP/1.1 200") else None
    except OSError:
        return None


def latencies(port: int, n: int = 15) -> tuple[list[float], int]:
    ok, failed = [], 0
    for _ in range(n):
        t = scrape(port)
        if t is None:
            failed += 1
        else:
            ok.append(t)
        time.sleep(0.05)
    return ok, failed


def fmt(ok: list[float], failed: int) -> str:
    if not ok:
        return f"unreachable ({failed} of {failed} scrapes failed)"
    return (f"median {statistics.median(ok) * 1e3:.1f} ms, max {max(ok) * 1e3:.1f} ms, "
            f"{failed} of {len(ok) + failed} failed")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sockets", type=int, default=2000)
    ap.add_argument("--settle", type=float, default=3.0, help="seconds between opening the sockets and measuring")
    ap.add_argument("--hold", type=float, default=3.0, help="seconds to watch the exporter under load")
    args = ap.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, args.sockets + 512), hard))   # for this client only
    with tempfile.TemporaryDirectory() as d:
        # the exporter keeps the usual default limit of 1,024 descriptors
        exp = ExporterProcess(os.path.join(d, "state"))
        exp.env["COSTMETER_BENCH"] = "1"
        import subprocess
        popen = subprocess.Popen

        def limited(*a, **kw):
            kw["preexec_fn"] = lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (1024, hard))
            return popen(*a, **kw)
        subprocess.Popen = limited
        try:
            exp.start()
        finally:
            subprocess.Popen = popen
        try:
            proc = psutil.Process(exp.proc.pid)
            base_ok, base_failed = latencies(exp.port)
            rss0, threads0 = proc.memory_info().rss, proc.num_threads()
            print(f"baseline (same run, no other clients): /metrics {fmt(base_ok, base_failed)}; "
                  f"{threads0} threads, RSS {rss0 / 2**20:.0f} MiB")
            socks = []
            refused = 0
            for i in range(args.sockets):
                try:
                    s = socket.create_connection(("127.0.0.1", exp.port), timeout=2)
                    s.sendall(b"POST /v1/events HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n")  # never finished
                    socks.append(s)
                except OSError:
                    refused += 1
            time.sleep(args.settle)              # let the exporter accept what it will
            cpu0 = sum(proc.cpu_times()[:2])
            t0 = time.monotonic()
            ok, failed = latencies(exp.port)
            time.sleep(max(0.0, args.hold - (time.monotonic() - t0)))
            cpu = (sum(proc.cpu_times()[:2]) - cpu0) / (time.monotonic() - t0)
            held = sum(1 for c in proc.net_connections("tcp") if c.status == psutil.CONN_ESTABLISHED)
            print(f"with {len(socks):,} stalled sockets open ({refused} connects failed): /metrics {fmt(ok, failed)}")
            print(f"exporter: {held:,} connections held, {proc.num_threads():,} threads, "
                  f"RSS {proc.memory_info().rss / 2**20:.0f} MiB (+{(proc.memory_info().rss - rss0) / 2**20:.0f}), "
                  f"CPU {cpu:.2f} cores while the sockets sit there")
            closed = 0
            for s in socks:
                s.setblocking(False)
                try:
                    if s.recv(1) == b"":
                        closed += 1
                except BlockingIOError:
                    pass
                except OSError:
                    closed += 1
                s.close()
            print(f"stalled sockets the exporter had closed by the end: {closed:,} of {len(socks):,}")
            if os.environ.get("BENCH_LOG"):
                print(exp.log()[-1500:])
        finally:
            exp.stop()


if __name__ == "__main__":
    main()
