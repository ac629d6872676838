"""End to end: costmeter exporters -> Prometheus (the shipped rules) ->
Alertmanager (the shipped config and Slack templates) -> a Slack webhook.

Two real `costmeter serve` exporters each hold half of budget "global"
($10 over a fixed period from yesterday to the day after tomorrow, UTC, so no
period boundary can reset spend during the test, and the forecast, made more
than a quarter into the period, is deterministic). Spend is sent through the ingest API until the budget passes
80 %, then 100 %. The webhook must receive a Slack message for
CostBudgetWarning naming the budget, with spend, limit, utilization, forecast
and a dashboard link, then one for CostBudgetExceeded, while the warning and
critical alerts are inhibited. Neither exporter alone ever reaches 80 %: the
alerts can only come from the sum.

Timers are shortened in test copies of the config (scrape and evaluation 1s,
every for: 1s, group_wait 1s); the real for: durations are covered by the
promtool tests in alert_rules/tests/.
"""
from __future__ import annotations

import datetime
import itertools
import time

import pytest
import requests

from alerting.stack import FakeSlack, Stack, am_alerts, prom_query, wait_for


def budgets_yaml() -> str:
    today = datetime.datetime.now(datetime.timezone.utc).date()
    start, end = today - datetime.timedelta(days=1), today + datetime.timedelta(days=2)
    return (f"budgets:\n  - name: global\n    period: {{start: {start}, end: {end}}}\n"
            f"    limit_usd: 10\n")

_ids = itertools.count()


@pytest.fixture
def stack(tmp_path):
    s = Stack(str(tmp_path))
    try:
        yield s
    finally:
        s.close()


@pytest.fixture
def slack():
    fake = FakeSlack()
    try:
        yield fake
    finally:
        fake.close()


def spend(exporter, tenant: str, usd: float):
    """One event through the ingest API, priced by cost_usd."""
    event = {"id": f"e2e-{next(_ids)}", "provider": "openai", "model": "gpt-4o-mini",
             "tenant": tenant, "endpoint": "/v1/chat", "input_tokens": 100,
             "output_tokens": 50, "cost_usd": usd}
    r = requests.post(exporter.url + "/v1/events", json=[event], timeout=5)
    assert r.status_code == 200, r.text


def messages_for(slack: FakeSlack, alertname: str) -> list:
    return [m for m in slack.snapshot() if f"] {alertname} " in m.title]


