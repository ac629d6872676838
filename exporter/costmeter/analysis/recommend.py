"""``costmeter recommend``: what to change to spend less, with the monthly savings.

From the usage of the last N days per (provider, model), scaled to a 30-day
month (x 30 / N), and the price table in force now (base rates; the
long-context tier and batch discount are per request and left out):

* **downgrade**: one step down the model's line in ``tiers.yaml`` (a cheaper
  model of a lower quality tier, same provider). savings = price of the tokens
  actually used at the current model - the same tokens at the cheaper one.
  confidence 0.6, difficulty easy, quality impact medium.
* **caching**: where response-cache lookups were recorded, the hit ratio h is
  below the 60 % target T and the model's monthly spend is at least
  ``min_spend``. The spend of the calls that missed the cache, S_m = spend x
  (lookups - hits) / calls (calls made to the provider, hits excluded), falls
  by (T - h) / (1 - h).
  confidence 0.5, difficulty medium, quality impact none.
* **batch**: where the provider has a batch discount d and less than half of the
  calls use it: savings = spend of non-batch calls x batch_share x d (batch_share,
  default 0.25, is the part of the traffic assumed able to wait up to 24 h).
  confidence 0.4, difficulty medium, quality impact none.

Priority score 0-100 (reference/004): 50 x min(savings / $100, 1) +
30 x confidence + difficulty points (easy 20, medium 12, hard 5).
"""
from __future__ import annotations

import os

import yaml

from costmeter.analysis.common import DAY, money, table, usd
from costmeter.analysis.sources import Source, SourceError

MONTH_DAYS = 30.0
CACHE_TARGET = 0.60
DIFFICULTY_POINTS = {"easy": 20.0, "medium": 12.0, "hard": 5.0}
TIERS_FILE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "tiers.yaml")


def load_tiers(path: str | None = None) -> dict[str, list[list[str]]]:
    path = path or TIERS_FILE
    try:
        with open(path, encoding="utf-8") as f:
            data = yaml.safe_load(f) or {}
    except OSError as e:
        raise SourceError(f"{path}: cannot read the tiers file: {e.strerror}") from None
    except yaml.YAMLError as e:
        raise SourceError(f"{path}: not YAML: {e}") from None
    if not isinstance(data, dict) or not all(
            isinstance(v, list) and all(isinstance(line, list) and all(isinstance(m, str) for m in line) for line in v)
            for v in data.values()):
        raise SourceError(f"{path}: expected provider: [[best-model, next-model, ...], ...]")
    return data


def priority(savings_monthly: float, confidence: float, difficulty: str) -> float:
    return round(50.0 * min(max(savings_monthly, 0.0) / 100.0, 1.0) + 30.0 * confidence
                 + DIFFICULTY_POINTS[difficulty], 1)


def list_price(price, tokens: dict) -> float:
    """USD of aggregated tokens at a model's base rates."""
    cw1h = getattr(price, "cache_write_1h", price.cache_write)
    return (tokens.get("input", 0) * price.input + tokens.get("cached_input", 0) * price.cached_input
            + tokens.get("cache_write", 0) * price.cache_write + tokens.get("cache_write_1h", 0) * cw1h
            + tokens.get("output", 0) * price.output + tokens.get("reasoning", 0) * price.reasoning) * 1e-6


def _rec(kind, title, provider, frm, to, monthly, ratio, confidence, difficulty, impact, spend, detail) -> dict:
    return {"type": kind, "title": title, "provider": provider, "from_model": frm, "to_model": to,
            "estimated_monthly_savings_usd": usd(monthly), "savings_ratio": round(ratio, 4),
            "priority_score": priority(monthly, confidence, difficulty), "confidence": confidence,
            "difficulty": difficulty, "quality_impact": impact, "monthly_spend_usd": usd(spend), "detail": detail}


def build(source: Source, now: float, pricing, days: int = 30, tiers: dict | None = None,
          min_savings: float = 1.0, min_spend: float = 10.0, batch_share: float = 0.25) -> dict:
    tiers = load_tiers() if tiers is None else tiers
    scale = MONTH_DAYS / days
    rows = source.costs(now - days * DAY, now, ("provider", "model"))
    recs = []
    for r in rows:
        provider, model, calls = r["provider"], r["model"], r["calls"]
        spend = r["cost_usd"] * scale
        price = pricing.price(provider, model, now)
        canonical = pricing.resolve(provider, model)
        # downgrade
        nxt = None
        for line in tiers.get(provider, []):
            if canonical in line and line.index(canonical) + 1 < len(line):
                nxt = line[line.index(canonical) + 1]
                break
        if price is not None and nxt is not None:
            to_price = pricing.price(provider, nxt, now)
            if to_price is not None:
                frm, to = list_price(price, r["tokens"]), list_price(to_price, r["tokens"])
                if to < frm and (frm - to) * scale >= min_savings:
                    recs.append(_rec("model_downgrade", f"Use {nxt} instead of {model} where quality allows",
                                     provider, model, nxt, (frm - to) * scale, (frm - to) / frm, 0.6, "easy",
                                     "medium", spend,
                                     f"{r['calls']:,} calls in {days} days; the same tokens cost "
                                     f"{money(frm * scale)} a month at {canonical}, {money(to * scale)} at {nxt}"))
        # response caching
        hits, lookups = r["cache_hits"], r["cache_lookups"]
        if lookups > 0 and calls > 0 and spend >= min_spend:
            h = hits / lookups
            if h < CACHE_TARGET:
                missed_spend = spend * min((lookups - hits) / calls, 1.0)
                saving = missed_spend * (CACHE_TARGET - h) / (1.0 - h)
                if saving >= min_savings and missed_spend > 0:
                    recs.append(_rec("caching", f"Raise the response-cache hit ratio of {model} from "
                                                f"{h:.0%} to {CACHE_TARGET:.0%}", provider, model, None, saving,
                                     saving / spend, 0.5, "medium", "none", spend,
                                     f"{hits:,} hits in {lookups:,} lookups; misses cost {money(missed_spend)} a month"))
        # batch API
        if price is not None and price.batch_discount > 0 and calls > 0 and r["batch_calls"] / calls < 0.5:
            nonbatch = spend * (1.0 - r["batch_calls"] / calls)
            saving = nonbatch * batch_share * price.batch_discount
            if saving >= min_savings:
                recs.append(_rec("batch", f"Send work that can wait 24 h for {model} through the batch API "
                                          f"({price.batch_discount:.0%} off)", provider, model, model, saving,
                                 saving / spend if spend else 0.0, 0.4, "medium", "none", spend,
                                 f"{r['batch_calls']:,} of {calls:,} calls use batch; assumes {batch_share:.0%} of "
                                 f"the rest can wait"))
    recs.sort(key=lambda x: (-x["priority_score"], -x["estimated_monthly_savings_usd"], x["title"]))
    return {"days": days, "recommendations": recs}


def render(res: dict) -> str:
    head = f"=== Recommendations (from the last {res['days']} days, savings per 30-day month) ==="
    if not res["recommendations"]:
        return head + "\n(nothing to recommend)\n"
    rows = [[f"{r['priority_score']:.0f}", r["type"], r["title"], money(r["estimated_monthly_savings_usd"]),
             f"{r['savings_ratio']:.0%}", f"{r['confidence']:.1f}", r["difficulty"], r["quality_impact"]]
            for r in res["recommendations"]]
    return head + "\n" + table(["Score", "Type", "Recommendation", "Saves/month", "Ratio", "Conf.", "Difficulty",
                                "Quality impact"], rows, right=(0, 3, 4, 5)) + "\n"
