"""PNG charts for ``report --chart`` and ``forecast --chart``, drawn with matplotlib (Agg backend).

matplotlib is optional (``pip install 'costmeter[charts]'``); it is imported only
when a chart is asked for, and its absence is a :class:`ChartError` with that
instruction, never a traceback.
"""
from __future__ import annotations

from datetime import datetime, timezone


class ChartError(RuntimeError):
    pass


def _pyplot():
    try:
        import matplotlib
    except ImportError:
        raise ChartError("--chart needs matplotlib: pip install 'costmeter[charts]'") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def _save(fig, path: str, plt) -> None:
    try:
        fig.savefig(path, dpi=110, bbox_inches="tight")
    except OSError as e:
        raise ChartError(f"cannot write the chart to {path}: {e.strerror or e}") from None
    finally:
        plt.close(fig)


def _dollars(ax) -> None:
    from matplotlib.ticker import FuncFormatter
    ax.yaxis.set_major_formatter(FuncFormatter(
        lambda v, _: f"${v:,.2f}" if ax.get_ylim()[1] < 10 else f"${v:,.0f}"))


def _date_axis(ax, fig) -> None:
    import matplotlib.dates as mdates
    loc = mdates.AutoDateLocator(minticks=4, maxticks=10)
    ax.xaxis.set_major_locator(loc)
    ax.xaxis.set_major_formatter(mdates.DateFormatter("%b %d"))
    fig.autofmt_xdate(rotation=30)


def report_chart(rep: dict, path: str, max_tenants: int = 8) -> None:
    """Daily spend over the report's N days, stacked by tenant, with the daily budget line."""
    plt = _pyplot()
    from datetime import date, timedelta
    start, end = date.fromisoformat(rep["start"]), date.fromisoformat(rep["end"])
    days = [start + timedelta(days=i) for i in range((end - start).days + 1)]
    idx = {d.isoformat(): i for i, d in enumerate(days)}
    totals: dict[str, float] = {}
    for r in rep["daily"]:
        totals[r["tenant"]] = totals.get(r["tenant"], 0.0) + r["usd"]
    ranked = sorted(totals, key=lambda t: -totals[t])
    shown = ranked[:max_tenants]
    series = {t: [0.0] * len(days) for t in shown}
    other = [0.0] * len(days)
    for r in rep["daily"]:
        i = idx.get(r["day"])
        if i is None:
            continue
        (series[r["tenant"]] if r["tenant"] in series else other)[i] += r["usd"]
    fig, ax = plt.subplots(figsize=(11, 5.5))
    x = [datetime(d.year, d.month, d.day, 12) for d in days]
    bottom = [0.0] * len(days)
    colors = plt.get_cmap("tab10").colors
    for k, t in enumerate(shown):
        ax.bar(x, series[t], bottom=bottom, width=0.8, label=t, color=colors[k % 10])
        bottom = [b + v for b, v in zip(bottom, series[t])]
    if any(other):
        ax.bar(x, other, bottom=bottom, width=0.8, label=f"{len(ranked) - len(shown)} other tenants", color="#bbbbbb")
    if days and bottom[-1] + sum(other[-1:]) > 0:
        ax.annotate("today\n(so far)", (x[-1], bottom[-1] + other[-1]), textcoords="offset points", xytext=(0, 4),
                    ha="center", fontsize=8, color="#444444")
    for b in rep.get("daily_budgets", []):
        ax.axhline(b["limit_usd"], color="#d62728", linestyle="--", linewidth=1.5,
                   label=f"daily budget {b['budget']} (${b['limit_usd']:,.2f})")
    who = f" for tenant {rep['tenant']}" if rep.get("tenant") else " by tenant"
    ax.set_title(f"Daily spend{who}, last {rep['days']} days ({rep['start']} to {rep['end']}, UTC days)")
    ax.set_ylabel("spend per day (USD)")
    ax.set_xlabel("day (UTC)")
    _dollars(ax)
    # one label under the middle of each bar (every n-th when there are many days)
    step = max(1, -(-len(days) // 12))
    ax.set_xticks(x[::step], [d.strftime("%b %d") for d in days[::step]])
    fig.autofmt_xdate(rotation=30)
    ax.grid(axis="y", alpha=0.3)
    if shown or rep.get("daily_budgets"):
        # beside the plot, never over the bars
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=9, framealpha=0.9, borderaxespad=0)
    else:
        ax.text(0.5, 0.5, "no spend recorded", transform=ax.transAxes, ha="center", fontsize=14, color="#666666")
    _save(fig, path, plt)


def forecast_chart(fc: dict, path: str, max_budgets: int = 6) -> None:
    """Per budget: spend so far (cumulative), the forecast line with its 95 % band, and the limit."""
    plt = _pyplot()
    budgets = fc["budgets"][:max_budgets]
    if not budgets:
        raise ChartError("no budgets to draw (configure budgets.yaml, or name one with --budget)")
    n = len(budgets)
    cols = 1 if n == 1 else 2
    rows = (n + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(7.5 * cols, 4.2 * rows), squeeze=False)
    for ax, b in zip([a for row in axes for a in row], budgets):
        pts = b.get("series") or []
        t = [datetime.fromtimestamp(p[0], timezone.utc) for p in pts]
        ax.plot(t, [p[1] for p in pts], color="#1f77b4", linewidth=2, label="spend so far")
        f = b.get("forecast_series") or []
        if f:
            tf = [datetime.fromtimestamp(p[0], timezone.utc) for p in f]
            ax.plot(tf, [p[1] for p in f], color="#ff7f0e", linestyle="--", linewidth=2, label="forecast")
            ax.fill_between(tf, [p[2] for p in f], [p[3] for p in f], color="#ff7f0e", alpha=0.2,
                            label="95 % interval")
        ax.axhline(b["limit_usd"], color="#d62728", linewidth=1.5, label=f"limit ${b['limit_usd']:,.2f}")
        ax.set_title(f"{b['budget']} ({b['period']}): {b['status']}, "
                     f"projected ${b['projected_usd']:,.2f}", fontsize=11)
        ax.set_ylabel("cumulative spend (USD)")
        _dollars(ax)
        import matplotlib.dates as mdates
        ax.xaxis.set_major_locator(mdates.AutoDateLocator(minticks=3, maxticks=7))
        ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(ax.xaxis.get_major_locator()))
        ax.grid(alpha=0.3)
        ax.legend(loc="best", fontsize=8)
    for ax in [a for row in axes for a in row][n:]:
        ax.set_visible(False)
    more = len(fc["budgets"]) - n
    fig.suptitle("Budget forecasts: spend so far, projected end of period (UTC times)"
                 + (f"\nthe first {n} of {len(fc['budgets'])} budgets; --budget NAME draws another" if more > 0 else ""),
                 fontsize=13)
    fig.tight_layout()
    _save(fig, path, plt)
