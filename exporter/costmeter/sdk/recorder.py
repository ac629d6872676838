"""The SDK's recorder: prices each call and sends it where the app is configured to.

``cost_tracker`` (the module-level :class:`CostTracker`) is where every tracked
call ends. Per call it prices the tokens with the :class:`PricingTable`
(cached per provider and model) and then, depending on how the app runs:

* direct (the default when nothing is configured and ``COSTMETER_URL`` is not
  set): updates the data metrics (README.md, "Metrics") in the app's own prometheus_client
  registry, also under multiprocess mode (``PROMETHEUS_MULTIPROC_DIR``);
* shipped (``configure(url=...)`` or ``COSTMETER_URL``): queues an event for
  the background shipper (:mod:`costmeter.sdk.shipper`), which batches, sends,
  spools and replays; the call never waits on the network;
* embedded (``embed(...)``): the same shipper, whose sink is the in-process
  exporter's ``ingest``.

Direct metrics can be combined with either of the others (``registry=``).
Label children are resolved once per (provider, model, tenant, endpoint) and
cached, so a call costs a dict lookup and the ``inc``/``observe`` calls that
must happen, as in ``Store.apply`` on the exporter side. Sample of the direct
exposition::

    cost_provider_tokens_total{provider="openai",model="gpt-4o-mini-2024-07-18",tenant="acme",token_type="cached_input"} 400.0
    cost_request_cost_usd_sum{provider="openai",model="gpt-4o-mini-2024-07-18",endpoint="/v1/chat",tenant="acme"} 0.00042

The three methods users already call keep their signatures (they update the
app registry only; the exporter gets whole calls through ``track_cost`` or
:meth:`CostTracker.record`)::

    cost_tracker.record_request(endpoint="/v1/chat", provider="openai", cost_usd=0.001)
    cost_tracker.record_api_call("openai", "gpt-4o-mini")
    cost_tracker.record_tokens(provider="openai", model="gpt-4o-mini", input_tokens=100, output_tokens=50)
"""
from __future__ import annotations

import atexit
from bisect import bisect_left
import logging
import os
import threading
import time
import weakref
from typing import Any

from costmeter.events import DEFAULT_ENDPOINT, DEFAULT_MODEL, DEFAULT_TENANT, TOKEN_TYPES
from costmeter.server.store import COST_BUCKETS, DURATION_BUCKETS

log = logging.getLogger("costmeter")

_DEFAULT = object()          # "not given": registry=None means "no app-registry metrics"
_SERIES_CACHE_LIMIT = 10_000


class AppMetrics:
    """The data metrics (README.md, "Metrics") in one prometheus_client registry (created once per registry)."""

    def __init__(self, registry):
        from prometheus_client import Counter, Histogram
        pmt = ("provider", "model", "tenant")
        self.cost = Histogram("cost_request_cost_usd", "USD cost of each request, priced by the costmeter SDK; _sum is spend.",
                              ("provider", "model", "endpoint", "tenant"), buckets=COST_BUCKETS, registry=registry)
        self.calls = Counter("cost_provider_api_calls_total", "Calls made to a provider.", pmt, registry=registry)
        self.errors = Counter("cost_provider_api_errors_total", "Calls to a provider that failed.", pmt, registry=registry)
        self.tokens = Counter("cost_provider_tokens_total",
                              "Tokens by type; the types are disjoint (input excludes cached_input and cache writes, "
                              "output excludes reasoning), so their sum is the billable token count.",
                              pmt + ("token_type",), registry=registry)
        self.duration = Histogram("cost_request_duration_seconds", "Latency of instrumented calls.",
                                  ("provider", "model", "endpoint"), buckets=DURATION_BUCKETS, registry=registry)
        self.hits = Counter("cost_cache_hits_total", "Response-cache hits: calls answered without the provider.", pmt,
                            registry=registry)
        self.lookups = Counter("cost_cache_lookups_total", "Response-cache lookups.", pmt, registry=registry)
        self.savings = Counter("cost_cache_savings_usd_total", "USD the response cache avoided.", pmt, registry=registry)
        self.unpriced = Counter("costmeter_unpriced_calls_total",
                                "Calls whose model has no price in the pricing table; their cost is unknown, not $0.",
                                ("provider", "model"), registry=registry)
        self.throttled = Counter("costmeter_sdk_throttled_calls_total",
                                 "Tracked calls made while a matching budget was at or over its warning threshold.",
                                 ("tenant",), registry=registry)
        self.denied = Counter("costmeter_sdk_denied_calls_total",
                              "Tracked calls refused before the provider was called (BudgetExceededError).",
                              ("tenant",), registry=registry)
        self.dropped = Counter("costmeter_sdk_dropped_events_total",
                               "Usage events the SDK could not keep (queue or disk spool full, or refused as malformed).",
                               ("reason",), registry=registry)


