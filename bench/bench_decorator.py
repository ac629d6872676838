"""Overhead of @track_cost on a call that returns an OpenAI-shaped response.

    .venv/bin/python bench/bench_decorator.py [--calls 100000] [--repeat 5]

Measured in one run, best of ``--repeat``, per call:

* bare       the undecorated function (returns a prebuilt openai ChatCompletion)
* baseline   the same call plus updating the equivalent prometheus_client metrics
             directly, the way apps do by hand: ``labels(...).inc()`` for calls and
             four token types, ``labels(...).observe()`` for cost and duration
             (no usage parsing, no pricing)
* direct     @track_cost, metrics in an app registry
* shipped    @track_cost, events queued for a loopback HTTP sink that answers 200
             (the background shipper serializes and POSTs while the calls run)
* embedded   @track_cost with the exporter in this process (ingest into its ledger
             in the background)

Overhead = mode - bare. Target: overhead <= baseline overhead, and < 10 us.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "exporter"))

from openai.types.chat import ChatCompletion  # noqa: E402
from prometheus_client import CollectorRegistry, Counter, Histogram  # noqa: E402

from costmeter import cost_tracker, track_cost  # noqa: E402
from costmeter.server.store import COST_BUCKETS, DURATION_BUCKETS  # noqa: E402

RESPONSE = ChatCompletion.model_validate({
    "id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": "gpt-4o-mini-2024-07-18",
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hi."}, "finish_reason": "stop"}],
    "usage": {"prompt_tokens": 1200, "completion_tokens": 300, "total_tokens": 1500,
              "prompt_tokens_details": {"cached_tokens": 1024},
              "completion_tokens_details": {"reasoning_tokens": 128}}})


def call():
    return RESPONSE


def timeit(fn, n: int, repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        for _ in range(n):
            fn()
        best = min(best, (time.perf_counter() - t0) / n)
    return best


def baseline_fn():
    reg = CollectorRegistry()
    pmt = ("provider", "model", "tenant")
    cost = Histogram("cost_request_cost_usd", "x", ("provider", "model", "endpoint", "tenant"),
                     buckets=COST_BUCKETS, registry=reg)
    dur = Histogram("cost_request_duration_seconds", "x", ("provider", "model", "endpoint"),
                    buckets=DURATION_BUCKETS, registry=reg)
    calls = Counter("cost_provider_api_calls_total", "x", pmt, registry=reg)
    tokens = Counter("cost_provider_tokens_total", "x", pmt + ("token_type",), registry=reg)
    perf = time.perf_counter

    def f():
        t0 = perf()
        r = call()
        d = perf() - t0
        calls.labels("openai", "gpt-4o-mini-2024-07-18", "acme").inc()
        tokens.labels("openai", "gpt-4o-mini-2024-07-18", "acme", "input").inc(176)
        tokens.labels("openai", "gpt-4o-mini-2024-07-18", "acme", "cached_input").inc(1024)
        tokens.labels("openai", "gpt-4o-mini-2024-07-18", "acme", "output").inc(172)
        tokens.labels("openai", "gpt-4o-mini-2024-07-18", "acme", "reasoning").inc(128)
        cost.labels("openai", "gpt-4o-mini-2024-07-18", "/v1/chat", "acme").observe(0.0002832)
        dur.labels("openai", "gpt-4o-mini-2024-07-18", "/v1/chat").observe(d)
        return r
    return f


class _Sink(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *a):
        pass

    def do_POST(self):  # noqa: N802
        n = int(self.headers.get("Content-Length") or 0)
        k = len(json.loads(self.rfile.read(n)))
        body = json.dumps({"accepted": k, "duplicates": 0, "rejected": []}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--calls", type=int, default=100_000)
    ap.add_argument("--repeat", type=int, default=5)
    a = ap.parse_args()
    n, rep = a.calls, a.repeat
    decorated = track_cost(provider="openai", tenant="acme", endpoint="/v1/chat")(call)
    res = {"bare": timeit(call, n, rep), "baseline": timeit(baseline_fn(), n, rep)}

    cost_tracker.configure(registry=CollectorRegistry())
    decorated()
    res["direct"] = timeit(decorated, n, rep)
    cost_tracker.shutdown()

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Sink)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    with tempfile.TemporaryDirectory() as tmp:
        cost_tracker.configure(url=f"http://127.0.0.1:{httpd.server_address[1]}", spool_dir=os.path.join(tmp, "spool"),
                               queue_size=10 * n * rep)
        decorated()
        res["shipped"] = timeit(decorated, n, rep)
        cost_tracker.flush(60)
        sent = cost_tracker.shipper.stats["sent"]
        cost_tracker.shutdown()
        httpd.shutdown()

        cost_tracker.embed(state_dir=os.path.join(tmp, "state"), listen_address=None, queue_size=10 * n * rep)
        decorated()
        res["embedded"] = timeit(decorated, n, rep)
        cost_tracker.flush(120)
        cost_tracker.shutdown()

    bare = res["bare"]
    base_over = res["baseline"] - bare
    print(f"calls per run: {n}, best of {rep}; python {sys.version.split()[0]}")
    print(f"{'mode':<10}{'per call':>12}{'overhead':>12}")
    for k, v in res.items():
        over = v - bare
        print(f"{k:<10}{v * 1e6:>10.2f}us{over * 1e6:>10.2f}us"
              + ("" if k in ("bare", "baseline") else
                 f"   {'<=' if over <= base_over else '>'} baseline, {'<' if over < 10e-6 else '>='} 10us"))
    print(f"shipped mode delivered {sent} events to the sink")


if __name__ == "__main__":
    main()
