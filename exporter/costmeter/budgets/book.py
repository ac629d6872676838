"""The budget book: spend per budget and period at run time, status, forecast and enforcement.

:class:`BudgetBook` keeps, for every (budget, period), the spend of the
current period. ``observe`` is on the ingest hot path: the budgets that match
a (provider, model, tenant, endpoint) key are resolved once and cached, so a
call is a dict lookup, a lock and one comparison and add per matching budget.
An event counts toward a budget only if its timestamp lies in the budget's
current period ``[start, end)``; one that lies in the *next* period (the
clock passed midnight but ``tick`` has not run yet) is held for that period
and becomes its opening spend when the period rolls. Older events are not
counted. When a period rolls, spend restarts at that held amount, exactly at
the boundary, and is then recomputed from the ledger (if ``restore`` was
given one) so that events which reached the ledger by another path are right.

Forecast. The daily burn rate is ``spend / max(elapsed, floor) * 86400`` where
``floor`` is 10 % of the period's length but at most one day (2.4 h for a
daily budget, 16.8 h weekly, 1 day monthly and longer): early in a period one
expensive call is damped instead of being extrapolated over the whole period.
``forecast_usd = spend + rate * remaining``. ``projected_exhaustion`` is when
spend reaches the limit at that rate, None if not before the period ends, and
the time of the status itself when spend has already reached the limit.

Enforcement. ``should_deny`` is true when ``spend + extra_usd >= limit * exceeded``
for any matching budget, ``should_throttle`` when ``spend >= limit * warning``.
A True answer is written to the governance log; repeats for the same budget,
period and tenant within a minute are folded into the next line's
``repeats_since_last`` so a tenant retrying in a loop cannot flood the log.

Status ``ok | warning | critical | exceeded`` compares ``spend / limit`` with
the budget's thresholds (defaults 0.80, 0.95, 1.00).
"""
from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass
from typing import Callable, Iterable
from zoneinfo import ZoneInfo

from costmeter.events import iso
from costmeter.budgets.governance import GovernanceLog
from costmeter.budgets.periods import FIXED, period_bounds

from costmeter.budgets.config import (LEVELS, STATUSES, TENANT_PREFIX, BudgetConfig, BudgetSpec, PERIOD_ORDER, MAX_ROUTES, DECISION_LOG_INTERVAL)

__all__ = ["BudgetBook", "BudgetStatus"]


@dataclass
class BudgetStatus:
    name: str
    period: str
    selector: dict
    limit_usd: float
    spend_usd: float
    utilization_ratio: float
    thresholds: dict
    period_start: float
    period_end: float
    daily_burn_rate_usd: float
    forecast_usd: float
    projected_exhaustion: float | None
    status: str
    timezone: str = "UTC"

    def to_dict(self) -> dict:
        """JSON-ready, as served by ``GET /v1/budgets``; times are ISO 8601 UTC."""
        return {
            "name": self.name, "period": self.period, "selector": dict(self.selector),
            "timezone": self.timezone,
            "limit_usd": self.limit_usd, "spend_usd": self.spend_usd,
            "utilization_ratio": self.utilization_ratio, "thresholds": dict(self.thresholds),
            "period_start": iso(self.period_start), "period_end": iso(self.period_end),
            "daily_burn_rate_usd": self.daily_burn_rate_usd, "forecast_usd": self.forecast_usd,
            "projected_exhaustion": None if self.projected_exhaustion is None else iso(self.projected_exhaustion),
            "status": self.status,
        }


# ---- accounting ------------------------------------------------------------------

class _Instance:
    """A budget's current period and its spend (mutated in place; guarded by the book's lock)."""
    __slots__ = ("spec", "tz", "start", "end", "spend", "next_end", "next_spend", "fired")

    def __init__(self, spec: BudgetSpec, now: float):
        self.spec = spec
        self.tz = ZoneInfo(spec.timezone)
        self.spend = 0.0
        self.next_spend = 0.0
        self.fired = 0                      # highest level index (1..3) already logged this period
        self._set_bounds(now)

    def _set_bounds(self, now: float) -> None:
        s = self.spec
        self.start, self.end = period_bounds(s.period, self.tz, now, s.fixed)
        self.next_end = self.end if s.period == FIXED else period_bounds(s.period, self.tz, self.end)[1]

    def roll(self, now: float) -> bool:
        """Move to the period holding ``now``; spend restarts at what was held for it."""
        if now < self.end or self.spec.period == FIXED:
            return False
        carried = self.next_spend if now < self.next_end else 0.0
        self._set_bounds(now)
        self.spend, self.next_spend, self.fired = carried, 0.0, 0
        return True

    def level(self) -> int:
        t, lim, sp = self.spec.thresholds, self.spec.limit_usd, self.spend
        if sp >= lim * t.exceeded:
            return 3
        if sp >= lim * t.critical:
            return 2
        if sp >= lim * t.warning:
            return 1
        return 0


