"""Resident memory of the exporter holding ~100,000 series, beside prometheus_client in the same run.

Starts the real `costmeter serve`, reads its RSS empty and after ingesting
events that create ~100k series (and after a scrape, which allocates the
exposition). The baseline is a separate Python process holding the same
series in a bare prometheus_client registry.

    .venv/bin/python bench/bench_memory.py [--series 100000]
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile

import psutil
import requests

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "tests"))
from exporter_support import ExporterProcess  # noqa: E402
from series import events_for  # noqa: E402

BASELINE = r"""
import sys, psutil
sys.path.insert(0, sys.argv[1])
from series import events_for
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from costmeter.server.store import COST_BUCKETS
reg = CollectorRegistry()
pmt = ("provider", "model", "tenant")
calls = Counter("cost_provider_api_calls", "", pmt, registry=reg)
errors = Counter("cost_provider_api_errors", "", pmt, registry=reg)
tokens = Counter("cost_provider_tokens", "", pmt + ("token_type",), registry=reg)
cost = Histogram("cost_request_cost_usd", "", ("provider", "model", "endpoint", "tenant"), buckets=COST_BUCKETS, registry=reg)
for e in events_for(int(sys.argv[2])):
    k = (e["provider"], e["model"], e["tenant"])
    calls.labels(*k).inc(); errors.labels(*k).inc(e["error"])
    for t in ("input", "cached_input", "cache_write", "output", "reasoning"):
        tokens.labels(*k, t).inc(1)
    cost.labels(e["provider"], e["model"], e["endpoint"], e["tenant"]).observe(e["cost_usd"])
before = psutil.Process().memory_info().rss
generate_latest(reg)
print(before, psutil.Process().memory_info().rss)
"""


def rss(pid: int) -> int:
    return psutil.Process(pid).memory_info().rss


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--series", type=int, default=100_000)
    args = ap.parse_args()
    events = events_for(args.series)
    with tempfile.TemporaryDirectory() as d, ExporterProcess(os.path.join(d, "state")) as exp:
        empty = rss(exp.proc.pid)
        for i in range(0, len(events), 2000):
            r = requests.post(exp.url + "/v1/events", data=json.dumps(events[i:i + 2000]),
                              headers={"Content-Type": "application/json"}, timeout=60)
            r.raise_for_status()
        loaded = rss(exp.proc.pid)
        text = requests.get(exp.url + "/metrics", timeout=60).text
        n = sum(1 for line in text.split("\n") if line and not line.startswith("#"))
        scraped = rss(exp.proc.pid)
    out = subprocess.run([sys.executable, "-c", BASELINE, HERE, str(args.series)], capture_output=True, text=True,
                         check=True).stdout.split()
    base, base_scraped = int(out[0]), int(out[1])
    mib = 1024 * 1024
    print(f"series exposed: {n:,}")
    print(f"costmeter exporter RSS: empty {empty / mib:.0f} MiB, holding the series {loaded / mib:.0f} MiB, "
          f"after a scrape {scraped / mib:.0f} MiB")
    print(f"bare prometheus_client process with the same series: {base / mib:.0f} MiB, "
          f"after generate_latest {base_scraped / mib:.0f} MiB")


if __name__ == "__main__":
    main()
