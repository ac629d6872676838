"""``costmeter report``: who spent what (the layout of the seed's cost report).

Windows, all UTC: *today* is from 00:00 today to now; *this month* from the
1st of the calendar month; *the period* is the last N calendar days, today
included (so the chart has N bars). Global figures are the whole fleet even
with ``--tenant``; the tenant rows and the models are then that tenant's.
"""
from __future__ import annotations

from costmeter.analysis.common import DAY, day_str, money, month_start, table, usd, utc_midnight, worst
from costmeter.analysis.sources import Source


def build(source: Source, now: float, days: int = 30, tenant: str | None = None) -> dict:
    today0 = utc_midnight(now)
    month0 = month_start(now)
    period0 = today0 - (days - 1) * DAY
    filt = {"tenant": tenant} if tenant else {}
    windows = {"today_usd": today0, "month_usd": month0, "period_usd": period0}
    per_tenant: dict[str, dict] = {}
    glob = {}
    for key, start in windows.items():
        rows = source.costs(start, now, ("tenant",))
        glob[key] = usd(sum(r["cost_usd"] for r in rows))
        for r in rows:
            if tenant is None or r["tenant"] == tenant:
                per_tenant.setdefault(r["tenant"], {k: 0.0 for k in windows})[key] = usd(r["cost_usd"])
    budgets = source.budgets(now)
    tenants = []
    for t, v in sorted(per_tenant.items(), key=lambda kv: (-kv[1]["period_usd"], kv[0])):
        mine = [b["status"] for b in budgets if (b.get("selector") or {}).get("tenant") == t]
        tenants.append({"tenant": t, **v, "budget_status": worst(mine)})
    models = [{"provider": r["provider"], "model": r["model"], "period_usd": usd(r["cost_usd"]), "calls": r["calls"],
               "unpriced_calls": r["unpriced_calls"]}
              for r in source.costs(period0, now, ("provider", "model"), **filt)]
    models.sort(key=lambda m: (-m["period_usd"], -m["calls"], m["provider"], m["model"]))
    daily = [{"day": r["day"], "tenant": r["tenant"], "usd": usd(r["cost_usd"])}
             for r in source.costs(period0, now, ("tenant", "day"), **filt)]
    return {"days": days, "start": day_str(period0), "end": day_str(now), "tenant": tenant,
            "global": glob, "tenants": tenants, "models": models, "daily": daily,
            "daily_budgets": _daily_limits(budgets, tenant)}


def _daily_limits(budgets: list[dict], tenant: str | None) -> list[dict]:
    """The daily budgets drawn on the chart: the tenant's own with --tenant, else the global ones."""
    out = []
    for b in budgets:
        sel = b.get("selector") or {}
        if b["period"] != "daily":
            continue
        if (tenant and sel == {"tenant": tenant}) or (not tenant and not sel):
            out.append({"budget": b["name"], "limit_usd": b["limit_usd"]})
    return out


def render(rep: dict, top: int = 10) -> str:
    n = rep["days"]
    g = rep["global"]
    who = f" for tenant {rep['tenant']}" if rep["tenant"] else ""
    lines = [f"=== Cost Report (last {n} days{who}: {rep['start']} to {rep['end']} UTC) ===", "",
             "Global spend:"]
    labels = ["Today:", "This month:", f"Last {n} days:"]
    w = max(map(len, labels)) + 2
    for label, key in zip(labels, ("today_usd", "month_usd", "period_usd")):
        lines.append(f"  {label.ljust(w)}{money(g[key])}")
    lines.append("")
    lines.append("Per-tenant spend:")
    if rep["tenants"]:
        lines.append(table(["Tenant", "Today", "This month", f"Last {n} days", "Budget status"],
                           [[t["tenant"], money(t["today_usd"]), money(t["month_usd"]), money(t["period_usd"]),
                             t["budget_status"] or "no budget"] for t in rep["tenants"]], right=(1, 2, 3)))
    else:
        lines.append("  (no spend recorded)")
    lines += ["", f"Top models (last {n} days):"]
    if rep["models"]:
        shown = rep["models"][:top]
        unpriced = any(m.get("unpriced_calls") for m in shown)
        lines.append(table(["Provider", "Model", "Spend", "Calls"] + (["Unpriced calls"] if unpriced else []),
                           [[m["provider"], m["model"], money(m["period_usd"]), f"{m['calls']:,}"]
                            + ([f"{m['unpriced_calls']:,}" if m["unpriced_calls"] else ""] if unpriced else [])
                            for m in shown], right=(2, 3, 4)))
        if unpriced:
            lines.append("  Unpriced calls have no price in pricing.yaml: their spend is missing above "
                         "(costmeter_unpriced_calls_total).")
        if len(rep["models"]) > top:
            lines.append(f"  ... and {len(rep['models']) - top} more (--json lists all)")
    else:
        lines.append("  (no calls recorded)")
    return "\n".join(lines) + "\n"