def _status(inst: _Instance, now: float) -> BudgetStatus:
    spec, spend, start, end = inst.spec, inst.spend, inst.start, inst.end
    limit = spec.limit_usd
    length = end - start
    floor = min(0.1 * length, 86400.0)
    elapsed = min(max(now - start, 0.0), length)
    remaining = max(end - max(now, start), 0.0)
    rate = spend / max(elapsed, floor) if elapsed > 0 else 0.0          # USD per second
    forecast = spend + rate * remaining
    if spend >= limit:
        exhaustion = now
    elif rate > 0:
        t = max(now, start) + (limit - spend) / rate
        exhaustion = t if t < end else None
    else:
        exhaustion = None
    lvl = inst.level()
    return BudgetStatus(
        name=spec.name, period=spec.period, selector=dict(spec.selector), limit_usd=limit,
        spend_usd=spend, utilization_ratio=spend / limit, thresholds=spec.thresholds.as_dict(),
        period_start=start, period_end=end, daily_burn_rate_usd=rate * 86400.0, forecast_usd=forecast,
        projected_exhaustion=exhaustion, status=STATUSES[lvl],
        timezone=spec.timezone)


def _now() -> float:
    # time.time is looked up per call: freezegun swaps the module attribute, not a bound reference.
    return time.time()


SumsFn = Callable[[float, float], Iterable[tuple[str, str, str, str, float]]]


