"""Shipped and embedded modes against the real exporter: batching, spool, replay, exact totals."""
from __future__ import annotations

import logging
import os
import statistics
import subprocess
import sys
import time

import openai
import pytest
import requests
from prometheus_client import CollectorRegistry

from costmeter import cost_tracker, track_cost
from exporter_support import REPO, ExporterProcess, free_port, parse_metrics, sample
from fakes.llm_server import FakeLLMServer

# one call: 1000 input tokens (400 of them cached) and 200 output (50 reasoning) on gpt-4o-mini
USAGE = {"prompt_tokens": 1000, "completion_tokens": 200, "prompt_tokens_details": {"cached_tokens": 400},
         "completion_tokens_details": {"reasoning_tokens": 50}}
CALL_USD = (600 * 0.15 + 400 * 0.075 + 150 * 0.60 + 50 * 0.60) / 1e6        # 0.00024


def _metrics(url: str) -> dict:
    return parse_metrics(requests.get(url + "/metrics", timeout=5).text)


def _flush_until_empty(timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not cost_tracker.flush(5):
        assert time.monotonic() < deadline, f"shipper could not deliver: {cost_tracker.shipper.last_error}"
        time.sleep(0.1)


def test_exporter_killed_and_restarted_while_app_keeps_calling_totals_exact(tmp_path):
    state, port = str(tmp_path / "state"), free_port()
    exp = ExporterProcess(state, port=port).start()
    cost_tracker.configure(url=exp.url, spool_dir=str(tmp_path / "spool"), flush_interval=0.02, batch_size=50)
    cost_tracker.shipper.max_backoff = 0.2
    n_calls = 0
    down_latencies = []

    @track_cost(provider="openai", tenant="kill", endpoint="/k")
    def ask():
        return {"model": "gpt-4o-mini", "usage": USAGE}

    try:
        def burst(n, record=None):
            nonlocal n_calls
            for _ in range(n):
                t0 = time.perf_counter()
                ask()
                if record is not None:
                    record.append(time.perf_counter() - t0)
                n_calls += 1
                if n_calls % 50 == 0:
                    time.sleep(0.01)

        burst(1500)
        exp.kill()                                    # SIGKILL: batches may be half-acknowledged
        burst(1500, down_latencies)
        time.sleep(0.3)                               # the shipper notices, spools
        assert cost_tracker.shipper.stats["spooled"] > 0
        assert os.listdir(cost_tracker.shipper.spool.dir)
        exp = ExporterProcess(state, port=port).start()
        burst(1500)
        _flush_until_empty()
        m = _metrics(exp.url)
        lbl = dict(provider="openai", model="gpt-4o-mini", tenant="kill")
        assert sample(m, "cost_provider_api_calls_total", **lbl) == n_calls == 4500
        for tt, per in (("input", 600), ("cached_input", 400), ("output", 150), ("reasoning", 50)):
            assert sample(m, "cost_provider_tokens_total", token_type=tt, **lbl) == per * n_calls
        assert sample(m, "cost_request_cost_usd_sum", endpoint="/k", provider="openai", model="gpt-4o-mini",
                      tenant="kill") == pytest.approx(CALL_USD * n_calls, rel=1e-9)
        st = cost_tracker.shipper.stats
        assert st["dropped"] == 0 and st["rejected"] == 0 and st["replayed"] > 0
        assert not cost_tracker.shipper.spool.pending()
        # the call never waited on the dead exporter
        assert statistics.median(down_latencies) < 0.002
    finally:
        cost_tracker.shutdown()
        exp.stop()


def test_spool_full_and_queue_full_are_counted_and_logged(tmp_path, caplog):
    dead = f"http://127.0.0.1:{free_port()}"
    reg = CollectorRegistry()
    cost_tracker.configure(url=dead, registry=reg, spool_dir=str(tmp_path / "spool"), flush_interval=60,
                           queue_size=30, spool_max_bytes=3000)
    try:
        @track_cost(provider="openai", model="gpt-4o-mini", tenant="t")
        def ask():
            return {"model": "gpt-4o-mini", "usage": USAGE}

        with caplog.at_level(logging.ERROR, logger="costmeter.sdk.shipper"):
            for _ in range(45):
                ask()                                   # 30 fit in the queue, 15 are dropped
            assert cost_tracker.shipper.stats["dropped"] == 15
            assert reg.get_sample_value("costmeter_sdk_dropped_events_total", {"reason": "queue_full"}) == 15
            assert not cost_tracker.flush(5)             # exporter down: everything goes to the spool
        st = cost_tracker.shipper.stats
        assert st["spooled"] + st["dropped"] == 45
        assert st["spooled"] > 0 and st["dropped"] > 15
        assert reg.get_sample_value("costmeter_sdk_dropped_events_total", {"reason": "spool_full"}) == \
            st["dropped"] - 15
        assert any("dropped" in r.getMessage() for r in caplog.records)
        assert cost_tracker.shipper.spool.bytes <= 3000
    finally:
        cost_tracker.shutdown()


def test_rejected_events_are_not_retried_and_good_ones_count(tmp_path):
    exp = ExporterProcess(str(tmp_path / "state")).start()
    cost_tracker.configure(url=exp.url, spool_dir=str(tmp_path / "spool"), flush_interval=60)
    try:
        @track_cost(provider="openai", model="gpt-4o-mini")
        def ask(tenant):
            return {"model": "gpt-4o-mini", "usage": USAGE}

        ask.__wrapped__  # keeps the wrapped function reachable
        t_ok = track_cost(provider="openai", tenant="ok")(lambda: {"model": "gpt-4o-mini", "usage": USAGE})
        t_bad = track_cost(provider="openai", tenant="x" * 200)(lambda: {"model": "gpt-4o-mini", "usage": USAGE})
        t_ok()
        t_bad()
        t_ok()
        assert cost_tracker.flush(5)
        st = cost_tracker.shipper.stats
        assert (st["sent"], st["rejected"]) == (2, 1)
        assert not cost_tracker.shipper.spool.pending()
        m = _metrics(exp.url)
        assert sample(m, "cost_provider_api_calls_total", provider="openai", model="gpt-4o-mini", tenant="ok") == 2
    finally:
        cost_tracker.shutdown()
        exp.stop()


APP = r"""
import sys, costmeter
from costmeter import track_cost
costmeter.configure(url=sys.argv[1], spool_dir=sys.argv[2], flush_interval=60)
@track_cost(provider="openai", tenant=sys.argv[3])
def ask():
    return {"model": "gpt-4o-mini", "usage": {"prompt_tokens": 100, "completion_tokens": 10}}
for _ in range(int(sys.argv[4])):
    ask()
# no flush: the interpreter exit must deliver (or spool) what is queued
"""


def test_flushed_at_exit_or_spooled_and_replayed_by_the_next_process(tmp_path):
    port = free_port()
    url, spool = f"http://127.0.0.1:{port}", str(tmp_path / "spool")
    env = dict(os.environ, PYTHONPATH=os.path.join(REPO, "exporter"))
    env.pop("COSTMETER_URL", None)

    def app(tenant, n):
        subprocess.run([sys.executable, "-c", APP, url, spool, tenant, str(n)], env=env, check=True, timeout=60)

    app("offline", 7)                                  # exporter not running: spooled at exit
    assert os.listdir(spool)
    exp = ExporterProcess(str(tmp_path / "state"), port=port).start()
    try:
        app("online", 5)                               # replays the 7 from the spool, delivers its own 5
        app("online", 0)                               # nothing new, nothing replayed twice
        m = _metrics(exp.url)
        assert sample(m, "cost_provider_api_calls_total", provider="openai", model="gpt-4o-mini",
                      tenant="offline") == 7
        assert sample(m, "cost_provider_api_calls_total", provider="openai", model="gpt-4o-mini",
                      tenant="online") == 5
        assert not [f for f in os.listdir(spool) if f.endswith(".ndjson")]
    finally:
        exp.stop()


def test_embedded_mode_with_real_openai_client(tmp_path):
    with FakeLLMServer() as srv:
        ex = cost_tracker.embed(state_dir=str(tmp_path / "state"))
        try:
            assert ex.url.startswith("http://127.0.0.1:")
            client = openai.OpenAI(base_url=srv.openai_base_url, api_key="sk-test", max_retries=0)

            @track_cost(provider="openai", tenant="emb", endpoint="/chat")
            def ask():
                return client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "x"}],
                                                      stream=True, stream_options={"include_usage": True})

            for _ in range(3):
                for _ in ask():
                    pass
            assert cost_tracker.flush(5)
            m = _metrics(ex.url)
            lbl = dict(provider="openai", model="gpt-4o-mini-2024-07-18", tenant="emb")
            assert sample(m, "cost_provider_api_calls_total", **lbl) == 3
            assert sample(m, "cost_provider_tokens_total", token_type="cached_input", **lbl) == 3 * 1024
            assert sample(m, "cost_provider_tokens_total", token_type="reasoning", **lbl) == 3 * 128
            assert sample(m, "cost_request_cost_usd_sum", endpoint="/chat", **lbl) == pytest.approx(3 * 0.0002832)
        finally:
            cost_tracker.shutdown()
