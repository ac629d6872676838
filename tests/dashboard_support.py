"""Reading the committed dashboards: their panels, queries, and the metric names in a query."""
from __future__ import annotations

import glob
import json
import os
import re

import yaml

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DASHBOARD_DIR = os.path.join(REPO, "dashboards")

# The product's metric contract (the README's metrics table, and the billing metrics:
# cost_billed_usd, cost_estimate_to_billed_ratio, costmeter_billing_*). Names may grow; none may change.
SPEC_METRICS = {
    "cost_request_cost_usd": "histogram",
    "cost_provider_api_calls_total": "counter",
    "cost_provider_api_errors_total": "counter",
    "cost_provider_tokens_total": "counter",
    "cost_request_duration_seconds": "histogram",
    "cost_cache_hits_total": "counter",
    "cost_cache_lookups_total": "counter",
    "cost_cache_savings_usd_total": "counter",
    "cost_cpu_usage_cores": "gauge",
    "cost_memory_usage_bytes": "gauge",
    "cost_infrastructure_usd_total": "counter",
    "cost_budget_limit_usd": "gauge",
    "cost_budget_spend_usd": "gauge",
    "cost_budget_utilization_ratio": "gauge",
    "cost_budget_forecast_usd": "gauge",
    "cost_budget_threshold_ratio": "gauge",
    "cost_budget_period_end_timestamp_seconds": "gauge",
    "cost_billed_usd": "gauge",
    "cost_estimate_to_billed_ratio": "gauge",
    "costmeter_build_info": "gauge",
    "costmeter_ingest_events_total": "counter",
    "costmeter_ingest_rejected_events_total": "counter",
    "costmeter_ingest_duplicate_events_total": "counter",
    "costmeter_unpriced_calls_total": "counter",
    "costmeter_billing_up": "gauge",
    "costmeter_billing_last_success_timestamp_seconds": "gauge",
    "costmeter_billing_api_cost_usd_total": "counter",
    "costmeter_billing_pull_duration_seconds": "gauge",
    "costmeter_series_overflow_total": "counter",
}

# Series Prometheus itself makes: per scrape target, and for alerting rules.
PROMETHEUS_SERIES = {"up", "scrape_duration_seconds", "scrape_samples_scraped", "ALERTS"}

DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}


def spec_series() -> set[str]:
    """The contract's metrics as the series names a query can use (a histogram's _bucket, _sum, _count)."""
    out = set()
    for name, kind in SPEC_METRICS.items():
        out.add(name)
        if kind == "histogram":
            out.update(name + s for s in ("_bucket", "_sum", "_count"))
    return out


def load_dashboards() -> dict[str, dict]:
    """{file name: dashboard JSON} for every committed dashboards/*.json."""
    out = {}
    for path in sorted(glob.glob(os.path.join(DASHBOARD_DIR, "*.json"))):
        with open(path, encoding="utf-8") as f:
            out[os.path.basename(path)] = json.load(f)
    return out


def panels(dash: dict):
    """Every panel, rows' collapsed children included."""
    for p in dash["panels"]:
        yield p
        yield from p.get("panels", [])


def queries(dash: dict):
    """(where, expr, target or None) for every PromQL expression: panel targets, variables, annotations."""
    for p in panels(dash):
        for t in p.get("targets", []):
            yield f'panel "{p["title"]}" query {t["refId"]}', t["expr"], p, t
    for v in dash["templating"]["list"]:
        if v["type"] == "query":
            m = re.fullmatch(r"label_values\((.*),\s*(\w+)\)", v["definition"])
            assert m, f'variable {v["name"]}: expected label_values(series, label), got {v["definition"]!r}'
            yield f'variable {v["name"]}', m.group(1), None, None
    for a in dash["annotations"]["list"]:
        if "expr" in a:
            yield f'annotation {a["name"]}', a["expr"], None, None


def recording_rules() -> dict[str, str]:
    """{record name: expr} from alert_rules/*.rules.yml."""
    out = {}
    for path in glob.glob(os.path.join(REPO, "alert_rules", "*.yml")):
        with open(path, encoding="utf-8") as f:
            for group in yaml.safe_load(f)["groups"]:
                for rule in group["rules"]:
                    if "record" in rule:
                        out[rule["record"]] = rule["expr"]
    return out


_KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and", "or", "unless",
             "offset", "inf", "nan"}


def metric_names(expr: str) -> set[str]:
    """The metric (series) names a PromQL expression selects.

    Strings, label matchers ``{...}``, range and subquery brackets ``[...]``, grouping
    clauses ``by (...)`` and the like are removed; what is left that is a name and not
    a function call or keyword is a metric name."""
    e = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    e = re.sub(r"\{[^}]*\}", " ", e)
    e = re.sub(r"\[[^\]]*\]", " ", e)
    e = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", e)
    names = set()
    for m in re.finditer(r"(?<![\w.$])([a-zA-Z_:][a-zA-Z0-9_:]*)(\s*\()?", e):
        name, call = m.group(1), m.group(2)
        if call or name.lower() in _KEYWORDS:
            continue
        names.add(name)
    return names
