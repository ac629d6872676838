"""Every counter the exporter serves stays monotonic across SIGKILL.

Duplicates, rejections and infrastructure USD leave no ledger row, so before
this was fixed they came back from the last periodic snapshot: a kill between
snapshots made them go backwards, which Prometheus reads as a reset.
"""
from __future__ import annotations

import socket
import time

import requests

from exporter_support import ExporterProcess, parse_metrics
from test_billing_aws import aws_env, day, moto, moto_url, queue  # noqa: F401 (fixtures)

MONOTONIC = ("costmeter_ingest_events_total", "costmeter_ingest_duplicate_events_total",
             "costmeter_ingest_rejected_events_total", "cost_infrastructure_usd_total",
             "cost_provider_api_calls_total", "cost_request_cost_usd_count",
             "costmeter_http_connections_evicted_total")


def counters(url: str) -> dict:
    m = parse_metrics(requests.get(url + "/metrics", timeout=10).text)
    return {k: v for k, v in m.items() if k[0] in MONOTONIC}


def test_counters_never_go_backwards_across_sigkill(tmp_path):
    cfg = tmp_path / "exporter.yaml"
    # one snapshot at start, then none for an hour: whatever survives a kill comes from elsewhere
    cfg.write_text("storage: {snapshot_interval_seconds: 3600}\nresources: {interval_seconds: 0.2}\n"
                   "web: {max_connections: 4}\n")
    p = ExporterProcess(str(tmp_path / "state"), f"--config.file={cfg}").start()
    try:
        time.sleep(1.5)             # the start-up snapshot has been taken
        seen: dict = {}
        for round_ in range(2):
            ev = [{"id": f"r{round_}-{i}", "provider": "openai", "model": "gpt-4o-mini", "tenant": "t",
                   "cost_usd": 0.01} for i in range(20)]
            requests.post(p.url + "/v1/events", json=ev).raise_for_status()
            requests.post(p.url + "/v1/events", json=ev).raise_for_status()          # 20 duplicates
            r = requests.post(p.url + "/v1/events", json=[{"provider": "openai"}, 7, {"nope": 1}])
            assert r.status_code == 422
            idle = [socket.create_connection(("127.0.0.1", p.port)) for _ in range(8)]   # evictions
            time.sleep(0.8)                                 # resources sampled several times since
            before = counters(p.url)
            for s in idle:
                s.close()
            assert before[("costmeter_http_connections_evicted_total", frozenset())] >= 4
            assert before[("costmeter_ingest_duplicate_events_total", frozenset())] == 20 * (round_ + 1)
            for k, v in seen.items():
                assert before.get(k, 0) >= v, k
            p.kill()
            p.start()
            after = counters(p.url)
            dropped = {k: (v, after.get(k)) for k, v in before.items() if after.get(k, -1) < v}
            assert not dropped, f"counters went backwards across SIGKILL: {dropped}"
            seen = after
        assert any(k[0] == "cost_infrastructure_usd_total" and v > 0 for k, v in seen.items())
    finally:
        p.stop()


def _crash(ex) -> None:
    """Stop an in-process exporter the way SIGKILL would: no final snapshot."""
    ex._stop.set()
    if ex.http is not None:
        ex.http.shutdown()
        ex.http.server_close()
    for t in ex._threads:
        t.join(timeout=10)
    ex.ledger.close()


def test_billing_api_cost_counter_survives_a_kill_before_the_next_snapshot(moto, tmp_path):
    import json as _json
    from freezegun import freeze_time
    from costmeter.config.settings import load_settings
    from costmeter.server.exporter import SNAPSHOT, Exporter
    queue(moto, {"ResultsByTime": [day("2026-11-01", "2026-11-02", {"Amazon EC2": "4.0"})],
                 "DimensionValueAttributes": []})
    (tmp_path / "exporter.yaml").write_text(
        f'billing:\n  sources:\n    - {{name: aws, type: aws, region: us-east-1, endpoint_url: "{moto}"}}\n'
        "storage: {snapshot_interval_seconds: 3600}\n")
    settings = {"state_dir": str(tmp_path / "state"), "listen_address": "127.0.0.1:0"}
    served = 'costmeter_billing_api_cost_usd_total{source="aws"} 0.01'
    with freeze_time("2026-11-04 09:00:00", tick=True):
        ex = Exporter(load_settings(str(tmp_path / "exporter.yaml"), settings)).start()
        deadline = time.monotonic() + 20
        while served not in requests.get(ex.url + "/metrics", timeout=10).text:   # the start-up pull
            assert time.monotonic() < deadline, "no billing pull"
            time.sleep(0.05)
        # the kill lands after the scrape and before the next snapshot: the last snapshot
        # predates the pull (rewritten here so the test does not race the first snapshot)
        seq, state = ex.ledger.load_snapshot(SNAPSHOT)
        if state:
            for st in state.get("billing", {}).values():
                st["api_cost_usd"] = 0.0
            ex.ledger.save_snapshot(SNAPSHOT, seq, state)
        _crash(ex)
        ex = Exporter(load_settings(str(tmp_path / "exporter.yaml"), settings))
        ex.billing.scheduler.start = lambda *a, **k: None      # no new pull: only what was saved counts
        ex.start()
        try:
            text = requests.get(ex.url + "/metrics", timeout=10).text
        finally:
            ex.stop()
    line = next(ln for ln in text.splitlines() if ln.startswith('costmeter_billing_api_cost_usd_total{source="aws"}'))
    assert float(line.split()[-1]) >= 0.01, line
