"""``costmeter roi``: would self-hosting a model pay off?

With N tokens a month (observed over the last 30 days, or given), p the API
price per token (observed: spend / billable tokens; else the price table's
input and output rates blended by the output share), T tokens a second per
GPU at utilization U, X USD per GPU-hour, G the minimum number of GPUs, O
operations USD a month and S the one-off setup cost::

    capacity per GPU  C = T x U x 2,592,000          (seconds in a 30-day month)
    GPUs needed       g = max(G, ceil(N / C))
    API monthly       A = N x p
    self-hosted       H = g x X x 720 + O           (GPUs are paid for every hour of a 30-day month)
    savings           A - H;  payback = S / (A - H) months when A > H, else never (null)
    break-even        the smallest N with N x p >= g(N) x X x 720 + O; none when one GPU's
                      month costs more than the tokens it can serve (C x p <= X x 720)

The sensitivity table recomputes everything with the volume and the GPU price
at 0.5x, 1x and 2x.
"""
from __future__ import annotations

import math

from costmeter.analysis.common import DAY, money, table, usd
from costmeter.analysis.sources import Source, SourceError

MONTH_SECONDS = 30 * 86400.0
MONTH_HOURS = 720.0
FACTORS = (0.5, 1.0, 2.0)


def gpus_needed(tokens: float, capacity: float, min_gpus: int) -> int:
    return max(min_gpus, math.ceil(tokens / capacity)) if tokens > 0 else min_gpus


def self_hosted(tokens: float, capacity: float, min_gpus: int, gpu_hour: float, ops: float) -> tuple[int, float]:
    g = gpus_needed(tokens, capacity, min_gpus)
    return g, g * gpu_hour * MONTH_HOURS + ops


def break_even(price: float, capacity: float, min_gpus: int, gpu_hour: float, ops: float) -> float | None:
    gpu_month = gpu_hour * MONTH_HOURS
    if price <= 0 or capacity * price <= gpu_month:
        return None
    k = min_gpus
    while k < 10_000_000:
        n = (k * gpu_month + ops) / price
        lo = 0.0 if k == min_gpus else (k - 1) * capacity
        if n <= k * capacity:
            return max(n, lo)
        k = max(k + 1, math.ceil(n / capacity))     # jump straight to the GPU count n needs
    return None


def scenario(tokens: float, price: float, capacity: float, min_gpus: int, gpu_hour: float, ops: float,
             setup: float) -> dict:
    g, h = self_hosted(tokens, capacity, min_gpus, gpu_hour, ops)
    a = tokens * price
    saving = a - h
    payback = (setup / saving if setup > 0 else 0.0) if saving > 0 else None
    return {"api_monthly_usd": usd(a), "self_hosted_monthly_usd": usd(h), "gpus_needed": g,
            "monthly_savings_usd": usd(saving), "payback_months": None if payback is None else round(payback, 2)}


def observed(source: Source, model: str, now: float, days: int = 30) -> tuple[str | None, float, float]:
    """(provider, billable tokens a month, USD a month) of ``model`` over the last ``days`` days."""
    rows = source.costs(now - days * DAY, now, ("provider", "model"), model=model)
    tokens = sum(sum(r["tokens"].values()) for r in rows) * 30.0 / days
    cost = sum(r["cost_usd"] for r in rows) * 30.0 / days
    providers = sorted({r["provider"] for r in rows})
    return (providers[0] if len(providers) == 1 else None), tokens, cost


