"""Billing pulls: what the vendors billed, pulled in the background and cached for the scrape.

One client module per vendor (``openai``, ``anthropic``, ``aws``, ``focus``)
turns the vendor's answer for a range of UTC days into a :class:`Pull`:
USD by (day, provider, service). :class:`BillingScheduler` runs each
source on its own thread (the first pull at start-up, then every interval
with +-10 % jitter) and keeps, per source, the days it was told about.

Rules
  * A pull *replaces* what the source said about the days it covers (bills
    are revised late); it never adds to them.
  * A pull either succeeds as a whole or changes nothing: clients validate the
    whole answer before returning, so a malformed page never half-replaces
    good data.
  * Months are UTC. ``cost_billed_usd`` is the sum over the days of the
    current UTC month.
  * A failed pull keeps the last values, sets ``up`` to 0 and logs one line
    naming the source and the cause (for 401/403 the key's environment
    variable or file, never the key).

The exporter renders the state as::

    # HELP cost_billed_usd Billed spend in the current calendar month (UTC) so far, cached from the last successful pull of the source.
    # TYPE cost_billed_usd gauge
    cost_billed_usd{source="openai",provider="openai",service="gpt-4o-2024-08-06, input"} 12.5
    # HELP costmeter_billing_up 1 if the last pull of the billing source succeeded.
    # TYPE costmeter_billing_up gauge
    costmeter_billing_up{source="openai"} 1.0
"""
from __future__ import annotations

import calendar
import logging
import random
import threading
import time
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from typing import Callable, Protocol

from costmeter.config.billing import BillingConfig, SourceConfig

__all__ = ["PullError", "AuthError", "Pull", "SourceState", "BillingScheduler", "month_start", "utc_day",
           "day_start_ts", "make_client"]

log = logging.getLogger("costmeter.billing")
JITTER = 0.10
KEEP_DAYS = 62       # days of history kept per source: this month and the last


class PullError(Exception):
    """A pull failed; the message is safe to log (it never holds a key)."""


class AuthError(PullError):
    """The vendor refused the credentials (401/403)."""


@dataclass
class Pull:
    """What a source said about the UTC days ``[start, end)``."""
    start: date
    end: date
    costs: dict[tuple[date, str, str], float] = field(default_factory=dict)   # (day, provider, service) -> USD
    requests: int = 0
    api_cost_usd: float = 0.0

    def add(self, day: date, provider: str, service: str, usd: float) -> None:
        if not self.start <= day < self.end:
            raise PullError(f"a cost for {day} is outside the requested days {self.start}..{self.end}")
        k = (day, provider, service)
        self.costs[k] = self.costs.get(k, 0.0) + usd


class Client(Protocol):
    def pull(self, start: date, end: date) -> Pull: ...


def utc_day(ts: float) -> date:
    return datetime.fromtimestamp(ts, timezone.utc).date()


def day_start_ts(d: date) -> float:
    return float(calendar.timegm(d.timetuple()))


def month_start(d: date) -> date:
    return d.replace(day=1)


