"""Running the demo scenario through the SDK: history with past timestamps, then live calls.

``backfill`` records calls of the past hour by hour with :meth:`CostTracker.record`
(``timestamp=``), as a batch importer would; ``live`` makes calls through functions
wrapped by ``track_cost`` (``tracked_providers``), as an app does. Both report progress
through a ``report(text, milestone)`` callback and stop when ``stop`` is set.
"""
from __future__ import annotations

import logging
import math
import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor


class Counts:
    def __init__(self):
        self.lock = threading.Lock()
        self.calls = self.errors = self.hits = self.lookups = 0
        self.usd = 0.0
        self.failed = False

    def add(self, call, cost: float | None) -> None:
        with self.lock:
            self.calls += 1
            self.errors += call.error
            self.lookups += call.cache_lookup
            self.hits += call.cache_hit
            self.usd += cost or 0.0

    def line(self) -> str:
        ratio = f"{self.hits / self.lookups:.0%}" if self.lookups else "-"
        return (f"{self.calls} calls, ${self.usd:.2f} estimated, {self.errors} errors, "
                f"cache hits {self.hits}/{self.lookups} ({ratio})")


def _poisson(rng: random.Random, lam: float) -> int:
    n, t = 0, rng.expovariate(1.0) if lam > 0 else math.inf
    while t < lam:
        n += 1
        t += rng.expovariate(1.0)
    return n


def tracked_providers(stop: threading.Event):
    """One tracked function per provider: how an app instruments its provider calls."""
    from costmeter.sdk.decorator import mark_cache_hit, mark_cache_miss, track_cost
    from costmeter.demo import traffic as T

    def call_provider(call, model):           # model=..., as a real client call is made
        if call.cache_lookup:                  # a response cache in front of the provider
            if call.cache_hit:
                mark_cache_hit()               # saved cost = the cached response's price
                return T.response(call)
            mark_cache_miss()
        stop.wait(min(call.latency, 5.0))      # the provider thinking (Ctrl-C cuts it short)
        if call.error:
            raise T.ProviderError("429 rate limited")
        return T.response(call)

    tenant = lambda call, **_: call.tenant                 # noqa: E731  given the call's arguments
    endpoint = lambda call, **_: call.route.endpoint       # noqa: E731
    return {provider: track_cost(call_provider, provider=provider, tenant=tenant, endpoint=endpoint)
            for provider in ("openai", "anthropic", "google", "selfhosted")}


def backfill(rng, seconds: float, counts: Counts, report, stop: threading.Event) -> int:
    """Calls of the last ``seconds``, hour by hour, recorded with their own timestamps."""
    from costmeter.demo import traffic as T
    from costmeter.sdk.recorder import cost_tracker
    from costmeter.sdk.usage import extract

    now = time.time()
    hour = math.floor((now - seconds) / 3600.0) * 3600.0
    sent = 0
    while hour < now and not stop.is_set():
        for tenant in T.TENANTS:
            for _ in range(_poisson(rng, T.rate_per_hour(tenant, hour + 1800.0, now))):
                ts = min(hour + rng.random() * 3600.0, now - 1.0)
                call = T.draw_call(rng, tenant)
                r = call.route
                _, tokens = extract(T.response(call))
                if call.cache_hit:
                    saved = cost_tracker.price(r.provider, r.model, tokens) or 0.0
                    cost_tracker.record(r.provider, r.model, call.tenant, r.endpoint, None, 0.002, False,
                                        cache_hit=True, saved_cost_usd=saved, timestamp=ts)
                    counts.add(call, 0.0)
                else:
                    cost = cost_tracker.record(r.provider, r.model, call.tenant, r.endpoint,
                                               None if call.error else tokens, call.latency, call.error,
                                               cache_hit=False if call.cache_lookup else None, timestamp=ts)
                    counts.add(call, cost)
                sent += 1
        hour += 3600.0
        if hour % 86400.0 == 0.0 or hour >= now:
            cost_tracker.flush(timeout=60.0)
            day = time.strftime("%Y-%m-%d", time.gmtime(min(hour, now) - 1))
            report(f"backfill up to {day}: {counts.line()}", True)
    return sent


def live(rng, seconds: float, rate: float, providers, counts: Counts, report,
          stop: threading.Event) -> None:
    from costmeter.demo import traffic as T
    from costmeter.sdk.recorder import cost_tracker
    from costmeter.sdk.usage import extract

    start = time.time()
    deadline = start + seconds if seconds else math.inf
    # First every route of every tenant once, with a cache hit, a miss and an error among them,
    # so every panel has data right away; then traffic drawn at the configured rate.
    warmup = []
    for tenant in T.TENANTS:
        for route in tenant.routes:
            call = T.draw_call(rng, T.Tenant(tenant.name, 1.0, (route,)))
            warmup.append(call)
            if route.endpoint == T.CACHE_ENDPOINT:
                warmup.append(T.draw_call(rng, T.Tenant(tenant.name, 1.0, (route,))))
    lookups = [i for i, c in enumerate(warmup) if c.cache_lookup]
    for n, i in enumerate(lookups):
        warmup[i] = _with(warmup[i], cache_hit=n % 2 == 0, error=False)
    plain = next(i for i, c in enumerate(warmup) if not c.cache_lookup)
    warmup[plain] = _with(warmup[plain], error=True)

    def one(call):
        cost = None
        try:
            res = providers[call.route.provider](call, model=call.route.model)
            if not call.cache_hit:
                _, tokens = extract(res)
                cost = cost_tracker.price(call.route.provider, call.route.model, tokens)
        except T.ProviderError:
            pass                               # recorded as an error by track_cost
        except Exception:  # noqa: BLE001 - a bug here must show, not silently thin the traffic
            logging.getLogger("costmeter").exception("demo call failed")
            counts.failed = True
            stop.set()
            return
        counts.add(call, cost)

    pool = ThreadPoolExecutor(max_workers=32, thread_name_prefix="costmeter-demo")
    try:
        for call in warmup:
            pool.submit(one, call)
        next_at = time.time()
        while not stop.is_set() and time.time() < deadline:
            next_at += rng.expovariate(rate)
            stop.wait(max(0.0, min(next_at, deadline) - time.time()))
            if stop.is_set() or time.time() >= deadline:
                break
            tenant = T.pick_tenant(rng, time.time(), start, start)
            pool.submit(one, T.draw_call(rng, tenant))
            elapsed = int(time.time() - start)
            report(f"live {elapsed // 3600:02d}:{elapsed // 60 % 60:02d}:{elapsed % 60:02d}  {counts.line()}", False)
    finally:
        pool.shutdown(wait=True)


def _with(call, **changes):
    from dataclasses import replace
    return replace(call, **changes)
