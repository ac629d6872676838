"""budgets.yaml: validated once into a :class:`BudgetConfig` of :class:`BudgetSpec`.

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
"""
from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Mapping
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from costmeter.config import loader
from costmeter.budgets.periods import ALL_PERIODS, FIXED, PERIODS, to_timestamp
from costmeter.config.loader import ConfigError, Doc, ErrorCollector

__all__ = ["Thresholds", "BudgetSpec", "BudgetConfig", "load_budgets", "loads_budgets", "budgets_from_doc",
           "SELECTOR_KEYS", "LEVELS", "STATUSES", "ENV_VARS", "GLOBAL", "TENANT_PREFIX"]

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
BUDGET_KEYS = ("name", "selector", "period", "limit_usd", "limits", "thresholds", "timezone",
               "billing_source", "service")


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
    billing_source: str | None = None         # spend comes from this billing source, not the ledger
    billing_service: str | None = None        # ... only this service of it

    def matches(self, key: tuple) -> bool:
        """key is (provider, model, tenant, endpoint); None never matches a selector value.
        A budget fed by a billing source matches no event: its spend is the bill."""
        if self.billing_source is not None:
            return False
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
    # (budget name, billing source, line) of every billing_source, checked against exporter.yaml
    billing_refs: list[tuple[str, str, int | None]] = field(default_factory=list)

    def tenant_default_specs(self, tenant: str) -> list[BudgetSpec]:
        """The default budgets ``tenant:<name>`` for a tenant, one per default period the
        tenant has no budget of its own for (a budget whose selector is exactly that tenant)."""
        own = {b.period for b in self.budgets
               if b.selector == (("tenant", tenant),) or b.name == TENANT_PREFIX + tenant}
        return [BudgetSpec(TENANT_PREFIX + tenant, p, (("tenant", tenant),), limit,
                           self.thresholds, self.timezone)
                for p, limit in self.tenant_defaults.items() if p not in own]


# ---- configuration -------------------------------------------------------------

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


def _period_limits(doc: Doc, path, value, errs: ErrorCollector) -> dict[str, float]:
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
    errs = ErrorCollector()
    top = errs.run(loader.expect_mapping, doc, (), doc.data, TOP_KEYS)
    if top is None:
        errs.raise_if_any(order=lambda e: (e.file != "environment", e.line or 0))   # file order; env first

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

    errs.raise_if_any(order=lambda e: (e.file != "environment", e.line or 0))   # file order; env first
    refs = [(s.name, s.billing_source, doc.line(seen[(s.name, s.period)][:-1] + ("billing_source",)))
            for s in specs if s.billing_source]
    return BudgetConfig(specs, tenant_defaults, defaults, tz, doc.file, refs)


def _rich_budget(doc: Doc, path, item, defaults: Thresholds, tz: str, errs: ErrorCollector):
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
    if "billing_source" in m or "service" in m:
        return _billing_budget(doc, path, m, name, thresholds)

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


def _billing_budget(doc: Doc, path, m: dict, name: str, thresholds: Thresholds):
    """A budget whose spend is a billing source's month-to-date bill (UTC months)."""
    if "billing_source" not in m:
        raise doc.error(path + ("service",), "service: only applies with billing_source: NAME")
    source = loader.expect_str(doc, path + ("billing_source",), m["billing_source"])
    service = loader.expect_str(doc, path + ("service",), m["service"]) if "service" in m else None
    if "selector" in m:
        raise doc.error(path + ("selector",), "a budget with billing_source takes the bill of that source, not "
                                              "events: remove selector (use service: to narrow it)")
    if "timezone" in m and m["timezone"] != "UTC":
        raise doc.error(path + ("timezone",), "billing months are UTC: remove timezone or set it to UTC")
    if "limits" in m:
        raise doc.error(path + ("limits",), "a budget with billing_source has one monthly limit: "
                                            "use period: monthly and limit_usd")
    if m.get("period") != "monthly":
        raise doc.error(path + ("period",) if "period" in m else path,
                        "a budget with billing_source needs period: monthly (bills are monthly)")
    if "limit_usd" not in m:
        raise doc.error(path, f"budget {name!r} needs 'limit_usd'")
    limit = _limit(doc, path + ("limit_usd",), m["limit_usd"])
    return [(BudgetSpec(name, "monthly", (), limit, thresholds, "UTC", None, source, service), path + ("period",))]


def loads_budgets(text: str, file: str | None = "budgets.yaml", env: Mapping[str, str] | None = None) -> BudgetConfig:
    return budgets_from_doc(loader.loads(text, file), env)


def load_budgets(path: str | None, env: Mapping[str, str] | None = None) -> BudgetConfig:
    """Load and validate budgets.yaml. ``path`` None (or a missing file) means no budgets
    from a file; the environment variables still apply. ``env`` None means os.environ."""
    if path is None or not os.path.exists(path):
        return budgets_from_doc(Doc(path if path else None, {}), env)
    return budgets_from_doc(loader.load(path), env)


