"""Budget enforcement in the SDK: should_deny / should_throttle, reserve then settle.

A call tracked with ``enforce=True`` first *reserves* its estimated maximum
cost (``PricingTable.max_cost`` of the prompt estimate and ``max_tokens``)
against every budget it would count toward, and is refused with
:class:`BudgetExceededError` when, for any of them::

    spend + reserved in flight + settled-but-not-yet-counted + this reservation
        > limit * thresholds["exceeded"]

When the call finishes, the reservation is *settled*: it is replaced by the
real cost, which stays in "settled" until the budget's own spend includes it
(embedded: once the shipper's batch is ingested; shipped: once a
``GET /v1/budgets`` fetch that started after the delivery has answered). So
however many callers race one budget, spend can overshoot the limit only by
what real costs exceed their reservations; with reservations that are upper
bounds it does not overshoot at all.

Budget state comes from the in-process :class:`~costmeter.budgets.book.BudgetBook`
(embedded mode, or direct mode with ``budgets_file``) or from the exporter's
``GET /v1/budgets`` (shipped mode), cached ``budget_cache_seconds``. When the
exporter cannot be asked, the call is allowed and the failure logged (fail
open), unless ``fail_closed=True``.

Throttle: a call while a matching budget is at or over its warning threshold
is logged as a warning and counted (``costmeter_sdk_throttled_calls_total``).
Decisions go to the governance log when the SDK has one (embedded).
"""
from __future__ import annotations

import json
import logging
import threading
import time
from collections import defaultdict
from dataclasses import dataclass
from urllib.parse import quote

log = logging.getLogger("costmeter.sdk.enforcement")

_EPS = 1e-12
_DECISION_LOG_INTERVAL = 60.0


class BudgetExceededError(Exception):
    """A tracked call was refused before the provider was called."""

    def __init__(self, reason: str, *, tenant: str | None = None, budget: str | None = None,
                 period: str | None = None):
        super().__init__(reason)
        self.reason, self.tenant, self.budget, self.period = reason, tenant, budget, period


class BudgetUnavailable(Exception):
    """The exporter's budget state could not be read."""


@dataclass
class _Status:
    name: str
    period: str
    limit_usd: float
    spend_usd: float
    thresholds: dict
    period_end: str = ""
    fetched: float = 0.0          # monotonic time the fetch that produced it started


# ---- sources of budget state ------------------------------------------------------------

class BookSource:
    """An in-process BudgetBook: spend is current as soon as an event is ingested."""
    deferred = False

    def __init__(self, book):
        self.book = book
        self.governance = getattr(book, "governance", None)

    def matching(self, provider, model, tenant, endpoint) -> list:
        return self.book.matching(provider, model, tenant, endpoint)


