"""Unit tests: the SQLite ledger, the metric store and their snapshot/replay round trip."""
from __future__ import annotations

from costmeter.server.cardinality import OVERFLOW, CardinalityGuard
from costmeter.server.decode import BodyError, Invalid, decode
from costmeter.server.ledger import Ledger
from costmeter.server.store import Store
from exporter_support import parse_metrics, sample

import pytest


def row(i, *, eid=None, tenant="acme", cost=0.01, ts=1_790_000_000.0, hit=None, duration=0.5, error=0):
    return (eid if eid is not None else f"id-{i}", ts + i, "openai", "gpt-4o-mini", tenant, "/v1/chat",
            100, 20, 0, 0, 50, 5, cost, 0, duration, error, hit, 0.002 if hit else 0.0, 0, ts)


# The events table as costmeter wrote it before cache_write_1h existed.
_OLD_SCHEMA = """
CREATE TABLE meta(k TEXT PRIMARY KEY, v TEXT NOT NULL);
CREATE TABLE events(
    seq INTEGER PRIMARY KEY,
    id TEXT, ts REAL NOT NULL,
    provider TEXT NOT NULL, model TEXT NOT NULL, tenant TEXT NOT NULL, endpoint TEXT NOT NULL,
    input INTEGER NOT NULL, cached_input INTEGER NOT NULL, cache_write INTEGER NOT NULL,
    output INTEGER NOT NULL, reasoning INTEGER NOT NULL,
    cost REAL, cost_given INTEGER NOT NULL, duration REAL, error INTEGER NOT NULL,
    cache_hit INTEGER, saved REAL NOT NULL, batch INTEGER NOT NULL, received REAL NOT NULL);
CREATE UNIQUE INDEX events_id ON events(id) WHERE id IS NOT NULL;
CREATE INDEX events_ts ON events(ts);
CREATE TABLE snapshots(name TEXT PRIMARY KEY, seq INTEGER NOT NULL, data TEXT NOT NULL);
INSERT INTO meta VALUES ('schema_version', '1');
INSERT INTO events(id, ts, provider, model, tenant, endpoint, input, cached_input, cache_write, output, reasoning,
                   cost, cost_given, duration, error, cache_hit, saved, batch, received)
VALUES ('old-1', 1790000000.0, 'anthropic', 'claude-sonnet-4-5', 'acme', '/v1/chat', 10, 20, 30, 40, 5,
        0.5, 0, 0.2, 0, NULL, 0.0, 0, 1790000000.0);
"""


def test_ledger_from_before_cache_write_1h_opens_and_keeps_its_rows(tmp_path):
    import sqlite3
    db = sqlite3.connect(str(tmp_path / "ledger.db"))
    db.executescript(_OLD_SCHEMA)
    db.close()
    led = Ledger(str(tmp_path))
    (seq, old), = list(led.replay(0))
    # The old row reads back with no 1-hour writes, every other column where it was.
    assert old == ("old-1", 1790000000.0, "anthropic", "claude-sonnet-4-5", "acme", "/v1/chat",
                   10, 20, 30, 0, 40, 5, 0.5, 0, 0.2, 0, None, 0.0, 0, 1790000000.0)
    keep, last = led.append([row(1), row(1, eid="old-1")])
    assert keep == [0] and last == 2
    new = dict(zip(range(20), list(led.replay(1))[0][1]))
    assert (new[8], new[9], new[10]) == (0, 0, 50)
    led.close()
    led = Ledger(str(tmp_path))                   # a second open finds the column already there
    assert led.count() == 2
    s = Store()
    for _, r in led.replay(0):
        s.apply(r)
    m = parse_metrics(render(s))
    lbl = dict(provider="anthropic", model="claude-sonnet-4-5", tenant="acme")
    assert sample(m, "cost_provider_tokens_total", token_type="cache_write", **lbl) == 30
    assert sample(m, "cost_provider_tokens_total", token_type="output", **lbl) == 40
    assert sample(m, "cost_provider_tokens_total", token_type="cache_write_1h", **lbl) == 0


def render(store: Store) -> str:
    out: list[str] = []
    store.render(out)
    return "".join(out)


def test_append_skips_ids_already_stored_and_repeated_within_a_batch(tmp_path):
    led = Ledger(str(tmp_path))
    keep, last = led.append([row(1), row(2), row(1, eid="id-1")])
    assert keep == [0, 1] and last == 2
    keep, last = led.append([row(2), row(3)])
    assert keep == [1] and last == 3
    no_id = (None,) + row(4)[1:]
    keep, _ = led.append([no_id, no_id])
    assert keep == [0, 1], "events without an id cannot be deduplicated"
    assert led.count() == 5


