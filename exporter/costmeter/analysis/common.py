"""Small helpers shared by the analysis modules: UTC days, money, text tables."""
from __future__ import annotations

from datetime import date, datetime, timedelta, timezone
from typing import Sequence

DAY = 86400.0
SEVERITY = ("ok", "warning", "critical", "exceeded")


def utc_midnight(ts: float) -> float:
    return float(int(ts // DAY) * DAY)


def month_start(ts: float) -> float:
    d = datetime.fromtimestamp(ts, timezone.utc)
    return datetime(d.year, d.month, 1, tzinfo=timezone.utc).timestamp()


def day_str(ts: float) -> str:
    return datetime.fromtimestamp(ts, timezone.utc).strftime("%Y-%m-%d")


def parse_day(s: str) -> date:
    return date.fromisoformat(s)


def days_between(start: float, end: float) -> list[str]:
    """UTC dates of the days that [start, end) touches."""
    d0 = datetime.fromtimestamp(start, timezone.utc).date()
    d1 = datetime.fromtimestamp(end - 1e-6, timezone.utc).date()
    return [(d0 + timedelta(days=i)).isoformat() for i in range((d1 - d0).days + 1)]


def usd(x: float) -> float:
    """Money in JSON: rounded to a micro-dollar, so sums folded in any order print the same."""
    return round(float(x), 6) + 0.0


def money(x: float | None) -> str:
    if x is None:
        return "-"
    sign, x = ("-", -x) if x < 0 else ("", x)
    return f"{sign}${x:,.2f}" if x >= 0.01 or x == 0 else f"{sign}${x:,.4f}"


def worst(statuses: Sequence[str]) -> str | None:
    if not statuses:
        return None
    return max(statuses, key=SEVERITY.index)


def table(headers: Sequence[str], rows: Sequence[Sequence[str]], right: Sequence[int] = ()) -> str:
    """A plain text table; columns in ``right`` are right-aligned."""
    cols = len(headers)
    width = [max([len(headers[i])] + [len(r[i]) for r in rows]) for i in range(cols)]

    def fmt(r):
        return "  ".join(r[i].rjust(width[i]) if i in right else r[i].ljust(width[i]) for i in range(cols)).rstrip()
    line = "-" * len(fmt(headers))
    return "\n".join([fmt(headers), line] + [fmt(r) for r in rows])
