"""AWS Cost Explorer through boto3 against moto's server on 127.0.0.1, and a monthly AWS budget
that takes its spend from the bill."""
from __future__ import annotations

import json
import os
import threading
import time
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import requests
from freezegun import freeze_time
from moto.server import ThreadedMotoServer

from costmeter.collectors.billing import BillingScheduler
from costmeter.config.billing import BillingConfig
from costmeter.config.loader import loads
from costmeter.server.exporter import Exporter
from costmeter.config.settings import load_settings

NOW = "2026-11-04 09:00:00"


@pytest.fixture(scope="module")
def moto_url():
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture(autouse=True)
def aws_env(monkeypatch, tmp_path):
    for var in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")


@pytest.fixture
def moto(moto_url):
    requests.post(moto_url + "/moto-api/reset", timeout=10).raise_for_status()
    return moto_url


def queue(url: str, *pages: dict) -> None:
    r = requests.post(url + "/moto-api/static/ce/cost-and-usage-results", json={"results": list(pages)}, timeout=10)
    assert r.status_code == 201, r.text


def day(start: str, end: str, groups: dict[str, str], metric: str = "UnblendedCost") -> dict:
    return {"TimePeriod": {"Start": start, "End": end}, "Total": {}, "Estimated": False,
            "Groups": [{"Keys": [svc], "Metrics": {metric: {"Amount": amount, "Unit": "USD"}}}
                       for svc, amount in groups.items()]}


def scheduler(endpoint: str, metric: str | None = None) -> BillingScheduler:
    extra = f", metric: {metric}" if metric else ""
    doc = loads(f'billing: {{sources: [{{name: aws, type: aws, region: us-east-1, endpoint_url: "{endpoint}"{extra}}}]}}')
    ts = datetime.fromisoformat(NOW).replace(tzinfo=timezone.utc).timestamp()
    return BillingScheduler(BillingConfig.from_yaml(doc, ("billing",), doc.data["billing"]),
                            clock=lambda: ts, sleep=lambda _: None)


def source(s: BillingScheduler) -> dict:
    return s.snapshot()[0]


def test_cost_explorer_pages_by_service_and_counts_each_request(moto):
    queue(moto, {
        "ResultsByTime": [day("2026-11-01", "2026-11-02", {"Amazon Elastic Compute Cloud - Compute": "10.0",
                                                            "Amazon Relational Database Service": "5.25"}),
                          day("2026-11-02", "2026-11-03", {"Amazon Elastic Compute Cloud - Compute": "11.5"})],
        "NextPageToken": "page-2", "DimensionValueAttributes": []}, {
        "ResultsByTime": [day("2026-11-03", "2026-11-04", {"Amazon ElastiCache": "1.75",
                                                            "Elastic Load Balancing": "0.5",
                                                            "Amazon Elastic Compute Cloud - Compute": "-1.0"})],
        "DimensionValueAttributes": []})
    s = scheduler(moto)
    assert s.pull("aws")
    got = source(s)
    assert got["billed"] == {("aws", "Amazon Elastic Compute Cloud - Compute"): 20.5,
                             ("aws", "Amazon Relational Database Service"): 5.25,
                             ("aws", "Amazon ElastiCache"): 1.75, ("aws", "Elastic Load Balancing"): 0.5}
    assert got["up"] == 1.0
    assert got["api_cost_usd"] == pytest.approx(0.02)     # two pages, $0.01 each
    # A second pull with the same request is answered the same (moto caches per request body):
    # the days are replaced, not added to; the requests cost again.
    assert s.pull("aws")
    assert source(s)["billed"][("aws", "Amazon Elastic Compute Cloud - Compute")] == 20.5
    assert source(s)["api_cost_usd"] == pytest.approx(0.04)


def test_the_configured_metric_is_requested_and_read(moto):
    queue(moto, {"ResultsByTime": [day("2026-11-01", "2026-11-02", {"AWS Lambda": "3.0"}, "AmortizedCost")],
                 "DimensionValueAttributes": []})
    s = scheduler(moto, "AmortizedCost")
    assert s.pull("aws")
    assert source(s)["billed"] == {("aws", "AWS Lambda"): 3.0}
    # Asking for UnblendedCost, an answer carrying only AmortizedCost is malformed: nothing is replaced.
    queue(moto, {"ResultsByTime": [day("2026-11-01", "2026-11-02", {"AWS Lambda": "9.0"}, "AmortizedCost")],
                 "DimensionValueAttributes": []})
    s2 = scheduler(moto)
    assert not s2.pull("aws")
    assert source(s2)["billed"] == {} and source(s2)["up"] == 0.0


