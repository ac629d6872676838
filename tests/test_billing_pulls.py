"""Billing pulls from the OpenAI Costs API and the Anthropic cost report, against a loopback
server that answers in the vendors' documented shapes (tests/fakes/billing_server.py)."""
from __future__ import annotations

import json
import logging
import socket
from datetime import date, datetime, timezone

import pytest
from freezegun import freeze_time

from costmeter.collectors.billing import BillingScheduler
from costmeter.collectors.billing_http import ATTEMPTS
from costmeter.config.billing import BillingConfig
from costmeter.config.loader import loads
from costmeter.server.billing import BillingLink
from fakes.billing_server import (ANTHROPIC_PATH, OPENAI_PATH, FakeBillingServer, anthropic_result,
                                        openai_result)

OPENAI_KEY = "sk-admin-0123456789abcdefSECRET"
ANTHROPIC_KEY = "sk-ant-admin01-0123456789SECRET"
NOW = "2026-11-20 15:30:00"


def ts(text: str) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=timezone.utc).timestamp()


def config(srv: FakeBillingServer) -> BillingConfig:
    doc = loads(f"""
billing:
  interval: 1h
  sources:
    - {{name: openai, type: openai, api_key_env: TEST_OPENAI_ADMIN_KEY, base_url: "{srv.url}"}}
    - {{name: anthropic, type: anthropic, api_key_env: TEST_ANTHROPIC_ADMIN_KEY, base_url: "{srv.url}"}}
""", "exporter.yaml")
    return BillingConfig.from_yaml(doc, ("billing",), doc.data["billing"])


@pytest.fixture
def srv(monkeypatch):
    monkeypatch.setenv("TEST_OPENAI_ADMIN_KEY", OPENAI_KEY)
    monkeypatch.setenv("TEST_ANTHROPIC_ADMIN_KEY", ANTHROPIC_KEY)
    with FakeBillingServer(OPENAI_KEY, ANTHROPIC_KEY) as s:
        yield s


@pytest.fixture
def sleeps():
    return []


@pytest.fixture
def sched(srv, sleeps):
    return BillingScheduler(config(srv), clock=lambda: ts(NOW), sleep=sleeps.append)


def billed(s: BillingScheduler, source: str) -> dict:
    return next(x for x in s.snapshot() if x["source"] == source)


def health(s: BillingScheduler, source: str) -> tuple[float, float]:
    b = billed(s, source)
    return b["up"], b["last_success"]


# ---- OpenAI --------------------------------------------------------------------------------

def test_openai_pages_are_followed_and_projects_summed_by_line_item(srv, sched):
    srv.page_size = 4
    srv.openai_costs = {
        date(2026, 11, 1): [openai_result(1.25, "gpt-4o-2024-08-06, input", "proj_a"),
                            openai_result(0.75, "gpt-4o-2024-08-06, input", "proj_b")],
        date(2026, 11, 9): [openai_result(3.0, "gpt-4o-2024-08-06, output", "proj_a")],
        date(2026, 11, 20): [openai_result(0.5, "gpt-4o-2024-08-06, input", "proj_a")],
        date(2026, 10, 31): [openai_result(100.0, "gpt-4o-2024-08-06, input", "proj_a")],   # last month
    }
    assert sched.pull("openai")
    b = billed(sched, "openai")
    assert b["billed"] == {("openai", "gpt-4o-2024-08-06, input"): 2.5, ("openai", "gpt-4o-2024-08-06, output"): 3.0}
    assert b["up"] == 1.0 and b["last_success"] == ts(NOW) and b["api_cost_usd"] == 0.0
    reqs = [r for r in srv.requests if r[0] == OPENAI_PATH]
    assert len(reqs) == 5          # November 1 to 20 (today is in the range too), 4 days a page
    first = reqs[0][1]
    assert ("start_time", str(int(ts("2026-11-01 00:00:00")))) in first
    assert ("end_time", str(int(ts("2026-11-21 00:00:00")))) in first
    assert ("bucket_width", "1d") in first
    assert ("group_by[]", "line_item") in first and ("group_by[]", "project_id") in first
    assert not any(k == "page" for k, _ in first)
    assert [dict(r[1]).get("page") for r in reqs[1:]] == ["page_4", "page_8", "page_12", "page_16"]
    assert all(r[2]["Authorization"] == f"Bearer {OPENAI_KEY}" for r in reqs)


