"""Billing pulls: FOCUS parse throughput and the scrape cost of the billing families.

1. FOCUS: a generated CSV export of N rows (FOCUS 1.0 columns, 300 services,
   31 days) parsed by the focus source, against the bare baseline of reading
   the same file with csv.DictReader and summing BilledCost in the same run.
2. Scrape: BillingLink.render() for 3 sources x 300 services x 31 days held
   (month-to-date sums computed at every scrape), against gauge_family over the
   same already-summed samples.

    .venv/bin/python bench/bench_billing.py [--rows 200000]
"""
from __future__ import annotations

import argparse
import csv
import os
import sys
import tempfile
import time
from datetime import date, datetime, timedelta, timezone

from costmeter.collectors.billing import Pull
from costmeter.collectors.focus import FocusFiles
from costmeter.config.billing import BillingConfig, SourceConfig
from costmeter.server.billing import BillingLink
from costmeter.server.exposition import gauge_family

COLUMNS = ["BilledCost", "BillingCurrency", "ChargePeriodStart", "ChargePeriodEnd", "ProviderName", "ServiceName",
           "ResourceId", "Region", "ChargeCategory"]


def best(fn, repeat: int = 3) -> float:
    out = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
    return min(out)


def focus(rows: int) -> None:
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "focus.csv")
        with open(path, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(COLUMNS)
            for i in range(rows):
                day = date(2026, 11, 1) + timedelta(days=i % 30)
                w.writerow([f"{(i % 997) / 100:.2f}", "USD", f"{day}T00:00:00Z", f"{day + timedelta(days=1)}T00:00:00Z",
                            "AWS", f"Service {i % 300}", f"i-{i:08x}", "us-east-1", "Usage"])
        src = FocusFiles(SourceConfig("exports", "focus", paths=(path,)))

        def ours():
            src._cache.clear()
            src.pull(date(2026, 11, 1), date(2026, 12, 1))

        def baseline():
            total = {}
            with open(path, newline="") as f:
                for row in csv.DictReader(f):
                    k = (row["ChargePeriodStart"][:10], row["ProviderName"], row["ServiceName"])
                    total[k] = total.get(k, 0.0) + float(row["BilledCost"])

        t_ours, t_base = best(ours), best(baseline)
        t_cached = best(lambda: src.pull(date(2026, 11, 1), date(2026, 12, 1)))
        print(f"focus CSV, {rows} rows: {rows / t_ours:,.0f} rows/s (baseline csv.DictReader + sum: "
              f"{rows / t_base:,.0f} rows/s, {t_ours / t_base:.2f}x); unchanged file re-pulled: {t_cached * 1e3:.1f} ms")


def scrape() -> None:
    now = datetime(2026, 11, 30, 12, tzinfo=timezone.utc).timestamp()
    sources = [SourceConfig(f"s{i}", "openai") for i in range(3)]
    link = BillingLink(BillingConfig(3600.0, sources), lambda: None, lambda: None, clock=lambda: now)
    for s in sources:
        p = Pull(date(2026, 11, 1), date(2026, 12, 1))
        for d in range(30):
            for svc in range(300):
                p.add(date(2026, 11, 1) + timedelta(days=d), "openai", f"service {svc}", 0.01)
        link.scheduler.states[s.name].replace(p)
    snap = link.scheduler.snapshot()
    samples = [((x["source"], p, svc), v) for x in snap for (p, svc), v in sorted(x["billed"].items())]
    t_ours = best(link.render, 20)
    t_base = best(lambda: gauge_family("cost_billed_usd", "h", ("source", "provider", "service"), samples), 20)
    print(f"render, 3 sources x 300 services x 30 days ({len(samples)} series): {t_ours * 1e3:.2f} ms "
          f"(baseline gauge_family over pre-summed samples: {t_base * 1e3:.2f} ms, {t_ours / t_base:.1f}x)")


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=200_000)
    a = ap.parse_args()
    focus(a.rows)
    scrape()
    return 0


if __name__ == "__main__":
    sys.exit(main())
