"""The three sources agree: --url and --storage.path over one ledger give identical JSON, and
--prometheus over a real Prometheus that scraped two exporter shards gives the same tenants and
totals as the shards' own APIs (within what scrape timing allows: we wait for the last scrape)."""
from __future__ import annotations

import json
import time

import pytest
import requests

from alerting.stack import Stack, prom_query, wait_for
from analysis_support import BUDGET_ENV, Seeder
from costmeter.cli.main import main
from exporter_support import ExporterProcess

DAY = 86400.0
BUDGETS = ("global: {daily: 500.0, monthly: 5000.0}\n"
           "tenants:\n  acme: {daily: 30.0, monthly: 150.0}\n  beta: {daily: 1.0, monthly: 400.0}\n"
           "  gamma: {daily: 20.0}\n")


@pytest.fixture(autouse=True)
def _no_budget_env(monkeypatch):
    for k in BUDGET_ENV + ("COSTMETER_URL",):
        monkeypatch.delenv(k, raising=False)


def cli_json(capsys, *argv) -> dict:
    capsys.readouterr()
    code = main(list(argv) + ["--json"])
    out = capsys.readouterr()
    assert code == 0, out.err
    return json.loads(out.out)


def test_url_and_storage_path_give_identical_json(tmp_path, capsys):
    state = tmp_path / "state"
    budgets = tmp_path / "budgets.yaml"
    budgets.write_text(BUDGETS)
    # 20 days of history ending two hours ago (well inside today's and every window's edges)
    now = time.time()
    s = Seeder(str(state))
    for d in range(20):
        t = now - 7200 - (19 - d) * DAY
        s.event(t, "acme", "openai", "gpt-4o", input_tokens=200_000 + 10_000 * d, output_tokens=50_000)
        s.event(t + 60, "beta", "anthropic", "claude-sonnet-4-5", 1.0 if d < 19 else 25.0, cache_hit=False,
                input_tokens=100_000)
        s.event(t + 120, "beta", "anthropic", "claude-sonnet-4-5", 0.0, cache_hit=True, saved_cost_usd=1.0)
        s.event(t + 180, "gamma", "google", "gemini-2.5-pro", 0.37 * (d % 4), batch=True)
    s.close()
    commands = [["report"], ["report", "--days", "7", "--tenant", "beta"], ["anomalies", "--governance.log", "none"],
                ["recommend"], ["forecast"],
                ["roi", "--model", "gpt-4o", "--gpu-hour-usd", "2.5", "--tokens-per-second", "800"]]
    via_url = {}
    with ExporterProcess(str(state), f"--budgets.file={budgets}") as p:
        for c in commands:
            via_url[c[0], len(c)] = cli_json(capsys, *c, "--url", p.url)
    for c in commands:
        extra = [] if c[0] == "roi" else ["--budgets.file", str(budgets)]
        via_storage = cli_json(capsys, *c, "--storage.path", str(state), *extra)
        if c[0] == "forecast":
            # burn rates move with the clock between the two runs: figures agree closely, words exactly
            a, b = via_url[c[0], len(c)]["budgets"], via_storage["budgets"]
            assert [(x["budget"], x["period"], x["status"], x["projected_exhaustion_date"]) for x in a] == \
                   [(x["budget"], x["period"], x["status"], x["projected_exhaustion_date"]) for x in b]
            for x, y in zip(a, b):
                for k in ("limit_usd", "spend_usd", "daily_burn_rate_usd", "projected_usd", "projected_low_usd",
                          "projected_high_usd"):
                    assert x[k] == pytest.approx(y[k], rel=1e-3), (x["budget"], k)
        else:
            assert via_storage == via_url[c[0], len(c)], c
    rep = via_url["report", 1]
    assert [t["tenant"] for t in rep["tenants"]] == ["beta", "acme", "gamma"]
    assert rep["tenants"][0]["budget_status"] == "exceeded"          # beta: $25 today against $1 a day
    assert any(a.get("tenant") == "beta" for a in via_url["anomalies", 3]["anomalies"])
    assert {r["type"] for r in via_url["recommend", 1]["recommendations"]} >= {"model_downgrade", "caching"}