def build(source: Source | None, now: float, pricing, model: str, gpu_hour: float, tokens_per_second: float,
          tokens_per_month: float | None = None, provider: str | None = None, min_gpus: int = 1,
          utilization: float = 0.6, ops_month: float = 0.0, setup: float = 0.0, output_share: float = 0.25) -> dict:
    obs_tokens = obs_cost = 0.0
    if source is not None:
        p, obs_tokens, obs_cost = observed(source, model, now)
        provider = provider or p
    if obs_tokens > 0 and obs_cost > 0:
        price = obs_cost / obs_tokens
        price_from = "observed spend / tokens over the last 30 days"
    else:
        if provider is None:
            found = [pv for pv in ("openai", "anthropic", "google", "meta") if pricing.resolve(pv, model)]
            provider = found[0] if len(found) == 1 else None
        mp = pricing.price(provider, model, now) if provider else None
        if mp is None:
            raise SourceError(f"no observed usage of {model} and no price for it"
                              + ("" if provider else " (name the provider with --provider)"))
        price = ((1 - output_share) * mp.input + output_share * mp.output) * 1e-6
        price_from = f"price table, {output_share:.0%} output tokens"
    if tokens_per_month is None:
        if obs_tokens <= 0:
            raise SourceError(f"no usage of {model} recorded in the last 30 days; give --tokens-per-month")
        tokens_per_month, volume_from = obs_tokens, "observed over the last 30 days"
    else:
        volume_from = "given"
    capacity = tokens_per_second * utilization * MONTH_SECONDS
    base = scenario(tokens_per_month, price, capacity, min_gpus, gpu_hour, ops_month, setup)
    sens = []
    for vf in FACTORS:
        for gf in FACTORS:
            s = scenario(tokens_per_month * vf, price, capacity, min_gpus, gpu_hour * gf, ops_month, setup)
            sens.append({"volume_factor": vf, "gpu_price_factor": gf, "tokens_per_month": round(tokens_per_month * vf),
                         "gpu_hour_usd": gpu_hour * gf, **s})
    be = break_even(price, capacity, min_gpus, gpu_hour, ops_month)
    return {"model": model, "provider": provider, "tokens_per_month": round(tokens_per_month),
            "volume_from": volume_from, "api_usd_per_million_tokens": round(price * 1e6, 6), "price_from": price_from,
            **base, "gpu_capacity_tokens_per_month": round(capacity),
            "break_even_tokens_per_month": None if be is None else round(be),
            "inputs": {"gpu_hour_usd": gpu_hour, "tokens_per_second": tokens_per_second, "utilization": utilization,
                       "min_gpus": min_gpus, "ops_month_usd": ops_month, "setup_usd": setup},
            "sensitivity": sens}


def _tok(n: float | None) -> str:
    if n is None:
        return "never"
    for unit, div in (("B", 1e9), ("M", 1e6), ("k", 1e3)):
        if n >= div:
            return f"{n / div:,.1f}{unit}"
    return f"{n:,.0f}"


def render(r: dict) -> str:
    pay = "never (self-hosting costs more)" if r["payback_months"] is None else f"{r['payback_months']:.1f} months"
    lines = [f"=== Self-hosting ROI for {r['model']} ({r['provider'] or 'provider unknown'}) ===",
             f"Volume:              {_tok(r['tokens_per_month'])} tokens/month ({r['volume_from']})",
             f"API price:           {money(r['api_usd_per_million_tokens'])} per 1M tokens ({r['price_from']})",
             f"API cost:            {money(r['api_monthly_usd'])}/month",
             f"Self-hosted cost:    {money(r['self_hosted_monthly_usd'])}/month ({r['gpus_needed']} GPU(s) of "
             f"{_tok(r['gpu_capacity_tokens_per_month'])} tokens/month each, plus operations)",
             f"Monthly savings:     {money(r['monthly_savings_usd'])}",
             f"Break-even volume:   {_tok(r['break_even_tokens_per_month'])} tokens/month",
             f"Payback of setup:    {pay}", "", "Sensitivity (volume x GPU price):"]
    rows = [[f"{s['volume_factor']:g}x", f"{s['gpu_price_factor']:g}x", _tok(s["tokens_per_month"]),
             money(s["api_monthly_usd"]), money(s["self_hosted_monthly_usd"]), str(s["gpus_needed"]),
             money(s["monthly_savings_usd"]), "never" if s["payback_months"] is None else f"{s['payback_months']:.1f}"]
            for s in r["sensitivity"]]
    lines.append(table(["Volume", "GPU price", "Tokens/month", "API/month", "Self-hosted/month", "GPUs",
                        "Savings/month", "Payback (months)"], rows, right=(2, 3, 4, 5, 6, 7)))
    return "\n".join(lines) + "\n"
