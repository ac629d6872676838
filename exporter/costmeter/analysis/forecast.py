"""``costmeter forecast``: where each budget ends its period, with a 95 % interval.

For a budget with spend X after e of its period, the burn rate r is the
budget's own (``daily_burn_rate_usd``: X over the elapsed time, the elapsed
time counted as at least a tenth of the period or a day, whichever is less),
and with R the time left::

    projected      = X + r x R
    half-width     = 1.96 x s x sqrt(n + n^2 / k)   # n = R / b buckets left, k complete buckets seen
    low, high      = max(X, projected - half-width), projected + half-width
    exhaustion     = now + (limit - X) / r, when that is before the period ends (today if X >= limit)

where b is a bucket (a UTC day; an hour for periods of 2 days or less) and s
the standard deviation of the spend of the period's k complete buckets. Each
bucket's spend is treated as independent: the n buckets left vary by n s^2,
and the burn rate, estimated from k buckets, is uncertain by s^2 / k a
bucket, which over n buckets adds n^2 s^2 / k. With fewer than two complete
buckets s is taken as r x b (and k as 1), a deliberately wide band.
"""
from __future__ import annotations

import math
import statistics
from datetime import datetime, timezone
from zoneinfo import ZoneInfo

from costmeter.analysis.common import DAY, money, table, usd
from costmeter.analysis.sources import Source

Z95 = 1.959964


def _ts(s: str) -> float:
    return datetime.fromisoformat(s.replace("Z", "+00:00")).timestamp()


def _buckets(source: Source, b: dict, start: float, now: float, bucket: str) -> dict[str, float]:
    if hasattr(source, "budget_buckets"):
        return source.budget_buckets(b, start, now, bucket)
    rows = source.costs(start, now, (bucket,), **(b.get("selector") or {}))
    return {r[bucket]: r["cost_usd"] for r in rows}


def one(source: Source, b: dict, now: float) -> dict:
    start, end = _ts(b["period_start"]), _ts(b["period_end"])
    spend, limit = float(b["spend_usd"]), float(b["limit_usd"])
    rate = float(b["daily_burn_rate_usd"])
    bucket = "hour" if end - start <= 2 * DAY else "day"
    bsec = 3600.0 if bucket == "hour" else DAY
    remaining = max(end - max(now, start), 0.0)
    projected = spend + rate * remaining / DAY
    got = _buckets(source, b, start, now, bucket)
    # complete buckets inside the period, zero-filled
    first = math.ceil(start / bsec) * bsec
    complete = []
    t = first
    while t + bsec <= now:
        label = datetime.fromtimestamp(t, timezone.utc).strftime("%Y-%m-%dT%H" if bucket == "hour" else "%Y-%m-%d")
        complete.append(got.get(label, 0.0))
        t += bsec
    if len(complete) >= 2:
        s, seen = statistics.stdev(complete), len(complete)
    else:
        s, seen = rate * bsec / DAY, 1

    def half_width(left_seconds: float) -> float:
        n = max(left_seconds, 0.0) / bsec
        return Z95 * s * math.sqrt(n + n * n / seen)
    half = half_width(remaining)
    low, high = max(spend, projected - half), projected + half
    tz = ZoneInfo(b.get("timezone") or "UTC")
    if spend >= limit:
        exhaustion = datetime.fromtimestamp(now, tz).date().isoformat()
    elif rate > 0 and now + (limit - spend) / rate * DAY < end:
        exhaustion = datetime.fromtimestamp(now + (limit - spend) / rate * DAY, tz).date().isoformat()
    else:
        exhaustion = None
    # cumulative spend at each bucket end so far, and the forecast band to the period's end
    cum, series = 0.0, [(start, 0.0)]
    t = math.floor(start / bsec) * bsec
    while t < now:                      # every bucket, those with no spend too
        cum += got.get(datetime.fromtimestamp(t, timezone.utc).strftime(
            "%Y-%m-%dT%H" if bucket == "hour" else "%Y-%m-%d"), 0.0)
        series.append((min(t + bsec, now), cum))
        t += bsec
    series.append((now, spend))
    steps = 24
    fseries = []
    for k in range(steps + 1):
        t = now + remaining * k / steps
        p = spend + rate * (t - now) / DAY
        h = half_width(t - now)
        fseries.append((t, usd(p), usd(max(spend, p - h)), usd(p + h)))
    return {"budget": b["name"], "period": b["period"], "limit_usd": usd(limit), "spend_usd": usd(spend),
            "daily_burn_rate_usd": usd(rate), "projected_usd": usd(projected),
            "projected_low_usd": usd(low), "projected_high_usd": usd(high),
            "projected_exhaustion_date": exhaustion, "status": b["status"],
            "utilization_ratio": round(spend / limit, 6) if limit else None,
            "period_start": b["period_start"], "period_end": b["period_end"],
            "interval_buckets": bucket, "complete_buckets": len(complete),
            "series": [(t, usd(v)) for t, v in series], "forecast_series": fseries}


def build(source: Source, now: float, budget: str | None = None) -> dict:
    from costmeter.analysis.sources import SourceError
    budgets = source.budgets(now)
    if budget is not None:
        budgets = [b for b in budgets if b["name"] == budget]
        if not budgets:
            raise SourceError(f"no budget named {budget!r} in {source.name}")
    return {"budgets": [one(source, b, now) for b in budgets]}


def render(fc: dict) -> str:
    if not fc["budgets"]:
        return "No budgets configured (budgets.yaml, or GLOBAL_BUDGET_DAILY and friends).\n"
    rows = [[b["budget"], b["period"], money(b["spend_usd"]), money(b["limit_usd"]), money(b["daily_burn_rate_usd"]),
             money(b["projected_usd"]), f"{money(b['projected_low_usd'])} - {money(b['projected_high_usd'])}",
             b["projected_exhaustion_date"] or "-", b["status"]] for b in fc["budgets"]]
    return ("=== Budget forecast (end of the current period, 95 % interval) ===\n"
            + table(["Budget", "Period", "Spend", "Limit", "Burn/day", "Projected", "95 % interval",
                     "Exhausted on", "Status"], rows, right=(2, 3, 4, 5)) + "\n")


def strip_series(fc: dict) -> dict:
    """The JSON without the chart's point lists (kept under --json only when asked)."""
    return {"budgets": [{k: v for k, v in b.items() if k not in ("series", "forecast_series")}
                        for b in fc["budgets"]]}