class RemoteSource:
    """GET /v1/budgets on the exporter, cached ``ttl`` seconds; budgets matched by their selector."""
    deferred = True
    governance = None

    def __init__(self, url: str, token: str | None = None, ttl: float = 2.0, timeout: float = 1.0):
        import requests
        self.base = url.rstrip("/")
        self.ttl = ttl
        self.timeout = min(timeout, 2.0)
        self._requests = requests
        self._session = requests.Session()
        self._session.trust_env = False
        self._headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._all: list[tuple[dict, _Status]] | None = None
        self._at = -1e18
        self._failed_at = -1e18
        self._tenants: dict[str, tuple[float, list[_Status]]] = {}

    def _get(self, path: str):
        try:
            r = self._session.get(self.base + path, headers=self._headers, timeout=self.timeout)
        except self._requests.RequestException as e:
            raise BudgetUnavailable(f"GET {path}: {type(e).__name__}: {e}") from None
        if r.status_code == 404:
            return None
        if r.status_code != 200:
            raise BudgetUnavailable(f"GET {path}: HTTP {r.status_code}")
        try:
            return r.json()
        except ValueError:
            raise BudgetUnavailable(f"GET {path}: not JSON") from None

    @staticmethod
    def _status(d: dict, fetched: float) -> tuple[dict, _Status]:
        return (d.get("selector") or {}, _Status(d["name"], d["period"], float(d["limit_usd"]), float(d["spend_usd"]),
                                                 dict(d.get("thresholds") or {}), d.get("period_end") or "", fetched))

    def refresh(self) -> None:
        now = time.monotonic()
        if now - self._failed_at < self.ttl and self._all is None:
            raise BudgetUnavailable("the exporter's budget state could not be read a moment ago")
        try:
            body = self._get("/v1/budgets")
        except BudgetUnavailable:
            self._failed_at = now
            self._all = None
            raise
        self._all = [self._status(d, now) for d in (body or {}).get("budgets", [])]
        self._at = now
        self._tenants.clear()

    def matching(self, provider, model, tenant, endpoint) -> list:
        now = time.monotonic()
        if self._all is None or now - self._at > self.ttl:
            self.refresh()
        labels = {"provider": provider, "model": model, "tenant": tenant, "endpoint": endpoint}
        out = [s for sel, s in self._all if all(labels.get(k) == v for k, v in sel.items())]
        name = "tenant:" + tenant if tenant else None
        if name and not any(s.name == name for _, s in self._all):
            # tenant defaults (budget "tenant:<t>") apply to every tenant, also ones the exporter has not seen
            hit = self._tenants.get(tenant)
            if hit is None or now - hit[0] > self.ttl:
                body = self._get("/v1/budgets/" + quote(name, safe=":"))
                items = (body.get("periods") or body.get("budgets") or []) if isinstance(body, dict) else []
                hit = self._tenants[tenant] = (now, [self._status(d, now)[1] for d in items])
            out.extend(hit[1])
        return out


# ---- the enforcer ---------------------------------------------------------------------------

class Reservation:
    __slots__ = ("keys", "amount", "tenant")

    def __init__(self, keys: tuple, amount: float, tenant: str):
        self.keys, self.amount, self.tenant = keys, amount, tenant


