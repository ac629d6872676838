"""SIGKILL the exporter while a retrying client streams events; every event counts exactly once."""
from __future__ import annotations

import os
import sqlite3
import threading
import time

import requests

from exporter_support import ExporterProcess, kill_mid_stream, parse_metrics, post_until_acked, sample

BATCHES, PER_BATCH = 100, 200
KILL_AFTER = (10, 30, 55, 80)     # acknowledged batches at which the exporter is SIGKILLed



def test_sigkill_mid_stream_loses_nothing_and_counts_nothing_twice(tmp_path):
    cfg = tmp_path / "exporter.yaml"
    # snapshot every second, so restarts exercise snapshot + replay, not only replay
    cfg.write_text("storage:\n  snapshot_interval_seconds: 1\n")
    exp = ExporterProcess(str(tmp_path / "state"), f"--config.file={cfg}").start()
    acked: list[int] = []
    errors = [0]
    done = threading.Event()

    def client():
        s = requests.Session()
        for b in range(BATCHES):
            batch = [{"id": f"b{b}-{i}", "provider": "anthropic", "model": "claude-3-haiku",
                      "tenant": f"t{i % 7}", "input_tokens": 1000, "output_tokens": 100, "cost_usd": 0.001}
                     for i in range(PER_BATCH)]
            s = post_until_acked(s, exp, batch, lambda: acked.append(b), errors)
        done.set()

    t = threading.Thread(target=client)
    t.start()
    kills = kill_mid_stream(exp, acked, done, KILL_AFTER)
    t.join(timeout=10)
    assert done.is_set(), "client did not finish"
    assert kills == len(KILL_AFTER) and errors[0] >= 1, "the exporter was not killed mid-stream"
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
            s = post_until_acked(s, exp, batch, lambda: acked[k].append(b), errors)

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


def _snapshot_seq(state_dir) -> int:
    path = os.path.join(state_dir, "snapshots.db")
    if not os.path.exists(path):
        return -1
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)
    try:
        row = db.execute("SELECT seq FROM snapshots WHERE name='exporter'").fetchone()
    except sqlite3.OperationalError:          # not created yet
        return -1
    finally:
        db.close()
    return -1 if row is None else row[0]


def test_sigkill_during_incremental_budget_snapshots_of_many_tenants(tmp_path):
    """2,000 tenants with daily and monthly defaults, a snapshot every second (each writes
    only the budget sums changed since the last), kill -9 four times while two clients
    stream, each time at another moment after a snapshot: every budget's spend equals the
    sum of what was acknowledged."""
    budgets = tmp_path / "budgets.yaml"
    budgets.write_text("global: {daily: 1000000, monthly: 1000000}\ntenant_defaults: {daily: 1000, monthly: 1000}\n")
    cfg = tmp_path / "exporter.yaml"
    cfg.write_text("storage:\n  snapshot_interval_seconds: 1\n")
    state = str(tmp_path / "state")
    exp = ExporterProcess(state, f"--budgets.file={budgets}", f"--config.file={cfg}").start()
    tenants, clients, batches, per = 2000, 2, 100, 100
    acked = {k: [] for k in range(clients)}
    errors = [0]
    done = threading.Event()

    def events(k, b):
        # costs are multiples of 1/64: sums are exact in any order, so == compares them
        return [{"id": f"c{k}-{b}-{i}", "provider": "openai", "model": "gpt-4o",
                 "tenant": f"t{(k * 7919 + b * 613 + i * 31) % tenants}", "cost_usd": (1 + (b + i) % 5) / 64}
                for i in range(per)]

    def client(k):
        s = requests.Session()
        for b in range(batches):
            s = post_until_acked(s, exp, events(k, b), lambda: acked[k].append(b), errors, done)
            time.sleep(0.06)

    threads = [threading.Thread(target=client, args=(k,)) for k in range(clients)]
    for t in threads:
        t.start()
    snapshots = []
    for delay in (0.05, 0.35, 0.6, 0.9):       # after a snapshot of this run: at another moment each time
        seen = _snapshot_seq(state)
        deadline = time.monotonic() + 30
        while _snapshot_seq(state) <= seen and time.monotonic() < deadline:
            time.sleep(0.01)
        snapshots.append(_snapshot_seq(state))
        time.sleep(delay)
        exp.kill()
        exp.start()
    for t in threads:
        t.join(timeout=120)
    done.set()
    assert all(a == list(range(batches)) for a in acked.values()) and errors[0] >= 1
    # three kills at least land mid-stream (the last may come after the stream: also a case)
    assert snapshots == sorted(snapshots) and snapshots[-2] < clients * batches * per, \
        f"kills must land mid-stream, after snapshots: {snapshots}"
    want: dict = {}
    for k in range(clients):
        for b in range(batches):
            for e in events(k, b):
                want[e["tenant"]] = want.get(e["tenant"], 0.0) + e["cost_usd"]
    exp.kill()
    exp.start()
    try:
        got = {(b["name"], b["period"]): b["spend_usd"]
               for b in requests.get(exp.url + "/v1/budgets", timeout=30).json()["budgets"]}
        total = sum(want.values())
        assert got[("global", "daily")] == got[("global", "monthly")] == total
        for period in ("daily", "monthly"):
            assert {t: got[(f"tenant:{t}", period)] for t in want} == want
    finally:
        exp.stop()