def test_no_credentials_is_a_clear_error(moto, monkeypatch, caplog):
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    s = scheduler(moto)
    assert not s.pull("aws")
    assert "no usable AWS credentials" in caplog.text and "billing source aws" in caplog.text
    assert source(s)["up"] == 0.0


class _Unavailable(BaseHTTPRequestHandler):
    hits = 0

    def do_POST(self):
        type(self).hits += 1
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        body = json.dumps({"__type": "ServiceUnavailableException", "message": "try later"}).encode()
        self.send_response(503)
        self.send_header("Content-Type", "application/x-amz-json-1.1")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *a):
        pass


def test_5xx_is_retried_then_given_up_and_every_request_is_counted():
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Unavailable)
    t = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    t.start()
    try:
        s = scheduler(f"http://127.0.0.1:{httpd.server_address[1]}")
        assert not s.pull("aws")
        assert _Unavailable.hits == 4                     # botocore's own retries are off: ours only
        assert source(s)["api_cost_usd"] == pytest.approx(0.04)
        assert source(s)["up"] == 0.0
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_monthly_aws_budget_crosses_80_percent_from_a_pull(moto, tmp_path, threads_follow_freezegun):
    queue(moto, {"ResultsByTime": [
        day("2026-11-01", "2026-11-02", {"Amazon Elastic Compute Cloud - Compute": "40.0",
                                         "Amazon Relational Database Service": "20.0"}),
        day("2026-11-02", "2026-11-03", {"Amazon Elastic Compute Cloud - Compute": "25.0"})],
        "DimensionValueAttributes": []})
    (tmp_path / "exporter.yaml").write_text(
        f'billing:\n  sources:\n    - {{name: aws, type: aws, region: us-east-1, endpoint_url: "{moto}"}}\n'
        "budgets_file: budgets.yaml\n")
    (tmp_path / "budgets.yaml").write_text(
        "budgets:\n"
        "  - {name: aws-infra, billing_source: aws, period: monthly, limit_usd: 100}\n"
        "  - {name: aws-rds, billing_source: aws, service: Amazon Relational Database Service,"
        " period: monthly, limit_usd: 100}\n"
        "  - {name: llm, period: monthly, limit_usd: 10}\n")
    with freeze_time(NOW, tick=True):
        settings = load_settings(str(tmp_path / "exporter.yaml"),
                                 {"state_dir": str(tmp_path / "state"), "listen_address": "127.0.0.1:0"})
        ex = Exporter(settings).start()
        try:
            deadline = time.monotonic() + 20
            # the start-up pull, then the budgets it feeds (set right after the pull)
            while ex.budgets.get("aws-infra")[0].spend_usd != 85.0:
                assert time.monotonic() < deadline, "the start-up pull did not reach the budget"
                time.sleep(0.05)
            # events never count toward a bill-fed budget
            assert ex.ingest([{"provider": "aws", "model": "m", "cost_usd": 5.0,
                               "timestamp": time.time()}]).accepted == 1
            ex.budgets.tick()
            metrics = requests.get(ex.url + "/metrics", timeout=10).text
            status = requests.get(ex.url + "/v1/budgets", timeout=10).json()
        finally:
            ex.stop()
    assert 'cost_budget_utilization_ratio{budget="aws-infra",period="monthly"} 0.85' in metrics
    assert 'cost_budget_spend_usd{budget="aws-rds",period="monthly"} 20.0' in metrics
    assert 'cost_budget_spend_usd{budget="llm",period="monthly"} 5.0' in metrics
    assert 'cost_billed_usd{source="aws",provider="aws",service="Amazon Elastic Compute Cloud - Compute"} 65.0' \
        in metrics
    assert 'costmeter_billing_api_cost_usd_total{source="aws"} 0.01' in metrics
    budgets = {b["name"]: b for b in (status["budgets"] if isinstance(status, dict) else status)}
    assert budgets["aws-infra"]["status"] == "warning" and budgets["aws-infra"]["spend_usd"] == 85.0
    with open(os.path.join(tmp_path, "state", "governance.jsonl")) as f:
        lines = [json.loads(x) for x in f]
    crossed = [x for x in lines if x["kind"] == "threshold_crossed"]
    assert [(x["budget"], x["level"]) for x in crossed] == [("aws-infra", "warning")], lines
    assert crossed[0]["utilization_ratio"] == 0.85 and crossed[0]["period_start"].startswith("2026-11-01T00:00:00")