def test_ledger_reopens_with_everything(tmp_path):
    led = Ledger(str(tmp_path))
    led.append([row(i) for i in range(10)])
    led.close()
    led = Ledger(str(tmp_path))
    assert [seq for seq, _ in led.replay(0)] == list(range(1, 11))
    assert [seq for seq, _ in led.replay(7)] == [8, 9, 10]
    assert led.append([row(3)])[0] == []


def test_sums_by_time_range_ignore_unpriced(tmp_path):
    led = Ledger(str(tmp_path))
    led.append([row(0, cost=1.0), row(1, cost=2.0), row(2, cost=None), row(3, cost=4.0, tenant="b")])
    got = {r[2]: r[4] for r in led.sums(1_790_000_000.0, 1_790_000_003.0)}
    assert got == {"acme": 3.0}
    got = {r[2]: r[4] for r in led.sums(0, 2e9)}
    assert got == {"acme": 3.0, "b": 4.0}


def test_histogram_exposition_is_cumulative():
    s = Store()
    for i, cost in enumerate((0.00005, 0.0004, 0.0004, 0.03, 50.0)):
        s.apply(row(i, cost=cost))
    m = parse_metrics(render(s))
    lbl = dict(provider="openai", model="gpt-4o-mini", endpoint="/v1/chat", tenant="acme")
    assert sample(m, "cost_request_cost_usd_bucket", le="1e-05", **lbl) == 0
    assert sample(m, "cost_request_cost_usd_bucket", le="0.0001", **lbl) == 1
    assert sample(m, "cost_request_cost_usd_bucket", le="0.0005", **lbl) == 3
    assert sample(m, "cost_request_cost_usd_bucket", le="0.05", **lbl) == 4
    assert sample(m, "cost_request_cost_usd_bucket", le="10.0", **lbl) == 4
    assert sample(m, "cost_request_cost_usd_bucket", le="+Inf", **lbl) == 5
    assert sample(m, "cost_request_cost_usd_count", **lbl) == 5
    assert sample(m, "cost_request_cost_usd_sum", **lbl) == pytest.approx(50.03085)


def test_value_exactly_on_a_bucket_bound_counts_in_that_bucket():
    s = Store()
    s.apply(row(0, cost=0.001))
    m = parse_metrics(render(s))
    lbl = dict(provider="openai", model="gpt-4o-mini", endpoint="/v1/chat", tenant="acme")
    assert sample(m, "cost_request_cost_usd_bucket", le="0.001", **lbl) == 1
    assert sample(m, "cost_request_cost_usd_bucket", le="0.0005", **lbl) == 0


def test_cache_hits_are_lookups_not_provider_calls():
    s = Store()
    s.apply(row(0, hit=1, cost=0.0))
    s.apply(row(1, hit=0))
    s.apply(row(2))               # no cache in front of this call
    m = parse_metrics(render(s))
    pmt = dict(provider="openai", model="gpt-4o-mini", tenant="acme")
    assert sample(m, "cost_cache_lookups_total", **pmt) == 2
    assert sample(m, "cost_cache_hits_total", **pmt) == 1
    assert sample(m, "cost_cache_savings_usd_total", **pmt) == pytest.approx(0.002)
    assert sample(m, "cost_provider_api_calls_total", **pmt) == 2
    assert sample(m, "cost_provider_tokens_total", token_type="input", **pmt) == 200


def test_label_values_are_escaped():
    s = Store()
    r = list(row(0))
    r[4] = 'we"ird\\ten\nant'
    s.apply(tuple(r))
    m = parse_metrics(render(s))
    assert sample(m, "cost_provider_api_calls_total", provider="openai", model="gpt-4o-mini",
                  tenant='we"ird\\ten\nant') == 1


def test_guard_folds_new_values_past_the_limit_and_keeps_spend():
    s = Store(CardinalityGuard({"tenant": 2}))
    for i, t in enumerate(["a", "b", "c", "d", "a"]):
        s.apply(row(i, tenant=t, cost=1.0))
    m = parse_metrics(render(s))
    lbl = dict(provider="openai", model="gpt-4o-mini", endpoint="/v1/chat")
    assert sample(m, "cost_request_cost_usd_sum", tenant="a", **lbl) == 2.0
    assert sample(m, "cost_request_cost_usd_sum", tenant=OVERFLOW, **lbl) == 2.0
    assert s.guard.overflow["tenant"] == 2
    assert len(s.routes) == 2, "folded keys are not cached, so the route map stays bounded"


