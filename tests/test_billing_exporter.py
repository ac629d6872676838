"""Billing pulls inside a running exporter: the first pull at start-up, /metrics never waits on
a vendor, a refused key keeps the last values and the exporter serving, and billed values and
the pulls' own cost survive a restart."""
from __future__ import annotations

import time
from datetime import date

import pytest
import requests
from freezegun import freeze_time

from costmeter.config.settings import load_settings
from costmeter.server.exporter import Exporter
from fakes.billing_server import FakeBillingServer, openai_result

KEY = "sk-admin-exporter-test-0123456789"


def wait_for(predicate, timeout=20.0):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def start(tmp_path, srv) -> Exporter:
    cfg = tmp_path / "exporter.yaml"
    cfg.write_text("billing:\n  interval: 1h\n  sources:\n"
                   f'    - {{name: openai, type: openai, api_key_env: TEST_EXPORTER_OPENAI_KEY, base_url: "{srv.url}"}}\n')
    settings = load_settings(str(cfg), {"state_dir": str(tmp_path / "state"), "listen_address": "127.0.0.1:0"})
    return Exporter(settings).start()


def source(ex: Exporter) -> dict:
    return ex.billing.scheduler.snapshot()[0]


@pytest.fixture
def srv(monkeypatch, threads_follow_freezegun):
    monkeypatch.setenv("TEST_EXPORTER_OPENAI_KEY", KEY)
    with FakeBillingServer(openai_key=KEY) as s:
        s.openai_costs = {date(2026, 11, 2): [openai_result(4.5, "gpt-4o-2024-08-06, input")],
                          date(2026, 11, 3): [openai_result(1.5, "gpt-4o-2024-08-06, output")]}
        yield s


BILLED = 'cost_billed_usd{source="openai",provider="openai",service="gpt-4o-2024-08-06, input"} 4.5'


def test_first_pull_at_start_up_and_a_refused_key_after_restart_keeps_the_values(srv, tmp_path, caplog):
    with freeze_time("2026-11-04 10:00:00", tick=True):
        ex = start(tmp_path, srv)
        try:
            wait_for(lambda: source(ex)["up"] == 1.0)
            text = requests.get(ex.url + "/metrics", timeout=10).text
            assert BILLED in text and 'costmeter_billing_up{source="openai"} 1.0' in text
            first_success = source(ex)["last_success"]
        finally:
            ex.stop()
        srv.openai_key = "sk-admin-revoked"       # the admin key was revoked while the exporter was down
        n = len(srv.requests)
        ex = start(tmp_path, srv)
        try:
            wait_for(lambda: len(srv.requests) > n and "pull failed" in caplog.text)
            text = requests.get(ex.url + "/metrics", timeout=10).text
        finally:
            ex.stop()
    assert BILLED in text                                      # restored from the snapshot, kept
    assert 'costmeter_billing_up{source="openai"} 0.0' in text
    assert f'costmeter_billing_last_success_timestamp_seconds{{source="openai"}} {first_success!r}' in text
    assert "TEST_EXPORTER_OPENAI_KEY" in caplog.text and KEY not in caplog.text


def test_a_scrape_never_waits_on_a_vendor(srv, tmp_path):
    srv.delay = 3.0
    with freeze_time("2026-11-04 10:00:00", tick=True):
        ex = start(tmp_path, srv)
        try:
            wait_for(lambda: len(srv.requests) == 1)            # the start-up pull is in flight
            t0 = time.monotonic()
            text = requests.get(ex.url + "/metrics", timeout=10).text
            took = time.monotonic() - t0
            assert source(ex)["up"] == 0.0                     # still waiting on the vendor
        finally:
            srv.delay = 0.0
            ex.stop()
    assert took < 1.0
    assert 'costmeter_billing_up{source="openai"} 0.0' in text


