"""SIGKILL the exporter while a retrying client streams events; every event counts exactly once."""
from __future__ import annotations

import threading
import time

import requests

from exporter_support import ExporterProcess, parse_metrics, sample

BATCHES, PER_BATCH = 100, 200
KILL_AFTER = (10, 30, 55, 80)     # acknowledged batches at which the exporter is SIGKILLed


def test_sigkill_mid_stream_loses_nothing_and_counts_nothing_twice(tmp_path):
    cfg = tmp_path / "exporter.yaml"
    # snapshot every second, so restarts exercise snapshot + replay, not only replay
    cfg.write_text("storage:\n  snapshot_interval_seconds: 1\n")
    exp = ExporterProcess(str(tmp_path / "state"), f"--config.file={cfg}").start()
    acked: list[int] = []
    attempts = {"errors": 0}
    done = threading.Event()

    def client():
        s = requests.Session()
        for b in range(BATCHES):
            batch = [{"id": f"b{b}-{i}", "provider": "anthropic", "model": "claude-3-haiku",
                      "tenant": f"t{i % 7}", "input_tokens": 1000, "output_tokens": 100, "cost_usd": 0.001}
                     for i in range(PER_BATCH)]
            while True:      # retry an unacknowledged batch until the exporter says 200
                try:
                    r = s.post(exp.url + "/v1/events", json=batch, timeout=5)
                    if r.status_code == 200:
                        acked.append(b)
                        break
                    attempts["errors"] += 1
                except requests.RequestException:
                    attempts["errors"] += 1
                    s = requests.Session()
                time.sleep(0.02)
        done.set()

    t = threading.Thread(target=client)
    t.start()
    kills = 0
    deadline = time.monotonic() + 120
    while not done.is_set() and time.monotonic() < deadline:
        time.sleep(0.002)
        if kills < len(KILL_AFTER) and len(acked) >= KILL_AFTER[kills]:
            exp.kill()           # the client is sending continuously: this lands mid-stream
            kills += 1
            exp.start()
    t.join(timeout=max(1, deadline - time.monotonic()))
    assert done.is_set(), "client did not finish"
    assert kills == len(KILL_AFTER) and attempts["errors"] >= 1, "the exporter was not killed mid-stream"
    assert acked == list(range(BATCHES))

    exp.kill()          # and once more after the end, then count from a fresh start
    exp.start()
    try:
        m = parse_metrics(requests.get(exp.url + "/metrics", timeout=10).text)
        total = sum(v for (name, labels), v in m.items() if name == "cost_provider_api_calls_total")
        assert total == BATCHES * PER_BATCH
        spend = sum(v for (name, labels), v in m.items() if name == "cost_request_cost_usd_sum")
        assert abs(spend - BATCHES * PER_BATCH * 0.001) < 1e-6
        assert sample(m, "costmeter_ingest_events_total") == BATCHES * PER_BATCH
        tokens = sum(v for (name, labels), v in m.items()
                     if name == "cost_provider_tokens_total" and dict(labels)["token_type"] == "input")
        assert tokens == BATCHES * PER_BATCH * 1000
        assert sample(m, "cost_provider_api_calls_total", provider="anthropic", model="claude-3-haiku",
                      tenant="t0") == sum(1 for b in range(BATCHES) for i in range(PER_BATCH) if i % 7 == 0)
    finally:
        exp.stop()


def test_sigkill_during_group_commits_of_small_concurrent_batches(tmp_path):
    """Four clients send batches of 10 at once, so commits are shared; kill -9 three times.
    Budgets, restored from the snapshot plus replay, see every event exactly once too."""
    budgets = tmp_path / "budgets.yaml"
    budgets.write_text("global: {daily: 100000}\ntenant_defaults: {daily: 1000}\n")
    cfg = tmp_path / "exporter.yaml"
    cfg.write_text("storage:\n  snapshot_interval_seconds: 1\n")
    exp = ExporterProcess(str(tmp_path / "state"), f"--budgets.file={budgets}", f"--config.file={cfg}").start()
    clients, batches, per = 4, 40, 10
    acked = {k: [] for k in range(clients)}
    errors = [0]

    def client(k):
        s = requests.Session()
        for b in range(batches):
            batch = [{"id": f"c{k}-{b}-{i}", "provider": "openai", "model": "gpt-4o", "tenant": f"t{k}",
                      "input_tokens": 10, "cost_usd": 0.5} for i in range(per)]
            while True:
                try:
                    r = s.post(exp.url + "/v1/events", json=batch, timeout=5)
                    if r.status_code == 200:
                        acked[k].append(b)
                        break
                except requests.RequestException:
                    s = requests.Session()
                errors[0] += 1
                time.sleep(0.02)

    threads = [threading.Thread(target=client, args=(k,)) for k in range(clients)]
    for t in threads:
        t.start()
    for at in (20, 70, 120):
        deadline = time.monotonic() + 60
        while sum(map(len, acked.values())) < at and time.monotonic() < deadline:
            time.sleep(0.002)
        exp.kill()
        exp.start()
    for t in threads:
        t.join(timeout=120)
    assert all(a == list(range(batches)) for a in acked.values()) and errors[0] >= 1
    exp.kill()
    exp.start()
    try:
        m = parse_metrics(requests.get(exp.url + "/metrics", timeout=10).text)
        assert sample(m, "costmeter_ingest_events_total") == clients * batches * per
        for k in range(clients):
            assert sample(m, "cost_provider_api_calls_total", provider="openai", model="gpt-4o",
                          tenant=f"t{k}") == batches * per
        spend = {(b["name"], b["period"]): b["spend_usd"]
                 for b in requests.get(exp.url + "/v1/budgets", timeout=10).json()["budgets"]}
        assert spend[("global", "daily")] == clients * batches * per * 0.5
        assert all(spend[(f"tenant:t{k}", "daily")] == batches * per * 0.5 for k in range(clients))
    finally:
        exp.stop()
