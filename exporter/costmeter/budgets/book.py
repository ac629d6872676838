"""The budget book: spend per budget and period at run time, status, forecast and enforcement.

Layout. Every (period, timezone) in use (and every fixed range) is one *track*:
its current bounds ``[start, end)``, the end of the next period, and the spend
of the current and the next period per label key ``(provider, model, tenant,
endpoint)``. The named budgets of budgets.yaml sit on their track with their
own running spend. Budgets made from ``tenant_defaults`` are not objects: a
default track keeps one running sum per tenant (``tenant -> USD``), and limit,
thresholds and bounds are shared by every tenant. So:

* ``observe`` costs O(tracks + matching named budgets), whatever the number of
  tenants: a first event of a new tenant is one dict insert per default period.
  The named budgets a key matches are cached per key, projected on the labels
  that some selector uses; the cache is bounded and evicts its oldest entry (a
  miss costs one pass over the named budgets, not over tenants).
* a period roll swaps the next period's dicts in: O(1) per track.
* ``tick`` handles only budgets queued by ``observe`` when they crossed a
  threshold, and rolls periods: it does not scan every budget.
* ``snapshot_delta``/``load_state`` persist the per-key sums with the exporter's
  snapshot, as rows changed since the last one (``stored.py``; ``state`` is the
  whole book as JSON, the older format, which still loads); a restart replays
  only the events after it, so restoring does not read the ledger (it does, once
  per track, only for a track the snapshot does not have: a new period or
  timezone, or a first start on an old ledger).
* ``begin_reconfigure``/``finish_reconfigure`` rebuild the budgets for a new
  budgets.yaml from a copy of the per-key sums, off the lock; events observed
  meanwhile are journaled and applied to the new state before it is swapped in.
* reading a ``tenant:<t>`` budget of a tenant never seen answers with the
  tenant defaults at zero spend and stores nothing.

An event counts toward a budget only if its timestamp lies in the budget's
current period ``[start, end)``; one that lies in the *next* period (the
clock passed midnight but ``tick`` has not run yet) is held for that period
and becomes its opening spend when the period rolls. Older events are not
counted.

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

import gc
import math
import threading
from contextlib import contextmanager
import time
from dataclasses import dataclass
from functools import lru_cache
from operator import itemgetter
from typing import Callable, Iterable
from zoneinfo import ZoneInfo

from costmeter.events import iso
from costmeter.budgets.governance import GovernanceLog
from costmeter.budgets.periods import FIXED, period_bounds
from costmeter.budgets import stored as _stored

from costmeter.budgets.config import (LEVELS, STATUSES, TENANT_PREFIX, SELECTOR_KEYS, BudgetConfig, BudgetSpec,
                                      Thresholds, PERIOD_ORDER, MAX_ROUTES, DECISION_LOG_INTERVAL)

__all__ = ["BudgetBook", "BudgetStatus"]

STATE_VERSION = 1
_iso = lru_cache(maxsize=4096)(iso)     # period bounds repeat across thousands of budgets


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
            "period_start": _iso(self.period_start), "period_end": _iso(self.period_end),
            "daily_burn_rate_usd": self.daily_burn_rate_usd, "forecast_usd": self.forecast_usd,
            "projected_exhaustion": None if self.projected_exhaustion is None else iso(self.projected_exhaustion),
            "status": self.status,
        }


def _level(spend: float, limit: float, t: Thresholds) -> int:
    if spend >= limit * t.exceeded:
        return 3
    if spend >= limit * t.critical:
        return 2
    if spend >= limit * t.warning:
        return 1
    return 0


def _alert_at(limit: float, t: Thresholds, fired: int) -> float:
    """Spend at which the next level after ``fired`` is reached (inf when all are)."""
    return (limit * t.warning, limit * t.critical, limit * t.exceeded, math.inf)[fired]


@contextmanager
def _no_gc():
    """Pause the cyclic garbage collector while building many short-lived containers: with
    100k budgets its repeated passes over a large heap made listing them superlinear."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


def _order(r: tuple) -> tuple:
    return (r[0], PERIOD_ORDER[r[1]])


