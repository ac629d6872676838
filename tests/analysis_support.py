"""Ledgers seeded with known spend for the analysis command tests (figures checked by hand there)."""
from __future__ import annotations

from datetime import datetime, timezone

from costmeter.events import parse_event
from costmeter.pricing import PricingTable
from costmeter.server.ledger import Ledger

PRICES = PricingTable.load()
BUDGET_ENV = ("BUDGET_SOFT_THRESHOLD", "BUDGET_HARD_THRESHOLD", "GLOBAL_BUDGET_DAILY",
              "GLOBAL_BUDGET_MONTHLY", "TENANT_BUDGET_DAILY_DEFAULT", "TENANT_BUDGET_MONTHLY_DEFAULT")


def ts(day: str, hour: int = 10) -> float:
    """Unix seconds of ``day`` (YYYY-MM-DD) at ``hour``:00 UTC."""
    d = datetime.fromisoformat(day)
    return datetime(d.year, d.month, d.day, hour, tzinfo=timezone.utc).timestamp()


class Seeder:
    def __init__(self, state_dir: str):
        self.ledger = Ledger(state_dir)
        self.rows: list[tuple] = []
        self.n = 0

    def event(self, when: float, tenant: str, provider: str, model: str, cost: float | None = None, **kw) -> None:
        self.n += 1
        obj = {"id": f"seed-{self.n}", "timestamp": when, "provider": provider, "model": model,
               "tenant": tenant, "endpoint": kw.pop("endpoint", "/v1/chat"), **kw}
        if cost is not None:
            obj["cost_usd"] = cost
        self.rows.append(parse_event(obj, when, PRICES.cost))

    def daily(self, tenant: str, provider: str, model: str, first: str, costs: list[float], hour: int = 10) -> None:
        """One event a day from ``first``, costing costs[i] on day i."""
        t0 = ts(first, hour)
        for i, c in enumerate(costs):
            self.event(t0 + i * 86400, tenant, provider, model, c)

    def close(self) -> None:
        self.ledger.append(self.rows)
        self.ledger.close()
