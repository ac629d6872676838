"""Integration tests: the real `costmeter serve` process, spoken to over HTTP on loopback."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import textwrap

import pytest
import requests

from exporter_support import ExporterProcess, costmeter_cmd, parse_metrics, sample

EVENT = {"id": "e1", "timestamp": "2026-11-22T10:00:00Z", "provider": "openai",
         "model": "gpt-4o-mini-2024-07-18", "tenant": "acme", "endpoint": "/v1/chat",
         "input_tokens": 600, "cached_input_tokens": 400, "cache_write_tokens": 0,
         "output_tokens": 300, "reasoning_tokens": 200, "duration_seconds": 0.84}
# gpt-4o-mini: $0.15 input, $0.075 cached input, $0.60 output (reasoning billed as output) per 1M tokens
EVENT_COST = (600 * 0.15 + 400 * 0.075 + 300 * 0.60 + 200 * 0.60) / 1e6   # = 0.00042


def ev(i: int, **kw) -> dict:
    e = dict(EVENT, id=f"ev-{i}")
    e.pop("timestamp")
    e.update(kw)
    return e


@pytest.fixture(scope="module")
def exporter(tmp_path_factory):
    d = tmp_path_factory.mktemp("exp")
    budgets = d / "budgets.yaml"
    budgets.write_text("global: {daily: 1000.0, monthly: 5000.0}\ntenants: {acme: {daily: 0.01}}\n")
    with ExporterProcess(str(d / "state"), f"--budgets.file={budgets}") as p:
        yield p


def metrics(p) -> dict:
    r = requests.get(p.url + "/metrics", timeout=10)
    assert r.status_code == 200
    assert r.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    return parse_metrics(r.text)


def post(p, body, content_type="application/json", **headers):
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    return requests.post(p.url + "/v1/events", data=data, headers={"Content-Type": content_type, **headers},
                         timeout=10)


def test_endpoints_with_no_config(tmp_path):
    env = {"HOME": str(tmp_path / "home"), "XDG_STATE_HOME": "", "COSTMETER_STATE_DIR": ""}
    # no flags but the port: no config file, the default state directory under $HOME
    with ExporterProcess(str(tmp_path / "logs"), env=env, storage_flag=False) as p:
        assert requests.get(p.url + "/-/healthy").text == "Healthy\n"
        assert requests.get(p.url + "/-/ready").status_code == 200
        page = requests.get(p.url + "/")
        assert page.status_code == 200 and 'href="/metrics"' in page.text
        assert requests.get(p.url + "/v1/budgets").json() == {"budgets": []}
        m = metrics(p)
        assert sample(m, "costmeter_build_info", version="0.1.0") == 1.0
        assert (tmp_path / "home" / ".local" / "state" / "costmeter" / "ledger.db").exists()
        r = post(p, [ev(1)])
        assert r.status_code == 200, r.text
        # the built-in price table prices gpt-4o-mini with no pricing file at all
        got = sample(metrics(p), "cost_request_cost_usd_sum", provider="openai",
                     model="gpt-4o-mini-2024-07-18", endpoint="/v1/chat", tenant="acme")
        assert got == pytest.approx(EVENT_COST)


def test_event_lands_in_metrics_with_computed_cost(exporter):
    r = post(exporter, [EVENT])
    assert r.status_code == 200, r.text
    assert r.json() == {"accepted": 1, "duplicates": 0, "rejected": []}
    m = metrics(exporter)
    pmt = dict(provider="openai", model="gpt-4o-mini-2024-07-18", tenant="acme")
    assert sample(m, "cost_provider_api_calls_total", **pmt) == 1
    assert sample(m, "cost_provider_api_errors_total", **pmt) == 0
    for tt, n in (("input", 600), ("cached_input", 400), ("cache_write", 0), ("output", 300), ("reasoning", 200)):
        assert sample(m, "cost_provider_tokens_total", token_type=tt, **pmt) == n
    labels4 = dict(provider="openai", model="gpt-4o-mini-2024-07-18", endpoint="/v1/chat", tenant="acme")
    assert sample(m, "cost_request_cost_usd_sum", **labels4) == pytest.approx(EVENT_COST) == pytest.approx(0.00042)
    assert sample(m, "cost_request_cost_usd_count", **labels4) == 1
    assert sample(m, "cost_request_cost_usd_bucket", le="0.0005", **labels4) == 1
    assert sample(m, "cost_request_cost_usd_bucket", le="0.0001", **labels4) == 0
    assert sample(m, "cost_request_duration_seconds_bucket", provider="openai", model="gpt-4o-mini-2024-07-18",
                  endpoint="/v1/chat", le="1.0") == 1
    assert sample(m, "costmeter_ingest_events_total") >= 1


def test_retried_batch_is_counted_once(exporter):
    batch = [ev(i, tenant="retry") for i in range(100, 110)]
    first = post(exporter, batch).json()
    again = post(exporter, batch + [ev(110, tenant="retry")]).json()
    assert first == {"accepted": 10, "duplicates": 0, "rejected": []}
    assert again == {"accepted": 1, "duplicates": 10, "rejected": []}
    m = metrics(exporter)
    assert sample(m, "cost_provider_api_calls_total", provider="openai", model="gpt-4o-mini-2024-07-18",
                  tenant="retry") == 11
    assert sample(m, "costmeter_ingest_duplicate_events_total") >= 10


def test_duplicate_ids_inside_one_batch(exporter):
    r = post(exporter, [ev(200, tenant="dupe"), ev(200, tenant="dupe")]).json()
    assert r["accepted"] == 1 and r["duplicates"] == 1


def test_ndjson_and_cost_usd_wins(exporter):
    body = "\n".join(json.dumps(ev(300 + i, tenant="nd", cost_usd=0.5)) for i in range(3)).encode()
    r = post(exporter, body, "application/x-ndjson")
    assert r.status_code == 200 and r.json()["accepted"] == 3
    m = metrics(exporter)
    assert sample(m, "cost_request_cost_usd_sum", provider="openai", model="gpt-4o-mini-2024-07-18",
                  endpoint="/v1/chat", tenant="nd") == pytest.approx(1.5)


@pytest.mark.parametrize("event,field,fragment", [
    ({"input_tokens": "600"}, "input_tokens", "must be an integer"),
    ({"input_tokens": -5}, "input_tokens", "must not be negative"),
    ({"output_tokens": 10**12}, "output_tokens", "tokens in one event"),
    ({"provider": None}, "provider", "is required"),
    ({"colour": "red"}, "colour", "unknown field"),
    ({"tenant": "t" * 500}, "tenant", "limit is 128"),
    ({"cost_usd": -1}, "cost_usd", ">= 0"),
    ({"error": "yes"}, "error", "true or false"),
    ({"timestamp": "yesterday"}, "timestamp", "RFC 3339"),
    ({"timestamp": 1795341600000}, "timestamp", "milliseconds"),
])
def test_bad_field_is_rejected_by_index_and_field_and_good_events_kept(exporter, event, field, fragment):
    good = dict(ev(0, tenant="mixed-" + fragment), id="good-" + fragment)
    bad = ev(99999, **event)
    if event.get("provider", "x") is None:
        bad.pop("provider")
    r = post(exporter, [good, bad])
    assert r.status_code == 422, r.text
    body = r.json()
    assert body["accepted"] == 1
    [rej] = body["rejected"]
    assert rej["index"] == 1 and rej["id"] == "ev-99999" and rej["field"] == field
    assert fragment in rej["error"]
    assert "event 1" in body["error"] and '"ev-99999"' in body["error"] and field in body["error"]
    m = metrics(exporter)
    assert sample(m, "cost_provider_api_calls_total", provider="openai", model="gpt-4o-mini-2024-07-18",
                  tenant="mixed-" + fragment) == 1


def test_non_utf8_bytes_name_the_event_and_field(exporter):
    body = b'[{"id":"ok-utf8","provider":"openai","tenant":"u1"},{"id":"bad-utf8","provider":"openai","tenant":"caf\xe9"}]'
    r = post(exporter, body)
    assert r.status_code == 422
    [rej] = r.json()["rejected"]
    assert (rej["index"], rej["id"], rej["field"]) == (1, "bad-utf8", "tenant")
    assert "UTF-8" in rej["error"]
    assert r.json()["accepted"] == 1


def test_ndjson_line_that_is_not_json_is_rejected_alone(exporter):
    body = (json.dumps(ev(400, tenant="ndbad")) + "\n{not json\n" + json.dumps(ev(401, tenant="ndbad")) + "\n").encode()
    r = post(exporter, body, "application/x-ndjson")
    assert r.status_code == 422
    body = r.json()
    assert body["accepted"] == 2
    assert body["rejected"][0]["index"] == 1 and "line 2" in body["rejected"][0]["error"]


@pytest.mark.parametrize("body,ctype,status,fragment", [
    (b'[{"provider": "openai",', "application/json", 400, "malformed JSON at line 1"),
    (b"", "application/json", 400, "empty body"),
    (b"   \n", "application/json", 400, "empty body"),
    (b'"just a string"', "application/json", 400, "expected a JSON array"),
    (b"provider=openai", "application/x-www-form-urlencoded", 415, "unsupported Content-Type"),
    (b"[]" + b" " * (17 * 1024 * 1024), "application/json", 413, "larger than the limit"),
])
def test_unusable_bodies_get_4xx(exporter, body, ctype, status, fragment):
    r = post(exporter, body, ctype)
    assert r.status_code == status
    assert fragment in r.json()["error"]
    assert requests.get(exporter.url + "/-/healthy").status_code == 200


def test_wrong_methods_and_paths(exporter):
    assert requests.get(exporter.url + "/v1/events").status_code == 405
    assert requests.post(exporter.url + "/metrics", data=b"x").status_code == 405
    assert requests.get(exporter.url + "/nope").status_code == 404


def test_budget_status_api_and_gauges(exporter):
    post(exporter, [ev(500 + i, tenant="acme", cost_usd=0.002) for i in range(4)])
    body = requests.get(exporter.url + "/v1/budgets").json()
    names = {(b["name"], b["period"]) for b in body["budgets"]}
    assert {("global", "daily"), ("global", "monthly"), ("tenant:acme", "daily")} <= names
    r = requests.get(exporter.url + "/v1/budgets/tenant:acme")
    assert r.status_code == 200
    [daily] = r.json()["periods"]
    for key in ("spend_usd", "limit_usd", "utilization_ratio", "daily_burn_rate_usd", "forecast_usd",
                "projected_exhaustion", "status"):
        assert key in daily
    assert daily["limit_usd"] == 0.01
    assert daily["spend_usd"] >= 0.008
    assert daily["status"] in ("warning", "critical", "exceeded")
    assert requests.get(exporter.url + "/v1/budgets/nope").status_code == 404
    m = metrics(exporter)
    assert sample(m, "cost_budget_limit_usd", budget="tenant:acme", period="daily") == 0.01
    assert sample(m, "cost_budget_spend_usd", budget="tenant:acme", period="daily") == pytest.approx(daily["spend_usd"])
    assert sample(m, "cost_budget_threshold_ratio", budget="global", period="daily", level="critical") == 0.95
    assert sample(m, "cost_budget_period_end_timestamp_seconds", budget="global", period="daily") > 0
    assert "tenant:acme" in requests.get(exporter.url + "/").text


def test_promtool_check_metrics_finds_nothing(exporter):
    post(exporter, [ev(600, tenant="lint", model="no-such-model-x", cost_usd=None)])
    text = requests.get(exporter.url + "/metrics").text
    assert "costmeter_unpriced_calls_total" in text
    promtool = shutil.which("promtool")
    assert promtool, "promtool is installed by tests/run.sh (Debian package prometheus)"
    res = subprocess.run([promtool, "check", "metrics"], input=text.encode(), capture_output=True, timeout=60)
    assert res.returncode == 0 and not res.stdout.strip() and not res.stderr.strip(), res.stdout + res.stderr


def test_unpriced_model_is_counted_not_priced_at_zero(exporter):
    post(exporter, [ev(700 + i, tenant="unpriced", model="mystery-model-9") for i in range(3)])
    m = metrics(exporter)
    assert sample(m, "costmeter_unpriced_calls_total", provider="openai", model="mystery-model-9") == 3
    assert sample(m, "cost_request_cost_usd_count", provider="openai", model="mystery-model-9",
                  endpoint="/v1/chat", tenant="unpriced") == 0
    assert exporter.log().count("model=mystery-model-9") == 1


def test_gzip_scrape(exporter):
    r = requests.get(exporter.url + "/metrics", headers={"Accept-Encoding": "gzip"})
    assert r.headers.get("Content-Encoding") == "gzip"
    assert "cost_provider_api_calls_total" in r.text


def test_counters_survive_restart(tmp_path):
    state = str(tmp_path / "state")
    with ExporterProcess(state) as p:
        post(p, [ev(i, tenant="persist") for i in range(50)])
        before = metrics(p)
    with ExporterProcess(state) as p:
        after = metrics(p)
        labels = dict(provider="openai", model="gpt-4o-mini-2024-07-18", tenant="persist")
        assert sample(after, "cost_provider_api_calls_total", **labels) == 50
        assert sample(after, "cost_provider_tokens_total", token_type="input", **labels) == 50 * 600
        for key, v in before.items():
            if key[0].startswith("cost_") and not key[0].startswith("cost_budget") and \
                    not key[0].startswith(("cost_cpu", "cost_memory", "cost_infra")):
                assert after.get(key) == v, key
        assert post(p, [ev(0, tenant="persist")]).json()["duplicates"] == 1


def test_bearer_tokens(tmp_path):
    cfg = tmp_path / "exporter.yaml"
    cfg.write_text("ingest:\n  bearer_tokens_file: tokens.txt\n")
    (tmp_path / "tokens.txt").write_text("# one per line\ns3cret\n")
    with ExporterProcess(str(tmp_path / "state"), f"--config.file={cfg}") as p:
        assert post(p, [ev(1)]).status_code == 401
        assert post(p, [ev(1)], Authorization="Bearer wrong").status_code == 403
        ok = post(p, [ev(1)], Authorization="Bearer s3cret")
        assert ok.status_code == 200 and ok.json()["accepted"] == 1
        # reads of spend take a token too (tests/test_read_auth.py); probes stay open
        assert requests.get(p.url + "/metrics").status_code == 401
        assert requests.get(p.url + "/metrics", headers={"Authorization": "Bearer s3cret"}).status_code == 200
        assert requests.get(p.url + "/-/ready").status_code == 200


def test_cardinality_guard_folds_without_losing_spend(tmp_path):
    cfg = tmp_path / "exporter.yaml"
    cfg.write_text("cardinality:\n  max_values: {tenant: 2}\n")
    with ExporterProcess(str(tmp_path / "state"), f"--config.file={cfg}") as p:
        r = post(p, [ev(i, tenant=f"t{i}", cost_usd=1.0) for i in range(5)])
        assert r.json()["accepted"] == 5
        m = metrics(p)
        tenants = {dict(k[1]).get("tenant") for k in m if k[0] == "cost_provider_api_calls_total"}
        assert tenants == {"t0", "t1", "__overflow__"}
        assert sample(m, "cost_request_cost_usd_sum", provider="openai", model="gpt-4o-mini-2024-07-18",
                      endpoint="/v1/chat", tenant="__overflow__") == 3.0
        assert sample(m, "costmeter_series_overflow_total", label="tenant") == 3


def test_env_overrides_create_global_budget(tmp_path):
    with ExporterProcess(str(tmp_path / "state"), env={"GLOBAL_BUDGET_DAILY": "7.5"}) as p:
        body = requests.get(p.url + "/v1/budgets/global").json()
        assert [b["limit_usd"] for b in body["periods"]] == [7.5]


def test_bad_config_stops_startup_with_file_line_key(tmp_path):
    budgets = tmp_path / "budgets.yaml"
    budgets.write_text(textwrap.dedent("""\
        global:
          daily: 25.0
          monthly: -3
        """))
    cfg = tmp_path / "exporter.yaml"
    cfg.write_text(f"budgets_file: {budgets}\n")
    res = subprocess.run(costmeter_cmd() + ["serve", f"--config.file={cfg}", f"--storage.path={tmp_path / 's'}",
                                            "--web.listen-address=127.0.0.1:0"],
                         capture_output=True, text=True, timeout=60)
    assert res.returncode != 0
    assert f"{budgets}:3: global.monthly:" in res.stderr
    assert not (tmp_path / "s").exists(), "a bad config must not start half a service"
    check = subprocess.run(costmeter_cmd() + ["check", f"--config.file={cfg}"], capture_output=True, text=True,
                           timeout=60)
    assert check.returncode == 1 and f"{budgets}:3: global.monthly:" in check.stderr


def test_bad_exporter_yaml_key(tmp_path):
    cfg = tmp_path / "exporter.yaml"
    cfg.write_text("web:\n  listen_adress: ':9469'\n")
    check = subprocess.run(costmeter_cmd() + ["check", f"--config.file={cfg}"], capture_output=True, text=True,
                           timeout=60)
    assert check.returncode == 1
    assert f"{cfg}:2: web.listen_adress: unknown key" in check.stderr


def test_check_accepts_the_shipped_config_directory():
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    res = subprocess.run(costmeter_cmd() + ["check", "--config.file=config/exporter.yaml"],
                         capture_output=True, text=True, timeout=60, cwd=repo)
    assert res.returncode == 0, res.stderr
    checked = res.stdout.splitlines()
    assert "ok: config/exporter.yaml" in checked
    assert "ok: config/budgets.yaml" in checked and "ok: config/pricing.yaml" in checked
    assert "ok: config/prometheus.yml (promtool)" in checked
    assert "ok: config/alertmanager.yml (amtool)" in checked


def test_tenant_default_budgets_are_exported_only_for_admitted_tenants(tmp_path):
    cfg = tmp_path / "exporter.yaml"
    cfg.write_text("cardinality:\n  max_values: {tenant: 2}\n")
    budgets = tmp_path / "budgets.yaml"
    budgets.write_text("tenants: {declared: {daily: 3.0}}\ntenant_defaults: {daily: 1.0}\n")
    with ExporterProcess(str(tmp_path / "state"), f"--config.file={cfg}", f"--budgets.file={budgets}") as p:
        post(p, [ev(i, tenant=f"t{i}", cost_usd=2.0) for i in range(4)])
        m = metrics(p)
        exported = {dict(k[1])["budget"] for k in m if k[0] == "cost_budget_limit_usd"}
        assert exported == {"tenant:declared", "tenant:t0", "tenant:t1"}
        # every tenant is still enforced and listed
        listed = {b["name"] for b in requests.get(p.url + "/v1/budgets").json()["budgets"]}
        assert {"tenant:t2", "tenant:t3", "tenant:declared"} <= listed
        t3 = requests.get(p.url + "/v1/budgets/tenant:t3").json()["periods"][0]
        assert t3["status"] == "exceeded" and t3["spend_usd"] == 2.0


def test_threshold_crossings_reach_the_governance_log(tmp_path):
    import time as _time
    budgets = tmp_path / "budgets.yaml"
    budgets.write_text("tenants: {gov: {daily: 1.0}}\n")
    state = tmp_path / "state"
    with ExporterProcess(str(state), f"--budgets.file={budgets}") as p:
        post(p, [ev(1, tenant="gov", cost_usd=0.85)])
        post(p, [ev(2, tenant="gov", cost_usd=0.20)])
        path = state / "governance.jsonl"
        deadline = _time.monotonic() + 10
        levels = []
        while _time.monotonic() < deadline and len(levels) < 3:
            _time.sleep(0.2)
            if path.exists():
                levels = [json.loads(line)["level"] for line in path.read_text().splitlines()
                          if json.loads(line)["kind"] == "threshold_crossed"
                          and json.loads(line)["budget"] == "tenant:gov"]
        assert levels == ["warning", "critical", "exceeded"]


def test_bad_content_length_is_400_and_the_exporter_keeps_serving(exporter):
    import socket
    with socket.create_connection(("127.0.0.1", exporter.port), timeout=5) as s:
        s.sendall(b"POST /v1/events HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                  b"Content-Length: -5\r\n\r\n")
        reply = s.recv(4096)
    assert reply.startswith(b"HTTP/1.1 400") and b"Content-Length" in reply
    assert requests.get(exporter.url + "/-/healthy").status_code == 200


def test_mangled_bodies_never_get_a_5xx(exporter):
    """Random byte-level damage to valid batches: always a 2xx/4xx answer, and the exporter keeps serving."""
    import random
    rnd = random.Random(20261122)
    base = json.dumps([ev(900_000 + i, tenant="fuzz", cost_usd=0.001) for i in range(5)]).encode()
    bodies = [b"[" * 100_000, b'{"provider":' * 5000, b"[NaN]", b'[{"provider":"x","input_tokens":1e400}]',
              b"\xff\xfe" + base, b'[{"provider":"x"}]\x00']
    for _ in range(250):
        b = bytearray(base)
        for _ in range(rnd.randint(1, 8)):
            op, pos = rnd.random(), rnd.randrange(len(b))
            if op < 0.4:
                b[pos] = rnd.randrange(256)
            elif op < 0.7:
                del b[pos:pos + rnd.randint(1, 20)]
            else:
                b[pos:pos] = rnd.choice([b'"', b"{", b"]", b",", b"-1", b"null", b"\\u0000", b"1e999"])
        bodies.append(bytes(b))
    for body in bodies:
        for ctype in ("application/json", "application/x-ndjson"):
            r = post(exporter, body, ctype)
            assert 200 <= r.status_code < 500, (r.status_code, body[:200], r.text[:300])
            if r.status_code in (400, 413, 415, 422):
                assert r.json()["error"]
    assert requests.get(exporter.url + "/-/healthy").status_code == 200


def test_port_in_use_fails_before_touching_state(tmp_path, exporter):
    state = tmp_path / "state"
    res = subprocess.run(costmeter_cmd() + ["serve", f"--web.listen-address=127.0.0.1:{exporter.port}",
                                            f"--storage.path={state}"], capture_output=True, text=True, timeout=60)
    assert res.returncode == 1 and "Address already in use" in res.stderr
    assert not state.exists()


def test_tenant_defaults_are_visible_before_the_tenant_sends_anything(tmp_path):
    budgets = tmp_path / "budgets.yaml"
    budgets.write_text("tenant_defaults: {daily: 2.0, monthly: 20.0}\n")
    with ExporterProcess(str(tmp_path / "state"), f"--budgets.file={budgets}") as p:
        r = requests.get(p.url + "/v1/budgets/tenant:newcomer")
        assert r.status_code == 200
        assert sorted((b["period"], b["limit_usd"], b["spend_usd"]) for b in r.json()["periods"]) == \
            [("daily", 2.0, 0.0), ("monthly", 20.0, 0.0)]
        assert requests.get(p.url + "/v1/budgets/global").status_code == 404
