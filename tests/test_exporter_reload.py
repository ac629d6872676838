"""Reloading budgets.yaml and pricing.yaml without a restart: SIGHUP and POST /-/reload."""
from __future__ import annotations

import signal
import time

import requests

from exporter_support import ExporterProcess, parse_metrics, sample


def budget(p, name):
    return requests.get(f"{p.url}/v1/budgets/{name}").json()["periods"]


def test_sighup_reloads_budgets_and_keeps_spend(tmp_path):
    budgets = tmp_path / "budgets.yaml"
    budgets.write_text("tenants: {acme: {daily: 10.0}}\n")
    with ExporterProcess(str(tmp_path / "state"), f"--budgets.file={budgets}") as p:
        requests.post(p.url + "/v1/events", json=[{"id": "a", "provider": "openai", "tenant": "acme",
                                                   "cost_usd": 3.0}]).raise_for_status()
        assert budget(p, "tenant:acme")[0]["limit_usd"] == 10.0
        budgets.write_text("tenants: {acme: {daily: 3.5, monthly: 50.0}}\nglobal: {daily: 100.0}\n")
        p.proc.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and budget(p, "tenant:acme")[0]["limit_usd"] != 3.5:
            time.sleep(0.05)
        periods = {b["period"]: b for b in budget(p, "tenant:acme")}
        assert periods["daily"]["limit_usd"] == 3.5 and periods["daily"]["spend_usd"] == 3.0
        assert periods["daily"]["status"] == "warning"
        assert periods["monthly"]["spend_usd"] == 3.0          # recomputed from the ledger
        assert budget(p, "global")[0]["spend_usd"] == 3.0
        m = parse_metrics(requests.get(p.url + "/metrics").text)
        assert sample(m, "costmeter_config_last_reload_successful") == 1


def test_bad_reload_keeps_the_previous_configuration(tmp_path):
    budgets = tmp_path / "budgets.yaml"
    budgets.write_text("global: {daily: 10.0}\n")
    with ExporterProcess(str(tmp_path / "state"), f"--budgets.file={budgets}") as p:
        budgets.write_text("global:\n  daily: ten\n")
        r = requests.post(p.url + "/-/reload")
        assert r.status_code == 400
        assert f"{budgets}:2: global.daily" in r.json()["error"]
        assert budget(p, "global")[0]["limit_usd"] == 10.0
        m = parse_metrics(requests.get(p.url + "/metrics").text)
        assert sample(m, "costmeter_config_last_reload_successful") == 0
        budgets.write_text("global: {daily: 20.0}\n")
        assert requests.post(p.url + "/-/reload").status_code == 200
        assert budget(p, "global")[0]["limit_usd"] == 20.0


def test_reload_picks_up_new_prices(tmp_path):
    pricing = tmp_path / "pricing.yaml"
    pricing.write_text("providers: {}\n")
    with ExporterProcess(str(tmp_path / "state"), f"--pricing.file={pricing}") as p:
        ev = {"provider": "acme_llm", "model": "house-1", "tenant": "t", "input_tokens": 1_000_000}
        requests.post(p.url + "/v1/events", json=[dict(ev, id="1")]).raise_for_status()
        pricing.write_text("providers:\n  acme_llm:\n    models:\n      house-1: {input: 2.0, output: 8.0}\n")
        assert requests.post(p.url + "/-/reload").status_code == 200
        requests.post(p.url + "/v1/events", json=[dict(ev, id="2")]).raise_for_status()
        m = parse_metrics(requests.get(p.url + "/metrics").text)
        assert sample(m, "costmeter_unpriced_calls_total", provider="acme_llm", model="house-1") == 1
        assert sample(m, "cost_request_cost_usd_sum", provider="acme_llm", model="house-1", endpoint="unknown",
                      tenant="t") == 2.0


def test_reload_refused_without_basic_auth_answers_at_once(tmp_path):
    import bcrypt
    wc = tmp_path / "web-config.yml"
    wc.write_text(f"basic_auth_users:\n  admin: {bcrypt.hashpw(b'pw', bcrypt.gensalt(rounds=4)).decode()}\n")
    with ExporterProcess(str(tmp_path / "state"), f"--web.config.file={wc}") as p:
        t0 = time.monotonic()
        r = requests.post(p.url + "/-/reload", data=b"x" * 100, timeout=10)
        assert r.status_code == 401 and time.monotonic() - t0 < 5
        assert requests.post(p.url + "/-/reload", data=b"x", auth=("admin", "pw"), timeout=10).status_code == 200