def _figures(name, period, selector, limit, t: Thresholds, tdict, tz, start, end, rows, now) -> list[tuple]:
    """Status figures of budgets sharing a period, limit and thresholds: ``rows`` are
    (tenant, spend) for tenant defaults (``name`` None) or ((None, spend),) for a named budget."""
    length = end - start
    floor = min(0.1 * length, 86400.0)
    elapsed = min(max(now - start, 0.0), length)
    denom = max(elapsed, floor) if elapsed > 0 else math.inf      # rate 0 before the period starts
    remaining = max(end - max(now, start), 0.0)
    base = max(now, start)
    warn, crit, exc = limit * t.warning, limit * t.critical, limit * t.exceeded
    out = []
    for tenant, sp in rows:
        rate = sp / denom                                   # USD per second
        if sp >= limit:
            exhaustion = now
        elif rate > 0:
            x = base + (limit - sp) / rate
            exhaustion = x if x < end else None
        else:
            exhaustion = None
        lvl = 3 if sp >= exc else 2 if sp >= crit else 1 if sp >= warn else 0
        out.append((name if tenant is None else TENANT_PREFIX + tenant, period,
                    selector if tenant is None else {"tenant": tenant}, limit, t, tdict, tz, start, end,
                    sp, rate, sp + rate * remaining, exhaustion, lvl))
    return out


def _to_status(r: tuple) -> BudgetStatus:
    name, period, selector, limit, t, tdict, tz, start, end, sp, rate, forecast, exhaustion, lvl = r
    return BudgetStatus(name=name, period=period, selector=dict(selector), limit_usd=limit, spend_usd=sp,
                        utilization_ratio=sp / limit, thresholds=dict(tdict), period_start=start, period_end=end,
                        daily_burn_rate_usd=rate * 86400.0, forecast_usd=forecast,
                        projected_exhaustion=exhaustion, status=STATUSES[lvl], timezone=tz)


def _to_dict(r: tuple) -> dict:
    name, period, selector, limit, t, tdict, tz, start, end, sp, rate, forecast, exhaustion, lvl = r
    return {"name": name, "period": period, "selector": selector, "timezone": tz,
            "limit_usd": limit, "spend_usd": sp, "utilization_ratio": sp / limit, "thresholds": tdict,
            "period_start": _iso(start), "period_end": _iso(end), "daily_burn_rate_usd": rate * 86400.0,
            "forecast_usd": forecast,
            "projected_exhaustion": None if exhaustion is None else iso(exhaustion), "status": STATUSES[lvl]}


def _now() -> float:
    # time.time is looked up per call: freezegun swaps the module attribute, not a bound reference.
    return time.time()


SumsFn = Callable[[float, float], Iterable[tuple[str, str, str, str, float]]]


# ---- accounting ------------------------------------------------------------------

class _Track:
    """One period in one timezone (or one fixed range): bounds, and spend per label key."""
    __slots__ = ("period", "tzname", "tz", "fixed", "start", "end", "next_end", "cur", "nxt",
                 "named", "tlimit", "town", "twarn", "tcur", "tnxt", "tfired", "tqueued", "sname", "dcur", "dnxt")

    def __init__(self, period: str, tzname: str, fixed: tuple[float, float] | None, now: float):
        self.period, self.tzname, self.fixed = period, tzname, fixed
        self.tz = ZoneInfo(tzname)
        self.cur: dict[tuple, float] = {}        # label key -> spend in [start, end)
        self.nxt: dict[tuple, float] = {}        # label key -> spend in [end, next_end)
        self.named: list[_Instance] = []
        self.tlimit: float | None = None         # tenant_defaults limit for this period, if any
        self.town: frozenset = frozenset()       # tenants with their own budget for this period
        self.twarn = math.inf
        self.tcur: dict[str, float] = {}         # tenant -> spend (tenant-default budgets only)
        self.tnxt: dict[str, float] = {}
        self.tfired: dict[str, int] = {}
        self.tqueued: set[str] = set()
        self.sname = _stored.track_name(period, tzname, fixed)     # its name in the snapshot's table
        # the entries of cur and nxt changed since the last snapshot (budgets/stored.py): kept
        # as they are written, so a snapshot takes them by swapping dicts, not by copying
        self.dcur: dict[tuple, float] = {}
        self.dnxt: dict[tuple, float] = {}
        self._set_bounds(now)

    @property
    def ident(self) -> tuple:
        return (self.period, self.tzname, self.fixed)

    def _set_bounds(self, now: float) -> None:
        self.start, self.end = period_bounds(self.period, self.tz, now, self.fixed)
        self.next_end = self.end if self.period == FIXED else period_bounds(self.period, self.tz, self.end)[1]

    def roll(self, now: float) -> bool:
        """Move to the period holding ``now``; what was held for it becomes its opening spend."""
        if now < self.end or self.period == FIXED:
            return False
        carry = now < self.next_end
        self._set_bounds(now)
        self.cur, self.nxt = (self.nxt if carry else {}), {}
        self.dcur, self.dnxt = (self.dnxt if carry else {}), {}
        self.tcur, self.tnxt, self.tfired, self.tqueued = (self.tnxt if carry else {}), {}, {}, set()
        for i in self.named:
            i.spend, i.next_spend, i.fired = (i.next_spend if carry else 0.0), 0.0, 0
            i.alert_at = _alert_at(i.spec.limit_usd, i.spec.thresholds, 0)
        return True

    def load(self, saved: dict | None, sums: SumsFn | None, now: float) -> None:
        """Spend per key from a saved track (rolled to ``now``) or else from the ledger."""
        if saved is not None:
            self.start, self.end, self.next_end = saved["start"], saved["end"], saved["next_end"]
            self.cur = {tuple(r[:4]): float(r[4]) for r in saved["cur"]}
            self.nxt = {tuple(r[:4]): float(r[4]) for r in saved["nxt"]}
            self.roll(now)
        elif sums is not None:
            self.cur = {tuple(r[:4]): float(r[4]) for r in sums(self.start, self.end)}
            if self.next_end > self.end:
                self.nxt = {tuple(r[:4]): float(r[4]) for r in sums(self.end, self.next_end)}

    def save(self) -> dict:
        return {"period": self.period, "tz": self.tzname, "fixed": self.fixed, "start": self.start,
                "end": self.end, "next_end": self.next_end,
                "cur": [k + (v,) for k, v in self.cur.items()], "nxt": [k + (v,) for k, v in self.nxt.items()]}


