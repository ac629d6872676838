"""What ``costmeter pricing show`` prints: how a name resolves and the prices in force.

:func:`describe` answers a plain dict (the ``--json`` shape); :func:`render`
turns it into text for a person. Rates are USD per million tokens.
"""
from __future__ import annotations

import time
from datetime import datetime, timezone

from costmeter.pricing.table import RATE_KEYS, ModelPrice, PricingTable

__all__ = ["describe", "render"]


def _iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    d = datetime.fromtimestamp(ts, timezone.utc)
    if d.hour == d.minute == d.second == 0:
        return d.date().isoformat()
    return d.isoformat().replace("+00:00", "Z")


def _batch_rates(p: ModelPrice) -> dict[str, float]:
    keep = set(p.batch_undiscounted)
    return {k: (v if k in keep else round(v * (1.0 - p.batch_discount), 10)) for k, v in p.rates().items()}


def _match(table: PricingTable, provider: str, model: str, at: float) -> dict | None:
    how = table.explain(provider, model)
    if how is None:
        return None
    history = table.history(provider, model)          # the name as sent: a Bedrock regional premium applies
    p = table.price(provider, model, at)
    out: dict = {"provider": how["provider"], "model": how["model"], "resolution": how["steps"],
                 "source": history[0].source if history else None}
    if p is None:                                 # every price starts after `at`
        out.update(effective_from=None, rates=None, long_context=None, batch=None)
    else:
        out["effective_from"] = _iso(p.effective_from)
        out["rates"] = p.rates()
        lc = p.long_context
        out["long_context"] = None if lc is None else {
            "above": p.long_context_above,
            "decided_by": "input + cached_input + cache_write + cache_write_1h tokens of the request",
            "rates": lc.rates()}
        if p.batch_discount:
            out["batch"] = {"discount": p.batch_discount, "undiscounted": list(p.batch_undiscounted),
                            "rates": _batch_rates(p),
                            "long_context_rates": None if lc is None else _batch_rates(lc)}
        else:
            out["batch"] = None
    if len(history) > 1:
        out["history"] = [{"effective_from": _iso(h.effective_from), "rates": h.rates()} for h in history]
    return out


def describe(table: PricingTable, model: str, provider: str | None = None, at: float | None = None) -> dict:
    """How ``model`` is priced (under ``provider``, else under every provider that prices it) at ``at``."""
    at = time.time() if at is None else at
    matches: list[dict] = []
    if provider is not None:
        m = _match(table, provider, model, at)
        if m is not None:
            matches.append(m)
    else:
        seen = set()
        for p in sorted({p for p, _, _ in table.models()}):
            m = _match(table, p, model, at)
            if m is not None and (m["provider"], m["model"]) not in seen:
                seen.add((m["provider"], m["model"]))
                matches.append(m)
    when = datetime.fromtimestamp(at, timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")
    return {"model": model, "provider": provider, "at": when,
            "unit": "USD per million tokens", "priced": bool(matches), "matches": matches}


def _row(name: str, rates: dict[str, float]) -> str:
    return f"  {name:<24}" + "".join(f"{rates[k]:>15g}" for k in RATE_KEYS)


def render(d: dict) -> str:
    """The description as a table for a person."""
    who = f"{d['provider']}/{d['model']}" if d["provider"] else d["model"]
    if not d["priced"]:
        where = f"provider {d['provider']}" if d["provider"] else "any provider"
        return (f"{who}: no price under {where}. Its calls are counted in costmeter_unpriced_calls_total "
                f"and never priced at $0 or at a similar name's price; add it to pricing.yaml.\n")
    lines = []
    for m in d["matches"]:
        lines.append(f"{who} -> {m['provider']}/{m['model']}")
        for step in m["resolution"]:
            lines.append(f"  via {step}")
        if m["source"]:
            lines.append(f"  source: {m['source']}")
        if m["rates"] is None:
            lines.append(f"  no price in force at {d['at']}")
            lines.append("")
            continue
        since = f" (since {m['effective_from']})" if m["effective_from"] else ""
        lines.append(f"  prices in force at {d['at']}{since}, {d['unit']}:")
        lines.append(f"  {'':<24}" + "".join(f"{k:>15}" for k in RATE_KEYS))
        lines.append(_row("standard", m["rates"]))
        lc = m["long_context"]
        if lc:
            lines.append(_row(f"prompt > {lc['above']:,}", lc["rates"]))
        b = m["batch"]
        if b:
            lines.append(_row("batch", b["rates"]))
            if b["long_context_rates"]:
                lines.append(_row("batch, prompt > " + f"{lc['above']:,}", b["long_context_rates"]))
            note = f"  batch: {b['discount']:.0%} off"
            if b["undiscounted"]:
                note += " except " + ", ".join(b["undiscounted"])
            lines.append(note)
        if lc:
            lines.append(f"  long context: a request whose prompt ({lc['decided_by']})")
            lines.append(f"  is over {lc['above']:,} is priced entirely at the higher rates")
        for h in m.get("history", []):
            lines.append(f"  from {h['effective_from'] or 'the start'}: "
                         + ", ".join(f"{k} {h['rates'][k]:g}" for k in ("input", "cached_input", "output")))
        lines.append("")
    return "\n".join(lines)
