"""``--prometheus URL``: the analysis commands over PromQL (Prometheus, Thanos, Mimir).

Every exporter of a sharded fleet at once: each counter series (one per
exporter and label set) is read at the window's edges and at every UTC hour
boundary in between, with ``last_over_time(metric[L])`` (L: the window plus a
day, so an exporter that was briefly down still has a value). The spend of a
series over each hour is its value at the end minus its value at the start
(0 when the series did not exist yet; after a counter reset, the value at the
end), summed into the requested day, hour or whole window. Series are then
summed by the requested labels. Costmeter's counters survive exporter
restarts, so this is exact up to the scrape interval: events that reached
an exporter after its last scrape are not in Prometheus yet. An event's
spend lands when it was scraped, not at its own timestamp (a backfill shows
up as spend at the time of the backfill).

From the metrics: ``cost_usd`` from ``cost_request_cost_usd_sum``; calls,
errors, tokens, cache hits, lookups and savings from their counters; unpriced
calls from ``costmeter_unpriced_calls_total`` (which has no tenant label: 0
when grouping or filtering by tenant); batch calls are not exported (0).
``endpoint`` is a label of the cost histogram only, so grouping or filtering
by it is refused.

Budgets come from the ``cost_budget_*`` gauges: the limit, thresholds and
period bounds as any exporter reports them, the spend summed over exporters.
The selector is not exported; ``tenant:<name>`` budgets are taken to select
that tenant.
"""
from __future__ import annotations

import math
from datetime import datetime, timezone
from typing import Sequence

import requests

from costmeter.analysis.sources import SourceError, why
from costmeter.server.costs import TOKEN_TYPES

DAY = 86400.0
LABELS = ("provider", "model", "tenant")
# field -> (metric, has endpoint label)
METRICS = {
    "cost": "cost_request_cost_usd_sum",
    "calls": "cost_provider_api_calls_total",
    "errors": "cost_provider_api_errors_total",
    "tokens": "cost_provider_tokens_total",
    "cache_hits": "cost_cache_hits_total",
    "cache_lookups": "cost_cache_lookups_total",
    "saved": "cost_cache_savings_usd_total",
    "unpriced": "costmeter_unpriced_calls_total",
}
LEVELS = ("warning", "critical", "exceeded")


def _esc(v: str) -> str:
    return v.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _label(ts: float, group: str) -> str:
    d = datetime.fromtimestamp(ts, timezone.utc)
    return d.strftime("%Y-%m-%d") if group == "day" else d.strftime("%Y-%m-%dT%H")


