"""Group commit, restart from the snapshot without ledger scans, reload and scrape off the
ingest lock, and budget reads that create no state, on a real (in-process) exporter."""
from __future__ import annotations

import os
import random
import sqlite3
import threading
import time
import uuid

import pytest
import requests

from costmeter.server.exporter import Exporter
from costmeter.server import idindex
from costmeter.server.ledger import COLUMNS, Ledger
from exporter_support import parse_metrics, sample


def row(eid, tenant="t", cost=0.01, ts=None):
    """A ledger row (ledger.COLUMNS order)."""
    r = dict(zip(COLUMNS, (eid, time.time() if ts is None else ts, "openai", "gpt-4o", tenant, "/e")))
    r.update(input=1, output=1, cost=cost, cost_given=1, received=time.time() if ts is None else ts)
    return tuple(r.get(c, 0 if c not in ("duration", "cache_hit") else None) for c in COLUMNS)


def test_group_commit_shares_fsyncs_and_writes_each_id_once(tmp_path):
    led = Ledger(str(tmp_path))
    results = []
    lock = threading.Lock()

    def client(k):
        for b in range(40):
            # batches of 10; every id is also sent by the next client (concurrent duplicates)
            rows = [row(f"{(k + j % 2) % 8}-{b}-{i}") for j in range(2) for i in range(5)]
            keep, last = led.append(rows)
            # acknowledged means durable and visible to any other connection
            db = sqlite3.connect(led.path)
            seen = {r[0] for r in db.execute(
                f"SELECT id FROM events WHERE id IN ({','.join('?' * len(rows))}) AND seq <= ?",
                [r[0] for r in rows] + [last])}
            db.close()
            assert seen == {r[0] for r in rows}
            with lock:
                results.append([rows[i][0] for i in keep])

    threads = [threading.Thread(target=client, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    written = [i for r in results for i in r]
    assert len(written) == len(set(written)) == 8 * 40 * 5       # every id exactly once
    assert led.count() == len(written)
    assert led.commits < len(results)                             # requests shared commits
    led.close()


def test_a_failed_group_commit_acknowledges_nothing(tmp_path):
    led = Ledger(str(tmp_path))
    led.append([row("a")])
    bad = tuple(None if c == "received" else v for c, v in zip(COLUMNS, row("b")))   # NOT NULL: fails
    with pytest.raises(sqlite3.IntegrityError):
        led.append([row("c"), bad])
    assert led.count() == 1
    keep, _ = led.append([row("c")])
    assert keep == [0]


BUDGETS = "global: {daily: 1000, monthly: 10000}\ntenant_defaults: {daily: 5, monthly: 50}\n"


def events(prefix, n, tenants=20):
    return [{"id": f"{prefix}-{i}", "provider": "openai", "model": "gpt-4o", "tenant": f"t{i % tenants}",
             "cost_usd": 0.25} for i in range(n)]


def spends(exp):
    return {(s.name, s.period): round(s.spend_usd, 6) for s in exp.budgets.statuses()}


def test_restart_restores_budgets_from_the_snapshot_and_replays_only_the_rest(tmp_path, monkeypatch):
    budgets = tmp_path / "budgets.yaml"
    budgets.write_text(BUDGETS)
    state = str(tmp_path / "state")
    a = Exporter.embedded(state_dir=state, listen_address=None, budgets_file=str(budgets))
    a.ingest(events("x", 400))
    a.snapshot()
    a.ingest(events("y", 100))            # after the snapshot; then "crash": no stop, no snapshot
    expected = spends(a)
    assert expected[("global", "daily")] == 125.0 and expected[("tenant:t3", "daily")] == 6.25

    def scan(*args, **kw):
        raise AssertionError("restart read the ledger with a GROUP BY scan")

    monkeypatch.setattr(Ledger, "sums", scan)
    b = Exporter.embedded(state_dir=state, listen_address=None, budgets_file=str(budgets))
    try:
        assert spends(b) == expected
        assert b.ingest(events("y", 100)).duplicates == 100     # nothing counted twice
        assert spends(b) == expected
        m = parse_metrics(b.render_metrics().decode())
        assert sample(m, "costmeter_ingest_events_total") == 500
    finally:
        b.stop()
        a._stop.set()                      # the abandoned exporter's threads, then its files
        for t in a._threads:
            t.join()
        a.ledger.close()


def test_reload_and_scrapes_do_not_stop_ingest(tmp_path):
    budgets = tmp_path / "budgets.yaml"
    budgets.write_text(BUDGETS)
    exp = Exporter.embedded(state_dir=str(tmp_path / "state"), budgets_file=str(budgets))
    try:
        exp.ingest(events("pre", 2000, tenants=500))
        stop = threading.Event()
        worst = [0.0]
        n = [0]

        def ingest():
            while not stop.is_set():
                t0 = time.perf_counter()
                exp.ingest(events(f"live{n[0]}", 10))
                worst[0] = max(worst[0], time.perf_counter() - t0)
                n[0] += 1

        th = threading.Thread(target=ingest)
        th.start()
        for k in range(5):
            budgets.write_text(BUDGETS + f"budgets:\n  - {{name: q{k}, period: quarterly, limit_usd: 100}}\n")
            assert requests.post(exp.url + "/-/reload", timeout=30).status_code == 200
            assert requests.get(exp.url + "/metrics", timeout=30).status_code == 200
        stop.set()
        th.join()
        total = 2000 + 10 * n[0]
        got = spends(exp)
        assert got[("global", "daily")] == total * 0.25 and got[("q4", "quarterly")] == total * 0.25
        assert sum(v for (name, p), v in got.items() if name.startswith("tenant:") and p == "daily") == total * 0.25
        # correctness above; a loose bound here (timings on a shared CI box): ingest went on
        assert n[0] > 0 and worst[0] < 5.0
    finally:
        exp.stop()


def test_get_budget_of_unknown_tenants_stores_nothing(tmp_path):
    budgets = tmp_path / "budgets.yaml"
    budgets.write_text(BUDGETS)
    exp = Exporter.embedded(state_dir=str(tmp_path / "state"), budgets_file=str(budgets))
    try:
        exp.ingest(events("x", 40))
        count = exp.budgets.instance_count()
        s = requests.Session()
        for i in range(200):          # 1,000 reads, with a memory bound, in test_budget_scale.py
            r = s.get(f"{exp.url}/v1/budgets/tenant:{i}" + "n" * 60_000, timeout=10)
            assert r.status_code == 200
            assert [(p["period"], p["spend_usd"]) for p in r.json()["periods"]] == [("daily", 0.0), ("monthly", 0.0)]
        assert exp.budgets.instance_count() == count == 2 + 2 * 20
        assert len(requests.get(exp.url + "/v1/budgets", timeout=10).json()["budgets"]) == count
    finally:
        exp.stop()


def wait_flushed(led):
    t = led.ids._flusher
    if t is not None:
        t.join()


def test_id_index_runs_bloom_restart_and_rebuild(tmp_path, monkeypatch):
    monkeypatch.setattr(idindex, "RUN_SIZE", 100)
    led = Ledger(str(tmp_path))
    ids = [str(uuid.UUID(int=random.Random(7).getrandbits(128) + i)) for i in range(1000)]
    for b in range(0, 1000, 50):
        keep, _ = led.append([row(i) for i in ids[b:b + 50]])
        assert len(keep) == 50
        wait_flushed(led)
    assert len(led.ids.runs) >= 8 and os.path.exists(tmp_path / "ids.bloom")
    assert led.append([row(i) for i in ids[::7]])[0] == []               # found in runs and recent
    assert led.append([row(i) for i in ids[:3]] + [row("new")])[0] == [3]
    led.close()

    led = Ledger(str(tmp_path))                                            # restart: bloom file and runs
    assert led.append([row(i) for i in ids[5::11]])[0] == []
    led.close()
    os.remove(tmp_path / "ids.bloom")                                      # lost: rebuilt from the runs
    led = Ledger(str(tmp_path))
    assert led.append([row(i) for i in ids[1::13]])[0] == []
    led.close()
    for f in os.listdir(tmp_path):                                         # ids.db lost: from the ledger
        if f.startswith("ids."):
            os.remove(tmp_path / f)
    led = Ledger(str(tmp_path))
    assert led.append([row(i) for i in ids[2::17]] + [row("new")])[0] == []
    assert led.count() == 1001
    led.close()


def test_pruning_drops_idempotency_runs_with_their_events(tmp_path, monkeypatch):
    monkeypatch.setattr(idindex, "RUN_SIZE", 100)
    led = Ledger(str(tmp_path))
    for b in range(6):
        led.append([row(f"{b}-{i}", ts=1_790_000_000.0 + b) for i in range(100)])
        wait_flushed(led)
    assert len(led.ids.runs) == 6
    assert led.prune(received_before=1_790_000_003.0, max_seq=10**9) == 300
    assert len(led.ids.runs) == 3
    # a pruned event's id is past the idempotency window: accepted again; a kept one is not
    assert led.append([row("0-5"), row("4-5")])[0] == [0]
    led.close()


def test_an_id_index_of_another_ledger_is_not_trusted(tmp_path, monkeypatch):
    monkeypatch.setattr(idindex, "RUN_SIZE", 10)
    led = Ledger(str(tmp_path))
    led.append([row(f"a{i}") for i in range(30)])
    wait_flushed(led)
    assert led.ids.runs
    led.close()
    os.remove(tmp_path / "ledger.db")                 # another ledger, same state directory
    for f in os.listdir(tmp_path):
        if f.startswith("ledger.db-"):
            os.remove(tmp_path / f)
    other = Ledger(str(tmp_path / "other"))
    other.append([row(f"b{i}") for i in range(40)])
    other.close()
    os.replace(tmp_path / "other" / "ledger.db", tmp_path / "ledger.db")
    led = Ledger(str(tmp_path))
    assert led.append([row(f"a{i}") for i in range(30)])[0] == list(range(30))   # a* are new here
    assert led.append([row("b3")])[0] == []
    led.close()


def test_an_older_ledger_with_a_unique_id_index_is_migrated(tmp_path):
    db = sqlite3.connect(str(tmp_path / "ledger.db"))
    led = Ledger(str(tmp_path))
    led.append([row(f"old-{i}") for i in range(30)])
    led.close()
    for f in os.listdir(tmp_path):
        if f.startswith("ids."):
            os.remove(tmp_path / f)
    db.execute("CREATE UNIQUE INDEX events_id ON events(id) WHERE id IS NOT NULL")
    db.close()
    led = Ledger(str(tmp_path))
    assert led._db.execute("SELECT count(*) FROM sqlite_master WHERE name='events_id'").fetchone()[0] == 0
    assert led.append([row(f"old-{i}") for i in range(0, 40, 3)])[0] == [10, 11, 12, 13]
    led.close()


def test_an_idle_exporter_writes_no_snapshot(tmp_path, monkeypatch):
    exp = Exporter.embedded(state_dir=str(tmp_path / "state"), listen_address=None)
    try:
        writes = []
        real = exp.ledger.save_snapshot
        monkeypatch.setattr(exp.ledger, "save_snapshot", lambda *a: (writes.append(a[1]), real(*a)))
        monkeypatch.setattr(exp.resources, "state", lambda: {"version": 1, "usd_total": {}})
        exp.ingest(events("x", 5))
        exp.snapshot()
        exp.snapshot()                       # nothing happened since
        exp.ingest(events("x", 5))           # duplicates only: counted in health, so saved
        exp.snapshot()
        exp.snapshot()
        assert writes == [5, 5]
    finally:
        exp.stop()


def test_metrics_render_while_ingest_adds_series_without_the_lock(tmp_path):
    exp = Exporter.embedded(state_dir=str(tmp_path / "state"), listen_address=None)
    try:
        stop = threading.Event()
        errors = []

        def scrape():
            while not stop.is_set():
                try:
                    parse_metrics(exp.render_metrics().decode())
                except Exception as e:             # e.g. "dictionary changed size during iteration"
                    errors.append(e)

        th = threading.Thread(target=scrape)
        th.start()
        held, release = threading.Event(), threading.Event()

        def commit():                              # a commit in progress holds the ingest lock
            with exp.ledger.lock:
                held.set()
                release.wait(10)

        holder = threading.Thread(target=commit)
        holder.start()
        held.wait(5)
        body = exp.render_metrics()                # does not wait for it
        assert not release.is_set() and b"costmeter_build_info" in body
        release.set()
        holder.join()
        for k in range(60):                        # every batch adds new series
            exp.ingest([{"id": f"s{k}-{i}", "provider": "openai", "model": f"m{k}", "tenant": f"t{i}",
                         "endpoint": f"/e{k % 3}", "cost_usd": 0.01, "duration_seconds": 0.2}
                        for i in range(20)])
        stop.set()
        th.join()
        assert errors == []
        m = parse_metrics(exp.render_metrics().decode())
        assert sample(m, "costmeter_ingest_events_total") == 1200
    finally:
        exp.stop()


def test_snapshots_are_written_beside_the_ledger_and_an_older_one_in_it_is_read(tmp_path):
    led = Ledger(str(tmp_path))
    led.append([row("a"), row("b")])
    led._db.execute("INSERT INTO snapshots VALUES ('exporter', 1, '{\"old\": true}')")   # older costmeter
    assert led.load_snapshot("exporter") == (1, {"old": True})
    held, release = threading.Event(), threading.Event()

    def commit():                          # a commit holding the ledger lock does not stop it
        with led.lock:
            held.set()
            release.wait(10)

    t = threading.Thread(target=commit)
    t.start()
    held.wait(5)
    led.save_snapshot("exporter", 2, {"new": True})
    release.set()
    t.join()
    assert led.load_snapshot("exporter") == (2, {"new": True})
    led.close()
    assert os.path.exists(tmp_path / "snapshots.db")
    led = Ledger(str(tmp_path))
    assert led.load_snapshot("exporter") == (2, {"new": True})
    led.close()


def data_series(exp):
    return {k: v for k, v in parse_metrics(exp.render_metrics().decode()).items()
            if k[0].startswith(("cost_provider", "cost_request", "cost_cache", "costmeter_unpriced",
                                "costmeter_ingest", "cost_budget_spend"))}


def test_snapshots_write_only_changed_cells_and_restore_to_the_same_state(tmp_path, monkeypatch):
    budgets = tmp_path / "budgets.yaml"
    budgets.write_text(BUDGETS)
    state = str(tmp_path / "state")
    a = Exporter.embedded(state_dir=state, listen_address=None, budgets_file=str(budgets))
    written = []
    real = a.ledger.save_snapshot
    monkeypatch.setattr(a.ledger, "save_snapshot", lambda n, s, d, c=(), *sums: (written.append(len(c)), real(n, s, d, c, *sums)))
    a.ingest(events("x", 400, tenants=40))
    a.ingest([{"id": "h", "provider": "openai", "model": "gpt-4o", "tenant": "t1", "cache_hit": True,
               "saved_cost_usd": 0.5, "duration_seconds": 0.1},
              {"id": "u", "provider": "nobody", "model": "unpriced", "tenant": "t2", "input_tokens": 5}])
    a.snapshot()
    a.ingest(events("y", 3, tenants=1))           # one tenant, one route
    a.snapshot()
    a.ingest([{"id": "h2", "provider": "openai", "model": "gpt-4o", "tenant": "t1", "cache_hit": False,
               "duration_seconds": 0.3, "cost_usd": 1.0}])
    expected = data_series(a)
    a.stop()                                      # writes the last delta
    assert written[0] > 100 and written[1] == 9 and len(written) == 3   # calls, errors, cost, 6 token types
    b = Exporter.embedded(state_dir=state, listen_address=None, budgets_file=str(budgets))
    try:
        assert data_series(b) == expected
    finally:
        b.stop()


def test_a_whole_state_snapshot_of_an_older_costmeter_is_restored_then_rewritten_as_cells(tmp_path):
    import json
    state = str(tmp_path / "state")
    a = Exporter.embedded(state_dir=state, listen_address=None)
    a.ingest(events("x", 50, tenants=5))
    old = {"store": a.store.state(), "health": dict(a.health)}
    seq = a.applied_seq
    a.ingest(events("y", 5, tenants=5))            # after the old snapshot: replayed
    expected = data_series(a)
    a._stop.set()
    for t in a._threads:
        t.join()
    a.ledger.close()                               # no new snapshot: only the old one exists
    db = sqlite3.connect(os.path.join(state, "ledger.db"))
    db.execute("INSERT INTO snapshots VALUES ('exporter', ?, ?)", (seq, json.dumps(old)))
    db.commit()
    db.close()
    b = Exporter.embedded(state_dir=state, listen_address=None)
    assert data_series(b) == expected
    b.stop()                                       # every cell, in snapshots.db
    c = Exporter.embedded(state_dir=state, listen_address=None)
    try:
        assert data_series(c) == expected
    finally:
        c.stop()


def test_ids_of_every_shape_are_found_in_runs_after_a_flush_and_a_restart(tmp_path, monkeypatch):
    """Runs are written through SQLite's json_each: ids with quotes, backslashes, control-free
    unicode, JSON-looking text and long ones come back exactly."""
    monkeypatch.setattr(idindex, "RUN_SIZE", 20)
    odd = ['a"b', "back\\slash", "é€😀", "\u2028sep", "x" * 300, "null", "[1]", "{}", " lead", "trail ",
           "0", "-1", "1e5", "true", "\\u0041"]
    ids = odd + [f"plain-{i}" for i in range(30)]
    led = Ledger(str(tmp_path))
    assert len(led.append([row(i) for i in ids])[0]) == len(ids)
    wait_flushed(led)
    assert led.ids.runs and not (set(odd) & led.ids.recent)                 # every odd id is in a run
    assert led.append([row(i) for i in odd])[0] == []
    assert led.append([row("\\u0042"), row('a"b ')])[0] == [0, 1]          # lookalikes are new
    led.close()
    led = Ledger(str(tmp_path))
    assert led.append([row(i) for i in ids])[0] == []
    led.close()


def test_the_inlined_bloom_probes_are_the_documented_ones(tmp_path):
    """known() inlines idindex._probes for speed, and known() with hashes (a worker's batch) and
    _add_to_bloom compute them with numpy; ids.bloom files written by one version are read by
    the next, so every copy must set and test exactly those bits."""
    led = Ledger(str(tmp_path))
    idx = led.ids
    ids = ["a", "é😀", "x" * 300] + [str(uuid.UUID(int=random.Random(3).getrandbits(128) + i)) for i in range(50)]
    idx._write_run(ids, 1, 1)            # every id in a run: known() finds one only if the Bloom lets it look
    idx.runs.append(1)
    empty = len(idx.bloom)
    for rid in ids:
        probes = idindex._probes(rid)
        idx._add_to_bloom([rid])
        assert all(idx.bloom[p >> 3] >> (p & 7) & 1 for p in probes)
        assert sum(bin(idx.bloom[i]).count("1") for i in {p >> 3 for p in probes}) == len(set(probes))
        assert empty - idx.bloom.count(0) == len({p >> 3 for p in probes})      # nothing else set
        pairs = idindex.hashes([rid])
        assert idx.known([rid]) == {rid} == idx.known([rid], pairs)
        for p in probes:                  # any one probe unset: known new without a look-up
            idx.bloom[p >> 3] &= ~(1 << (p & 7)) & 0xFF
            assert idx.known([rid]) == set() == idx.known([rid], pairs)
            idx.bloom[p >> 3] |= 1 << (p & 7)
        for p in probes:
            idx.bloom[p >> 3] = 0
    led.close()


def test_known_answers_the_same_for_a_whole_batch_with_or_without_its_hashes(tmp_path, monkeypatch):
    """A worker's batch (hashes given), a large batch without them (numpy) and a small one
    (Python, one id at a time) find the same ids: in recent, in the run being flushed, in runs."""
    monkeypatch.setattr(idindex, "RUN_SIZE", 150)
    led = Ledger(str(tmp_path))
    old = [f"old-{i}" for i in range(450)]
    for b in range(0, 450, 100):
        led.append([row(i) for i in old[b:b + 100]], pairs=idindex.hashes(old[b:b + 100]))
        wait_flushed(led)
    idx = led.ids
    assert len(idx.runs) == 2 and len(idx.recent) == 50              # 400 ids in runs, 50 recent
    idx.flushing = set(old[440:])                                     # as if being flushed now
    idx.recent -= idx.flushing
    probe = old[::3] + [f"new-{i}" for i in range(300)]
    random.Random(5).shuffle(probe)
    expected = set(old[::3])
    assert idx.known(probe, idindex.hashes(probe)) == expected
    assert idx.known(probe) == expected
    assert set().union(*(idx.known(probe[i:i + 10]) for i in range(0, len(probe), 10))) == expected
    led.close()


def test_ids_read_back_at_start_reach_the_bloom_filter_when_their_run_is_written(tmp_path, monkeypatch):
    """The ids after the last run are read back from the ledger at start, without a worker's
    hashes: when the next run holds them, their Bloom bits are set too, so a retry of one of
    them is still a duplicate."""
    monkeypatch.setattr(idindex, "RUN_SIZE", 100)
    led = Ledger(str(tmp_path))
    first = [f"before-restart-{i}" for i in range(60)]
    assert len(led.append([row(i) for i in first])[0]) == 60
    led.close()
    led = Ledger(str(tmp_path))
    assert set(first) <= led.ids.recent
    later = [f"after-restart-{i}" for i in range(60)]
    led.append([row(i) for i in later], pairs=idindex.hashes(later))
    wait_flushed(led)
    assert led.ids.runs and not led.ids.recent & set(first), "the run holds the ids read back"
    assert led.append([row(i) for i in first])[0] == []
    assert led.append([row(i) for i in first[:5]], pairs=idindex.hashes(first[:5]))[0] == []
    led.close()
