"""``costmeter demo``: realistic traffic through the real SDK (shipped mode), so dashboards,
alerts and reports show data. The scenario is in
:mod:`costmeter.demo.traffic`, the runner in :mod:`costmeter.demo.runner`; this module
parses the flags and prints the progress.

    costmeter demo [--url URL] [--duration D] [--backfill D] [--seed N] [--rate R]

``--backfill 30d`` first writes that much history with past timestamps (the
ledger, reports, budgets and forecasts see it at once; Prometheus sees the
counters jump, since it has no history before it scraped). Then live calls run
until ``--duration`` has passed or Ctrl-C: every route of every tenant once
(so every panel has data within seconds), then random traffic at ``--rate``
calls per second. A progress line shows what was sent.
"""
from __future__ import annotations

import os
import random
import re
import signal
import sys
import threading
import time

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
                       description="Realistic LLM traffic through the real SDK (shipped mode): five tenants on "
                                   "OpenAI, Anthropic and Google models with a daily rhythm, one tenant over its "
                                   "budget, one spike, cache hits, errors and one unpriced model. --backfill writes "
                                   "history with past timestamps first. Ctrl-C stops cleanly; --seed repeats the "
                                   "traffic.")
    p.add_argument("--url", default=os.environ.get("COSTMETER_URL") or DEFAULT_URL,
                   help="the exporter to send to (default $COSTMETER_URL, else %(default)s)")
    p.add_argument("--duration", type=duration, default=0.0, metavar="D",
                   help="stop live traffic after D (e.g. 10m); default: until Ctrl-C")
    p.add_argument("--backfill", type=duration, default=0.0, metavar="D",
                   help="first write D of history with past timestamps (e.g. 30d); default none")
    p.add_argument("--seed", type=int, default=None, help="random seed: the same seed, the same traffic")
    p.add_argument("--rate", type=float, default=0.5, metavar="R",
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

    def report(self, text: str, milestone: bool) -> None:
        """The runner's callback: milestones (a day of backfill) get a line of their own off a terminal."""
        self.show(text, force=milestone and not self.tty)

    def done(self) -> None:
        if self.tty:
            self.stream.write("\n")


def _reachable(url: str) -> str | None:
    import requests
    try:
        requests.get(url.rstrip("/") + "/-/healthy", timeout=3)
    except requests.RequestException as e:
        return str(e)
    return None


def run(args) -> int:
    from costmeter.demo.runner import Counts, backfill, live, tracked_providers
    from costmeter.sdk.recorder import cost_tracker

    if args.rate <= 0:
        print("costmeter demo: --rate must be greater than 0", file=sys.stderr)
        return 2
    problem = _reachable(args.url)
    if problem:
        print(f"costmeter demo: cannot reach the exporter at {args.url} ({problem}); start one with "
              "`costmeter serve` or pass --url", file=sys.stderr)
        return 1
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    # costmeter.configure(url=...) in an app: shipped mode, events batched to the exporter.
    cost_tracker.configure(url=args.url, spool_dir=os.path.join(cache, "costmeter", "demo-spool"),
                        queue_size=1_000_000, batch_size=1000)
    rng = random.Random(args.seed)
    stop = threading.Event()
    previous = signal.signal(signal.SIGINT, lambda *_: stop.set())
    progress, counts = _Progress(), Counts()
    print(f"costmeter demo: sending to {args.url} (Ctrl-C stops)", file=sys.stderr)
    try:
        if args.backfill:
            backfill(rng, args.backfill, counts, progress.report, stop)
            progress.show(f"backfill done: {counts.line()}", force=True)
            progress.done()
        if not stop.is_set():
            live(rng, args.duration, args.rate, tracked_providers(stop), counts, progress.report, stop)
    finally:
        signal.signal(signal.SIGINT, previous)
        delivered = cost_tracker.flush(timeout=30.0)
        shipper = cost_tracker.shipper
        stats = dict(shipper.stats) if shipper is not None else {}
        cost_tracker.shutdown(timeout=10.0)
    progress.show(f"done: {counts.line()}; {stats.get('sent', 0)} events delivered", force=True)
    progress.done()
    if not delivered:
        print(f"costmeter demo: some events could not be delivered to {args.url} "
              f"({stats}); they are kept in {cache}/costmeter/demo-spool", file=sys.stderr)
        return 1
    return 1 if counts.failed else 0