def test_a_pull_replaces_revised_days_and_never_adds(srv, sched):
    srv.openai_costs = {date(2026, 11, 5): [openai_result(10.0, "gpt-4o, input")],
                        date(2026, 11, 6): [openai_result(4.0, "gpt-4o, input")]}
    assert sched.pull("openai")
    assert billed(sched, "openai")["billed"] == {("openai", "gpt-4o, input"): 14.0}
    # The vendor revises the 5th down and drops a line item on the 6th.
    srv.openai_costs = {date(2026, 11, 5): [openai_result(9.5, "gpt-4o, input")]}
    assert sched.pull("openai")
    assert billed(sched, "openai")["billed"] == {("openai", "gpt-4o, input"): 9.5}
    assert sched.pull("openai")
    assert billed(sched, "openai")["billed"] == {("openai", "gpt-4o, input"): 9.5}


def test_unauthorized_logs_one_line_naming_the_variable_never_the_key(srv, sched, caplog):
    srv.openai_costs = {date(2026, 11, 2): [openai_result(2.0, "gpt-4o, input")]}
    assert sched.pull("openai")
    srv.openai_key = "sk-admin-rotated"          # ours is now wrong: 401
    caplog.set_level(logging.INFO, logger="costmeter.billing")
    assert not sched.pull("openai")
    lines = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(lines) == 1
    assert "openai" in lines[0] and "TEST_OPENAI_ADMIN_KEY" in lines[0] and "401" in lines[0]
    assert OPENAI_KEY not in caplog.text and "SECRET" not in caplog.text
    up, last = health(sched, "openai")
    assert up == 0.0 and last == ts(NOW)
    assert billed(sched, "openai")["billed"] == {("openai", "gpt-4o, input"): 2.0}   # last values kept
    # a 401 is not retried: retrying cannot fix a key
    assert len([r for r in srv.requests if r[0] == OPENAI_PATH]) == 2


def test_forbidden_anthropic_key_names_the_variable(srv, sched, caplog):
    srv.fail_next(403)
    assert not sched.pull("anthropic")
    assert "TEST_ANTHROPIC_ADMIN_KEY" in caplog.text and "403" in caplog.text
    assert ANTHROPIC_KEY not in caplog.text


def test_missing_environment_variable_is_an_error_for_that_source(srv, sched, monkeypatch, caplog):
    monkeypatch.delenv("TEST_OPENAI_ADMIN_KEY")
    assert not sched.pull("openai")
    assert "TEST_OPENAI_ADMIN_KEY is not set" in caplog.text
    assert health(sched, "openai")[0] == 0.0
    assert not srv.requests


def test_429_waits_what_retry_after_says(srv, sched, sleeps):
    srv.openai_costs = {date(2026, 11, 3): [openai_result(1.0, "gpt-4o, input")]}
    srv.fail_next(429, 1, {"Retry-After": "7"})
    assert sched.pull("openai")
    assert sleeps == [7.0]
    assert billed(sched, "openai")["billed"] == {("openai", "gpt-4o, input"): 1.0}


def test_429_with_an_http_date(srv, sched, sleeps):
    srv.fail_next(429, 1, {"Retry-After": "Fri, 20 Nov 2026 15:30:30 GMT"})
    with freeze_time(NOW):
        assert sched.pull("anthropic")
    assert sleeps == [30.0]


def test_5xx_retried_with_backoff_then_given_up_until_the_next_interval(srv, sched, sleeps, caplog):
    srv.openai_costs = {date(2026, 11, 3): [openai_result(1.0, "gpt-4o, input")]}
    assert sched.pull("openai")
    srv.fail_next(503, ATTEMPTS)
    assert not sched.pull("openai")
    assert len(sleeps) == ATTEMPTS - 1
    assert all(0 <= s <= 2 ** i for i, s in enumerate(sleeps))     # full jitter under a doubling cap
    assert "gave up after 4 attempts" in caplog.text and "503" in caplog.text
    assert health(sched, "openai")[0] == 0.0
    assert billed(sched, "openai")["billed"] == {("openai", "gpt-4o, input"): 1.0}
    # a 5xx that clears within the attempts is a success
    srv.fail_next(500, 2)
    assert sched.pull("openai")
    assert health(sched, "openai")[0] == 1.0


def test_timeouts_are_retried_then_an_error(srv, sched, sleeps, monkeypatch, caplog):
    from costmeter.collectors import billing_http
    monkeypatch.setattr(billing_http, "TIMEOUT", (2.0, 0.1))
    srv.delay = 0.3
    assert not sched.pull("openai")
    assert len([r for r in srv.requests if r[0] == OPENAI_PATH]) == ATTEMPTS
    assert len(sleeps) == ATTEMPTS - 1
    assert "GET /v1/organization/costs timed out; gave up after 4 attempts" in caplog.text
    srv.delay = 0.0