def _events(tenant: str, provider: str, model: str, n: int, cost: float, start: int) -> list[dict]:
    return [{"id": f"{tenant}-{start + i}", "provider": provider, "model": model, "tenant": tenant,
             "cost_usd": cost, "input_tokens": 1000 + i, "output_tokens": 100, "error": i % 5 == 0} for i in range(n)]


def _post(url: str, events: list[dict]) -> None:
    r = requests.post(url + "/v1/events", json=events, timeout=10)
    assert r.status_code == 200, r.text


def test_prometheus_over_two_shards_agrees_with_their_apis(tmp_path, capsys):
    stack = Stack(str(tmp_path))
    try:
        a = stack.exporter("shard-a", BUDGETS)
        b = stack.exporter("shard-b", BUDGETS)
        prom = stack.prometheus({"costmeter-a": a.url, "costmeter-b": b.url}, "http://127.0.0.1:9")
        wait_for(lambda: len(prom_query(prom, 'up{job=~"costmeter.*"} == 1')) == 2, 30, "both shards scraped")
        # events arrive live, in two rounds with scrapes in between (counters grow while scraped)
        _post(a.url, _events("acme", "openai", "gpt-4o", 7, 0.5, 0) + _events("beta", "openai", "gpt-4o-mini", 3, 0.25, 0))
        _post(b.url, _events("gamma", "anthropic", "claude-sonnet-4-5", 4, 2.0, 0))
        time.sleep(2.5)
        _post(a.url, _events("acme", "openai", "gpt-4o", 5, 0.5, 100))
        _post(b.url, _events("gamma", "openai", "gpt-4o", 2, 1.5, 100))
        # scrape timing: wait until Prometheus holds what the exporters hold now
        wait_for(lambda: prom_query(prom, "sum(cost_request_cost_usd_sum)")
                 and abs(float(prom_query(prom, "sum(cost_request_cost_usd_sum)")[0]["value"][1]) - 17.75) < 1e-9,
                 30, "the last events scraped")
        wait_for(lambda: prom_query(prom, 'sum(cost_budget_spend_usd{budget="global",period="daily"})')
                 and abs(float(prom_query(prom, 'sum(cost_budget_spend_usd{budget="global",period="daily"})')[0]
                               ["value"][1]) - 17.75) < 1e-9, 30, "the budget gauges scraped")
        ra = cli_json(capsys, "report", "--url", a.url)
        rb = cli_json(capsys, "report", "--url", b.url)
        rp = cli_json(capsys, "report", "--prometheus", prom.url)
        # acme 12 x $0.50 + beta 3 x $0.25 on shard a; gamma 4 x $2 + 2 x $1.50 on shard b
        assert ra["global"]["today_usd"] == 6.75 and rb["global"]["today_usd"] == 11.0
        for k in ("today_usd", "month_usd", "period_usd"):
            assert rp["global"][k] == pytest.approx(ra["global"][k] + rb["global"][k], abs=1e-6)
        shards = sorted(ra["tenants"] + rb["tenants"], key=lambda t: t["tenant"])
        fleet = sorted(rp["tenants"], key=lambda t: t["tenant"])
        assert [t["tenant"] for t in fleet] == [t["tenant"] for t in shards] == ["acme", "beta", "gamma"]
        for x, y in zip(fleet, shards):
            assert x["budget_status"] == y["budget_status"], x["tenant"]
            for k in ("today_usd", "month_usd", "period_usd"):
                assert x[k] == pytest.approx(y[k], abs=1e-6), (x["tenant"], k)
        models: dict = {}
        for m in ra["models"] + rb["models"]:
            acc = models.setdefault((m["provider"], m["model"]), [0.0, 0])
            acc[0] += m["period_usd"]
            acc[1] += m["calls"]
        assert {(m["provider"], m["model"]): [pytest.approx(m["period_usd"], abs=1e-6), m["calls"]]
                for m in rp["models"]} == models
        assert models["openai", "gpt-4o"] == [pytest.approx(9.0), 14]
        # the daily split (day boundaries through query_range) adds up to the period per tenant
        per_tenant: dict = {}
        for d in rp["daily"]:
            per_tenant[d["tenant"]] = per_tenant.get(d["tenant"], 0.0) + d["usd"]
        assert per_tenant == {t["tenant"]: pytest.approx(t["period_usd"], abs=1e-6) for t in rp["tenants"]}
        # budgets: each shard reports the global budget's full limit and its share of the spend
        fp = {(x["budget"], x["period"]): x for x in cli_json(capsys, "forecast", "--prometheus", prom.url)["budgets"]}
        assert fp["global", "daily"]["limit_usd"] == 500.0
        assert fp["global", "daily"]["spend_usd"] == pytest.approx(17.75, abs=1e-6)
        assert fp["tenant:gamma", "daily"]["spend_usd"] == pytest.approx(11.0, abs=1e-6)
        assert fp["tenant:beta", "daily"]["status"] == "ok"                  # $0.75 of $1: 75 %
        # a URL that is not the Prometheus API: a message and exit code 3, not a traceback
        capsys.readouterr()
        assert main(["report", "--prometheus", prom.url + "/nope"]) == 3
        assert "not the Prometheus API" in capsys.readouterr().err
    finally:
        stack.close()