def test_snapshot_plus_replay_equals_full_replay(tmp_path):
    led = Ledger(str(tmp_path))
    rows = [row(i, tenant=f"t{i % 5}", hit=(None, 0, 1)[i % 3], cost=None if i % 11 == 0 else 0.001 * i,
                error=i % 4 == 0) for i in range(200)]
    led.append(rows[:120])
    live = Store(CardinalityGuard({"tenant": 3}))
    for _, r in led.replay(0):
        live.apply(r)
    led.save_snapshot("x", 120, live.state())
    led.append(rows[120:])
    for _, r in led.replay(120):
        live.apply(r)

    seq, state = led.load_snapshot("x")
    restored = Store(CardinalityGuard({"tenant": 3}))
    restored.restore(state)
    for _, r in led.replay(seq):
        restored.apply(r)
    full = Store(CardinalityGuard({"tenant": 3}))
    for _, r in led.replay(0):
        full.apply(r)
    assert render(restored) == render(full) == render(live)


def test_prune_keeps_events_not_yet_in_a_snapshot(tmp_path):
    led = Ledger(str(tmp_path))
    led.append([row(i, ts=1_000_000_000.0) for i in range(10)])
    assert led.prune(received_before=2e9, max_seq=4) == 4
    assert [seq for seq, _ in led.replay(0)] == [5, 6, 7, 8, 9, 10]


@pytest.mark.parametrize("body,ctype,n", [
    (b'[{"provider":"a"},{"provider":"b"}]', "application/json", 2),
    (b'{"provider":"a"}', "application/json", 1),
    (b'{"provider":"a"}\n{"provider":"b"}\n', "application/json", 2),      # NDJSON sent as JSON
    (b'{"provider":"a"}\n\n{"provider":"b"}', "application/x-ndjson; charset=utf-8", 2),
    (b'[{"provider":"a"}]', None, 1),
])
def test_decode_shapes(body, ctype, n):
    got = decode(body, ctype)
    assert len(got) == n and all(isinstance(o, dict) for o in got)


def test_decode_bad_ndjson_line_is_marked_not_fatal():
    got = decode(b'{"provider":"a"}\n{oops\n', "application/x-ndjson")
    assert isinstance(got[1], Invalid) and "line 2" in got[1].message


def test_decode_wrong_type_is_415():
    with pytest.raises(BodyError) as e:
        decode(b"x", "text/csv")
    assert e.value.status == 415 and "text/csv" in e.value.message


def test_snapshot_state_does_not_alias_live_cells():
    s = Store()
    s.apply(row(0, cost=0.001))
    state = s.state()
    s.apply(row(1, cost=0.001))       # ingest goes on while the snapshot is serialised
    restored = Store()
    restored.restore(state)
    lbl = dict(provider="openai", model="gpt-4o-mini", endpoint="/v1/chat", tenant="acme")
    m = parse_metrics(render(restored))
    assert sample(m, "cost_request_cost_usd_count", **lbl) == 1
    assert sample(m, "cost_request_duration_seconds_count", provider="openai", model="gpt-4o-mini",
                  endpoint="/v1/chat") == 1


@pytest.mark.parametrize("n", [1, 7, 512, 513, 1000, 1537])
def test_rows_go_in_as_multi_row_inserts_in_order_and_come_back_as_written(tmp_path, n):
    """Batches are split into 512, 256, ... 1-row INSERTs: every size comes back row for row,
    seq in the batch's order."""
    led = Ledger(str(tmp_path))
    rows = [row(i, tenant=f"t{i % 5}", cost=None if i % 9 == 0 else i / 7, hit=[None, 0, 1][i % 3],
                duration=None if i % 4 == 0 else i / 3) for i in range(n)]
    keep, last = led.append(rows)
    assert keep == list(range(n)) and last == n
    assert [r for _, r in led.replay(0)] == rows
    assert [s for s, _ in led.replay(0)] == list(range(1, n + 1))
    led.close()


def test_a_row_of_the_wrong_width_is_refused_and_nothing_of_its_batch_is_written(tmp_path):
    led = Ledger(str(tmp_path))
    led.append([row(0)])
    with pytest.raises(ValueError, match="must have 20 values"):
        led.append([row(1), row(2)[:-1] + (None, None), row(3)[:-2]])
    assert led.count() == 1
    assert led.append([row(1)])[0] == [0], "the refused batch's ids are not taken"
    led.close()