class _Series:
    """Cached value cells for one (provider, model, tenant, endpoint).

    Resolved once from the label children: the counters' and histograms' value objects
    (``MutexValue``, or ``MmapedValue`` under multiprocess mode), so a call is one locked add
    per cell, as in ``Counter.inc`` without its per-call checks. If a prometheus_client
    version lays children out differently, the public ``inc``/``observe`` are used instead.
    """
    __slots__ = ("fast", "cost", "duration", "calls", "errors", "tokens", "pm", "pmt",
                 "cost_bounds", "cost_buckets", "cost_sum", "dur_bounds", "dur_buckets", "dur_sum")

    def __init__(self, m: AppMetrics, provider: str, model: str, tenant: str, endpoint: str):
        pmt = (provider, model, tenant)
        self.pm, self.pmt = (provider, model), pmt
        self.cost = m.cost.labels(provider, model, endpoint, tenant)
        self.duration = m.duration.labels(provider, model, endpoint)
        self.calls = m.calls.labels(*pmt)
        self.errors = m.errors.labels(*pmt)
        self.tokens = tuple(m.tokens.labels(provider, model, tenant, tt) for tt in TOKEN_TYPES)
        try:
            self.cost_bounds, self.cost_buckets, self.cost_sum = _cells(self.cost)
            self.dur_bounds, self.dur_buckets, self.dur_sum = _cells(self.duration)
            self.calls, self.errors = self.calls._value, self.errors._value
            self.tokens = tuple(t._value for t in self.tokens)
            for v in (self.calls, self.errors, self.cost_sum, self.dur_sum) + self.tokens:
                if not callable(getattr(v, "inc", None)):
                    raise AttributeError("inc")
            self.fast = True
        except (AttributeError, TypeError, ValueError):
            self.__init_public(m, provider, model, tenant, endpoint)

    def __init_public(self, m, provider, model, tenant, endpoint):
        pmt = self.pmt
        self.calls = m.calls.labels(*pmt)
        self.errors = m.errors.labels(*pmt)
        self.tokens = tuple(m.tokens.labels(provider, model, tenant, tt) for tt in TOKEN_TYPES)
        self.fast = False

    def observe_cost(self, v: float) -> None:
        if self.fast:
            self.cost_buckets[bisect_left(self.cost_bounds, v)].inc(1)
            self.cost_sum.inc(v)
        else:
            self.cost.observe(v)

    def observe_duration(self, v: float) -> None:
        if self.fast:
            self.dur_buckets[bisect_left(self.dur_bounds, v)].inc(1)
            self.dur_sum.inc(v)
        else:
            self.duration.observe(v)


def _cells(h):
    bounds = tuple(float(b) for b in h._upper_bounds)
    buckets = list(h._buckets)
    if len(bounds) != len(buckets) or bounds[-1] != float("inf"):
        raise ValueError("unexpected histogram layout")
    return bounds, buckets, h._sum