class _Instance:
    """A named budget (from budgets.yaml) for one period: its running spend on its track."""
    __slots__ = ("spec", "track", "spend", "next_spend", "fired", "alert_at", "selector", "thresholds")

    def __init__(self, spec: BudgetSpec, track: _Track):
        self.spec, self.track = spec, track
        self.spend = self.next_spend = 0.0
        self.fired = 0                      # highest level index (1..3) already logged this period
        self.alert_at = _alert_at(spec.limit_usd, spec.thresholds, 0)
        self.selector = dict(spec.selector)
        self.thresholds = spec.thresholds.as_dict()

    @property
    def ident(self) -> tuple:
        s = self.spec
        return (s.name, s.period, s.timezone, s.selector, s.fixed)

    def level(self) -> int:
        return _level(self.spend, self.spec.limit_usd, self.spec.thresholds)

    def aggregate(self) -> None:
        """Spend from the track's per-key sums (a budget new to this state)."""
        m = self.spec.matches
        tr = self.track
        self.spend = sum(v for k, v in tr.cur.items() if m(k))
        self.next_spend = sum(v for k, v in tr.nxt.items() if m(k))


def _track_key(period: str, tz: str, fixed) -> tuple:
    return (period, tz, None if period != FIXED else tuple(fixed))


class _State:
    """Everything a BudgetBook computes for one BudgetConfig; swapped whole on reload."""

    def __init__(self, config: BudgetConfig, now: float):
        self.config = config
        self.tracks: dict[tuple, _Track] = {}
        self.named: list[_Instance] = []
        for spec in config.budgets:
            tr = self._track(spec.period, spec.timezone, spec.fixed, now)
            inst = _Instance(spec, tr)
            tr.named.append(inst)
            self.named.append(inst)
        self.defaults: list[_Track] = []
        thresholds = config.thresholds
        for p, limit in sorted(config.tenant_defaults.items(), key=lambda kv: PERIOD_ORDER[kv[0]]):
            tr = self._track(p, config.timezone, None, now)
            tr.tlimit, tr.twarn = limit, limit * thresholds.warning
            own = {b.name[len(TENANT_PREFIX):] for b in config.budgets
                   if b.period == p and b.name.startswith(TENANT_PREFIX)}
            own |= {b.selector[0][1] for b in config.budgets
                    if b.period == p and len(b.selector) == 1 and b.selector[0][0] == "tenant"}
            tr.town = frozenset(own)
            self.defaults.append(tr)
        self.track_list = list(self.tracks.values())
        self.tenants: set[str] = set()
        self.pending: list = []                 # named instances / (track, tenant) past a threshold
        used = sorted({SELECTOR_KEYS.index(k) for s in config.budgets for k, _ in s.selector})
        self.project = itemgetter(*used) if used else None
        # budgets with no selector match every event (a billing_source budget matches none)
        self.all_named = [i for i in self.named if i.spec.matches((None, None, None, None))]
        self.routes: dict = {}
        self.next_roll = self._min_end()
        # Incremental snapshots (budgets/stored.py): the tracks whose rows the snapshot
        # table holds (None: it cannot be trusted, the next snapshot writes the whole book).
        self.stored: set[str] | None = None

    def _track(self, period, tz, fixed, now) -> _Track:
        key = _track_key(period, tz, fixed)
        tr = self.tracks.get(key)
        if tr is None:
            tr = self.tracks[key] = _Track(period, tz, key[2], now)
        return tr

    def _min_end(self) -> float:
        ends = [t.end for t in self.track_list if t.period != FIXED]
        return min(ends) if ends else math.inf

    # -- hot path (caller holds the book's lock) ---------------------------------------
    def route(self, key: tuple, cache: bool = True) -> list[_Instance]:
        if self.project is None:
            return self.all_named
        rk = self.project(key)
        insts = self.routes.get(rk)
        if insts is None:
            insts = [i for i in self.named if i.spec.matches(key)]
            if cache:
                if len(self.routes) >= MAX_ROUTES:
                    del self.routes[next(iter(self.routes))]     # oldest entry; no cliff
                self.routes[rk] = insts
        return insts

    def observe(self, key: tuple, cost: float, ts: float) -> None:
        tenant = key[2]
        seen = False
        for tr in self.track_list:
            if ts < tr.start:
                continue
            if ts < tr.end:
                d, ch = tr.cur, tr.dcur
                current = True
            elif ts < tr.next_end:
                d, ch = tr.nxt, tr.dnxt
                current = False
            else:
                continue
            seen = True
            ch[key] = d[key] = d.get(key, 0.0) + cost
            if tr.tlimit is not None and tenant not in tr.town:
                if current:
                    sp = tr.tcur[tenant] = tr.tcur.get(tenant, 0.0) + cost
                    if sp >= tr.twarn and tenant not in tr.tqueued:
                        tr.tqueued.add(tenant)
                        self.pending.append((tr, tenant))
                else:
                    tr.tnxt[tenant] = tr.tnxt.get(tenant, 0.0) + cost
        if seen and self.defaults and tenant is not None:
            self.tenants.add(tenant)
        for i in self.route(key):
            tr = i.track
            if tr.start <= ts < tr.end:
                i.spend += cost
                if i.spend >= i.alert_at:
                    i.alert_at = math.inf          # queued once; tick sets the next level
                    self.pending.append(i)
            elif tr.end <= ts < tr.next_end:
                i.next_spend += cost

    def roll(self, now: float) -> None:
        if now < self.next_roll:
            return
        for tr in self.track_list:
            if tr.roll(now):
                self.queue_track(tr)
        self.next_roll = self._min_end()

    def queue_track(self, tr: _Track) -> None:
        """Queue every budget on a track for a threshold check (after a roll or a load)."""
        for i in tr.named:
            if i.level() > i.fired:
                i.alert_at = math.inf
                self.pending.append(i)
        if tr.tlimit is not None:
            for t, sp in tr.tcur.items():
                if sp >= tr.twarn and t not in tr.tqueued:
                    tr.tqueued.add(t)
                    self.pending.append((tr, t))

    # -- persistence ---------------------------------------------------------------
    def load(self, saved: dict | None, sums: SumsFn | None, now: float) -> None:
        """Fill from a saved state (see BudgetBook.state) and, for what it lacks, the ledger."""
        saved = saved if saved and saved.get("version") == STATE_VERSION and "tracks" in saved else None
        tracks = {}
        named = {}
        if saved is not None:
            for t in saved["tracks"]:
                tracks[_track_key(t["period"], t["tz"], t["fixed"])] = t
            for n in saved["named"]:
                sel = tuple(tuple(x) for x in n["selector"])
                fixed = tuple(n["fixed"]) if n["fixed"] is not None else None
                named[(n["name"], n["period"], n["tz"], sel, fixed, n["start"])] = n
        for key, tr in self.tracks.items():
            tr.load(tracks.get(key), sums, now)
        for i in self.named:
            n = named.get(i.ident + (i.track.start,))
            if n is not None:
                i.spend, i.next_spend, i.fired = float(n["spend"]), float(n["next_spend"]), int(n["fired"])
                i.fired = min(i.fired, i.level())
                i.alert_at = _alert_at(i.spec.limit_usd, i.spec.thresholds, i.fired)
            else:
                i.aggregate()
        if self.defaults:
            tenants = self.tenants
            for tr in self.track_list:
                tenants.update(k[2] for k in tr.cur)
                tenants.update(k[2] for k in tr.nxt)
            tenants.discard(None)
            for tr in self.defaults:
                for src, dst in ((tr.cur, tr.tcur), (tr.nxt, tr.tnxt)):
                    for k, v in src.items():
                        t = k[2]
                        if t not in tr.town:
                            dst[t] = dst.get(t, 0.0) + v
            fired = saved.get("tenant_fired", {}) if saved is not None else {}
            for tr in self.defaults:
                f = fired.get(f"{tr.period}/{tr.tzname}/{tr.start!r}")
                if f:
                    tr.tfired = {t: min(int(lvl), _level(tr.tcur.get(t, 0.0), tr.tlimit, self.config.thresholds))
                                 for t, lvl in f.items()}
        self.next_roll = self._min_end()
        for tr in self.track_list:
            self.queue_track(tr)

    def save(self) -> dict:
        return {"version": STATE_VERSION,
                "tracks": [tr.save() for tr in self.track_list],
                "named": [{"name": i.spec.name, "period": i.spec.period, "tz": i.spec.timezone,
                           "selector": i.spec.selector, "fixed": i.spec.fixed, "start": i.track.start,
                           "spend": i.spend, "next_spend": i.next_spend, "fired": i.fired} for i in self.named],
                "tenant_fired": {f"{tr.period}/{tr.tzname}/{tr.start!r}": dict(tr.tfired)
                                 for tr in self.defaults if tr.tfired}}

    def delta(self) -> _stored.SumsDelta:
        """The snapshot's share of the book since the last one (caller holds the lock): each
        track's dicts of changed sums (taken, empty ones swapped in), or a copy of a whole
        track the table lacks, or of everything when it cannot be trusted. Rows and JSON
        are built later, outside the lock."""
        stored = self.stored
        tracks = []
        names = set()
        for tr in self.track_list:
            names.add(tr.sname)
            whole = stored is None or tr.sname not in stored
            if whole:                   # C-level dict copies
                cur, nxt = dict(tr.cur), dict(tr.nxt)
            else:                       # what changed since the last snapshot: taken, not copied
                cur, nxt = tr.dcur, tr.dnxt
            tr.dcur, tr.dnxt = {}, {}
            tracks.append((tr.sname, tr.period, tr.tzname, tr.fixed, tr.start, tr.end, tr.next_end, whole, cur, nxt))
        drop = sorted(stored - names) if stored is not None else []
        out = _stored.SumsDelta(stored is None, tracks,
                                [(i, i.track.start, i.spend, i.next_spend, i.fired) for i in self.named],
                                [(tr.period, tr.tzname, tr.start, dict(tr.tfired)) for tr in self.defaults if tr.tfired],
                                drop)
        self.stored = names
        return out

    def copy(self) -> dict:
        """A copy of what ``save`` needs, cheap enough to take under the lock (dict copies)."""
        return {"tracks": [(tr, tr.start, tr.end, tr.next_end, dict(tr.cur), dict(tr.nxt)) for tr in self.track_list],
                "named": [(i, i.track.start, i.spend, i.next_spend, i.fired) for i in self.named],
                "tenant_fired": [(tr, tr.start, dict(tr.tfired)) for tr in self.defaults if tr.tfired]}


