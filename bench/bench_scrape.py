"""Scrape cost: rendering /metrics with ~100,000 series, against prometheus_client in the same run.

Fills a real Exporter (in-process, no HTTP) with events that create ~100k
series, then times Exporter.render_metrics(). The baseline is a fresh
prometheus_client CollectorRegistry holding the same families, label sets and
buckets, rendered with generate_latest (with and without the _created series
that client_python adds by default). Also times a real HTTP GET /metrics.

    .venv/bin/python bench/bench_scrape.py [--series 100000]
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from series import events_for  # noqa: E402


def best(fn, repeat: int = 5) -> float:
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def baseline_registry(store, created: bool):
    import prometheus_client.metrics as pm
    from prometheus_client import CollectorRegistry, Counter, Histogram
    pm._use_created = created  # the switch PROMETHEUS_DISABLE_CREATED_SERIES sets at import
    reg = CollectorRegistry()
    for fam in store.families:
        name = fam.name[:-6] if fam.name.endswith("_total") else fam.name
        if fam.kind == "counter":
            m = Counter(name, fam.help, fam.labelnames, registry=reg)
            for values, cell in fam.cells.items():
                m.labels(*values).inc(cell[0])
        else:
            m = Histogram(name, fam.help, fam.labelnames, buckets=fam.bounds, registry=reg)
            for values, cell in fam.cells.items():
                m.labels(*values).observe(cell[-1])
    return reg


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--series", type=int, default=100_000)
    args = ap.parse_args()
    from prometheus_client import generate_latest

    from costmeter.server.exporter import Exporter
    from costmeter.config.settings import load_settings

    with tempfile.TemporaryDirectory() as d:
        exp = Exporter(load_settings(None, {"state_dir": d, "listen_address": "127.0.0.1:0"})).start()
        events = events_for(args.series)
        for i in range(0, len(events), 5000):
            exp.ingest(events[i:i + 5000])
        body = exp.render_metrics()
        n = sum(1 for line in body.split(b"\n") if line and not line.startswith(b"#"))
        ours = best(exp.render_metrics)
        http = best(lambda: urllib.request.urlopen(exp.url + "/metrics").read())
        reg_created = baseline_registry(exp.store, created=True)
        base_created = best(lambda: generate_latest(reg_created), repeat=3)
        n_base = sum(1 for line in generate_latest(reg_created).split(b"\n") if line and not line.startswith(b"#"))
        reg = baseline_registry(exp.store, created=False)
        base = best(lambda: generate_latest(reg), repeat=3)
        n_plain = sum(1 for line in generate_latest(reg).split(b"\n") if line and not line.startswith(b"#"))
        exp.stop()
    print(f"series exposed by costmeter /metrics: {n:,} ({len(body) / 1e6:.1f} MB)")
    print(f"costmeter render_metrics():                  {ours * 1000:7.1f} ms")
    print(f"costmeter HTTP GET /metrics (loopback):      {http * 1000:7.1f} ms")
    print(f"prometheus_client generate_latest, same series, _created off: {base * 1000:7.1f} ms ({n_plain:,} samples)")
    print(f"prometheus_client generate_latest, default with _created:     {base_created * 1000:7.1f} ms "
          f"({n_base:,} samples)")
    print(f"ratio costmeter / generate_latest (_created off): {ours / base:.2f}")
    print("target: no slower than generate_latest, and at most 1 s")


if __name__ == "__main__":
    main()
