"""``costmeter demo``: realistic traffic through the real SDK (shipped mode), so dashboards,
alerts and reports show data. The scenario is in :mod:`costmeter.cli.demo_traffic`.

    costmeter demo [--url URL] [--duration D] [--backfill D] [--seed N] [--rate R]

``--backfill 30d`` first writes that much history with past timestamps (the
ledger, reports, budgets and forecasts see it at once; Prometheus sees the
counters jump, since it has no history before it scraped). Then live calls run
until ``--duration`` has passed or Ctrl-C: every route of every tenant once
(so every panel has data within seconds), then random traffic at ``--rate``
calls per second. A progress line shows what was sent.
"""
from __future__ import annotations

import logging
import math
import os
import random
import re
import signal
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

from costmeter.cli.common import add_log_level

DEFAULT_URL = "http://localhost:9469"
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}
_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w)")


def duration(text: str) -> float:
    """A Go-style duration (``10s``, ``5m``, ``1h30m``, ``30d``) in seconds; ``0`` is zero."""
    if text == "0":
        return 0.0
    parts = _DURATION.findall(text)
    if not parts or "".join(n + u for n, u in parts) != text:
        import argparse
        raise argparse.ArgumentTypeError(f"{text!r} is not a duration (examples: 30s, 5m, 1h30m, 30d)")
    return sum(float(n) * _UNITS[u] for n, u in parts)


def register(sub) -> None:
    p = sub.add_parser("demo", help="realistic traffic so dashboards, alerts and reports show data",
                       description=__doc__.split("\n\n")[0].split(": ", 1)[1])
    p.add_argument("--url", default=os.environ.get("COSTMETER_URL") or DEFAULT_URL,
                   help="the exporter to send to (default $COSTMETER_URL, else %(default)s)")
    p.add_argument("--duration", type=duration, default=0.0, metavar="D",
                   help="stop live traffic after D (e.g. 10m); default: until Ctrl-C")
    p.add_argument("--backfill", type=duration, default=0.0, metavar="D",
                   help="first write D of history with past timestamps (e.g. 30d); default none")
    p.add_argument("--seed", type=int, default=None, help="random seed: the same seed, the same traffic")
    p.add_argument("--rate", type=float, default=2.0, metavar="R",
                   help="live calls per second (default %(default)s)")
    add_log_level(p)
    p.set_defaults(func=run)


class _Progress:
    """One status line: rewritten in place on a terminal, a line every few seconds otherwise."""

    def __init__(self, stream=sys.stderr):
        self.stream, self.tty = stream, stream.isatty()
        self.last = 0.0

    def show(self, text: str, force: bool = False) -> None:
        now = time.monotonic()
        if self.tty:
            if force or now - self.last >= 0.2:
                self.stream.write("\r\033[K" + text)
                self.stream.flush()
                self.last = now
        elif force or now - self.last >= 5.0:
            self.stream.write(text + "\n")
            self.stream.flush()
            self.last = now

    def done(self) -> None:
        if self.tty:
            self.stream.write("\n")


class _Counts:
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


def _reachable(url: str) -> str | None:
    import requests
    try:
        requests.get(url.rstrip("/") + "/-/healthy", timeout=3)
    except requests.RequestException as e:
        return str(e)
    return None


def _poisson(rng: random.Random, lam: float) -> int:
    n, t = 0, rng.expovariate(1.0) if lam > 0 else math.inf
    while t < lam:
        n += 1
        t += rng.expovariate(1.0)
    return n


def _tracked_providers(stop: threading.Event, counts: _Counts):
    """One tracked function per provider: how an app instruments its provider calls."""
    from costmeter import mark_cache_hit, mark_cache_miss, track_cost
    from costmeter.cli import demo_traffic as T

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


def _backfill(rng, seconds: float, counts: _Counts, progress: _Progress, stop: threading.Event) -> int:
    """Calls of the last ``seconds``, hour by hour, recorded with their own timestamps."""
    import costmeter
    from costmeter import cost_tracker
    from costmeter.cli import demo_traffic as T
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
            costmeter.flush(timeout=60.0)
            day = time.strftime("%Y-%m-%d", time.gmtime(min(hour, now) - 1))
            progress.show(f"backfill up to {day}: {counts.line()}", force=not progress.tty)
    return sent


def _live(rng, seconds: float, rate: float, providers, counts: _Counts, progress: _Progress,
          stop: threading.Event) -> None:
    from costmeter import cost_tracker
    from costmeter.cli import demo_traffic as T
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
            progress.show(f"live {elapsed // 3600:02d}:{elapsed // 60 % 60:02d}:{elapsed % 60:02d}  {counts.line()}")
    finally:
        pool.shutdown(wait=True)


def _with(call, **changes):
    from dataclasses import replace
    return replace(call, **changes)


def run(args) -> int:
    import costmeter

    if args.rate <= 0:
        print("costmeter demo: --rate must be greater than 0", file=sys.stderr)
        return 2
    problem = _reachable(args.url)
    if problem:
        print(f"costmeter demo: cannot reach the exporter at {args.url} ({problem}); start one with "
              "`costmeter serve` or pass --url", file=sys.stderr)
        return 1
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    costmeter.configure(url=args.url, spool_dir=os.path.join(cache, "costmeter", "demo-spool"),
                        queue_size=1_000_000, batch_size=1000)
    rng = random.Random(args.seed)
    stop = threading.Event()
    previous = signal.signal(signal.SIGINT, lambda *_: stop.set())
    progress, counts = _Progress(), _Counts()
    print(f"costmeter demo: sending to {args.url} (Ctrl-C stops)", file=sys.stderr)
    try:
        if args.backfill:
            _backfill(rng, args.backfill, counts, progress, stop)
            progress.show(f"backfill done: {counts.line()}", force=True)
            progress.done()
        if not stop.is_set():
            _live(rng, args.duration, args.rate, _tracked_providers(stop, counts), counts, progress, stop)
    finally:
        signal.signal(signal.SIGINT, previous)
        delivered = costmeter.flush(timeout=30.0)
        shipper = costmeter.cost_tracker.shipper
        stats = dict(shipper.stats) if shipper is not None else {}
        costmeter.shutdown(timeout=10.0)
    progress.show(f"done: {counts.line()}; {stats.get('sent', 0)} events delivered", force=True)
    progress.done()
    if not delivered:
        print(f"costmeter demo: some events could not be delivered to {args.url} "
              f"({stats}); they are kept in {cache}/costmeter/demo-spool", file=sys.stderr)
        return 1
    return 1 if counts.failed else 0