def test_budget_alerts_reach_slack_with_inhibition_across_two_exporters(stack, slack):
    started = time.monotonic()
    a = stack.exporter("exporter-a", budgets_yaml())
    b = stack.exporter("exporter-b", budgets_yaml())
    am = stack.alertmanager(slack.url)
    prom = stack.prometheus({"costmeter-a": a.url, "costmeter-b": b.url}, am.url)
    wait_for(lambda: len(prom_query(prom, 'up{job=~"costmeter.*"} == 1')) == 2, 30,
             "Prometheus to scrape both exporters")

    # 42 % on exporter a: under every threshold.
    spend(a, "acme", 4.2)
    wait_for(lambda: prom_query(prom, 'abs(budget_period:cost_budget_utilization_ratio:sum{budget="global"} - 0.42) < 0.0001'),
             20, "utilization 42 % in Prometheus")

    # Exporter b also at 42 % of the same budget: 84 % in total.
    spend(b, "beta", 4.2)
    wait_for(lambda: messages_for(slack, "CostBudgetWarning"), 30, "a CostBudgetWarning message in Slack")
    warning = messages_for(slack, "CostBudgetWarning")[0]

    # Slack's incoming-webhook format, posted to the URL from api_url_file.
    assert warning.path == slack.path
    assert warning.content_type.startswith("application/json")
    assert warning.body["username"] == "costmeter"
    (att,) = warning.attachments
    assert att["title"] == "[FIRING:1] CostBudgetWarning · budget global (fixed)"
    assert att["title_link"] == ("http://localhost:3000/d/costmeter-budgets/costmeter-budgets"
                                 "?var-budget=global&var-period=fixed")
    assert att["color"] == "warning"
    assert "Budget global (fixed) has used 84% of its limit." in att["text"]
    assert "• *Budget:* `global` (fixed)" in att["text"]
    # Spend summed over both exporters against the limit taken once.
    assert "• *Spend:* $8.40 of $10.00" in att["text"]
    assert "• *Utilization:* 84%" in att["text"]
    assert "• *Forecast:* $" in att["text"]
    assert "|Dashboard>" in att["text"] and "docs/runbook.md#costbudgetwarning|Runbook>" in att["text"]
    assert "CostBudgetWarning" in att["fallback"]
    # Between a third and two thirds into the period, $8.40 projects past $10.
    wait_for(lambda: messages_for(slack, "CostBudgetForecastExceeded"), 30,
             "a CostBudgetForecastExceeded message in Slack")
    (att,) = messages_for(slack, "CostBudgetForecastExceeded")[0].attachments
    assert att["title"] == "[FIRING:1] CostBudgetForecastExceeded · budget global (fixed)"
    forecast = float(att["text"].split("• *Forecast:* $", 1)[1].split(" ", 1)[0])
    assert 10.0 < forecast < 8.4 * 3 + 0.01, att["text"]
    # Each exporter on its own is at 42 %.
    per_exporter = prom_query(prom, 'cost_budget_utilization_ratio{budget="global"}')
    assert [round(float(s["value"][1]), 6) for s in per_exporter] == [0.42, 0.42]

    # 84 % -> 101 %: Critical and Exceeded fire together.
    spend(a, "acme", 1.0)
    spend(b, "beta", 0.7)
    wait_for(lambda: messages_for(slack, "CostBudgetExceeded"), 30, "a CostBudgetExceeded message in Slack")
    exceeded = messages_for(slack, "CostBudgetExceeded")[0]
    (att,) = exceeded.attachments
    assert att["title"] == "[FIRING:1] CostBudgetExceeded · budget global (fixed)"
    assert att["color"] == "danger"
    assert "• *Spend:* $10.10 of $10.00" in att["text"]
    assert "• *Utilization:* 101%" in att["text"]
    assert exceeded.received > warning.received

    # Inhibition: Warning and Critical are still firing in Prometheus, but
    # Alertmanager holds them back because Exceeded fires for the same budget.
    def inhibited(alertname):
        alerts = am_alerts(am, alertname=alertname, budget="global", period="fixed")
        return (len(alerts) == 1 and alerts[0]["status"]["state"] == "suppressed"
                and alerts[0]["status"]["inhibitedBy"])
    wait_for(lambda: inhibited("CostBudgetWarning"), 15, "CostBudgetWarning to be inhibited")
    wait_for(lambda: inhibited("CostBudgetCritical"), 15, "CostBudgetCritical to be inhibited")
    wait_for(lambda: inhibited("CostBudgetForecastExceeded"), 15, "CostBudgetForecastExceeded to be inhibited")
    firing = {s["metric"]["alertname"] for s in prom_query(prom, 'ALERTS{alertstate="firing",budget="global"}')}
    assert firing == {"CostBudgetWarning", "CostBudgetCritical", "CostBudgetExceeded", "CostBudgetForecastExceeded"}

    # Give Alertmanager a few group intervals: no Critical message ever, and
    # no Warning message after the one at 84 %.
    time.sleep(5)
    assert messages_for(slack, "CostBudgetCritical") == []
    assert len(messages_for(slack, "CostBudgetWarning")) == 1
    assert len(messages_for(slack, "CostBudgetForecastExceeded")) == 1
    assert len(messages_for(slack, "CostBudgetExceeded")) == 1
    for proc in stack.procs:
        proc.check_alive()
    assert time.monotonic() - started < 90