class PrometheusSource:
    def __init__(self, url: str, timeout: float = 60.0):
        self.url = url.rstrip("/")
        self.name = self.url
        self.timeout = timeout

    # ---- HTTP API ------------------------------------------------------------------
    def _api(self, path: str, params: dict) -> list:
        try:
            r = requests.get(self.url + path, params=params, timeout=self.timeout)
        except requests.RequestException as e:
            raise SourceError(f"cannot reach Prometheus at {self.url}: {why(e)}") from None
        try:
            body = r.json()
        except ValueError:
            raise SourceError(f"{self.url}{path}: HTTP {r.status_code}, not the Prometheus API "
                              f"(give the URL that serves /api/v1/query)") from None
        if body.get("status") != "success":
            raise SourceError(f"{self.url}{path}: {body.get('errorType', 'error')}: {body.get('error', r.text[:200])}")
        return body["data"]["result"]

    def instant(self, expr: str, t: float) -> list:
        return self._api("/api/v1/query", {"query": expr, "time": f"{t:.3f}"})

    def _values_at(self, expr: str, times: list[float]) -> dict[tuple, dict[float, float]]:
        """series (sorted label items) -> {time: value} at each of ``times``."""
        out: dict[tuple, dict[float, float]] = {}
        for t in times:
            for s in self.instant(expr, t):
                key = tuple(sorted(s["metric"].items()))
                out.setdefault(key, {})[t] = float(s["value"][1])
        return out

    def _range(self, expr: str, start: float, end: float, step: float) -> dict[tuple, dict[float, float]]:
        out: dict[tuple, dict[float, float]] = {}
        for s in self._api("/api/v1/query_range", {"query": expr, "start": f"{start:.3f}", "end": f"{end:.3f}",
                                                   "step": f"{step:g}"}):
            key = tuple(sorted(s["metric"].items()))
            out.setdefault(key, {}).update({float(t): float(v) for t, v in s["values"]})
        return out

    # ---- costs -----------------------------------------------------------------------
    def _grid(self, start: float, end: float, group: str | None) -> list[float]:
        if group is None:
            return [start, end]
        step = DAY if group == "day" else 3600.0
        first = math.floor(start / step) * step + step
        inner = []
        t = first
        while t < end:
            inner.append(t)
            t += step
        return [start] + inner + [end]

    def _series(self, metric: str, sel: str, grid: list[float], lookback: int) -> dict[tuple, dict[float, float]]:
        expr = f"last_over_time({metric}{sel}[{lookback}s])"
        inner = grid[1:-1]
        out: dict[tuple, dict[float, float]] = {}
        if inner:
            step = inner[1] - inner[0] if len(inner) > 1 else 3600.0
            for k, v in self._range(expr, inner[0], inner[-1], step).items():
                out.setdefault(k, {}).update(v)
        for k, v in self._values_at(expr, [grid[0], grid[-1]]).items():
            out.setdefault(k, {}).update(v)
        return out

    def costs(self, start: float, end: float, group_by: Sequence[str] = (), **filters: str) -> list[dict]:
        if "endpoint" in group_by or "endpoint" in filters:
            raise SourceError("--prometheus cannot group or filter by endpoint: only the cost histogram has that "
                              "label; use --url or --storage.path")
        # Read every UTC hour boundary whatever the grouping: a counter reset (an exporter that lost
        # its state) then loses at most the hour it happened in.
        grid = self._grid(start, end, "hour")
        lookback = int(end - start + DAY)
        sel = "{" + ",".join(f'{k}="{_esc(v)}"' for k, v in sorted(filters.items())) + "}" if filters else ""
        groups: dict[tuple, dict] = {}
        for fld, metric in METRICS.items():
            if fld == "unpriced" and ("tenant" in group_by or "tenant" in filters):
                continue
            for labels, points in self._series(metric, sel, grid, lookback).items():
                lab = dict(labels)
                prev = points.get(grid[0], 0.0)
                for a, b in zip(grid, grid[1:]):
                    v = points.get(b)
                    if v is None:
                        continue
                    delta = v - prev if v >= prev else v          # a reset starts again from 0
                    prev = v
                    if delta == 0:
                        continue
                    key = tuple(_label(a, g) if g in ("day", "hour") else lab.get(g, "") for g in group_by)
                    row = groups.get(key)
                    if row is None:
                        row = groups[key] = {"cost": 0.0, "calls": 0.0, "errors": 0.0, "unpriced": 0.0,
                                             "tokens": {t: 0.0 for t in TOKEN_TYPES}, "cache_hits": 0.0,
                                             "cache_lookups": 0.0, "saved": 0.0}
                    if fld == "tokens":
                        tt = lab.get("token_type")
                        if tt in row["tokens"]:
                            row["tokens"][tt] += delta
                    else:
                        row[fld] += delta
        rows = []
        for key in sorted(groups):
            g = groups[key]
            calls = int(round(g["calls"]))
            rows.append({**dict(zip(group_by, key)), "cost_usd": g["cost"], "calls": calls,
                         "errors": int(round(g["errors"])), "unpriced_calls": int(round(g["unpriced"])),
                         "events": calls + int(round(g["cache_hits"])),
                         "tokens": {t: int(round(v)) for t, v in g["tokens"].items()},
                         "cache_hits": int(round(g["cache_hits"])), "cache_lookups": int(round(g["cache_lookups"])),
                         "saved_usd": g["saved"], "batch_calls": 0})
        return rows

    # ---- budgets -----------------------------------------------------------------------
    def _by_budget(self, expr: str, now: float, extra: tuple = ()) -> dict[tuple, float]:
        return {tuple(s["metric"].get(k, "") for k in ("budget", "period") + extra): float(s["value"][1])
                for s in self.instant(expr, now)}

    def budgets(self, now: float) -> list[dict]:
        bp = "budget, period"
        limit = self._by_budget(f"max by ({bp}) (cost_budget_limit_usd)", now)
        spend = self._by_budget(f"sum by ({bp}) (cost_budget_spend_usd)", now)
        start = self._by_budget(f"max by ({bp}) (cost_budget_period_start_timestamp_seconds)", now)
        end = self._by_budget(f"max by ({bp}) (cost_budget_period_end_timestamp_seconds)", now)
        thr = self._by_budget(f"max by ({bp}, level) (cost_budget_threshold_ratio)", now, ("level",))
        out = []
        for key in sorted(limit):
            name, period = key
            lim, sp = limit[key], spend.get(key, 0.0)
            s0, s1 = start.get(key), end.get(key)
            if s0 is None or s1 is None:
                continue
            length = s1 - s0
            elapsed = min(max(now - s0, 0.0), length)
            floor = min(0.1 * length, DAY)
            rate = sp / max(elapsed, floor) if elapsed > 0 else 0.0
            remaining = max(s1 - max(now, s0), 0.0)
            thresholds = {lv: thr.get((name, period, lv), d) for lv, d in zip(LEVELS, (0.8, 0.95, 1.0))}
            status = "ok"
            for lv in LEVELS:
                if lim > 0 and sp >= lim * thresholds[lv]:
                    status = lv
            if sp >= lim:
                exhaustion = now
            elif rate > 0 and max(now, s0) + (lim - sp) / rate < s1:
                exhaustion = max(now, s0) + (lim - sp) / rate
            else:
                exhaustion = None
            iso = lambda t: datetime.fromtimestamp(t, timezone.utc).isoformat().replace("+00:00", "Z")  # noqa: E731
            out.append({"name": name, "period": period,
                        "selector": {"tenant": name[len("tenant:"):]} if name.startswith("tenant:") else {},
                        "timezone": "UTC", "limit_usd": lim, "spend_usd": sp,
                        "utilization_ratio": sp / lim if lim else 0.0, "thresholds": thresholds,
                        "period_start": iso(s0), "period_end": iso(s1), "daily_burn_rate_usd": rate * DAY,
                        "forecast_usd": sp + rate * remaining,
                        "projected_exhaustion": None if exhaustion is None else iso(exhaustion), "status": status})
        return out

    def budget_buckets(self, b: dict, start: float, now: float, bucket: str) -> dict[str, float]:
        """Spend of one budget per UTC day or hour of its period, from its spend gauge."""
        grid = self._grid(start, now, bucket)
        sel = f'{{budget="{_esc(b["name"])}",period="{_esc(b["period"])}"}}'
        series = self._series("cost_budget_spend_usd", sel, grid, int(now - start + DAY))
        out: dict[str, float] = {}
        for points in series.values():
            prev = 0.0      # the gauge starts the period at 0
            for a, c in zip(grid, grid[1:]):
                v = points.get(c)
                if v is None:
                    continue
                if v > prev:
                    out[_label(a, bucket)] = out.get(_label(a, bucket), 0.0) + (v - prev)
                prev = v
        return out
