"""Who may read spend when only bearer tokens are configured (docs/exporter.md, "Who needs
which credential"): every read of spend takes a token, probes stay open, and a real
Prometheus scrapes with `authorization: credentials_file:`."""
from __future__ import annotations

import os
import subprocess
import time

import bcrypt
import pytest
import requests
import yaml

from costmeter.server.exporter import Exporter
from costmeter.server.webconfig import load_web_config

READS = ("/", "/metrics", "/v1/budgets", "/v1/budgets/global", "/v1/budgets/tenant:acme",
         "/v1/costs?group_by=tenant")
PROBES = ("/-/healthy", "/-/ready")
TOKEN = {"Authorization": "Bearer s3cret"}


@pytest.fixture(autouse=True)
def budgets(monkeypatch):
    monkeypatch.setenv("GLOBAL_BUDGET_DAILY", "5")
    monkeypatch.setenv("TENANT_BUDGET_DAILY_DEFAULT", "2")


@pytest.fixture
def exp(tmp_path, monkeypatch):
    monkeypatch.setenv("COSTMETER_INGEST_TOKENS", "s3cret")
    e = Exporter.embedded(state_dir=str(tmp_path / "state"))
    assert e.settings.bearer_tokens == ("s3cret",)
    r = requests.post(e.url + "/v1/events", headers=TOKEN,
                      json=[{"provider": "openai", "tenant": "acme", "cost_usd": 1.25}])
    assert r.status_code == 200
    yield e
    e.stop()


@pytest.mark.parametrize("path", READS)
def test_reads_of_spend_need_a_token_when_tokens_are_configured(exp, path):
    for method in (requests.get, requests.head):
        r = method(exp.url + path)
        assert r.status_code == 401, (method, path)
        assert r.headers["WWW-Authenticate"].startswith("Bearer")
        assert b"acme" not in r.content and b"1.25" not in r.content
        assert method(exp.url + path, headers={"Authorization": "Bearer wrong"}).status_code == 403
        assert method(exp.url + path, auth=("any", "s3cret")).status_code == 401      # not a bearer token
        assert method(exp.url + path, headers=TOKEN).status_code == 200, (method, path)
    if path == "/metrics":
        assert 'tenant="acme"' in requests.get(exp.url + path, headers=TOKEN).text


@pytest.mark.parametrize("path", PROBES)
def test_probes_stay_open_with_tokens_alone(exp, path):
    assert requests.get(exp.url + path).status_code == 200


def test_with_no_credentials_configured_reads_stay_open(tmp_path):
    e = Exporter.embedded(state_dir=str(tmp_path / "state"))
    try:
        for path in READS + PROBES:
            assert requests.get(e.url + path).status_code == 200, path
    finally:
        e.stop()


def test_with_basic_auth_and_tokens_a_read_takes_either_and_probes_take_basic_auth(exp, tmp_path):
    wc = tmp_path / "web-config.yml"
    wc.write_text(f"basic_auth_users:\n  prometheus: {bcrypt.hashpw(b'scrape-me', bcrypt.gensalt(4)).decode()}\n")
    exp.web = load_web_config(str(wc))
    basic = ("prometheus", "scrape-me")
    for path in READS:
        assert requests.get(exp.url + path).status_code == 401, path
        assert requests.get(exp.url + path, auth=basic).status_code == 200, path
        assert requests.get(exp.url + path, headers=TOKEN).status_code == 200, path   # the SDK's budget reads
        assert requests.get(exp.url + path, headers={"Authorization": "Bearer wrong"}).status_code == 403, path
    for path in PROBES:
        assert requests.get(exp.url + path).status_code == 401, path
        assert requests.get(exp.url + path, headers=TOKEN).status_code == 401, path
        assert requests.get(exp.url + path, auth=basic).status_code == 200, path


def test_the_sdk_budget_checks_read_with_their_token(exp):
    from costmeter.sdk.enforcement import BudgetUnavailable, RemoteSource
    with pytest.raises(BudgetUnavailable, match="HTTP 401"):
        RemoteSource(exp.url).refresh()
    spent = {s.name: s.spend_usd for s in RemoteSource(exp.url, token="s3cret").matching("openai", "m", "acme", "e")}
    assert spent == {"global": 1.25, "tenant:acme": 1.25}


def test_the_analysis_commands_send_costmeter_token(exp, monkeypatch):
    from costmeter.analysis.sources import SourceError, UrlSource
    monkeypatch.delenv("COSTMETER_TOKEN", raising=False)
    with pytest.raises(SourceError) as e:
        UrlSource(exp.url).budgets(time.time())
    assert "HTTP 401" in str(e.value) and "COSTMETER_TOKEN" in str(e.value)
    monkeypatch.setenv("COSTMETER_TOKEN", "s3cret")
    assert any(b["name"] == "global" for b in UrlSource(exp.url).budgets(time.time()))
    rows = UrlSource(exp.url).costs(0, time.time() + 60, ["tenant"])
    assert rows and rows[0]["tenant"] == "acme"


def test_prometheus_scrapes_with_the_token_as_the_shipped_config_shows(exp, tmp_path):
    """The authorization block commented in config/prometheus.yml, run by a real Prometheus."""
    from alerting.stack import binary, free_port, wait_for
    with open(os.path.join(os.path.dirname(__file__), "..", "config", "prometheus.yml")) as f:
        shipped = f.read()
    assert "#   credentials_file:" in shipped          # the example users copy
    token_file = tmp_path / "costmeter-token"
    token_file.write_text("s3cret\n")
    target = exp.url.split("://", 1)[1]
    cfg = {"global": {"scrape_interval": "1s"}, "scrape_configs": [
        {"job_name": "with_token", "static_configs": [{"targets": [target]}],
         "authorization": {"credentials_file": str(token_file)}},
        {"job_name": "without", "static_configs": [{"targets": [target]}]}]}
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(cfg))
    port = free_port()
    with open(tmp_path / "prometheus.log", "wb") as log:
        prom = subprocess.Popen([binary("prometheus"), f"--config.file={tmp_path / 'prometheus.yml'}",
                                 f"--storage.tsdb.path={tmp_path / 'data'}", f"--web.listen-address=127.0.0.1:{port}"],
                                stdout=log, stderr=subprocess.STDOUT)
    try:
        def up() -> dict:
            r = requests.get(f"http://127.0.0.1:{port}/api/v1/query", params={"query": "up"}, timeout=2).json()
            got = {s["metric"]["job"]: s["value"][1] for s in r["data"]["result"]}
            return got if len(got) == 2 else {}
        assert wait_for(up, 30, "Prometheus to scrape both jobs") == {"with_token": "1", "without": "0"}
        r = requests.get(f"http://127.0.0.1:{port}/api/v1/query",
                         params={"query": 'cost_request_cost_usd_sum{tenant="acme"}'}, timeout=2).json()
        assert [s["metric"]["job"] for s in r["data"]["result"]] == ["with_token"]
    finally:
        prom.terminate()
        prom.wait(10)
