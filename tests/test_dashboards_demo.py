"""`costmeter demo`: the scenario's shape (frozen time, seeded), and the command against a real exporter:
Ctrl-C stops it cleanly with nothing lost, an unreachable exporter and a bad flag get clear errors."""
from __future__ import annotations

import collections
import os
import signal
import subprocess
import threading
import time
from datetime import datetime, timezone

import pytest
import requests
from freezegun import freeze_time

from costmeter import cost_tracker
from costmeter.cli import demo
from costmeter.demo import runner, traffic as T
from exporter_support import ExporterProcess, costmeter_cmd, free_port, parse_metrics

NOW = datetime(2026, 3, 31, 18, 30, tzinfo=timezone.utc)   # a Tuesday, the last day of a month


def backfill(seed: int, days: int = 30) -> list[tuple]:
    """The calls a seeded backfill records: (ts, provider, model, tenant, endpoint, tokens, error, cache_hit, cost)."""
    recorded = []

    def record(provider, model=None, tenant=None, endpoint=None, tokens=None, duration=None, error=False, *,
               cache_hit=None, saved_cost_usd=0.0, timestamp=None, **_):
        cost = None if cache_hit or tokens is None else cost_tracker.price(provider, model, tokens)
        recorded.append((timestamp, provider, model, tenant, endpoint, tokens, error, cache_hit, cost))
        return cost

    import random
    from prometheus_client import CollectorRegistry
    cost_tracker.configure(registry=CollectorRegistry())     # direct mode, a registry of its own
    try:
        with freeze_time(NOW), pytest.MonkeyPatch.context() as mp:
            mp.setattr(cost_tracker, "record", record)
            mp.setattr(cost_tracker, "flush", lambda timeout=10.0: True)
            runner.backfill(random.Random(seed), days * 86400.0, runner.Counts(), lambda *_: None,
                            threading.Event())
    finally:
        cost_tracker.shutdown()
    return recorded


@pytest.fixture(scope="module")
def month():
    return backfill(seed=42)


def test_seed_repeats_the_traffic(month):
    assert backfill(seed=42, days=2) == backfill(seed=42, days=2)
    assert backfill(seed=43, days=2) != backfill(seed=42, days=2)


def test_backfill_covers_the_month_with_a_daily_rhythm(month):
    now = NOW.timestamp()
    assert min(c[0] for c in month) >= now - 30 * 86400 - 3600 and max(c[0] for c in month) < now
    by_hour = collections.Counter(int(c[0] % 86400 // 3600) for c in month)
    assert by_hour[14] > 3 * by_hour[3], by_hour
    weekday = collections.Counter(datetime.fromtimestamp(c[0], timezone.utc).weekday() < 5 for c in month)
    assert weekday[True] / 5 > 1.5 * weekday[False] / 2


def test_tenants_providers_models_and_one_unpriced(month):
    assert {c[3] for c in month} == {t.name for t in T.TENANTS}
    assert {c[1] for c in month} >= {"openai", "anthropic", "google"}
    unpriced = {(c[1], c[2]) for c in month if c[8] is None and not c[7] and c[5] is not None}
    assert unpriced == {T.UNPRICED}


def test_cache_hits_near_the_target_and_some_errors(month):
    lookups = [c for c in month if c[7] is not None]
    hits = sum(1 for c in lookups if c[7])
    assert 0.55 < hits / len(lookups) < 0.65
    errors = sum(1 for c in month if c[6])
    assert 0.01 < errors / len(month) < 0.03


def test_one_tenant_goes_over_its_budget_and_one_spike(month):
    month_start = NOW.replace(day=1, hour=0, minute=30).timestamp() - 1800
    trial = sum(c[8] or 0 for c in month if c[3] == T.OVER_BUDGET_TENANT and c[0] >= month_start)
    assert trial > 10.0      # config/budgets.yaml: trial-tier monthly 10.0
    others = sum(c[8] or 0 for c in month if c[3] == "startup-tier" and c[0] >= month_start)
    assert others < 100.0    # startup-tier monthly 100.0
    hourly = collections.Counter(int(c[0] // 3600) for c in month if c[3] == T.SPIKE_TENANT)
    (spike_hour, n), = hourly.most_common(1)
    ordinary = sorted(hourly.values())[len(hourly) // 2]
    assert n > 5 * ordinary
    assert datetime.fromtimestamp(spike_hour * 3600, timezone.utc).date() == datetime(2026, 3, 28).date()


def _ingested(url: str) -> float:
    m = parse_metrics(requests.get(url + "/metrics", timeout=5).text)
    return m.get(("costmeter_ingest_events_total", frozenset()), 0.0)


def test_ctrl_c_stops_cleanly_and_loses_nothing(tmp_path):
    with ExporterProcess(str(tmp_path / "state")) as exporter:
        env = dict(os.environ, XDG_CACHE_HOME=str(tmp_path / "cache"))
        p = subprocess.Popen(costmeter_cmd() + ["demo", "--url", exporter.url, "--seed", "3", "--rate", "20"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        try:
            deadline = time.monotonic() + 20
            while _ingested(exporter.url) < 10 and time.monotonic() < deadline:
                time.sleep(0.2)
            assert _ingested(exporter.url) >= 10, "no traffic reached the exporter"
            p.send_signal(signal.SIGINT)
            out, err = p.communicate(timeout=20)
        finally:
            if p.poll() is None:
                p.kill()
        assert p.returncode == 0, err
        assert "Traceback" not in err
        done = [line for line in err.splitlines() if line.startswith("done:")]
        assert done, err
        delivered = int(done[-1].rsplit(";", 1)[1].split()[0])
        assert delivered == _ingested(exporter.url) > 0


def test_unreachable_exporter_and_bad_flags(tmp_path):
    url = f"http://127.0.0.1:{free_port()}"
    r = subprocess.run(costmeter_cmd() + ["demo", "--url", url, "--duration", "1s"], capture_output=True, text=True,
                       timeout=30, env=dict(os.environ, XDG_CACHE_HOME=str(tmp_path)))
    assert r.returncode == 1 and f"cannot reach the exporter at {url}" in r.stderr
    r = subprocess.run(costmeter_cmd() + ["demo", "--backfill", "30x"], capture_output=True, text=True, timeout=30)
    assert r.returncode == 2 and "'30x' is not a duration" in r.stderr


@pytest.mark.parametrize("text,seconds", [("30d", 30 * 86400), ("1h30m", 5400), ("10s", 10), ("500ms", 0.5),
                                          ("0", 0)])
def test_go_durations(text, seconds):
    assert demo.duration(text) == seconds