def test_ratio_from_the_ledger_over_the_billed_complete_days(srv, tmp_path):
    srv.anthropic_costs = {}
    with freeze_time("2026-11-04 10:00:00", tick=True):
        ex = start(tmp_path, srv)
        try:
            wait_for(lambda: source(ex)["up"] == 1.0)
            events = [  # Nov 2 and 3 are billed ($6.00); Nov 1 (not billed) and today are left out
                {"provider": "openai", "model": "gpt-4o", "cost_usd": 3.0, "timestamp": "2026-11-02T08:00:00Z"},
                {"provider": "openai", "model": "gpt-4o", "cost_usd": 3.9, "timestamp": "2026-11-03T23:59:59Z"},
                {"provider": "openai", "model": "gpt-4o", "cost_usd": 50.0, "timestamp": "2026-11-01T12:00:00Z"},
                {"provider": "openai", "model": "gpt-4o", "cost_usd": 50.0, "timestamp": "2026-11-04T09:00:00Z"},
                {"provider": "anthropic", "model": "claude", "cost_usd": 2.0, "timestamp": "2026-11-02T08:00:00Z"},
            ]
            assert ex.ingest(events).accepted == 5
            assert ex.billing.scheduler.pull("openai")
            text = requests.get(ex.url + "/metrics", timeout=10).text
        finally:
            ex.stop()
    assert 'cost_estimate_to_billed_ratio{source="openai",provider="openai"} 1.15' in text   # 6.90 / 6.00
    assert 'provider="anthropic"} ' not in text.split("cost_estimate_to_billed_ratio", 1)[1].split("# HELP", 1)[0]


def test_a_budget_reload_keeps_the_billed_spend(srv, tmp_path):
    (tmp_path / "budgets.yaml").write_text("budgets:\n  - {name: llm-bill, billing_source: openai, period: monthly, "
                                           "limit_usd: 10}\n")
    with freeze_time("2026-11-04 10:00:00", tick=True):
        cfg = tmp_path / "exporter.yaml"
        cfg.write_text("budgets_file: budgets.yaml\nbilling:\n  sources:\n"
                       f'    - {{name: openai, type: openai, api_key_env: TEST_EXPORTER_OPENAI_KEY, base_url: "{srv.url}"}}\n')
        settings = load_settings(str(cfg), {"state_dir": str(tmp_path / "state"), "listen_address": None})
        ex = Exporter(settings).start(serve_http=False)
        try:
            wait_for(lambda: ex.budgets.get("llm-bill")[0].spend_usd == 6.0)
            (tmp_path / "budgets.yaml").write_text("budgets:\n  - {name: llm-bill, billing_source: openai, "
                                                   "period: monthly, limit_usd: 20}\n")
            ex.reload()
            st = ex.budgets.get("llm-bill")[0]
        finally:
            ex.stop()
    assert (st.spend_usd, st.limit_usd, st.utilization_ratio) == (6.0, 20.0, 0.3)


def test_pulls_repeat_every_interval_with_jitter(monkeypatch):
    from costmeter.collectors import billing
    from costmeter.collectors.billing import BillingScheduler, Pull
    from costmeter.config.billing import BillingConfig, SourceConfig

    class Client:
        calls = 0

        def pull(self, start, end):
            Client.calls += 1
            return Pull(start, end)

    waits = []

    class Stop:
        def is_set(self):
            return False

        def wait(self, seconds):
            waits.append(seconds)
            return len(waits) == 3            # "stop" after the third wait

    monkeypatch.setattr(billing.random, "uniform", lambda a, b: (a, b)[len(waits) % 2])
    cfg = SourceConfig("s", "openai", interval=600.0)
    s = BillingScheduler(BillingConfig(600.0, [cfg]), clients={"s": Client()})
    s._stop = Stop()
    s._loop(cfg)
    assert Client.calls == 3                  # the first pull did not wait
    assert waits == [540.0, 660.0, 540.0]     # interval x 0.9 .. 1.1
