"""GET /v1/costs: the hourly rollup, its catch-up by sequence number, and the HTTP contract."""
from __future__ import annotations

import sqlite3

import pytest
import requests

from costmeter.events import parse_event
from costmeter.pricing import PricingTable
from costmeter.server.costs import CostQuery, CostsDB, QueryError, parse_query
from costmeter.server.exporter import Exporter
from costmeter.server.ledger import Ledger

T0 = 1795305600.0          # 2026-11-22T00:00:00Z
PRICES = PricingTable.load()


def row(eid, ts, tenant="acme", model="gpt-4o-mini", cost=None, **kw):
    obj = {"id": eid, "timestamp": ts, "provider": kw.pop("provider", "openai"), "model": model,
           "tenant": tenant, "endpoint": "/v1/chat", "input_tokens": kw.pop("input_tokens", 1000),
           "output_tokens": kw.pop("output_tokens", 100), **kw}
    if cost is not None:
        obj["cost_usd"] = cost
    return parse_event(obj, ts, PRICES.cost)


@pytest.fixture
def ledger(tmp_path):
    led = Ledger(str(tmp_path))
    yield led
    led.close()


def seed(led):
    led.append([
        row("a1", T0 + 10, cost=1.0),                          # 00:00:10 day 22
        row("a2", T0 + 3600 * 5 + 30, cost=2.0, error=True),   # 05:00:30
        row("b1", T0 + 3600 * 5 + 45, tenant="beta", cost=0.5, cache_hit=False),
        row("b2", T0 + 86400 + 60, tenant="beta", cost=4.0, batch=True),  # day 23
        row("u1", T0 + 86400 + 120, tenant="beta", model="mystery-model"),  # unpriced
        row("h1", T0 + 86400 + 180, tenant="beta", cost=0.0, cache_hit=True, saved_cost_usd=0.25),
    ])


def test_grouped_rows_by_hand(ledger):
    seed(ledger)
    db = CostsDB(ledger.path)
    ans = db.query(CostQuery(T0, T0 + 2 * 86400, ("tenant", "day")))
    assert ans["start"] == "2026-11-22T00:00:00Z" and ans["group_by"] == ["tenant", "day"]
    got = {(r["tenant"], r["day"]): (r["cost_usd"], r["calls"], r["errors"], r["unpriced_calls"]) for r in ans["rows"]}
    assert got == {("acme", "2026-11-22"): (3.0, 2, 1, 0), ("beta", "2026-11-22"): (0.5, 1, 0, 0),
                   ("beta", "2026-11-23"): (4.0, 2, 0, 1)}
    beta23 = [r for r in ans["rows"] if r["tenant"] == "beta" and r["day"] == "2026-11-23"][0]
    # the cache hit h1 made no provider call: an event and a hit, not a call, and not its tokens
    assert beta23["events"] == 3
    assert beta23["tokens"] == {"input": 2000, "cached_input": 0, "cache_write": 0, "cache_write_1h": 0,
                                "output": 200, "reasoning": 0}
    assert (beta23["cache_hits"], beta23["cache_lookups"], beta23["saved_usd"], beta23["batch_calls"]) == (1, 1, 0.25, 1)
    # hour labels, and a filter
    ans = db.query(CostQuery(T0, T0 + 86400, ("hour",), {"tenant": "acme"}))
    assert [(r["hour"], r["cost_usd"]) for r in ans["rows"]] == [("2026-11-22T00", 1.0), ("2026-11-22T05", 2.0)]
    # no grouping: one total row
    ans = db.query(CostQuery(T0, T0 + 2 * 86400))
    assert [(r["cost_usd"], r["calls"], r["events"]) for r in ans["rows"]] == [(7.5, 5, 6)]