class _FakePrometheus:
    """Prometheus' HTTP API (documented shapes) on loopback, answering each query from a table:
    series -> {time: value}, evaluated as last_over_time would (the last value at or before t)."""

    def __init__(self, series: dict[str, list[tuple[dict, dict[float, float]]]]):
        import http.server
        import threading
        from urllib.parse import parse_qs, urlsplit
        fake = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                u = urlsplit(self.path)
                q = {k: v[0] for k, v in parse_qs(u.query).items()}
                metric = next((m for m in series if m in q["query"]), None)
                if u.path == "/api/v1/query":
                    t = float(q["time"])
                    result = [{"metric": lab, "value": [t, str(v)]} for lab, pts in series.get(metric, [])
                              if (v := fake.at(pts, t)) is not None]
                else:
                    start, end, step = float(q["start"]), float(q["end"]), float(q["step"])
                    times = [start + i * step for i in range(int(round((end - start) / step)) + 1)]
                    result = [{"metric": lab, "values": [[t, str(fake.at(pts, t))] for t in times
                                                         if fake.at(pts, t) is not None]}
                              for lab, pts in series.get(metric, [])]
                body = json.dumps({"status": "success", "data": {"resultType": "vector", "result": result}}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *a):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @staticmethod
    def at(pts: dict[float, float], t: float):
        before = [k for k in pts if k <= t]
        return pts[max(before)] if before else None

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def test_prometheus_deltas_across_a_reset_and_a_late_series():
    from costmeter.analysis.promsource import PrometheusSource
    d0 = 1795305600.0                                   # 2026-11-22T00:00:00Z
    a = {"provider": "openai", "model": "gpt-4o", "tenant": "acme", "instance": "a:9469"}
    b = {"provider": "openai", "model": "gpt-4o", "tenant": "acme", "instance": "b:9469"}
    fake = _FakePrometheus({"cost_request_cost_usd_sum": [
        # exporter a: $10 before the window, $15 by the end of day 1, then its state was lost: $3 by the end
        (a, {d0 - 3600: 10.0, d0 + 43200: 15.0, d0 + 86400 + 3600: 3.0}),
        # exporter b appears during day 2 with $4 already counted
        (b, {d0 + 86400 + 7200: 4.0}),
    ]})
    try:
        src = PrometheusSource(fake.url)
        rows = src.costs(d0, d0 + 2 * 86400, ("tenant", "day"))
        # day 1: a 10 -> 15 = $5; day 2: a resets (15 -> 3 counts 3), b 0 -> 4: $7
        assert [(r["day"], r["cost_usd"]) for r in rows] == [("2026-11-22", 5.0), ("2026-11-23", 7.0)]
        # the window as a whole is read hour by hour too, so the reset loses nothing
        assert [r["cost_usd"] for r in src.costs(d0, d0 + 2 * 86400, ("tenant",))] == [12.0]
        with pytest.raises(Exception, match="cannot group or filter by endpoint"):
            src.costs(d0, d0 + 86400, ("endpoint",))
    finally:
        fake.close()