class Enforcer:
    """In-flight reservations per (budget, period) combined with a source's spend."""

    def __init__(self, source, *, fail_closed: bool = False, deferred: bool | None = None,
                 on_throttle=None, on_deny=None):
        self.source = source
        self.fail_closed = fail_closed
        self.deferred = source.deferred if deferred is None and source is not None else bool(deferred)
        self._lock = threading.Lock()
        self.reserved: dict[tuple, float] = defaultdict(float)    # in flight
        self.unsent: dict[tuple, float] = defaultdict(float)      # settled, not yet in the source's spend
        self._sent: dict[tuple, list] = defaultdict(list)         # deferred: (delivered_at, usd) not yet fetched
        self.on_throttle = on_throttle
        self.on_deny = on_deny
        self.stats = {"denied": 0, "throttled": 0, "unavailable": 0}
        self._logged: dict[tuple, float] = {}

    # -- what is committed against one budget ---------------------------------------------------

    def _committed(self, s) -> float:
        key = (s.name, s.period)
        c = s.spend_usd + self.reserved.get(key, 0.0) + self.unsent.get(key, 0.0)
        sent = self._sent.get(key)
        if sent:
            fetched = getattr(s, "fetched", 0.0)
            keep = [e for e in sent if e[0] >= fetched]
            if len(keep) != len(sent):
                self._sent[key] = keep
            c += sum(e[1] for e in keep)
        return c

    def _statuses(self, tenant, provider, model, endpoint):
        """(statuses, unavailable_reason)."""
        if self.source is None:
            return [], None
        try:
            return self.source.matching(provider, model, tenant, endpoint), None
        except BudgetUnavailable as e:
            return None, str(e)

    def _unavailable(self, reason: str, tenant: str) -> tuple[bool, str]:
        self.stats["unavailable"] += 1
        self._log_once(("unavailable",), logging.WARNING,
                       "costmeter: budget state unavailable (%s); %s", reason,
                       "denying calls (fail_closed)" if self.fail_closed else "allowing calls (fail open)")
        if self.fail_closed:
            return True, f"budget state unavailable and fail_closed is set: {reason}"
        return False, ""

    # -- checks ------------------------------------------------------------------------------------

    def should_deny(self, tenant: str, provider=None, model=None, endpoint=None, extra_usd: float = 0.0,
                    fail_closed: bool | None = None) -> tuple[bool, str]:
        with self._lock:
            sts, err = self._statuses(tenant, provider, model, endpoint)
            if sts is None:
                return self._fail(err, tenant, fail_closed)
            worst = self._over(sts, extra_usd, strict=False)
        if worst is None:
            return False, ""
        return True, self._deny_reason(worst, extra_usd, tenant)

    def should_throttle(self, tenant: str, provider=None, model=None, endpoint=None,
                        fail_closed: bool | None = None) -> tuple[bool, str]:
        with self._lock:
            sts, err = self._statuses(tenant, provider, model, endpoint)
            if sts is None:
                return self._fail(err, tenant, fail_closed)
            hot = self._hot(sts)
        if hot is None:
            return False, ""
        return True, self._throttle_reason(hot)

    def _fail(self, err, tenant, fail_closed):
        fc = self.fail_closed if fail_closed is None else fail_closed
        saved, self.fail_closed = self.fail_closed, fc
        try:
            return self._unavailable(err, tenant)
        finally:
            self.fail_closed = saved

    def _over(self, sts, extra: float, strict: bool):
        worst = None
        for s in sts:
            deny_at = s.limit_usd * s.thresholds.get("exceeded", 1.0)
            c = self._committed(s)
            total = c + extra
            over = total > deny_at + _EPS if strict else total >= deny_at - _EPS
            if over:
                ratio = total / deny_at if deny_at > 0 else float("inf")
                if worst is None or ratio > worst[0]:
                    worst = (ratio, s, c)
        return worst

    def _hot(self, sts):
        hot = None
        for s in sts:
            if s.limit_usd <= 0:
                continue
            u = self._committed(s) / s.limit_usd
            if u >= s.thresholds.get("warning", 0.8) - _EPS and (hot is None or u > hot[0]):
                hot = (u, s)
        return hot

    def _deny_reason(self, worst, extra: float, tenant) -> str:
        _, s, c = worst
        in_flight = c - s.spend_usd
        return (f"budget {s.name} ({s.period}) would exceed its limit: spend ${s.spend_usd:.6f} + in flight "
                f"${in_flight:.6f} + ${extra:.6f} for this call > ${s.limit_usd * s.thresholds.get('exceeded', 1.0):.6f} "
                f"({s.thresholds.get('exceeded', 1.0):.0%} of limit ${s.limit_usd:.2f}); tenant {tenant}")

    @staticmethod
    def _throttle_reason(hot) -> str:
        u, s = hot
        return (f"budget {s.name} ({s.period}) is at {u:.1%} of its ${s.limit_usd:.2f} limit (spend and "
                f"in flight; warning threshold {s.thresholds.get('warning', 0.8):.0%})")

    # -- reserve, settle, delivered -------------------------------------------------------------------

    def reserve(self, tenant: str, provider, model, endpoint, amount: float,
                fail_closed: bool | None = None) -> Reservation | None:
        """Reserve ``amount`` USD against every matching budget, or raise BudgetExceededError."""
        amount = amount or 0.0
        with self._lock:
            sts, err = self._statuses(tenant, provider, model, endpoint)
            if sts is None:
                deny, reason = self._fail(err, tenant, fail_closed)
                if deny:
                    self.stats["denied"] += 1
                    raise BudgetExceededError(reason, tenant=tenant)
                return None
            worst = self._over(sts, amount, strict=True)
            if worst is None:
                hot = self._hot(sts)          # judged like should_throttle(): before this reservation
                keys = tuple((s.name, s.period) for s in sts)
                for k in keys:
                    self.reserved[k] += amount
            else:
                self.stats["denied"] += 1
        if worst is not None:
            reason = self._deny_reason(worst, amount, tenant)
            self._decision("deny", worst[1], tenant, reason, amount)
            if self.on_deny is not None:
                self.on_deny(tenant)
            raise BudgetExceededError(reason, tenant=tenant, budget=worst[1].name, period=worst[1].period)
        if hot is not None:
            self.stats["throttled"] += 1
            reason = self._throttle_reason(hot)
            self._log_once(("throttle", hot[1].name, hot[1].period, tenant), logging.WARNING,
                           "costmeter: throttle: %s (tenant %s)", reason, tenant)
            self._decision("throttle", hot[1], tenant, reason, amount)
            if self.on_throttle is not None:
                self.on_throttle(tenant)
        return Reservation(keys, amount, tenant)

    def settle(self, res: Reservation | None, cost: float | None):
        """Replace the reservation by the real cost; returns the token the shipper hands back on delivery."""
        if res is None:
            return None
        cost = cost or 0.0
        with self._lock:
            for k in res.keys:
                v = self.reserved[k] - res.amount
                self.reserved[k] = v if v > _EPS else 0.0
                if cost:
                    self.unsent[k] += cost
        return (res.keys, cost) if cost and res.keys else None

    def delivered(self, pends) -> None:
        """The events of these settle tokens are now in the exporter's spend (or were dropped)."""
        now = time.monotonic()
        with self._lock:
            for keys, cost in pends:
                for k in keys:
                    v = self.unsent[k] - cost
                    self.unsent[k] = v if v > _EPS else 0.0
                    if self.deferred:
                        self._sent[k].append((now, cost))

    # -- logging ---------------------------------------------------------------------------------------

    def _log_once(self, key: tuple, level: int, msg: str, *args) -> None:
        now = time.monotonic()
        if now - self._logged.get(key, -1e18) >= _DECISION_LOG_INTERVAL:
            self._logged[key] = now
            log.log(level, msg, *args)

    def _decision(self, kind: str, s, tenant: str, reason: str, amount: float) -> None:
        gov = getattr(self.source, "governance", None)
        if gov is None:
            return
        k = ("gov", kind, s.name, s.period, tenant)
        now = time.monotonic()
        if now - self._logged.get(k, -1e18) < _DECISION_LOG_INTERVAL:
            return
        self._logged[k] = now
        try:
            gov.append(kind, budget=s.name, period=s.period, tenant=tenant, spend_usd=round(s.spend_usd, 6),
                       limit_usd=s.limit_usd, reserved_usd=round(amount, 6), reason=reason, source="sdk")
        except Exception:  # noqa: BLE001 - a log write must not fail the call
            log.exception("costmeter: governance log write failed")


def estimate_prompt_tokens(kwargs: dict) -> int:
    """A rough prompt size from the request's text (about 3 characters a token, plus framing)."""
    chars = 0
    n = 0
    for name in ("messages", "input", "prompt", "system", "instructions"):
        v = kwargs.get(name)
        if v is None:
            continue
        stack = [v]
        while stack:
            x = stack.pop()
            if isinstance(x, str):
                chars += len(x)
                n += 1
            elif isinstance(x, dict):
                stack.extend(x.values())
            elif isinstance(x, (list, tuple)):
                stack.extend(x)
    return chars // 3 + 4 * n + 8


def max_output_tokens(kwargs: dict, default: int) -> int:
    for name in ("max_tokens", "max_completion_tokens", "max_output_tokens"):
        v = kwargs.get(name)
        if isinstance(v, int) and v > 0:
            return v
    return default


def _json(o) -> str:
    return json.dumps(o, sort_keys=True)
