"""Every dashboard query against a real Prometheus that scraped a real exporter fed by `costmeter demo`.

Prometheus loads the shipped rules (tests/alerting/stack.py), the exporter runs the shipped
budgets.yaml plus one tiny daily budget (so "forecast to exceed" has a member on any date), and
the demo sends two days of backfill and a few seconds of live traffic through the SDK. Then each
panel query, variable and annotation must parse, and each panel query must return data, except
the few listed in EXPECTED_EMPTY with the reason.
"""
from __future__ import annotations

import os
import re
import subprocess
import tempfile
import time

import pytest
import requests

from alerting.stack import REPO, Stack, costmeter_cmd, free_port, wait_for
from dashboard_support import load_dashboards, queries

NO_BILLING = "no billing source is configured in this test (the billing collectors have their own tests)"
# (dashboard uid, panel title, refId) -> why it has no data here.
EXPECTED_EMPTY = {
    ("costmeter-billing", "Billed this month", "A"): NO_BILLING,
    ("costmeter-billing", "Worst estimate / billed", "A"): NO_BILLING,
    ("costmeter-billing", "Billed by provider", "A"): NO_BILLING,
    ("costmeter-billing", "Estimate / billed ratio", "A"): NO_BILLING,
    ("costmeter-billing", "Billed by service", "A"): NO_BILLING,
    ("costmeter-billing", "Source health", "A"): NO_BILLING,
    ("costmeter-billing", "Source health", "B"): NO_BILLING,
    ("costmeter-billing", "Source health", "C"): NO_BILLING,
    ("costmeter-billing", "Source health", "D"): NO_BILLING,
    ("costmeter-billing", "Sources up", "A"): NO_BILLING,
    ("costmeter-exporter", "Billing pull duration", "A"): NO_BILLING,
}
EXPECTED_EMPTY_VARIABLES = {("costmeter-billing", "source"): NO_BILLING}

# What Grafana would put in place of the variables: every value, and short windows that
# cover the demo's live traffic (Prometheus scrapes every second here).
SUBSTITUTIONS = {"$__rate_interval": "1m", "$__range": "10m"}

TINY_BUDGET = """
budgets:
  - name: demo-tiny          # spent within seconds of live traffic, on any date
    period: daily
    limit_usd: 0.01
"""


def substitute(expr: str) -> str:
    for k, v in SUBSTITUTIONS.items():
        expr = expr.replace(k, v)
    return re.sub(r"\$\{?\w+\}?", ".*", expr)


def query(prom_url: str, expr: str) -> dict:
    r = requests.get(prom_url + "/api/v1/query", params={"query": expr}, timeout=10)
    body = r.json()
    return body


@pytest.fixture(scope="module")
def prometheus_after_demo():
    tmp = tempfile.mkdtemp(prefix="costmeter-dash-")
    stack = Stack(tmp)
    try:
        with open(os.path.join(REPO, "config", "budgets.yaml"), encoding="utf-8") as f:
            budgets = f.read() + TINY_BUDGET
        exporter = stack.exporter("exporter", budgets)
        # No Alertmanager is needed to evaluate queries: alerts go to a closed port.
        prom = stack.prometheus({"costmeter": exporter.url}, f"http://127.0.0.1:{free_port()}")
        env = dict(os.environ, XDG_CACHE_HOME=os.path.join(tmp, "cache"))
        demo = subprocess.run(costmeter_cmd() + ["demo", "--url", exporter.url, "--backfill", "2d",
                                                 "--duration", "5s", "--seed", "7", "--rate", "5"],
                              env=env, capture_output=True, text=True, timeout=60)
        assert demo.returncode == 0, demo.stderr
        assert "events delivered" in demo.stderr
        # Two more scrapes and rule evaluations after the last event.
        time.sleep(2.5)
        wait_for(lambda: query(prom.url, "budget_period_level:cost_budget_threshold_ratio:max")["data"]["result"],
                 15, "the budget recording rules")
        yield prom.url
    finally:
        stack.close()


def test_every_dashboard_query_parses_and_returns_data(prometheus_after_demo):
    prom = prometheus_after_demo
    empty, failed, unexpected_data, checked = [], [], [], 0
    for d in load_dashboards().values():
        for where, expr, panel, target in queries(d):
            body = query(prom, substitute(expr))
            if body.get("status") != "success":
                failed.append(f'{d["uid"]} {where}: {body.get("errorType")}: {body.get("error")}\n    {expr}')
                continue
            checked += 1
            has_data = bool(body["data"]["result"])
            if panel is not None:
                key = (d["uid"], panel["title"], target["refId"])
            elif where.startswith("variable"):
                key = (d["uid"], where.split()[1])
            else:
                continue      # alert annotations: they must parse; ALERTS has data only while alerts fire
            expected_empty = key in EXPECTED_EMPTY or key in EXPECTED_EMPTY_VARIABLES
            if not has_data and not expected_empty:
                empty.append(f'{d["uid"]} {where}: {expr}')
            if has_data and expected_empty:
                unexpected_data.append(f"{key}: has data now; remove it from EXPECTED_EMPTY")
    assert not failed, "queries Prometheus rejects:\n" + "\n".join(failed)
    assert not empty, "queries with no data after the demo:\n" + "\n".join(empty)
    assert not unexpected_data, "\n".join(unexpected_data)
    assert checked > 80


def test_the_demo_drove_every_part_of_the_scenario(prometheus_after_demo):
    """The data behind the panels is the scenario's: tenants, an unpriced model, errors, cache
    hits near the 60 % target, a budget over its limit."""
    prom = prometheus_after_demo

    def values(expr):
        return {tuple(sorted(r["metric"].items())): float(r["value"][1])
                for r in query(prom, expr)["data"]["result"]}

    tenants = {dict(k)["tenant"] for k in values("sum by (tenant) (cost_request_cost_usd_sum)")}
    assert {"enterprise-tier", "premium-tier", "startup-tier", "trial-tier", "acme"} <= tenants
    assert values('costmeter_unpriced_calls_total{model="acme-distill-7b"}')
    assert sum(values("cost_provider_api_errors_total").values()) > 0
    hit = sum(values("cost_cache_hits_total").values()) / sum(values("cost_cache_lookups_total").values())
    assert 0.45 < hit < 0.75
    assert values('budget_period:cost_budget_utilization_ratio:sum{budget="demo-tiny"} > 1')
    providers = {dict(k)["provider"] for k in values("sum by (provider) (cost_provider_api_calls_total)")}
    assert {"openai", "anthropic", "google"} <= providers
