"""``costmeter anomalies``: daily spend that is abnormal against its own baseline.

For each tenant and each (provider, model), and each checked day D (the last
``check_days`` UTC days, today included), the baseline is the daily spend of
the N days before D (days with no spend count as $0; days before the series'
first spend are left out, and at least half of N, and 3, baseline days are
needed). With the baseline's mean m and sample standard deviation s::

    s' = max(s, 0.05 x m)          # a perfectly flat baseline still has a scale
    z  = (spend_D - m) / s'
    anomalous when z > S and spend_D > floor;  severity critical when z > 2 x S

``baseline_std_usd`` in the JSON is s', so ``z_score`` can be recomputed from
the row. Steady growth is not an anomaly: on a straight line the next day sits
at z = sqrt(3 (N+1) / N), about 1.8 for N = 14.
"""
from __future__ import annotations

import statistics

from costmeter.analysis.common import DAY, day_str, days_between, money, table, usd, utc_midnight
from costmeter.analysis.sources import Source

STD_FLOOR_RATIO = 0.05


def _series(rows: list[dict], key, days: list[str]) -> dict:
    idx = {d: i for i, d in enumerate(days)}
    out: dict = {}
    for r in rows:
        k = key(r)
        v = out.setdefault(k, [0.0] * len(days))
        i = idx.get(r["day"])
        if i is not None:
            v[i] += r["cost_usd"]
    return out


def build(source: Source, now: float, days: int = 14, sigma: float = 3.0, floor_usd: float = 1.0,
          check_days: int = 7) -> dict:
    today0 = utc_midnight(now)
    start = today0 - (check_days - 1 + days) * DAY
    all_days = days_between(start, now)
    subjects = [
        ("tenant", _series(source.costs(start, now, ("tenant", "day")), lambda r: (r["tenant"],), all_days)),
        ("model", _series(source.costs(start, now, ("provider", "model", "day")),
                          lambda r: (r["provider"], r["model"]), all_days)),
    ]
    found = []
    need = max(3, days // 2)
    for kind, series in subjects:
        for key, vals in sorted(series.items()):
            first = next((i for i, v in enumerate(vals) if v > 0), None)
            if first is None:
                continue
            for i in range(days, len(vals)):
                x = vals[i]
                if x <= floor_usd:
                    continue
                base = vals[max(i - days, first):i]
                if len(base) < need:
                    continue
                m = statistics.fmean(base)
                if m <= 0:
                    continue
                s = max(statistics.stdev(base), STD_FLOOR_RATIO * m)
                z = (x - m) / s
                if z <= sigma:
                    continue
                a = {"tenant": key[0]} if kind == "tenant" else {"provider": key[0], "model": key[1]}
                a.update({"day": all_days[i], "spend_usd": usd(x), "baseline_mean_usd": usd(m),
                          "baseline_std_usd": usd(s), "z_score": round(z, 3),
                          "severity": "critical" if z > 2 * sigma else "warning"})
                found.append(a)
    found.sort(key=lambda a: (a["day"], -a["z_score"]))
    return {"days": days, "sigma": sigma, "floor_usd": floor_usd,
            "checked": [day_str(today0 - k * DAY) for k in range(check_days - 1, -1, -1)],
            "anomalies": found}


def subject(a: dict) -> str:
    return f"tenant {a['tenant']}" if "tenant" in a else f"model {a['provider']}/{a['model']}"


def render(res: dict) -> str:
    head = (f"=== Cost Anomalies (days {res['checked'][0]} to {res['checked'][-1]} UTC, each against the "
            f"{res['days']} days before it; above {res['sigma']:g} sigma and {money(res['floor_usd'])}) ===")
    if not res["anomalies"]:
        return head + "\n(none detected)\n"
    rows = [[a["day"], subject(a), money(a["spend_usd"]), money(a["baseline_mean_usd"]),
             money(a["baseline_std_usd"]), f"{a['z_score']:.1f}", a["severity"]] for a in res["anomalies"]]
    return head + "\n" + table(["Day", "Who", "Spend", "Baseline mean", "Baseline std", "z", "Severity"],
                               rows, right=(2, 3, 4, 5)) + "\n"


def record(res: dict, log_path: str) -> int:
    """Append each anomaly not yet in the governance log (by subject and day); returns how many."""
    from costmeter.budgets.governance import GovernanceLog, read
    try:
        seen = {(r.get("tenant"), r.get("provider"), r.get("model"), r.get("day"))
                for r in read(log_path) if r.get("kind") == "anomaly"}
    except ValueError:
        seen = set()
    new = [a for a in res["anomalies"]
           if (a.get("tenant"), a.get("provider"), a.get("model"), a["day"]) not in seen]
    if new:
        with GovernanceLog(log_path) as log:
            for a in new:
                log.append("anomaly", **a, sigma=res["sigma"], baseline_days=res["days"])
    return len(new)
