"""Budgets: configuration, per-period accounting, status and enforcement.

Configuration (``config/budgets.yaml``, documented there) is validated once by
:func:`load_budgets` into a :class:`BudgetConfig`; every problem is reported
as ``file:line: key: message``. The environment overrides the file::

    BUDGET_SOFT_THRESHOLD          default warning threshold   (0.80)
    BUDGET_HARD_THRESHOLD          default exceeded threshold  (1.00), the deny point
    GLOBAL_BUDGET_DAILY            limit of budget "global", period daily
    GLOBAL_BUDGET_MONTHLY          limit of budget "global", period monthly
    TENANT_BUDGET_DAILY_DEFAULT    tenant_defaults.daily
    TENANT_BUDGET_MONTHLY_DEFAULT  tenant_defaults.monthly

An empty variable counts as unset. The threshold variables replace the
file's top-level defaults; a budget with its own ``thresholds`` keeps them.

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
import os
import re
import threading
import time
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Callable, Iterable, Mapping
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from costmeter.config import loader
from costmeter.events import iso
from costmeter.governance import GovernanceLog
from costmeter.periods import ALL_PERIODS, FIXED, PERIODS, period_bounds, to_timestamp
from costmeter.config.loader import ConfigError, ConfigErrors, Doc

__all__ = ["Thresholds", "BudgetSpec", "BudgetConfig", "BudgetStatus", "BudgetBook",
           "load_budgets", "loads_budgets", "budgets_from_doc", "SELECTOR_KEYS", "LEVELS", "ENV_VARS"]

SELECTOR_KEYS = ("provider", "model", "tenant", "endpoint")   # order of the route key
LEVELS = ("warning", "critical", "exceeded")
STATUSES = ("ok",) + LEVELS
DEFAULT_THRESHOLDS = (0.80, 0.95, 1.00)
MAX_THRESHOLD = 10.0
ENV_VARS = ("BUDGET_SOFT_THRESHOLD", "BUDGET_HARD_THRESHOLD", "GLOBAL_BUDGET_DAILY",
            "GLOBAL_BUDGET_MONTHLY", "TENANT_BUDGET_DAILY_DEFAULT", "TENANT_BUDGET_MONTHLY_DEFAULT")
GLOBAL = "global"
TENANT_PREFIX = "tenant:"
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:/-]{0,127}$")
PERIOD_ORDER = {p: i for i, p in enumerate(ALL_PERIODS)}
MAX_ROUTES = 100_000             # distinct label keys cached before the cache is dropped
DECISION_LOG_INTERVAL = 60.0     # seconds between repeated deny/throttle lines for one budget+tenant

TOP_KEYS = ("timezone", "thresholds", "global", "tenants", "tenant_defaults", "budgets")
BUDGET_KEYS = ("name", "selector", "period", "limit_usd", "limits", "thresholds", "timezone")


@dataclass(frozen=True)
class Thresholds:
    warning: float = DEFAULT_THRESHOLDS[0]
    critical: float = DEFAULT_THRESHOLDS[1]
    exceeded: float = DEFAULT_THRESHOLDS[2]

    def as_dict(self) -> dict:
        return {"warning": self.warning, "critical": self.critical, "exceeded": self.exceeded}


@dataclass(frozen=True)
class BudgetSpec:
    """One budget for one period, validated."""
    name: str
    period: str                              # daily weekly monthly quarterly annual fixed
    selector: tuple[tuple[str, str], ...]    # sorted (label, value) pairs; () selects everything
    limit_usd: float
    thresholds: Thresholds
    timezone: str = "UTC"
    fixed: tuple[float, float] | None = None  # Unix seconds, for period "fixed"

    def matches(self, key: tuple) -> bool:
        """key is (provider, model, tenant, endpoint); None never matches a selector value."""
        for label, value in self.selector:
            if key[SELECTOR_KEYS.index(label)] != value:
                return False
        return True


@dataclass
class BudgetConfig:
    budgets: list[BudgetSpec] = field(default_factory=list)
    tenant_defaults: dict[str, float] = field(default_factory=dict)   # period -> limit
    thresholds: Thresholds = field(default_factory=Thresholds)
    timezone: str = "UTC"
    file: str | None = None

    def tenant_default_specs(self, tenant: str) -> list[BudgetSpec]:
        """The default budgets ``tenant:<name>`` for a tenant, one per default period the
        tenant has no budget of its own for (a budget whose selector is exactly that tenant)."""
        own = {b.period for b in self.budgets
               if b.selector == (("tenant", tenant),) or b.name == TENANT_PREFIX + tenant}
        return [BudgetSpec(TENANT_PREFIX + tenant, p, (("tenant", tenant),), limit,
                           self.thresholds, self.timezone)
                for p, limit in self.tenant_defaults.items() if p not in own]


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


# ---- configuration -------------------------------------------------------------

class _Errors:
    """Collects ConfigError so that one run reports every problem."""

    def __init__(self):
        self.errors: list[ConfigError] = []

    def run(self, fn, *args, **kw):
        try:
            return fn(*args, **kw)
        except ConfigError as e:
            self.errors.append(e)
        except ConfigErrors as e:
            self.errors.extend(e.errors)
        return None

    def raise_if_any(self):
        self.errors.sort(key=lambda e: (e.file != "environment", e.line or 0))   # file order; env first
        if len(self.errors) == 1:
            raise self.errors[0]
        if self.errors:
            raise ConfigErrors(self.errors)


def _tz(doc: Doc, path, value) -> str:
    name = loader.expect_str(doc, path, value)
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise doc.error(path, f"unknown timezone {name!r} (use an IANA name such as UTC or Europe/Berlin)") from None
    return name


def _limit(doc: Doc, path, value) -> float:
    v = loader.expect_number(doc, path, value)
    if v <= 0:
        raise doc.error(path, f"must be a limit in USD greater than 0, got {value!r} (remove the budget to disable it)")
    return v


def _check_order(doc: Doc, path, t: Thresholds, origin: str = "") -> Thresholds:
    if not (t.warning < t.critical < t.exceeded):
        raise doc.error(path, f"thresholds must increase: warning {t.warning:g} < critical {t.critical:g} "
                              f"< exceeded {t.exceeded:g}{origin}")
    return t


def _thresholds(doc: Doc, path, value, base: Thresholds) -> Thresholds:
    m = loader.expect_mapping(doc, path, value, LEVELS)
    vals = {}
    for level in LEVELS:
        if level in m:
            v = loader.expect_number(doc, tuple(path) + (level,), m[level])
            if not 0 < v <= MAX_THRESHOLD:
                raise doc.error(tuple(path) + (level,), f"must be a ratio in (0, {MAX_THRESHOLD:g}], "
                                f"got {m[level]!r} (0.8 means 80 %)")
            vals[level] = v
        else:
            vals[level] = getattr(base, level)
    return _check_order(doc, path, Thresholds(**vals))


def _period_limits(doc: Doc, path, value, errs: _Errors) -> dict[str, float]:
    m = loader.expect_mapping(doc, path, value, PERIODS)
    out = {}
    for p, v in m.items():
        lim = errs.run(_limit, doc, tuple(path) + (p,), v)
        if lim is not None:
            out[p] = lim
    return out


def _selector(doc: Doc, path, value) -> tuple[tuple[str, str], ...]:
    m = loader.expect_mapping(doc, path, value, SELECTOR_KEYS)
    return tuple(sorted((k, loader.expect_str(doc, tuple(path) + (k,), v)) for k, v in m.items()))


def _instant(doc: Doc, path, value, tz: str) -> float:
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value) if "T" in value or " " in value.strip() else date.fromisoformat(value)
        except ValueError:
            raise doc.error(path, f"must be a date (2026-11-01) or an ISO 8601 time, got {value!r}") from None
    if not isinstance(value, (date, datetime)):
        raise doc.error(path, f"must be a date (2026-11-01) or an ISO 8601 time, got {value!r}")
    return to_timestamp(value, ZoneInfo(tz))


def _tenant_name(doc: Doc, path, key) -> str:
    if isinstance(key, bool) or not isinstance(key, (str, int)) or key == "":
        raise doc.error(path, f"a tenant name must be a string, got {key!r} (quote it)")
    return str(key)


def _env_number(env: Mapping[str, str], var: str, *, ratio: bool) -> float | None:
    raw = env.get(var)
    if raw is None or raw.strip() == "":
        return None
    try:
        v = float(raw)
    except ValueError:
        raise ConfigError("environment", None, var, f"must be a number, got {raw!r}") from None
    if not math.isfinite(v):
        raise ConfigError("environment", None, var, f"must be a finite number, got {raw!r}")
    if ratio and not 0 < v <= MAX_THRESHOLD:
        raise ConfigError("environment", None, var,
                          f"must be a ratio in (0, {MAX_THRESHOLD:g}], got {raw!r} (0.8 means 80 %)")
    if not ratio and v <= 0:
        raise ConfigError("environment", None, var, f"must be a limit in USD greater than 0, got {raw!r}")
    return v


def budgets_from_doc(doc: Doc, env: Mapping[str, str] | None = None) -> BudgetConfig:
    """Validate a parsed budgets document (and the environment) into a BudgetConfig."""
    env = os.environ if env is None else env
    errs = _Errors()
    top = errs.run(loader.expect_mapping, doc, (), doc.data, TOP_KEYS)
    if top is None:
        errs.raise_if_any()

    # Environment first: it decides the defaults every budget below inherits.
    env_vals = {var: errs.run(_env_number, env, var, ratio=var.startswith("BUDGET_")) for var in ENV_VARS}

    tz = "UTC"
    if "timezone" in top:
        tz = errs.run(_tz, doc, ("timezone",), top["timezone"]) or "UTC"

    defaults = Thresholds()
    if "thresholds" in top:
        defaults = errs.run(_thresholds, doc, ("thresholds",), top["thresholds"], Thresholds()) or defaults
    soft, hard = env_vals["BUDGET_SOFT_THRESHOLD"], env_vals["BUDGET_HARD_THRESHOLD"]
    if soft is not None or hard is not None:
        t = Thresholds(soft if soft is not None else defaults.warning, defaults.critical,
                       hard if hard is not None else defaults.exceeded)
        if t.warning < t.critical < t.exceeded:
            defaults = t
        else:
            var = "BUDGET_HARD_THRESHOLD" if hard is not None and not t.critical < t.exceeded else "BUDGET_SOFT_THRESHOLD"
            errs.errors.append(ConfigError(
                "environment", None, var,
                f"thresholds must increase: warning {t.warning:g} < critical {t.critical:g} < exceeded "
                f"{t.exceeded:g} (set thresholds.critical in {doc.file or 'budgets.yaml'} to fit)"))

    specs: list[BudgetSpec] = []
    seen: dict[tuple[str, str], tuple] = {}     # (name, period) -> key path that defined it

    def add(spec: BudgetSpec, path) -> None:
        k = (spec.name, spec.period)
        if k in seen:
            errs.errors.append(doc.error(path, f"duplicate budget {spec.name!r} for period {spec.period} "
                                               f"(first defined at line {doc.line(seen[k])})"))
            return
        seen[k] = tuple(path)
        specs.append(spec)

    # Simple form.
    if "global" in top:
        limits = errs.run(_period_limits, doc, ("global",), top["global"], errs) or {}
        for p, lim in limits.items():
            add(BudgetSpec(GLOBAL, p, (), lim, defaults, tz), ("global", p))
    if "tenants" in top:
        tenants = errs.run(loader.expect_mapping, doc, ("tenants",), top["tenants"]) or {}
        for key, value in tenants.items():
            path = ("tenants", key)
            name = errs.run(_tenant_name, doc, path, key)
            if name is None:
                continue
            if value is None:
                errs.errors.append(doc.error(path, "needs limits, e.g. {daily: 1.0, monthly: 10.0}"))
                continue
            limits = errs.run(_period_limits, doc, path, value, errs) or {}
            for p, lim in limits.items():
                add(BudgetSpec(TENANT_PREFIX + name, p, (("tenant", name),), lim, defaults, tz), path + (p,))

    tenant_defaults: dict[str, float] = {}
    if "tenant_defaults" in top:
        tenant_defaults = errs.run(_period_limits, doc, ("tenant_defaults",), top["tenant_defaults"], errs) or {}

    # Rich form.
    if "budgets" in top:
        items = top["budgets"]
        if items is not None and not isinstance(items, list):
            errs.errors.append(doc.error(("budgets",), f"must be a list of budgets, got {type(items).__name__}"))
            items = []
        for i, item in enumerate(items or []):
            for spec, path in errs.run(_rich_budget, doc, ("budgets", i), item, defaults, tz, errs) or []:
                add(spec, path)

    # Environment overrides of limits.
    for var, period in (("GLOBAL_BUDGET_DAILY", "daily"), ("GLOBAL_BUDGET_MONTHLY", "monthly")):
        v = env_vals[var]
        if v is None:
            continue
        for j, s in enumerate(specs):
            if s.name == GLOBAL and s.period == period:
                specs[j] = BudgetSpec(s.name, s.period, s.selector, v, s.thresholds, s.timezone, s.fixed)
                break
        else:
            specs.append(BudgetSpec(GLOBAL, period, (), v, defaults, tz))
    for var, period in (("TENANT_BUDGET_DAILY_DEFAULT", "daily"), ("TENANT_BUDGET_MONTHLY_DEFAULT", "monthly")):
        if env_vals[var] is not None:
            tenant_defaults[period] = env_vals[var]

    errs.raise_if_any()
    return BudgetConfig(specs, tenant_defaults, defaults, tz, doc.file)


def _rich_budget(doc: Doc, path, item, defaults: Thresholds, tz: str, errs: _Errors):
    m = loader.expect_mapping(doc, path, item, BUDGET_KEYS)
    if not m:
        raise doc.error(path, "a budget needs at least name and limit_usd")
    if "name" not in m:
        raise doc.error(path, "missing key 'name'")
    name = loader.expect_str(doc, path + ("name",), m["name"])
    if not NAME_RE.match(name):
        raise doc.error(path + ("name",), f"{name!r} is not a valid budget name (letters, digits and _ . : / -, "
                                          "starting with a letter or digit, at most 128 characters)")
    selector = errs.run(_selector, doc, path + ("selector",), m.get("selector")) or ()
    btz = tz
    if "timezone" in m:
        btz = errs.run(_tz, doc, path + ("timezone",), m["timezone"]) or tz
    thresholds = defaults
    if "thresholds" in m:
        thresholds = errs.run(_thresholds, doc, path + ("thresholds",), m["thresholds"], defaults) or defaults

    if "limits" in m:
        for k in ("period", "limit_usd"):
            if k in m:
                raise doc.error(path + (k,), "use either 'limits' ({daily: .., monthly: ..}) or 'period' with 'limit_usd', not both")
        limits = _period_limits(doc, path + ("limits",), m["limits"], errs)
        if not limits and m["limits"] in (None, {}):
            raise doc.error(path + ("limits",), "needs at least one period, e.g. {daily: 5, monthly: 100}")
        return [(BudgetSpec(name, p, selector, lim, thresholds, btz), path + ("limits", p)) for p, lim in limits.items()]

    if "period" not in m:
        raise doc.error(path, f"budget {name!r} needs 'period' and 'limit_usd', or 'limits'")
    if "limit_usd" not in m:
        raise doc.error(path, f"budget {name!r} needs 'limit_usd'")
    limit = _limit(doc, path + ("limit_usd",), m["limit_usd"])
    period = m["period"]
    fixed = None
    if isinstance(period, dict):
        rng = loader.expect_mapping(doc, path + ("period",), period, ("start", "end"))
        for k in ("start", "end"):
            if k not in rng:
                raise doc.error(path + ("period",), f"a fixed period needs '{k}' (e.g. {{start: 2026-11-01, end: 2026-12-01}})")
        start = _instant(doc, path + ("period", "start"), rng["start"], btz)
        end = _instant(doc, path + ("period", "end"), rng["end"], btz)
        if not start < end:
            raise doc.error(path + ("period", "end"), f"must be after start ({rng['start']} >= {rng['end']})")
        fixed, period = (start, end), FIXED
    elif period not in PERIODS:
        raise doc.error(path + ("period",), f"unknown period {period!r} (expected one of {', '.join(PERIODS)}, "
                                            "or {start: DATE, end: DATE})")
    return [(BudgetSpec(name, period, selector, limit, thresholds, btz, fixed), path + ("period",))]


def loads_budgets(text: str, file: str | None = "budgets.yaml", env: Mapping[str, str] | None = None) -> BudgetConfig:
    return budgets_from_doc(loader.loads(text, file), env)


def load_budgets(path: str | None, env: Mapping[str, str] | None = None) -> BudgetConfig:
    """Load and validate budgets.yaml. ``path`` None (or a missing file) means no budgets
    from a file; the environment variables still apply. ``env`` None means os.environ."""
    if path is None or not os.path.exists(path):
        return budgets_from_doc(Doc(path if path else None, {}), env)
    return budgets_from_doc(loader.load(path), env)


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