def next_month(d: date) -> date:
    return date(d.year + d.month // 12, d.month % 12 + 1, 1)


class SourceState:
    """The days a source has reported, and its health. Guarded by the scheduler's lock."""

    def __init__(self, name: str):
        self.name = name
        self.days: dict[date, dict[tuple[str, str], float]] = {}
        self.up = 0.0
        self.last_success = 0.0
        self.api_cost_usd = 0.0
        self.duration = 0.0
        self.error: str | None = None
        self._mtd: tuple[date, dict] | None = None     # month_to_date, until the next replace or day

    def replace(self, pull: Pull) -> None:
        self._mtd = None
        d = pull.start
        while d < pull.end:
            self.days.pop(d, None)
            d += timedelta(days=1)
        for (day, provider, service), usd in pull.costs.items():
            self.days.setdefault(day, {})[(provider, service)] = usd
        cutoff = pull.end - timedelta(days=KEEP_DAYS)
        for day in [x for x in self.days if x < cutoff]:
            del self.days[day]

    def month_to_date(self, today: date) -> dict[tuple[str, str], float]:
        """Billed USD by (provider, service) over this month's days; computed once per pull and day."""
        if self._mtd is not None and self._mtd[0] == today:
            return self._mtd[1]
        first, out = month_start(today), {}
        for day, by in self.days.items():
            if first <= day <= today:
                for k, v in by.items():
                    out[k] = out.get(k, 0.0) + v
        self._mtd = (today, out)
        return out

    def state(self) -> dict:
        return {"days": {d.isoformat(): [[p, s, v] for (p, s), v in by.items()] for d, by in self.days.items()},
                "last_success": self.last_success, "api_cost_usd": self.api_cost_usd}

    def restore(self, st: dict) -> None:
        try:
            days = {date.fromisoformat(d): {(str(p), str(s)): float(v) for p, s, v in rows}
                    for d, rows in st.get("days", {}).items()}
            last, cost = float(st.get("last_success", 0.0)), float(st.get("api_cost_usd", 0.0))
        except (TypeError, ValueError, AttributeError) as e:
            log.warning("billing source %s: ignoring saved state (%s)", self.name, e)
            return
        self.days, self.last_success, self._mtd = days, max(self.last_success, last), None
        self.api_cost_usd = max(self.api_cost_usd, cost)


def make_client(cfg: SourceConfig, sleep: Callable[[float], None]) -> Client:
    if cfg.type == "openai":
        from costmeter.collectors.openai import OpenAICosts
        return OpenAICosts(cfg, sleep)
    if cfg.type == "anthropic":
        from costmeter.collectors.anthropic import AnthropicCosts
        return AnthropicCosts(cfg, sleep)
    if cfg.type == "aws":
        from costmeter.collectors.aws import CostExplorer
        return CostExplorer(cfg, sleep)
    from costmeter.collectors.focus import FocusFiles
    return FocusFiles(cfg)


class BillingScheduler:
    """Pulls every configured source in the background; readers get the cached state.

    ``on_pull(name)`` is called after every successful pull (outside the lock),
    so the exporter can refresh what depends on billed spend.
    """

    def __init__(self, config: BillingConfig, clock: Callable[[], float] | None = None,
                 clients: dict[str, Client] | None = None, on_pull: Callable[[str], None] | None = None,
                 sleep: Callable[[float], None] | None = None):
        self.config = config
        self._sleep_fn = sleep
        self._clock = clock or (lambda: time.time())
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self.on_pull = on_pull
        self.states = {s.name: SourceState(s.name) for s in config.sources}
        self._clients = dict(clients or {})
        self._threads: list[threading.Thread] = []

    def _sleep(self, seconds: float) -> None:
        """Waits between retries; a stopping exporter ends them early."""
        if self._sleep_fn is not None:
            return self._sleep_fn(seconds)
        if self._stop.wait(max(0.0, seconds)):
            raise PullError("the exporter is stopping")

    def client(self, name: str) -> Client:
        if name not in self._clients:
            self._clients[name] = make_client(self.config.get(name), self._sleep)
        return self._clients[name]

    # -- pulling -------------------------------------------------------------------

    def pull(self, name: str) -> bool:
        """Pull one source now: the days of the current UTC month up to today."""
        cfg = self.config.get(name)
        now = self._clock()
        today = utc_day(now)
        t0 = time.monotonic()
        api_cost = 0.0
        try:
            client = self.client(name)
            result = client.pull(month_start(today), today + timedelta(days=1))
            api_cost = result.api_cost_usd
            error = None
        except PullError as e:
            error, result = str(e), None
            api_cost = getattr(e, "api_cost_usd", 0.0)
        except Exception as e:    # a bug or an unforeseen answer: an error for this source, never a crash
            log.debug("billing source %s: unexpected failure", name, exc_info=True)
            error, result = f"unexpected {type(e).__name__}: {e}", None
        duration = time.monotonic() - t0
        with self._lock:
            st = self.states[name]
            st.duration = duration
            st.api_cost_usd += api_cost
            if result is not None:
                st.replace(result)
                st.up, st.last_success, st.error = 1.0, self._clock(), None
            else:
                st.up, st.error = 0.0, error
        if result is None:
            log.error("billing source %s (%s): pull failed: %s; keeping its last values", name, cfg.type, error)
            return False
        log.info("billing source %s: pulled %d cost lines for %s..%s in %.2fs", name, len(result.costs),
                 result.start, result.end - timedelta(days=1), duration)
        if self.on_pull is not None:
            try:
                self.on_pull(name)
            except Exception:
                log.exception("billing source %s: updating what depends on it failed", name)
        return True

    def start(self) -> None:
        for cfg in self.config.sources:
            t = threading.Thread(target=self._loop, args=(cfg,), name=f"costmeter-billing-{cfg.name}", daemon=True)
            t.start()
            self._threads.append(t)

    def _loop(self, cfg: SourceConfig) -> None:
        while not self._stop.is_set():
            try:
                self.pull(cfg.name)
            except Exception:           # never let a source's thread die
                log.exception("billing source %s: pull crashed", cfg.name)
            wait = cfg.interval * random.uniform(1 - JITTER, 1 + JITTER)
            if self._stop.wait(wait):
                return

    def stop(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(timeout=10)

    # -- reading -------------------------------------------------------------------

    def snapshot(self, now: float | None = None) -> list[dict]:
        """Per source: health and month-to-date billed spend by (provider, service)."""
        today = utc_day(self._clock() if now is None else now)
        with self._lock:
            return [{"source": name, "interval": self.config.get(name).interval, "up": st.up, "last_success": st.last_success, "api_cost_usd": st.api_cost_usd,
                     "duration": st.duration, "billed": dict(st.month_to_date(today))}
                    for name, st in self.states.items()]

    def billed_days(self, name: str, provider: str, today: date) -> dict[date, float]:
        """Complete days (before ``today``) of this month for which the source billed ``provider``."""
        first = month_start(today)
        with self._lock:
            st = self.states[name]
            return {d: sum(v for (p, _), v in by.items() if p == provider)
                    for d, by in st.days.items() if first <= d < today and any(p == provider for p, _ in by)}

    def providers(self, name: str, today: date) -> set[str]:
        first = month_start(today)
        with self._lock:
            return {p for d, by in self.states[name].days.items() if first <= d <= today for p, _ in by}

    def state(self) -> dict:
        with self._lock:
            return {name: st.state() for name, st in self.states.items()}

    def restore(self, state: dict) -> None:
        if not isinstance(state, dict):
            return
        with self._lock:
            for name, st in state.items():
                if name in self.states and isinstance(st, dict):
                    self.states[name].restore(st)
