"""Every counter the exporter serves stays monotonic across SIGKILL.

Duplicates, rejections and infrastructure USD leave no ledger row, so before
this was fixed they came back from the last periodic snapshot: a kill between
snapshots made them go backwards, which Prometheus reads as a reset.
"""
from __future__ import annotations

import time

import requests

from exporter_support import ExporterProcess, parse_metrics

MONOTONIC = ("costmeter_ingest_events_total", "costmeter_ingest_duplicate_events_total",
             "costmeter_ingest_rejected_events_total", "cost_infrastructure_usd_total",
             "cost_provider_api_calls_total", "cost_request_cost_usd_count")


def counters(url: str) -> dict:
    m = parse_metrics(requests.get(url + "/metrics", timeout=10).text)
    return {k: v for k, v in m.items() if k[0] in MONOTONIC}


def test_counters_never_go_backwards_across_sigkill(tmp_path):
    cfg = tmp_path / "exporter.yaml"
    # one snapshot at start, then none for an hour: whatever survives a kill comes from elsewhere
    cfg.write_text("storage: {snapshot_interval_seconds: 3600}\nresources: {interval_seconds: 0.2}\n")
    p = ExporterProcess(str(tmp_path / "state"), f"--config.file={cfg}").start()
    try:
        time.sleep(1.5)             # the start-up snapshot has been taken
        seen: dict = {}
        for round_ in range(3):
            ev = [{"id": f"r{round_}-{i}", "provider": "openai", "model": "gpt-4o-mini", "tenant": "t",
                   "cost_usd": 0.01} for i in range(20)]
            requests.post(p.url + "/v1/events", json=ev).raise_for_status()
            requests.post(p.url + "/v1/events", json=ev).raise_for_status()          # 20 duplicates
            r = requests.post(p.url + "/v1/events", json=[{"provider": "openai"}, 7, {"nope": 1}])
            assert r.status_code == 422
            time.sleep(1.2)                                 # resources sampled several times since
            before = counters(p.url)
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