def test_connection_refused_is_retried_then_an_error(sleeps):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]      # closed when the block ends: nothing listens there
    doc = loads(f'billing: {{sources: [{{name: oa, type: openai, api_key_env: HOME, '
                f'base_url: "http://127.0.0.1:{port}"}}]}}')
    sched = BillingScheduler(BillingConfig.from_yaml(doc, ("billing",), doc.data["billing"]),
                             clock=lambda: ts(NOW), sleep=sleeps.append)
    assert not sched.pull("oa")
    assert len(sleeps) == ATTEMPTS - 1
    assert health(sched, "oa") == (0.0, 0.0)


@pytest.mark.parametrize("bad_page", [
    b'{"object": "page", "data": [{"object": "bucket", "start_time": 1763596800}], "has_more": false}',
    b'{"object": "page", "data": [{"start_time": 1763596800, "results": [{"amount": {"value": "1.0", '
    b'"currency": "usd"}, "line_item": "x"}]}], "has_more": false}',
    b'{"object": "page", "data": [{"start_time": 1763596800, "results": [{"amount": {"value": 1.0, '
    b'"currency": "eur"}, "line_item": "x"}]}], "has_more": false}',
    b'{"object": "page", "data": [{"start_time": 1, "results": []}], "has_more": false}',
    b'{"object": "page", "data": [], "has_more": true, "next_page": null}',
    b'<html>502 Bad Gateway</html>',
    b'[]',
], ids=["no-results", "value-string", "not-usd", "day-outside-range", "more-without-token", "html", "array"])
def test_malformed_answer_is_an_error_and_never_a_partial_replacement(srv, sched, bad_page, caplog):
    srv.openai_costs = {date(2026, 11, 1): [openai_result(5.0, "gpt-4o, input")],
                        date(2026, 11, 19): [openai_result(7.0, "gpt-4o, input")]}
    assert sched.pull("openai")
    # The second pull's first page is good and says something else; its second page is broken.
    srv.openai_costs = {date(2026, 11, 1): [openai_result(1.0, "gpt-4o, input")]}
    srv.page_size = 10
    srv.requests.clear()
    first_page = json.dumps(srv.openai({"start_time": [str(int(ts("2026-11-01 00:00:00")))],
                                        "end_time": [str(int(ts("2026-11-21 00:00:00")))], "limit": ["31"]}))
    srv.raw_next(first_page.encode())
    srv.raw_next(bad_page)
    assert not sched.pull("openai")
    assert billed(sched, "openai")["billed"] == {("openai", "gpt-4o, input"): 12.0}
    assert health(sched, "openai")[0] == 0.0
    assert "billing source openai" in caplog.text


def test_a_repeating_next_page_is_an_error_not_a_loop(srv, sched):
    page = b'{"object": "page", "data": [], "has_more": true, "next_page": "same"}'
    for _ in range(3):
        srv.raw_next(page)
    assert not sched.pull("openai")
    assert len(srv.requests) == 2


# ---- Anthropic ---------------------------------------------------------------------------

def test_anthropic_amounts_are_cents(srv, sched):
    srv.page_size = 7
    srv.anthropic_costs = {
        date(2026, 11, 2): [anthropic_result("123.45", "claude-sonnet-4-20250514", token_type="output_tokens"),
                            anthropic_result("10", "claude-sonnet-4-20250514", token_type="uncached_input_tokens")],
        date(2026, 11, 18): [anthropic_result("250.5", None, cost_type="web_search", token_type=None)],
    }
    assert sched.pull("anthropic")
    got = billed(sched, "anthropic")["billed"]
    assert got[("anthropic", "claude-sonnet-4-20250514")] == pytest.approx(1.3345)   # 133.45 cents
    assert got[("anthropic", "web_search")] == pytest.approx(2.505)
    reqs = [r for r in srv.requests if r[0] == ANTHROPIC_PATH]
    assert len(reqs) == 3
    q = reqs[0][1]
    assert ("starting_at", "2026-11-01T00:00:00Z") in q and ("ending_at", "2026-11-21T00:00:00Z") in q
    assert ("bucket_width", "1d") in q and ("group_by[]", "description") in q
    assert all(r[2]["x-api-key"] == ANTHROPIC_KEY and r[2]["anthropic-version"] == "2023-06-01" for r in reqs)
    assert [dict(r[1]).get("page") for r in reqs] == [None, "page_7", "page_14"]