def test_partial_edge_hours_and_uncaught_tail(ledger):
    seed(ledger)
    db = CostsDB(ledger.path)
    assert db.catch_up() == 6 and db.mark() == 6
    # start inside hour 05 (after a2 at 05:00:30, before b1 at 05:00:45): only b1 and day 23
    q = CostQuery(T0 + 3600 * 5 + 40, T0 + 86400 + 150, ("tenant",))
    assert {r["tenant"]: r["cost_usd"] for r in db.query(q)["rows"]} == {"beta": 4.5}
    # an event committed after the catch-up is read from the raw tail, then folded in
    ledger.append([row("late", T0 + 3600 * 7, cost=10.0)])
    q = CostQuery(T0, T0 + 86400, ("tenant",))
    assert {r["tenant"]: r["cost_usd"] for r in db.query(q, catch_up=False)["rows"]} == {"acme": 13.0, "beta": 0.5}
    assert db.mark() == 6
    assert db.query(q) == db.raw_query(q)
    assert db.mark() == 7
    # folded once: a second catch-up adds nothing
    assert db.catch_up() == 0
    assert {r["tenant"]: r["cost_usd"] for r in db.query(q)["rows"]} == {"acme": 13.0, "beta": 0.5}


def test_rollup_survives_pruning_of_raw_events(ledger):
    seed(ledger)
    db = CostsDB(ledger.path)
    db.catch_up()
    ledger.prune(T0 + 86400, 6)           # raw events of day 22 gone
    q = CostQuery(T0, T0 + 2 * 86400, ("day",))
    assert [(r["day"], r["cost_usd"]) for r in db.query(q)["rows"]] == [("2026-11-22", 3.5), ("2026-11-23", 4.0)]


def test_read_only_ledger_is_queried_without_a_rollup(ledger, tmp_path):
    seed(ledger)
    db = CostsDB(ledger.path, writable=False)
    q = CostQuery(T0, T0 + 2 * 86400, ("tenant",))
    assert {r["tenant"]: r["cost_usd"] for r in db.query(q)["rows"]} == {"acme": 3.0, "beta": 4.5}


@pytest.mark.parametrize("params, bad", [
    ({"start": ["yesterday"]}, "start"),
    ({"end": ["2026-11-22T00:00:00"]}, "end"),                     # no offset
    ({"start": ["2026-11-23T00:00:00Z"], "end": ["2026-11-22T00:00:00Z"]}, "start"),
    ({"group_by": ["tenant,week"]}, "group_by"),
    ({"group_by": ["day,hour"]}, "group_by"),
    ({"tenant": [""]}, "tenant"),
    ({"tennant": ["acme"]}, "tennant"),
    ({"tenant": ["a", "b"]}, "tenant"),
])
def test_bad_parameters_are_named(params, bad):
    with pytest.raises(QueryError) as e:
        parse_query(params, now=T0)
    assert e.value.param == bad


def test_defaults_are_the_last_30_days():
    q = parse_query({}, now=T0)
    assert (q.start, q.end, q.group_by, dict(q.filters)) == (T0 - 30 * 86400, T0, (), {})
    q = parse_query({"start": [str(T0 - 60)], "end": ["2026-11-22T01:00:00+01:00"], "model": ["m"]}, now=T0)
    assert (q.start, q.end, dict(q.filters)) == (T0 - 60, T0, {"model": "m"})


def test_http_endpoint(tmp_path):
    exp = Exporter.embedded(state_dir=str(tmp_path / "state"))
    try:
        r = requests.post(exp.url + "/v1/events", json=[
            {"id": "x1", "timestamp": "2026-11-22T10:00:00Z", "provider": "openai", "model": "gpt-4o-mini",
             "tenant": "acme", "cost_usd": 1.25},
            {"id": "x2", "timestamp": "2026-11-22T11:30:00Z", "provider": "anthropic", "model": "claude-sonnet-4-5",
             "tenant": "acme", "input_tokens": 1000, "output_tokens": 1000}], timeout=10)
        assert r.status_code == 200, r.text
        r = requests.get(exp.url + "/v1/costs", params={
            "start": "2026-11-22T00:00:00Z", "end": "2026-11-23T00:00:00Z", "group_by": "provider,day"}, timeout=10)
        assert r.status_code == 200
        body = r.json()
        # claude-sonnet-4-5: $3 input, $15 output per 1M tokens -> 0.003 + 0.015
        assert [(x["provider"], x["day"], x["cost_usd"]) for x in body["rows"]] == [
            ("anthropic", "2026-11-22", 0.018), ("openai", "2026-11-22", 1.25)]
        r = requests.get(exp.url + "/v1/costs?group_by=tenant,colour", timeout=10)
        assert r.status_code == 400
        assert r.json()["parameter"] == "group_by" and "colour" in r.json()["error"]
        # the exporter keeps serving after a bad query
        assert requests.get(exp.url + "/-/healthy", timeout=10).status_code == 200
    finally:
        exp.stop()