def _saved_from_copy(c: dict) -> dict:
    """``_State.copy`` turned into the JSON-ready form of ``_State.save`` (outside the lock)."""
    return {"version": STATE_VERSION,
            "tracks": [{"period": tr.period, "tz": tr.tzname, "fixed": tr.fixed, "start": s, "end": e,
                        "next_end": ne, "cur": [k + (v,) for k, v in cur.items()],
                        "nxt": [k + (v,) for k, v in nxt.items()]}
                       for tr, s, e, ne, cur, nxt in c["tracks"]],
            "named": [{"name": i.spec.name, "period": i.spec.period, "tz": i.spec.timezone,
                       "selector": i.spec.selector, "fixed": i.spec.fixed, "start": start,
                       "spend": sp, "next_spend": nsp, "fired": f} for i, start, sp, nsp, f in c["named"]],
            "tenant_fired": {f"{tr.period}/{tr.tzname}/{start!r}": f for tr, start, f in c["tenant_fired"]}}


class Reconfigure:
    """A reload in progress: begun under the caller's ingest lock, finished off it."""

    def __init__(self, config: BudgetConfig, copy: dict):
        self.config, self.copy = config, copy


class BudgetBook:
    """Spend per budget and period, fed by ``observe`` and read by the scrape, the API and the SDK.

    Thread-safe: one lock guards all spend, held briefly; statuses are computed from
    copies outside it; the governance log is written outside it.
    """

    def __init__(self, config: BudgetConfig, governance: "GovernanceLog | None" = None,
                 clock: Callable[[], float] | None = None):
        self.config = config
        self.governance = governance
        # Every reading of the time goes through self._clock (default: time.time looked up
        # per call), so an injected or frozen clock decides every period, first ones included.
        self._clock = clock if clock is not None else _now
        self._lock = threading.Lock()
        self._reload_lock = threading.Lock()
        self._st = _State(config, self._clock())
        self._journal: list | None = None         # events observed while a reload is being built
        self._decisions: dict[tuple, list] = {}   # (kind, budget, period, tenant) -> [last_logged, suppressed]

    # -- hot path --------------------------------------------------------------------

    def observe(self, provider: str, model: str, tenant: str, endpoint: str, cost_usd: float, ts: float) -> None:
        """Add one event's cost to every budget it falls in (by label and by timestamp)."""
        key = (provider, model, tenant, endpoint)
        with self._lock:
            self._st.observe(key, cost_usd, ts)
            if self._journal is not None:
                self._journal.append((key, cost_usd, ts))

    def observe_many(self, events: Iterable[tuple[tuple, float, float]]) -> None:
        """observe() for each ``((provider, model, tenant, endpoint), cost_usd, ts)``, under one
        taking of the lock (a batch of ingested events)."""
        with self._lock:
            observe, journal = self._st.observe, self._journal
            for key, cost, ts in events:
                observe(key, cost, ts)
                if journal is not None:
                    journal.append((key, cost, ts))

    # -- reload ----------------------------------------------------------------------

    def reconfigure(self, config: BudgetConfig, sums: SumsFn | None = None) -> None:
        """Replace the budgets (budgets.yaml was reloaded). See begin/finish_reconfigure."""
        self.finish_reconfigure(self.begin_reconfigure(config), sums)

    def begin_reconfigure(self, config: BudgetConfig) -> Reconfigure:
        """Copy the per-key sums and start journaling events. Call it where the ledger and
        the book agree (the exporter holds its ingest lock, a few ms), then
        ``finish_reconfigure`` without that lock. One reload at a time."""
        self._reload_lock.acquire()
        try:
            with self._lock:
                copy = self._st.copy()
                self._journal = []
        except BaseException:
            self._reload_lock.release()
            raise
        return Reconfigure(config, copy)

    def finish_reconfigure(self, rc: Reconfigure, sums: SumsFn | None = None) -> None:
        """Build the new budgets from the copy (and ``sums`` for periods or timezones the old
        configuration did not track: it must count ledger events up to the moment
        ``begin_reconfigure`` ran), apply the events journaled since, and swap.

        Spend of a budget unchanged by the reload carries over; a new one is summed from the
        per-key sums of its period. Levels already logged for a period stay logged."""
        try:
            now = self._clock()
            st = _State(rc.config, now)
            st.load(_saved_from_copy(rc.copy), sums, now)
            with self._lock:
                for key, cost, ts in self._journal or ():
                    st.observe(key, cost, ts)
                st.roll(self._clock())
                st.stored = None            # the next snapshot writes the whole book
                self._st, self.config, self._journal = st, rc.config, None
        finally:
            with self._lock:
                self._journal = None
            self._reload_lock.release()

    # -- periods -------------------------------------------------------------------

    def tick(self, now: float | None = None) -> None:
        """Roll periods whose end has passed and log thresholds crossed since the last tick.

        Each level (warning, critical, exceeded) is logged once per budget and period.
        After a restart, levels already reached are logged again once (unless the
        snapshot recorded them). Costs O(budgets that crossed a threshold), not O(budgets).
        """
        now = self._clock() if now is None else now
        crossings = []
        with self._lock:
            st = self._st
            st.roll(now)
            pending, st.pending = st.pending, []
            th = st.config.thresholds
            for x in pending:
                if isinstance(x, _Instance):
                    s, lvl = x.spec, x.level()
                    for k in range(x.fired + 1, lvl + 1):
                        crossings.append((s.name, s.period, x.selector, s.limit_usd, s.thresholds, k, x.spend,
                                          x.track.start, x.track.end))
                    x.fired = max(x.fired, lvl)
                    x.alert_at = _alert_at(s.limit_usd, s.thresholds, x.fired)
                else:
                    tr, t = x
                    tr.tqueued.discard(t)
                    sp = tr.tcur.get(t, 0.0)
                    lvl, fired = _level(sp, tr.tlimit, th), tr.tfired.get(t, 0)
                    for k in range(fired + 1, lvl + 1):
                        crossings.append((TENANT_PREFIX + t, tr.period, {"tenant": t}, tr.tlimit, th, k, sp,
                                          tr.start, tr.end))
                    if lvl > fired:
                        tr.tfired[t] = lvl
        if self.governance is not None:
            for name, period, selector, limit, t, k, spend, start, end in crossings:
                ratio = getattr(t, LEVELS[k - 1])
                self.governance.append(
                    "threshold_crossed", budget=name, period=period, selector=dict(selector),
                    level=LEVELS[k - 1], threshold_ratio=ratio, spend_usd=round(spend, 6),
                    limit_usd=limit, utilization_ratio=round(spend / limit, 6),
                    period_start=_iso(start), period_end=_iso(end))

    def set_external_spend(self, name: str, period: str, period_start: float, spend_usd: float) -> bool:
        """Set the spend of a budget fed from outside the ledger (``billing_source``): its
        current period must start at ``period_start``. ``tick`` logs the thresholds it crosses.
        False if no such budget is in that period (the value is then for another period)."""
        now = self._clock()
        with self._lock:
            st = self._st
            st.roll(now)
            for i in st.named:
                if i.spec.name == name and i.spec.period == period and i.track.start == period_start:
                    i.spend = float(spend_usd)
                    if i.spend >= i.alert_at:
                        i.alert_at = math.inf
                        st.pending.append(i)
                    return True
        return False

    # -- persistence -------------------------------------------------------------------

    def state(self) -> dict:
        """JSON-ready spend per track and key, as of now (the lock is held only to copy dicts).

        The exporter saves it with its snapshot, at the ledger sequence number it has applied."""
        with self._lock:
            c = self._st.copy()
        return _saved_from_copy(c)

    def load_state(self, saved: dict | None, sums: SumsFn | None = None, rows=None) -> None:
        """Restore from ``state()`` output, or from ``snapshot_delta().state()`` with ``rows``
        (the snapshot table's rows, see budgets/stored.py); tracks it lacks are read with
        ``sums(start, end)`` (priced spend per key for ``start <= ts < end``, as of the same
        point as ``saved``). Call before ingest starts; then replay the ledger after that
        point through observe."""
        now = self._clock()
        st = _State(self.config, now)
        stored = None
        if saved and saved.get("version") == _stored.VERSION:
            if rows is None:
                saved = None                    # the JSON part alone does not hold the sums
            else:
                stored = {_stored.track_name(t["period"], t["tz"], t["fixed"]) for t in saved["tracks"]}
                saved = _stored.inflate(saved, rows)
        st.load(saved, sums, now)
        st.stored = stored
        with self._lock:
            self._st = st

    def snapshot_delta(self) -> _stored.SumsDelta:
        """What the next snapshot writes of the book (budgets/stored.py). Call it where the
        ledger and the book agree (under the exporter's ingest lock): it takes only the
        sums changed since the last call (O(tracks)). If that snapshot is not saved, call
        ``snapshot_failed``."""
        with self._lock:
            return self._st.delta()

    def snapshot_failed(self) -> None:
        """The last ``snapshot_delta`` was not saved: the next one writes the whole book."""
        with self._lock:
            self._st.stored = None

    def restore(self, sums: SumsFn) -> None:
        """Recompute every budget's current-period spend from the ledger (no saved state)."""
        self.load_state(None, sums)

    # -- reading -------------------------------------------------------------------

    _ALL = object()

    def _rows(self, now: float, name: str | None = None, tenants=_ALL) -> list[tuple]:
        """Figures of the named budgets (all, or those called ``name``) and of the tenant
        defaults (of every tenant seen, of one tenant ``tenants``, or none for None), as
        tuples ``(name, period, selector, limit, Thresholds, thresholds dict, timezone, start,
        end, spend, rate per second, forecast, exhaustion, level)``. Only raw numbers are
        copied under the lock; the rest is computed outside it, per period where it can."""
        with self._lock:
            st = self._st
            st.roll(now)
            named = [(i, i.track.start, i.track.end, i.spend) for i in st.named
                     if name is None or i.spec.name == name]
            defaults = []
            if tenants is not None:
                for tr in st.defaults:
                    if tenants is not BudgetBook._ALL:
                        rows = [] if tenants in tr.town else [(tenants, tr.tcur.get(tenants, 0.0))]
                    elif len(tr.tcur) == len(st.tenants):      # every tenant seen has spend here
                        rows = list(tr.tcur.items())
                    else:
                        rows = [(t, tr.tcur.get(t, 0.0)) for t in st.tenants if t not in tr.town]
                    defaults.append((tr.period, tr.tlimit, tr.start, tr.end, rows))
            cfg = st.config
        out: list[tuple] = []
        for i, start, end, sp in named:
            s = i.spec
            out.extend(_figures(s.name, s.period, i.selector, s.limit_usd, s.thresholds, i.thresholds,
                                s.timezone, start, end, ((None, sp),), now))
        t, tz = cfg.thresholds, cfg.timezone
        td = t.as_dict()
        for period, limit, start, end, rows in defaults:
            out.extend(_figures(None, period, None, limit, t, td, tz, start, end, rows, now))
        out.sort(key=_order)
        return out

    def statuses(self, now: float | None = None) -> list[BudgetStatus]:
        """Every budget instance (named, and tenant defaults of every tenant seen), by name and period."""
        now = self._clock() if now is None else now
        with _no_gc():
            return [_to_status(r) for r in self._rows(now)]

    def status_dicts(self, now: float | None = None) -> list[dict]:
        """``[s.to_dict() for s in statuses()]``, built directly (GET /v1/budgets with many
        tenants); for serialising only: budgets of one period share their sub-dicts."""
        now = self._clock() if now is None else now
        with _no_gc():
            return [_to_dict(r) for r in self._rows(now)]

    def gauges(self, now: float | None = None) -> list[tuple]:
        """For /metrics: ``(name, period, selector, limit, spend, forecast, start, end, thresholds
        dict)`` of every budget instance, by name and period."""
        now = self._clock() if now is None else now
        with _no_gc():
            return [(r[0], r[1], r[2], r[3], r[9], r[11], r[7], r[8], r[5]) for r in self._rows(now)]

    def get(self, name: str, now: float | None = None) -> list[BudgetStatus]:
        """All periods of budget ``name`` ([] if unknown). ``tenant:<t>`` of a tenant not seen
        yet answers with the tenant defaults at zero spend, and stores nothing."""
        now = self._clock() if now is None else now
        tenant = name[len(TENANT_PREFIX):] if name.startswith(TENANT_PREFIX) else None
        return [_to_status(r) for r in self._rows(now, name=name, tenants=tenant)]

    def matching(self, provider: str | None, model: str | None, tenant: str | None,
                 endpoint: str | None = None, now: float | None = None) -> list[BudgetStatus]:
        """The budgets a call with these labels would count toward. A None label is unknown:
        budgets that select on it are left out. A tenant not seen yet gets the tenant defaults
        (at zero spend; nothing is stored for it)."""
        now = self._clock() if now is None else now
        key = (provider, model, tenant, endpoint)
        with self._lock:
            st = self._st
            st.roll(now)
            named = [(i, i.track.start, i.track.end, i.spend) for i in st.route(key, cache=False)]
            defaults = [(tr.period, tr.tlimit, tr.start, tr.end, tr.tcur.get(tenant, 0.0))
                        for tr in st.defaults if tenant is not None and tenant not in tr.town]
            cfg = st.config
        rows = []
        for i, start, end, sp in named:
            sp_ = i.spec
            rows += _figures(sp_.name, sp_.period, i.selector, sp_.limit_usd, sp_.thresholds, i.thresholds,
                             sp_.timezone, start, end, ((None, sp),), now)
        t = cfg.thresholds
        for p, lim, start, end, sp in defaults:
            rows += _figures(None, p, None, lim, t, t.as_dict(), cfg.timezone, start, end, ((tenant, sp),), now)
        rows.sort(key=_order)
        return [_to_status(r) for r in rows]

    def instance_count(self) -> int:
        """Budget instances (named plus tenant defaults of tenants seen)."""
        with self._lock:
            st = self._st
            return len(st.named) + sum(len(st.tenants - tr.town) if tr.town else len(st.tenants)
                                       for tr in st.defaults)

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