@pytest.mark.parametrize("amount", ['123.45', '"abc"', 'null', '"NaN"'])
def test_anthropic_amount_must_be_a_decimal_string(srv, sched, amount):
    srv.raw_next(('{"data": [{"starting_at": "2026-11-02T00:00:00Z", "ending_at": "2026-11-03T00:00:00Z", '
                  '"results": [{"currency": "USD", "amount": ' + amount + ', "model": "m"}]}], '
                  '"has_more": false, "next_page": null}').encode())
    assert not sched.pull("anthropic")


# ---- months are UTC ----------------------------------------------------------------------

@pytest.mark.parametrize("last_day", ["2026-02-28", "2028-02-29", "2026-04-30", "2026-12-31"])
def test_month_boundaries_utc(srv, last_day):
    end = date.fromisoformat(last_day)
    srv.openai_costs = {end.replace(day=1): [openai_result(1.0, "a")], end: [openai_result(2.0, "a")]}
    with freeze_time(f"{last_day} 23:59:59"):
        s = BillingScheduler(config(srv), sleep=lambda _: None)
        assert s.pull("openai")
        assert billed(s, "openai")["billed"] == {("openai", "a"): 3.0}
        q = dict(srv.requests[-1][1])
        assert int(q["start_time"]) == int(ts(f"{end.replace(day=1)} 00:00:00"))
        assert int(q["end_time"]) == int(ts(f"{end} 00:00:00")) + 86400
    nxt = date.fromordinal(end.toordinal() + 1)
    assert nxt.day == 1
    srv.openai_costs[nxt] = [openai_result(0.25, "a")]
    with freeze_time(f"{nxt} 00:00:05"):
        assert billed(s, "openai")["billed"] == {}        # a new month starts at 0 before its first pull
        assert s.pull("openai")
        assert billed(s, "openai")["billed"] == {("openai", "a"): 0.25}
        q = dict(srv.requests[-1][1])
        assert int(q["start_time"]) == int(ts(f"{nxt} 00:00:00"))
        assert int(q["end_time"]) - int(q["start_time"]) == 86400


# ---- estimate to billed -----------------------------------------------------------------

def test_estimate_to_billed_ratio_uses_complete_billed_days_only(srv, sched):
    srv.openai_costs = {date(2026, 11, 1): [openai_result(10.0, "a")],
                        date(2026, 11, 2): [openai_result(10.0, "a")],
                        date(2026, 11, 20): [openai_result(50.0, "a")]}     # today: not complete
    srv.anthropic_costs = {date(2026, 11, 1): [anthropic_result("1000", "claude")]}
    day = 86400.0
    nov1 = ts("2026-11-01 00:00:00")
    ledger = {  # (provider, day start) -> estimated USD; the 3rd was not billed yet: left out
        ("openai", nov1): 9.0, ("openai", nov1 + day): 12.0, ("openai", nov1 + 2 * day): 99.0,
        ("openai", ts("2026-11-20 00:00:00")): 1.0, ("google", nov1): 5.0}
    calls = []

    def sums(start, end):
        calls.append((start, end))
        return [(p, "m", "t", "e", v) for (p, s), v in ledger.items() if start <= s < end]

    link = BillingLink(config(srv), lambda: sums, lambda: None, clock=lambda: ts(NOW))
    link.scheduler._sleep_fn = lambda _: None
    assert link.scheduler.pull("openai") and link.scheduler.pull("anthropic")
    assert link.ratios == {("openai", "openai"): pytest.approx(21.0 / 20.0)}   # anthropic: no estimate
    text = link.render()
    assert 'cost_estimate_to_billed_ratio{source="openai",provider="openai"} 1.05' in text
    assert 'cost_billed_usd{source="openai",provider="openai",service="a"} 70.0' in text
    assert 'cost_billed_usd{source="anthropic",provider="anthropic",service="claude"} 10.0' in text
    assert 'costmeter_billing_up{source="openai"} 1.0' in text
    assert "cached from the last successful pull" in text
    assert all(e - s == day for s, e in calls)


def test_metrics_before_the_first_pull(srv, sched):
    text = BillingLink(config(srv), lambda: None, lambda: None).render()
    assert 'costmeter_billing_up{source="openai"} 0.0' in text
    assert 'costmeter_billing_last_success_timestamp_seconds{source="anthropic"} 0.0' in text
    assert "# TYPE costmeter_billing_api_cost_usd_total counter" in text
    assert "cost_billed_usd{" not in text