def test_exporter_housekeeping_catches_up(tmp_path):
    exp = Exporter.embedded(state_dir=str(tmp_path / "state"), listen_address=None)
    try:
        exp.ingest([{"id": f"e{i}", "timestamp": T0 + i, "provider": "openai", "cost_usd": 0.5} for i in range(4)])
        db = sqlite3.connect(exp.ledger.path)
        import time
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            row = db.execute("SELECT v FROM meta WHERE k='costs_hourly_seq'").fetchone()
            if row and int(row[0]) == 4:
                break
            time.sleep(0.2)
        assert row and int(row[0]) == 4
        assert db.execute("SELECT sum(cost), total(calls) FROM costs_hourly").fetchone() == (2_000_000_000, 4.0)  # nano-USD
        db.close()
    finally:
        exp.stop()


def test_answer_before_the_ledger_is_open_and_on_a_bad_parameter():
    from types import SimpleNamespace

    from costmeter.server.costs import answer
    assert answer(SimpleNamespace(ledger=None), "group_by=tenant") == (
        503, {"error": "starting: the ledger is not open yet, retry"})
    status, body = answer(SimpleNamespace(ledger=None), "start=2026-11-22")
    assert status == 400 and body["parameter"] == "start"      # no UTC offset: checked before the ledger


def test_concurrent_ingest_queries_and_housekeeping_count_every_event_once(tmp_path):
    import threading

    exp = Exporter.embedded(state_dir=str(tmp_path / "state"))
    try:
        stop = threading.Event()
        errors = []

        def writer():
            for b in range(40):
                body = [{"id": f"c{b}-{i}", "timestamp": T0 + (b * 50 + i) * 97.0, "provider": "openai",
                         "tenant": f"t{i % 3}", "cost_usd": 0.01} for i in range(50)]
                r = requests.post(exp.url + "/v1/events", json=body, timeout=30)
                if r.status_code != 200:
                    errors.append(r.text)
            stop.set()

        t = threading.Thread(target=writer)
        t.start()
        q = {"start": str(T0), "end": str(T0 + 3 * 86400), "group_by": "tenant,hour"}
        seen = 0
        while not stop.is_set():       # queries catch up while events arrive and housekeeping folds them
            r = requests.get(exp.url + "/v1/costs", params=q, timeout=30)
            assert r.status_code == 200
            seen = max(seen, sum(x["calls"] for x in r.json()["rows"]))
        t.join()
        assert not errors
        final = requests.get(exp.url + "/v1/costs", params=q, timeout=30).json()
        assert sum(x["calls"] for x in final["rows"]) == 2000 >= seen
        assert final["rows"] == CostsDB(exp.ledger.path).raw_query(
            CostQuery(T0, T0 + 3 * 86400, ("tenant", "hour")))["rows"]
        assert round(sum(x["cost_usd"] for x in final["rows"]), 6) == 20.0
    finally:
        exp.stop()


def test_catch_up_folds_in_short_transactions_each_under_the_ingest_lock(ledger, monkeypatch):
    """Each catch-up transaction holds ledger.db's write lock, so ingest commits wait for it:
    it folds at most TXN_ROWS events at a time, each under the exporter's ingest lock."""
    from costmeter.server import costs
    seed(ledger)
    monkeypatch.setattr(costs, "TXN_ROWS", 2)
    db = CostsDB(ledger.path)
    marks = []

    class Spy:
        def __enter__(self):
            marks.append(("in", db.mark()))

        def __exit__(self, *exc):
            marks.append(("out", db.mark()))

    db.write_lock = Spy()
    assert db.catch_up() == 6 and db.mark() == 6
    steps = [b - a for (_, a), (_, b) in zip(marks[::2], marks[1::2])]
    assert steps == [2, 2, 2, 0], marks          # three transactions of two, then nothing left
