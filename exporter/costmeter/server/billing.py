"""Billing pulls inside the exporter: estimate-to-billed ratios, billing budgets, /metrics.

After every successful pull of a source (:meth:`BillingLink.after_pull`):

* ``cost_estimate_to_billed_ratio{source, provider}`` is recomputed: the
  ledger's priced spend for that provider over the complete UTC days of the
  current month that the source has billed it for, divided by the billed
  spend of those days. A provider costmeter saw no priced calls for on those
  days gets no ratio (an AWS bill is mostly not LLM calls); neither does one
  billed $0.
* every budget with ``billing_source: NAME`` gets the source's month-to-date
  billed spend (only ``service`` if the budget names one).

The scrape only reads what was computed then; it never waits on a vendor or
queries the ledger.
"""
from __future__ import annotations

import threading
from typing import Callable, Iterable

from costmeter.budgets.book import BudgetBook
from costmeter.collectors.billing import BillingScheduler, day_start_ts, month_start, utc_day
from costmeter.config.billing import BillingConfig
from costmeter.server.exposition import gauge_family

__all__ = ["BillingLink"]

SumsFn = Callable[[float, float], Iterable[tuple]]


class BillingLink:
    def __init__(self, config: BillingConfig, sums: Callable[[], SumsFn | None],
                 budgets: Callable[[], BudgetBook | None], clock: Callable[[], float] | None = None):
        self.scheduler = BillingScheduler(config, clock=clock, on_pull=self.after_pull)
        self._sums, self._budgets = sums, budgets
        self._clock = self.scheduler._clock
        self._lock = threading.Lock()
        self.ratios: dict[tuple[str, str], float] = {}

    def after_pull(self, name: str) -> None:
        self._update_ratios(name)
        self.push_budgets(name)

    def _update_ratios(self, name: str) -> None:
        sums = self._sums()
        if sums is None:
            return
        today = utc_day(self._clock())
        per_day: dict = {}
        new: dict[tuple[str, str], float] = {}
        for provider in sorted(self.scheduler.providers(name, today)):
            days = self.scheduler.billed_days(name, provider, today)
            billed = sum(days.values())
            estimate = 0.0
            for d in days:
                if d not in per_day:
                    start = day_start_ts(d)
                    per_day[d] = list(sums(start, start + 86400.0))
                estimate += sum(float(r[4] or 0.0) for r in per_day[d] if r[0] == provider)
            if billed > 0 and estimate > 0:
                new[(name, provider)] = estimate / billed
        with self._lock:
            for k in [k for k in self.ratios if k[0] == name]:
                del self.ratios[k]
            self.ratios.update(new)

    def push_budgets(self, name: str | None = None) -> None:
        """Set the spend of budgets fed by ``name`` (every source when None) from the bill."""
        book = self._budgets()
        if book is None:
            return
        now = self._clock()
        period_start = day_start_ts(month_start(utc_day(now)))
        billed = {s["source"]: s["billed"] for s in self.scheduler.snapshot(now)}
        for spec in book.config.budgets:
            src = spec.billing_source
            if src is None or src not in billed or (name is not None and src != name):
                continue
            usd = sum(v for (_, service), v in billed[src].items()
                      if spec.billing_service is None or service == spec.billing_service)
            book.set_external_spend(spec.name, spec.period, period_start, usd)

    def render(self) -> str:
        snap = self.scheduler.snapshot()
        with self._lock:
            ratios = sorted(self.ratios.items())
        billed = [((s["source"], p, svc), v) for s in snap for (p, svc), v in sorted(s["billed"].items())]
        src = ("source",)
        return "".join((
            gauge_family("cost_billed_usd",
                         "Billed spend in the current calendar month (UTC) so far, from a billing pull: cached from "
                         "the last successful pull of the source, not fetched at scrape time.",
                         ("source", "provider", "service"), billed),
            gauge_family("cost_estimate_to_billed_ratio",
                         "Estimated spend (the ledger) divided by billed spend, over the complete days of the current "
                         "month (UTC) that the source has billed; recomputed after each pull.",
                         ("source", "provider"), [(k, v) for k, v in ratios]),
            gauge_family("costmeter_billing_up", "1 if the last pull of the billing source succeeded.", src,
                         [((s["source"],), s["up"]) for s in snap]),
            gauge_family("costmeter_billing_last_success_timestamp_seconds",
                         "When the billing source was last pulled successfully (0: never).", src,
                         [((s["source"],), s["last_success"]) for s in snap]),
            gauge_family("costmeter_billing_api_cost_usd_total",
                         "What the billing pulls themselves cost (AWS Cost Explorer bills $0.01 a request).", src,
                         [((s["source"],), s["api_cost_usd"]) for s in snap], "counter"),
            gauge_family("costmeter_billing_interval_seconds",
                         "How often the billing source is pulled (exporter.yaml; each pull is jittered by 10 %).",
                         src, [((s["source"],), s["interval"]) for s in snap]),
            gauge_family("costmeter_billing_pull_duration_seconds", "How long the last pull of the billing source took.",
                         src, [((s["source"],), s["duration"]) for s in snap]),
        ))