class CostTracker:
    """Prices calls and hands them to the app registry and/or the shipper. Thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._ready = False
        self._metrics: AppMetrics | None = None
        self._metrics_by_registry: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
        self._series: dict[tuple, _Series] = {}
        self._pricing = None
        self.shipper = None            # costmeter.sdk.shipper.Shipper
        self.enforcer = None           # costmeter.sdk.enforcement.Enforcer
        self.exporter = None           # the embedded Exporter, if any
        self.mode = "unconfigured"
        self._local_book = None        # a BudgetBook the SDK feeds itself (direct mode with budgets)
        self._atexit = False

    # ---- configuration --------------------------------------------------------------

    def configure(self, *, url: str | None = None, token: str | None = None, registry: Any = _DEFAULT,
                  pricing: Any = None, pricing_file: str | None = None, budgets_file: str | None = None,
                  spool_dir: str | None = None, batch_size: int = 500, queue_size: int = 100_000,
                  flush_interval: float = 0.5, spool_max_bytes: int = 256 * 1024 * 1024,
                  budget_cache_seconds: float = 2.0, fail_closed: bool = False, timeout: float = 5.0) -> "CostTracker":
        """Choose where calls go. With no ``url`` (and no ``COSTMETER_URL``): direct mode, metrics in
        ``registry`` (default: prometheus_client's REGISTRY). With a ``url``: shipped mode; app-registry
        metrics only if ``registry`` is given. ``budgets_file`` in direct mode enforces budgets locally
        (single process). Calling it again replaces the previous configuration (after a flush)."""
        from costmeter.sdk.enforcement import BookSource, Enforcer, RemoteSource
        from costmeter.pricing import PricingTable
        url = url or os.environ.get("COSTMETER_URL") or None
        token = token or os.environ.get("COSTMETER_TOKEN") or None
        with self._lock:
            self._teardown()
            self._pricing = pricing or PricingTable.load(pricing_file or os.environ.get("COSTMETER_PRICING_FILE"))
            if registry is _DEFAULT:
                registry = None if url else _default_registry()
            self._set_registry(registry)
            if url:
                from costmeter.sdk.shipper import HttpSink, Shipper
                self.shipper = Shipper(HttpSink(url, token=token, timeout=timeout), spool_dir=spool_dir,
                                       batch_size=batch_size, queue_size=queue_size, flush_interval=flush_interval,
                                       spool_max_bytes=spool_max_bytes, on_drop=self._count_drop)
                self.enforcer = Enforcer(RemoteSource(url, token=token, ttl=budget_cache_seconds, timeout=timeout),
                                         fail_closed=fail_closed, deferred=True)
                self.shipper.on_delivered = self.enforcer.delivered
                self.mode = "shipped"
            else:
                book = None
                if budgets_file:
                    from costmeter.budgets.book import BudgetBook
                    from costmeter.budgets.config import load_budgets
                    book = self._local_book = BudgetBook(load_budgets(budgets_file))
                self.enforcer = Enforcer(BookSource(book) if book is not None else None, fail_closed=fail_closed)
                self.mode = "direct"
            self._wire_enforcer()
            self._ready = True
            self._register_atexit()
        return self

    def embed(self, *, state_dir: str | None = None, listen_address: str | None = "127.0.0.1:0",
              budgets_file: str | None = None, pricing_file: str | None = None, config_file: str | None = None,
              registry: Any = None, batch_size: int = 500, flush_interval: float = 0.2, queue_size: int = 100_000,
              spool_dir: str | None = None, fail_closed: bool = False):
        """Start the exporter in this process and send every call to it (single-process apps).
        Returns the Exporter (``.url`` is where Prometheus scrapes it when listening)."""
        from costmeter.server.exporter import Exporter
        from costmeter.sdk.enforcement import BookSource, Enforcer
        from costmeter.sdk.shipper import ExporterSink, Shipper
        with self._lock:
            self._teardown()
            ex = Exporter.embedded(state_dir=state_dir, listen_address=listen_address, budgets_file=budgets_file,
                                   pricing_file=pricing_file, config_file=config_file)
            self.exporter = ex
            self._pricing = ex.pricing
            self._set_registry(registry)
            if spool_dir is None and state_dir is not None:
                spool_dir = os.path.join(state_dir, "sdk-spool")
            self.shipper = Shipper(ExporterSink(ex), spool_dir=spool_dir, batch_size=batch_size,
                                   queue_size=queue_size, flush_interval=flush_interval, on_drop=self._count_drop)
            book = ex.budgets
            self.enforcer = Enforcer(BookSource(book) if book is not None else None, fail_closed=fail_closed)
            self.shipper.on_delivered = self.enforcer.delivered
            self.mode = "embedded"
            self._wire_enforcer()
            self._ready = True
            self._register_atexit()
            return ex

    def shutdown(self, timeout: float = 10.0) -> None:
        """Flush what is queued, stop the shipper and an embedded exporter. The tracker can be configured again."""
        with self._lock:
            self._teardown(timeout)
            self._ready = False
            self.mode = "unconfigured"

    def flush(self, timeout: float = 10.0) -> bool:
        """Send everything queued (and spooled, if the exporter is reachable). True when nothing is left."""
        s = self.shipper
        return True if s is None else s.flush(timeout)

    def _teardown(self, timeout: float = 10.0) -> None:
        if self.shipper is not None:
            self.shipper.close(timeout)
            self.shipper = None
        if self.exporter is not None:
            try:
                self.exporter.stop()
            finally:
                self.exporter = None
        self.enforcer = None
        self._local_book = None
        self._series = {}

    def _register_atexit(self) -> None:
        if not self._atexit:
            atexit.register(self._at_exit)
            self._atexit = True

    def _at_exit(self) -> None:
        try:
            self._teardown(timeout=5.0)
        except Exception:  # noqa: BLE001 - never raise at interpreter exit
            log.exception("costmeter: flush at exit failed")

    def _set_registry(self, registry) -> None:
        self._series = {}
        if registry is None:
            self._metrics = None
            return
        m = self._metrics_by_registry.get(registry)      # by identity, not id(): ids are reused
        if m is None:
            m = self._metrics_by_registry[registry] = AppMetrics(registry)
        self._metrics = m

    def _ensure(self) -> None:
        with self._lock:
            if not self._ready:
                self.configure()

    @property
    def pricing(self):
        if not self._ready:
            self._ensure()
        return self._pricing

    @property
    def metrics(self) -> AppMetrics | None:
        """The app-registry metrics, or None when the app does not keep them."""
        if not self._ready:
            self._ensure()
        return self._metrics

    def _wire_enforcer(self) -> None:
        e = self.enforcer
        if e is not None:
            e.on_deny = self._count_deny
            e.on_throttle = self._count_throttle

    def _count_deny(self, tenant: str) -> None:
        m = self._metrics
        if m is not None:
            m.denied.labels(tenant).inc()

    def _count_throttle(self, tenant: str) -> None:
        m = self._metrics
        if m is not None:
            m.throttled.labels(tenant).inc()

    def _count_drop(self, reason: str, n: int) -> None:
        m = self._metrics
        if m is not None:
            m.dropped.labels(reason).inc(n)

    # ---- the hot path ----------------------------------------------------------------

    def price(self, provider: str, model: str, tokens: tuple, batch: bool = False) -> float | None:
        """USD for these disjoint tokens (None: the model has no price)."""
        if not self._ready:
            self._ensure()
        if len(tokens) == 5:
            tokens = _six(tokens)
        i, c, w, w1h, o, r = tokens
        return self._pricing.cost(provider, model, i, c, w, o, r, batch=batch, cache_write_1h_tokens=w1h)

    def record(self, provider: str, model: str | None = None, tenant: str | None = None, endpoint: str | None = None,
               tokens: tuple | None = None, duration: float | None = None, error: bool = False, *,
               cost_usd: float | None = None, priced: bool = False, cache_hit: bool | None = None,
               saved_cost_usd: float = 0.0, batch: bool = False, timestamp: float | None = None,
               pend=None) -> float | None:
        """Record one finished call; returns its USD cost (None if unpriced).

        ``tokens`` are the six disjoint counts (input, cached_input, cache_write,
        cache_write_1h, output, reasoning); the five counts of earlier versions (no
        cache_write_1h) are still accepted. ``cost_usd`` wins over the price of the tokens; ``priced=True`` says that
        ``cost_usd`` (even None) is already the price. ``cache_hit`` None: no cache was asked;
        False: a miss (the call went to the provider); True: answered from a cache, with
        ``saved_cost_usd`` the cost avoided.
        """
        if not self._ready:
            self._ensure()
        model = model or DEFAULT_MODEL
        tenant = tenant or DEFAULT_TENANT
        endpoint = endpoint or DEFAULT_ENDPOINT
        if tokens is None:
            tokens = (0, 0, 0, 0, 0, 0)
        elif len(tokens) == 5:
            tokens = _six(tokens)
        if cost_usd is None and not priced:
            if cache_hit:
                cost_usd = 0.0
            else:
                i, c, w, w1h, o, r = tokens
                cost_usd = self._pricing.cost(provider, model, i, c, w, o, r, batch=batch, cache_write_1h_tokens=w1h)
        m = self._metrics
        if m is not None:
            key = (provider, model, tenant, endpoint)
            s = self._series.get(key)
            if s is None:
                s = self._new_series(m, key)
            if cache_hit is not None:
                self._cache_metrics(m, s.pmt, cache_hit, saved_cost_usd)
            if not cache_hit:
                s.calls.inc(1)
                if error:
                    s.errors.inc(1)
                tc = s.tokens
                i, c, w, w1h, o, r = tokens
                if i:
                    tc[0].inc(i)
                if c:
                    tc[1].inc(c)
                if w:
                    tc[2].inc(w)
                if w1h:
                    tc[3].inc(w1h)
                if o:
                    tc[4].inc(o)
                if r:
                    tc[5].inc(r)
            if s.fast:
                if cost_usd is None:
                    m.unpriced.labels(*s.pm).inc()
                elif cost_usd == cost_usd:                 # not NaN
                    s.cost_buckets[bisect_left(s.cost_bounds, cost_usd)].inc(1)
                    s.cost_sum.inc(cost_usd)
                if duration is not None:
                    s.dur_buckets[bisect_left(s.dur_bounds, duration)].inc(1)
                    s.dur_sum.inc(duration)
            else:
                if cost_usd is None:
                    m.unpriced.labels(*s.pm).inc()
                else:
                    s.cost.observe(cost_usd)
                if duration is not None:
                    s.duration.observe(duration)
        ts = time.time() if timestamp is None else timestamp
        book = self._local_book
        if book is not None:
            if cost_usd:
                book.observe(provider, model, tenant, endpoint, cost_usd, ts)
            if pend is not None:
                self.enforcer.delivered((pend,))
            pend = None
        sh = self.shipper
        if sh is not None:
            sh.put((ts, provider, model, tenant, endpoint, tokens, cost_usd, duration, error,
                    cache_hit, saved_cost_usd, batch, pend))
        return cost_usd

    def _new_series(self, m: AppMetrics, key: tuple) -> _Series:
        if len(self._series) >= _SERIES_CACHE_LIMIT:
            self._series = {}
        s = self._series[key] = _Series(m, *key)
        return s

    @staticmethod
    def _cache_metrics(m: AppMetrics, pmt: tuple, hit: bool, saved: float) -> None:
        m.lookups.labels(*pmt).inc()
        if hit:
            m.hits.labels(*pmt).inc()
            if saved:
                m.savings.labels(*pmt).inc(saved)

    # ---- cache hits ------------------------------------------------------------------

    def record_cache_lookup(self, provider: str, model: str, hit: bool, *, tenant: str | None = None,
                            endpoint: str | None = None, saved_cost_usd: float | None = None,
                            response: Any = None, tokens: tuple | None = None, duration: float | None = None) -> float:
        """Record a response-cache lookup. For a hit, the cost it avoided is ``saved_cost_usd``, or the
        price of the cached ``response``'s usage (or of ``tokens``) at today's rates.
        A miss is recorded only as a lookup; the provider call that follows is tracked as usual.
        Returns the saved USD (0.0 for a miss or an unpriced model)."""
        from costmeter.sdk.context import current_endpoint, current_tenant
        from costmeter.sdk.usage import extract
        tenant = tenant or current_tenant.get() or DEFAULT_TENANT
        endpoint = endpoint or current_endpoint.get() or DEFAULT_ENDPOINT
        saved = 0.0
        if hit:
            if saved_cost_usd is None:
                if response is not None:
                    rm, tokens = extract(response)
                    model = model or rm
                if tokens is not None:
                    saved = self.price(provider, model or DEFAULT_MODEL, tokens) or 0.0
            else:
                saved = float(saved_cost_usd)
            self.record(provider, model, tenant, endpoint, None, duration, cache_hit=True, saved_cost_usd=saved)
        else:
            if not self._ready:
                self._ensure()
            m = self._metrics
            if m is not None:
                self._cache_metrics(m, (provider, model or DEFAULT_MODEL, tenant), False, 0.0)
            # the miss reaches the exporter with the tracked call that follows (mark_cache_miss)
        return saved

    # ---- the API users already call (README.md, "Instrumenting an app") ------------------------------------

    def _legacy_metrics(self) -> AppMetrics | None:
        if not self._ready:
            self._ensure()
        return self._metrics

    def record_request(self, endpoint: str, provider: str, cost_usd: float, *, model: str = DEFAULT_MODEL,
                       tenant: str = DEFAULT_TENANT) -> None:
        """Observe one request's USD cost in ``cost_request_cost_usd`` (app registry)."""
        m = self._legacy_metrics()
        if m is not None:
            m.cost.labels(provider, model, endpoint, tenant).observe(cost_usd)

    def record_api_call(self, provider: str, model: str, *, tenant: str = DEFAULT_TENANT, error: bool = False) -> None:
        """Count one provider call in ``cost_provider_api_calls_total`` (and ``_errors_total``)."""
        m = self._legacy_metrics()
        if m is not None:
            m.calls.labels(provider, model, tenant).inc()
            if error:
                m.errors.labels(provider, model, tenant).inc()

    def record_tokens(self, provider: str, model: str, input_tokens: int, output_tokens: int, *,
                      cached_input_tokens: int = 0, cache_write_tokens: int = 0, reasoning_tokens: int = 0,
                      cache_write_1h_tokens: int = 0, tenant: str = DEFAULT_TENANT) -> None:
        """Add tokens to ``cost_provider_tokens_total`` by type (counts are disjoint)."""
        m = self._legacy_metrics()
        if m is not None:
            for tt, n in zip(TOKEN_TYPES, (input_tokens, cached_input_tokens, cache_write_tokens,
                                          cache_write_1h_tokens, output_tokens, reasoning_tokens)):
                if n:
                    m.tokens.labels(provider, model, tenant, tt).inc(n)


def _six(tokens: tuple) -> tuple:
    """Five counts (input, cached_input, cache_write, output, reasoning) as the six of today."""
    i, c, w, o, r = tokens
    return (i, c, w, 0, o, r)


def _default_registry():
    from prometheus_client import REGISTRY
    return REGISTRY


cost_tracker = CostTracker()