class BudgetBook:
    """Spend per budget and period, fed by ``observe`` and read by the scrape, the API and the SDK.

    Thread-safe: one lock guards all spend; the governance log is written outside it.
    """

    def __init__(self, config: BudgetConfig, governance: "GovernanceLog | None" = None,
                 clock: Callable[[], float] | None = None):
        self.config = config
        self.governance = governance
        # Every reading of the time goes through self._clock (default: time.time looked up
        # per call), so an injected or frozen clock decides every period, first ones included.
        self._clock = clock if clock is not None else _now
        self._lock = threading.Lock()
        now = self._clock()
        self._instances: list[_Instance] = [_Instance(s, now) for s in config.budgets]
        self._tenants: set[str] = set()      # tenants whose default budgets exist
        self._routes: dict[tuple, list[_Instance]] = {}
        self._sums: SumsFn | None = None
        self._next_roll = self._min_end()
        self._decisions: dict[tuple, list] = {}   # (kind, budget, period, tenant) -> [last_logged, suppressed]

    # -- hot path --------------------------------------------------------------------

    def observe(self, provider: str, model: str, tenant: str, endpoint: str, cost_usd: float, ts: float) -> None:
        """Add one event's cost to every budget it falls in (by label and by timestamp)."""
        insts = self._routes.get((provider, model, tenant, endpoint))
        if insts is None:
            insts = self._route((provider, model, tenant, endpoint))
        with self._lock:
            for i in insts:
                if i.start <= ts < i.end:
                    i.spend += cost_usd
                elif i.end <= ts < i.next_end:
                    i.next_spend += cost_usd

    def _route(self, key: tuple) -> list[_Instance]:
        with self._lock:
            return self._route_locked(key)

    def _route_locked(self, key: tuple) -> list[_Instance]:
        insts = self._routes.get(key)
        if insts is not None:
            return insts
        tenant = key[2]
        if tenant is not None and tenant not in self._tenants and self.config.tenant_defaults:
            self._tenants.add(tenant)
            now = self._clock()
            new = [_Instance(s, now) for s in self.config.tenant_default_specs(tenant)]
            self._instances.extend(new)
            if new:
                self._next_roll = min(self._next_roll, min(i.end for i in new))
        insts = [i for i in self._instances if i.spec.matches(key)]
        if len(self._routes) >= MAX_ROUTES:
            self._routes.clear()
        self._routes[key] = insts
        return insts

    def reconfigure(self, config: BudgetConfig) -> None:
        """Replace the budgets (budgets.yaml was reloaded); spend is recomputed from the ledger.

        Levels already logged for a budget's current period stay logged, so a reload does
        not repeat threshold crossings. Call it where ``observe`` cannot run concurrently
        (the exporter holds its ledger lock).
        """
        now = self._clock()
        with self._lock:
            fired = {(i.spec.name, i.spec.period, i.start): i.fired for i in self._instances}
            self.config = config
            self._instances = [_Instance(s, now) for s in config.budgets]
            self._tenants = set()
            self._routes = {}
            self._next_roll = self._min_end()
        if self._sums is not None:
            self._recompute(self._sums, now, only=None)
        with self._lock:
            for i in self._instances:
                i.fired = min(fired.get((i.spec.name, i.spec.period, i.start), 0), i.level())

    # -- periods -------------------------------------------------------------------

    def _min_end(self) -> float:
        ends = [i.end for i in self._instances if i.spec.period != FIXED]
        return min(ends) if ends else math.inf

    def _roll_locked(self, now: float) -> list[_Instance]:
        if now < self._next_roll:
            return []
        rolled = [i for i in self._instances if i.roll(now)]
        self._next_roll = self._min_end()
        return rolled

    def tick(self, now: float | None = None) -> None:
        """Roll periods whose end has passed and log thresholds crossed since the last tick.

        Each level (warning, critical, exceeded) is logged once per budget and period.
        After a restart, levels already reached are logged again once.
        """
        now = self._clock() if now is None else now
        with self._lock:
            rolled = self._roll_locked(now)
        if rolled and self._sums is not None:
            self._recompute(self._sums, now, only=rolled)
        crossings = []
        with self._lock:
            for i in self._instances:
                lvl = i.level()
                if lvl > i.fired:
                    for k in range(i.fired + 1, lvl + 1):
                        crossings.append((i, k, i.spend))
                    i.fired = lvl
        if self.governance is not None:
            for i, k, spend in crossings:
                s = i.spec
                ratio = getattr(s.thresholds, LEVELS[k - 1])
                self.governance.append(
                    "threshold_crossed", budget=s.name, period=s.period, selector=dict(s.selector),
                    level=LEVELS[k - 1], threshold_ratio=ratio, spend_usd=round(spend, 6),
                    limit_usd=s.limit_usd, utilization_ratio=round(spend / s.limit_usd, 6),
                    period_start=iso(i.start), period_end=iso(i.end))

    # -- restore -------------------------------------------------------------------

    def restore(self, sums: SumsFn) -> None:
        """Recompute every budget's current-period spend from the ledger.

        ``sums(start, end)`` yields ``(provider, model, tenant, endpoint, cost_sum)`` for the
        events with ``start <= ts < end``. It is called once per distinct period range, outside
        the lock, and kept so that each later period roll is recomputed from it as well.

        The ledger read and ``observe`` are not atomic with each other: an event observed
        while ``sums`` runs may be counted twice or not at all. Call it at start-up before
        ingest starts; at a period roll only the budgets that rolled are recomputed, and
        they are seconds into their new period.
        """
        self._sums = sums
        now = self._clock()
        with self._lock:
            self._roll_locked(now)
        self._recompute(sums, now, only=None)

    def _recompute(self, sums: SumsFn, now: float, only: list[_Instance] | None) -> None:
        with self._lock:
            targets = list(self._instances) if only is None else list(only)
            ranges = {(i.start, i.end) for i in targets}
        if only is None and self.config.tenant_defaults:
            # Tenants first seen in the ledger get default budgets; their ranges must be read too.
            tz = ZoneInfo(self.config.timezone)
            for p in self.config.tenant_defaults:
                ranges.add(period_bounds(p, tz, now))
        rows = {r: [tuple(row) for row in sums(*r)] for r in sorted(ranges)}
        with self._lock:
            if only is None:
                for rs in rows.values():
                    for p, m, t, e, _ in rs:
                        self._route_locked((p, m, t, e))
                targets = list(self._instances)
            totals = {id(i): 0.0 for i in targets}
            for (start, end), rs in rows.items():
                for p, m, t, e, cost in rs:
                    key = (p, m, t, e)
                    insts = self._routes.get(key)
                    if insts is None:
                        insts = [i for i in self._instances if i.spec.matches(key)]
                    for i in insts:
                        if i.start == start and i.end == end and id(i) in totals:
                            totals[id(i)] += float(cost)
            for i in targets:
                if id(i) in totals:
                    i.spend = totals[id(i)]

    def set_external_spend(self, name: str, period: str, period_start: float, spend_usd: float) -> bool:
        """Set the spend of a budget fed from outside the ledger (``billing_source``): its
        current period must start at ``period_start``. ``tick`` logs the thresholds it crosses.
        False if no such budget is in that period (the value is then for another period)."""
        now = self._clock()
        with self._lock:
            self._roll_locked(now)
            for i in self._instances:
                if i.spec.name == name and i.spec.period == period and i.start == period_start:
                    i.spend = float(spend_usd)
                    return True
        return False

    # -- reading -------------------------------------------------------------------

    def statuses(self, now: float | None = None) -> list[BudgetStatus]:
        """Every budget instance, sorted by name and period."""
        now = self._clock() if now is None else now
        with self._lock:
            self._roll_locked(now)
            out = [_status(i, now) for i in self._instances]
        out.sort(key=lambda s: (s.name, PERIOD_ORDER[s.period]))
        return out

    def get(self, name: str, now: float | None = None) -> list[BudgetStatus]:
        """All periods of budget ``name`` ([] if unknown). ``tenant:<t>`` of a tenant not seen
        yet answers with the tenant defaults at zero spend."""
        if name.startswith(TENANT_PREFIX) and self.config.tenant_defaults:
            self._route((None, None, name[len(TENANT_PREFIX):], None))
        return [s for s in self.statuses(now) if s.name == name]

    def matching(self, provider: str | None, model: str | None, tenant: str | None,
                 endpoint: str | None = None, now: float | None = None) -> list[BudgetStatus]:
        """The budgets a call with these labels would count toward. A None label is unknown:
        budgets that select on it are left out. A tenant not seen yet gets the tenant defaults."""
        now = self._clock() if now is None else now
        key = (provider, model, tenant, endpoint)
        insts = self._routes.get(key)
        if insts is None:
            insts = self._route(key)
        with self._lock:
            self._roll_locked(now)
            out = [_status(i, now) for i in insts]
        out.sort(key=lambda s: (s.name, PERIOD_ORDER[s.period]))
        return out

    # -- enforcement ---------------------------------------------------------------

    def should_deny(self, tenant: str, provider: str | None = None, model: str | None = None,
                    endpoint: str | None = None, extra_usd: float = 0.0) -> tuple[bool, str]:
        """(True, reason) when spend + extra_usd reaches limit * exceeded threshold for any
        matching budget; the reason names the budget closest to (or furthest past) its limit."""
        worst = None
        for s in self.matching(provider, model, tenant, endpoint):
            deny_at = s.limit_usd * s.thresholds["exceeded"]
            if s.spend_usd + extra_usd >= deny_at:
                over = (s.spend_usd + extra_usd) / deny_at
                if worst is None or over > worst[0]:
                    worst = (over, s)
        if worst is None:
            return False, ""
        s = worst[1]
        extra = f" + ${extra_usd:.4f} for this call" if extra_usd else ""
        reason = (f"budget {s.name} ({s.period}) would exceed its limit: spend ${s.spend_usd:.4f}{extra} "
                  f">= ${s.limit_usd * s.thresholds['exceeded']:.4f} "
                  f"({s.thresholds['exceeded']:.0%} of limit ${s.limit_usd:.2f}); resets {iso(s.period_end)}")
        self._log_decision("deny", s, tenant, reason, extra_usd=extra_usd)
        return True, reason

    def should_throttle(self, tenant: str, provider: str | None = None, model: str | None = None,
                        endpoint: str | None = None) -> tuple[bool, str]:
        """(True, reason) when any matching budget is at or over its warning threshold."""
        worst = None
        for s in self.matching(provider, model, tenant, endpoint):
            if s.spend_usd >= s.limit_usd * s.thresholds["warning"]:
                if worst is None or s.utilization_ratio > worst.utilization_ratio:
                    worst = s
        if worst is None:
            return False, ""
        s = worst
        reason = (f"budget {s.name} ({s.period}) is at {s.utilization_ratio:.1%} of its ${s.limit_usd:.2f} limit "
                  f"(spend ${s.spend_usd:.4f}; warning threshold {s.thresholds['warning']:.0%}); "
                  f"resets {iso(s.period_end)}")
        self._log_decision("throttle", s, tenant, reason)
        return True, reason

    def _log_decision(self, kind: str, s: BudgetStatus, tenant: str, reason: str, **extra) -> None:
        """Log a decision; repeats for the same budget and tenant are folded into one line a minute."""
        if self.governance is None:
            return
        now = self._clock()
        k = (kind, s.name, s.period, tenant)
        with self._lock:
            st = self._decisions.get(k)
            if st is not None and now - st[0] < DECISION_LOG_INTERVAL:
                st[1] += 1
                return
            suppressed = st[1] if st is not None else 0
            self._decisions[k] = [now, 0]
        self.governance.append(kind, budget=s.name, period=s.period, tenant=tenant,
                               spend_usd=round(s.spend_usd, 6), limit_usd=s.limit_usd,
                               utilization_ratio=round(s.utilization_ratio, 6), reason=reason,
                               repeats_since_last=suppressed, **extra)

