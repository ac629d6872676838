"""Seed the example ledger behind the analysis examples in README.md and docs/analysis.md, and run them.

    .venv/bin/python docs/examples/analysis_example.py [DIR]

Writes 30 days of November 2026 for three tenants into DIR/state (default: a
temporary directory), then runs each analysis command with --storage.path at
2026-11-30T12:00:00Z (freezegun), printing what a person would see.
"""
from __future__ import annotations

import os
import sys
import tempfile
from datetime import datetime, timezone

from freezegun import freeze_time

from costmeter.cli.main import main
from costmeter.events import parse_event
from costmeter.pricing import PricingTable
from costmeter.server.ledger import Ledger

BUDGETS = """global: {daily: 60.0, monthly: 1200.0}
tenants:
  trial-users: {daily: 1.0, monthly: 10.0}
  premium-users: {daily: 25.0, monthly: 500.0}
  enterprise-tier: {daily: 100.0, monthly: 2000.0}
"""


def seed(state: str) -> None:
    prices = PricingTable.load()
    rows, n = [], 0
    t0 = datetime(2026, 11, 1, tzinfo=timezone.utc).timestamp()
    for day in range(30):
        for hour in (9, 11, 14, 16):
            t = t0 + day * 86400 + hour * 3600
            if day == 29 and hour > 11:
                continue                                   # "now" is Nov 30, 12:00
            calls = [
                # enterprise: gpt-4o, growing 2 % a day
                ("enterprise-tier", "openai", "gpt-4o", dict(input_tokens=int(900_000 * 1.02 ** day),
                                                             output_tokens=int(90_000 * 1.02 ** day))),
                # premium: claude-sonnet-4-5 behind a response cache that hits 1 lookup in 4; a spike on Nov 30
                ("premium-users", "anthropic", "claude-sonnet-4-5",
                 dict(cache_hit=True, cost_usd=0.0, saved_cost_usd=1.5) if hour == 9 else
                 dict(cache_hit=False, input_tokens=400_000 * (5 if day == 29 else 1), output_tokens=20_000)),
                # trial: gpt-4o-mini, small
                ("trial-users", "openai", "gpt-4o-mini", dict(input_tokens=200_000, output_tokens=20_000)),
            ]
            for tenant, provider, model, kw in calls:
                n += 1
                obj = {"id": f"ex-{n}", "timestamp": t, "provider": provider, "model": model, "tenant": tenant, **kw}
                rows.append(parse_event(obj, t, prices.cost))
    led = Ledger(state)
    led.append(rows)
    led.close()


def run(*argv: str) -> None:
    print("$ costmeter " + " ".join(argv))
    sys.stdout.flush()
    main(list(argv))
    print()


if __name__ == "__main__":
    d = sys.argv[1] if len(sys.argv) > 1 else tempfile.mkdtemp(prefix="costmeter-example-")
    state, budgets = os.path.join(d, "state"), os.path.join(d, "budgets.yaml")
    seed(state)
    with open(budgets, "w") as f:
        f.write(BUDGETS)
    src = ["--storage.path", state, "--budgets.file", budgets]
    with freeze_time("2026-11-30T12:00:00Z"):
        run("report", *src, "--chart", os.path.join(d, "report.png"))
        run("anomalies", *src, "--governance.log", "none")
        run("forecast", *src, "--chart", os.path.join(d, "forecast.png"))
        run("recommend", *src)
        run("roi", "--storage.path", state, "--model", "gpt-4o", "--tokens-per-month", "2e9", "--gpu-hour-usd", "2.20",
            "--tokens-per-second", "2500", "--utilization", "0.5", "--ops-month-usd", "1500", "--setup-usd", "20000")
