"""Budget enforcement: reserve then settle under 100 concurrent callers, throttle, fail open/closed.

Race arithmetic (every mode): budget tenant:race, daily limit $0.01. Each call
reserves $0.001 and really costs $0.0006 (1000 input tokens * $0.15/M + 750
output * $0.60/M on gpt-4o-mini). Wave 1: 100 callers arrive while none has
finished -> exactly 10 fit (10 * 0.001 = 0.01), 90 are refused. Once they
settle, $0.006 is spent, so wave 2 fits exactly 4 more (0.006 + 4 * 0.001 =
0.01) and refuses 96. Spend ends at 14 * 0.0006 = $0.0084 <= $0.01.
"""
from __future__ import annotations

import logging
import threading
import time

import pytest
from prometheus_client import CollectorRegistry

from costmeter import BudgetExceededError, cost_tracker, should_deny, should_throttle, track_cost
from exporter_support import ExporterProcess, free_port

COST = (1000 * 0.15 + 750 * 0.60) / 1e6       # 0.0006
BUDGETS = "tenants:\n  race: {daily: 0.01}\n"


def _response():
    return {"model": "gpt-4o-mini", "usage": {"prompt_tokens": 1000, "completion_tokens": 750}}


def _wave(ask, n=100):
    """n callers at once; the admitted ones are held inside the provider call until all have tried."""
    gate = threading.Event()
    lock = threading.Lock()
    out = {"ok": 0, "denied": 0, "inside": 0}

    def provider():
        with lock:
            out["inside"] += 1
        assert gate.wait(30)
        return _response()

    def caller():
        try:
            ask(provider)
            with lock:
                out["ok"] += 1
        except BudgetExceededError:
            with lock:
                out["denied"] += 1

    threads = [threading.Thread(target=caller) for _ in range(n)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        with lock:
            if out["denied"] + out["inside"] == n:
                break
        time.sleep(0.005)
    gate.set()
    for t in threads:
        t.join(30)
    return out


@pytest.fixture(params=["direct", "embedded", "shipped"])
def mode(request, tmp_path):
    bf = tmp_path / "budgets.yaml"
    bf.write_text(BUDGETS)
    exp = None
    if request.param == "direct":
        cost_tracker.configure(registry=CollectorRegistry(), budgets_file=str(bf))
        spend = lambda: cost_tracker._local_book.get("tenant:race")[0].spend_usd  # noqa: E731
    elif request.param == "embedded":
        ex = cost_tracker.embed(state_dir=str(tmp_path / "state"), listen_address=None, budgets_file=str(bf),
                                registry=CollectorRegistry())
        spend = lambda: (cost_tracker.flush(), ex.budgets.get("tenant:race")[0].spend_usd)[1]  # noqa: E731
    else:
        exp = ExporterProcess(str(tmp_path / "state"), f"--budgets.file={bf}").start()
        cost_tracker.configure(url=exp.url, registry=CollectorRegistry(), spool_dir=str(tmp_path / "spool"),
                               flush_interval=0.05, budget_cache_seconds=0.2)
        import requests

        def spend():
            cost_tracker.flush()
            r = requests.get(exp.url + "/v1/budgets/tenant:race", timeout=5).json()
            return r["periods"][0]["spend_usd"]
    yield request.param, spend
    cost_tracker.shutdown()
    if exp is not None:
        exp.stop()


def test_100_concurrent_callers_never_overshoot(mode):
    name, spend = mode

    @track_cost(provider="openai", model="gpt-4o-mini", tenant="race", enforce=True, estimate_usd=0.001)
    def ask(provider):
        return provider()

    w1 = _wave(ask)
    assert (w1["ok"], w1["denied"]) == (10, 90), name
    w2 = _wave(ask)                                   # right away: settled costs may not be ingested yet
    assert (w2["ok"], w2["denied"]) == (4, 96), name
    assert spend() == pytest.approx(14 * COST, rel=1e-9)
    assert 14 * COST <= 0.01
    m = cost_tracker.metrics
    assert m.denied.labels("race")._value.get() == 186
    e = cost_tracker.enforcer
    assert all(v == 0 for v in e.reserved.values())   # nothing left in flight


def test_denied_call_never_reaches_the_provider_and_reservation_uses_max_tokens(tmp_path):
    bf = tmp_path / "b.yaml"
    bf.write_text("tenants:\n  small: {daily: 0.001}\n")
    cost_tracker.configure(registry=CollectorRegistry(), budgets_file=str(bf))
    try:
        called = []
        seen = {}

        @track_cost(provider="openai", tenant="small", enforce=True)
        def ask(**kw):
            seen["reserved"] = dict(cost_tracker.enforcer.reserved)
            called.append(kw)
            return {"model": "gpt-4o-mini", "usage": {"prompt_tokens": 10, "completion_tokens": 10}}

        # the message's strings "user" and "hello" are 9 characters: the prompt estimate is
        # 9 // 3 + 4 per string * 2 + 8 = 19 tokens; max_cost = 19 * 0.15 + 1000 * 0.60 per million
        # (gpt-4o-mini's dearest input and output rates)
        ask(model="gpt-4o-mini", messages=[{"role": "user", "content": "hello"}], max_tokens=1000)
        assert seen["reserved"][("tenant:small", "daily")] == pytest.approx((19 * 0.15 + 1000 * 0.60) / 1e6)
        # 2000 output tokens could cost $0.0012 > $0.001: refused before the provider is called
        with pytest.raises(BudgetExceededError) as ei:
            ask(model="gpt-4o-mini", messages=[{"role": "user", "content": "hello"}], max_tokens=2000)
        assert len(called) == 1
        assert "tenant:small" in ei.value.reason and ei.value.tenant == "small"
        assert ei.value.budget == "tenant:small" and ei.value.period == "daily"
    finally:
        cost_tracker.shutdown()


def test_should_deny_and_throttle_count_in_flight_and_spend(tmp_path, caplog):
    bf = tmp_path / "b.yaml"
    bf.write_text("tenants:\n  t: {daily: 0.01}\n")
    reg = CollectorRegistry()
    cost_tracker.configure(registry=reg, budgets_file=str(bf))
    try:
        @track_cost(provider="openai", model="gpt-4o-mini", tenant="t", enforce=True, estimate_usd=0.001)
        def ask():
            return _response()

        for _ in range(13):                               # 13 * 0.0006 = 0.0078: under 80 %
            ask()
        assert should_throttle("t") == (False, "")
        assert should_deny("t") == (False, "")
        ask()                                             # judged at 78 %: not throttled
        assert reg.get_sample_value("costmeter_sdk_throttled_calls_total", {"tenant": "t"}) is None
        throttled, reason = should_throttle("t")          # 14 * 0.0006 = 0.0084: 84 %
        assert throttled and "84.0%" in reason and "tenant:t" in reason
        with caplog.at_level(logging.WARNING, logger="costmeter.sdk.enforcement"):
            ask()                                         # throttled: logged and counted, still allowed
        assert any("throttle" in r.message for r in caplog.records)
        assert reg.get_sample_value("costmeter_sdk_throttled_calls_total", {"tenant": "t"}) == 1
        assert should_deny("t") == (False, "")            # 0.009
        deny, reason = should_deny("t", extra_usd=0.001)  # 0.009 + 0.001 >= 0.01
        assert deny and "tenant:t" in reason
        assert should_deny("t", extra_usd=0.0009)[0] is False
        assert should_deny("other-tenant") == (False, "")
    finally:
        cost_tracker.shutdown()


def test_shipped_mode_fails_open_by_default_and_closed_when_asked(tmp_path, caplog):
    dead = f"http://127.0.0.1:{free_port()}"
    cost_tracker.configure(url=dead, spool_dir=str(tmp_path / "spool"), flush_interval=60)
    try:
        called = []

        @track_cost(provider="openai", model="gpt-4o-mini", tenant="x", enforce=True)
        def ask():
            called.append(1)
            return _response()

        @track_cost(provider="openai", model="gpt-4o-mini", tenant="x", enforce=True, fail_closed=True)
        def ask_strict():
            called.append(2)
            return _response()

        with caplog.at_level(logging.WARNING, logger="costmeter.sdk.enforcement"):
            ask()
            assert should_deny("x") == (False, "")
        assert called == [1]
        assert any("fail open" in r.getMessage() for r in caplog.records)
        with pytest.raises(BudgetExceededError, match="unavailable"):
            ask_strict()
        assert called == [1]
        deny, reason = should_deny("x", fail_closed=True)
        assert deny and "unavailable" in reason
    finally:
        cost_tracker.shutdown()


def test_shipped_mode_applies_tenant_defaults_to_a_tenant_never_seen(tmp_path):
    bf = tmp_path / "b.yaml"
    bf.write_text("tenant_defaults: {daily: 0.001}\n")
    exp = ExporterProcess(str(tmp_path / "state"), f"--budgets.file={bf}").start()
    cost_tracker.configure(url=exp.url, registry=CollectorRegistry(), spool_dir=str(tmp_path / "spool"))
    try:
        called = []

        @track_cost(provider="openai", tenant="brand-new", enforce=True)
        def ask(**kw):
            called.append(kw)
            return _response()

        # 2000 output tokens could cost $0.0012, more than the default daily $0.001
        with pytest.raises(BudgetExceededError) as ei:
            ask(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}], max_tokens=2000)
        assert called == [] and ei.value.budget == "tenant:brand-new"
    finally:
        cost_tracker.shutdown()
        exp.stop()
