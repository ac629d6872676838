"""The ledger against time, bad disks and lost files: idempotency that does not depend on
an event's timestamp, an integrity check at start, a full disk named as such."""
from __future__ import annotations

import time

import pytest

from costmeter.server.exporter import Exporter
from costmeter.server.ledger import Ledger

WEEK = 7 * 86400


def row(i, *, ts, received):
    from costmeter.server.ledger import COLUMNS
    values = {"id": f"id-{i}", "ts": ts, "provider": "openai", "model": "gpt-4o-mini", "tenant": "acme",
              "endpoint": "/v1/chat", "input": 100, "output": 50, "cost": 0.01, "duration": 0.5,
              "received": received}
    return tuple(values.get(c, None if c == "cache_hit" else 0) for c in COLUMNS)


def test_prune_goes_by_receipt_time_not_event_time(tmp_path):
    led = Ledger(str(tmp_path))
    now = 1_790_000_000.0
    led.append([row(i, ts=now - WEEK, received=now) for i in range(5)])      # old events, just received
    led.append([row(i, ts=now, received=now + 10 * 86400) for i in range(5, 8)])
    assert led.prune(received_before=now + 3600, max_seq=100) == 5        # received before the cutoff
    assert led.prune(received_before=now - 86400, max_seq=100) == 0
    assert [seq for seq, _ in led.replay(0)] == [6, 7, 8]


def test_prune_stops_at_the_first_event_received_after_the_cutoff(tmp_path):
    led = Ledger(str(tmp_path))
    led.append([row(i, ts=0.0, received=100.0 + i) for i in range(10)])
    assert led.prune(received_before=105.0, max_seq=3) == 3          # not past the snapshot
    assert led.prune(received_before=105.0, max_seq=10) == 2
    assert [seq for seq, _ in led.replay(0)] == [6, 7, 8, 9, 10]


def test_pruning_everything_never_hands_out_a_sequence_number_again(tmp_path):
    led = Ledger(str(tmp_path))
    led.append([row(i, ts=0.0, received=100.0 + i) for i in range(5)])
    assert led.prune(received_before=1e12, max_seq=5) == 4            # all old, but the newest stays
    assert [seq for seq, _ in led.replay(0)] == [5]
    led.append([row(i, ts=0.0, received=200.0) for i in range(5, 7)])
    assert [seq for seq, _ in led.replay(5)] == [6, 7]                 # after the snapshot's seq: seen


def test_replaying_a_week_old_spool_with_short_retention_never_double_counts(tmp_path):
    exp = Exporter.embedded(state_dir=str(tmp_path), listen_address=None)
    try:
        exp.settings.retention_days = 1
        old = time.time() - WEEK
        batch = [{"id": f"spool-{i}", "provider": "openai", "model": "gpt-4o-mini", "tenant": "t",
                  "cost_usd": 0.5, "timestamp": old + i} for i in range(10)]
        assert exp.ingest(batch).accepted == 10
        exp.snapshot()
        exp.prune()                                   # a minute later, as housekeeping does
        again = exp.ingest(batch)                    # the SDK retries the same spool
        assert (again.accepted, again.duplicates) == (0, 10)
        assert exp.health["accepted"] == 10
        from costmeter.server import costs
        costs.for_ledger(exp.ledger.path).catch_up()           # folded into the costs rollup, as housekeeping does
        assert exp.prune(now=time.time() + 2 * 86400) == 9      # gone a retention after receipt (the newest row stays)
    finally:
        exp.stop()


def test_a_full_disk_answers_503_saying_the_disk_is_full(tmp_path):
    import requests
    exp = Exporter.embedded(state_dir=str(tmp_path))
    try:
        ev = [{"id": f"e{i}", "provider": "openai", "model": "gpt-4o-mini", "tenant": "t", "cost_usd": 0.1}
              for i in range(2000)]
        requests.post(exp.url + "/v1/events", json=ev[:10]).raise_for_status()
        with exp.ledger.lock:      # SQLite's own "disk full": the file may not grow past its size now
            pages = exp.ledger._db.execute("PRAGMA page_count").fetchone()[0]
            exp.ledger._db.execute(f"PRAGMA max_page_count={pages}")
        r = requests.post(exp.url + "/v1/events", json=ev[10:])
        assert r.status_code == 503 and r.headers["Retry-After"]
        msg = r.json()["error"]
        assert "disk is full" in msg and "ledger.db" in msg and "no transaction" not in msg
        assert exp.ledger.count() == 10                         # nothing of the failed batch
        with exp.ledger.lock:
            exp.ledger._db.execute("PRAGMA max_page_count=1073741823")
        r = requests.post(exp.url + "/v1/events", json=ev[10:])
        assert r.status_code == 200 and r.json()["accepted"] == 1990    # space again: the retry works
    finally:
        exp.stop()


def _serve(state, *extra):
    """Run `costmeter serve` until it is ready (returns the process) or exits (returns the result)."""
    from exporter_support import ExporterProcess
    return ExporterProcess(str(state), *extra)


def _filled_state(tmp_path, n=3000):
    state = tmp_path / "state"
    exp = Exporter.embedded(state_dir=str(state), listen_address=None)
    exp.ingest([{"id": f"e{i}", "provider": "openai", "model": "gpt-4o-mini", "tenant": f"t{i % 9}",
                 "cost_usd": 0.3} for i in range(n)])
    exp.stop()
    return state


def _run_serve(state, *extra):
    import subprocess
    from exporter_support import costmeter_cmd
    return subprocess.run(costmeter_cmd() + ["serve", "--web.listen-address=127.0.0.1:0",
                                             f"--storage.path={state}", *extra],
                          capture_output=True, text=True, timeout=30)


def test_damaged_pages_refuse_start_naming_the_file_and_what_to_do(tmp_path):
    import os
    state = _filled_state(tmp_path)
    db = state / "ledger.db"
    size = os.path.getsize(db)
    with open(db, "r+b") as f:                      # scribble over a page in the middle of the table
        f.seek((size // 4096 // 2) * 4096 + 100)
        f.write(os.urandom(2000))
    r = _run_serve(state)
    assert r.returncode == 1, r.stderr
    assert f"{db}: the ledger is damaged" in r.stderr and ".recover" in r.stderr
    assert "Traceback" not in r.stderr


def test_a_ledger_emptied_to_zero_bytes_is_named_and_needs_the_flag(tmp_path):
    state = _filled_state(tmp_path, n=10)
    db = state / "ledger.db"
    db.write_bytes(b"")
    r = _run_serve(state)
    assert r.returncode == 1
    assert f"{db} is empty (0 bytes)" in r.stderr and "--storage.start-empty" in r.stderr
    assert db.stat().st_size == 0, "refusing must not touch the file"
    import requests
    with _serve(state, "--storage.start-empty") as p:
        assert requests.get(p.url + "/-/ready").status_code == 200
        assert "starting with an empty ledger" in p.log()


def test_a_missing_ledger_beside_an_old_governance_log_is_named(tmp_path):
    state = _filled_state(tmp_path, n=10)
    (state / "governance.jsonl").write_text('{"ts": 1}\n')
    (state / "ledger.db").unlink()
    (state / "ledger.present").unlink()
    if (state / "snapshots.db").exists():
        (state / "snapshots.db").unlink()
    r = _run_serve(state)
    assert r.returncode == 1 and "ledger.db is missing" in r.stderr and "governance.jsonl" in r.stderr


def test_a_healthy_ledger_passes_the_check(tmp_path):
    state = _filled_state(tmp_path, n=10)
    exp = Exporter.embedded(state_dir=str(state), listen_address=None)
    try:
        assert exp.ready and exp.health["accepted"] == 10
    finally:
        exp.stop()


def test_a_deleted_ledger_is_noticed_by_its_marker_and_an_old_wal_is_moved_aside(tmp_path):
    state = _filled_state(tmp_path, n=10)
    (state / "ledger.db").unlink()
    (state / "ledger.db-wal").write_bytes(b"old wal")
    r = _run_serve(state)
    assert r.returncode == 1 and f"{state / 'ledger.db'} is missing" in r.stderr and "ledger.present" in r.stderr
    led = Ledger(str(state), start_empty=True)
    try:
        assert led.count() == 0
        assert any(p.name.startswith("ledger.db-wal.lost-") for p in state.iterdir())
    finally:
        led.close()


def _pages(db_path, name: str) -> list[int]:
    """The leaf pages of table or index ``name``, in key order (SQLite's dbstat)."""
    import sqlite3
    db = sqlite3.connect(str(db_path))
    try:
        return [p for p, in db.execute("SELECT pageno FROM dbstat WHERE name=? AND pagetype='leaf' ORDER BY path",
                                       (name,))]
    finally:
        db.close()


def _scribble(db_path, page: int) -> None:
    import os
    with open(db_path, "r+b") as f:       # keep the page header, garble the cells
        f.seek((page - 1) * 4096 + 16)
        f.write(os.urandom(4000))


def _large(monkeypatch, tail_rows=100):
    """Make a small test ledger count as large: the full check waits for ready, and the fast
    check reads ``tail_rows`` at each end."""
    from costmeter.server import integrity, ledger
    monkeypatch.setattr(ledger, "FULL_CHECK_BEFORE_READY_BYTES", 0)
    monkeypatch.setattr(integrity, "TAIL_ROWS", tail_rows)


def _metric(text: str, name: str) -> float:
    import re
    return float(re.search(rf"^{re.escape(name)} (\S+)$", text, re.M).group(1))


def test_damage_in_the_middle_of_a_large_ledger_turns_not_ready_and_refuses_writes(tmp_path, monkeypatch, caplog):
    """storage.integrity_check: auto (the default) on a large ledger: ready after the fast check;
    the full check after ready finds the damaged page and the exporter stops taking writes."""
    import requests
    state = _filled_state(tmp_path)
    leaves = _pages(state / "ledger.db", "events_ts")
    _scribble(state / "ledger.db", leaves[len(leaves) // 2])      # far from both ends of the index
    _large(monkeypatch)
    exp = Exporter.embedded(state_dir=str(state))           # not refused: start-up never reads that page
    try:
        deadline = time.monotonic() + 10
        while exp.ready and time.monotonic() < deadline:
            time.sleep(0.02)
        assert requests.get(exp.url + "/-/ready").status_code == 503
        r = requests.post(exp.url + "/v1/events", json=[{"provider": "openai", "cost_usd": 1.0}])
        assert r.status_code == 503
        msg = r.json()["error"]
        assert f"{state / 'ledger.db'}: the ledger is damaged" in msg and ".recover" in msg
        assert exp.ledger.count() == 3000
        metrics = requests.get(exp.url + "/metrics").text
        assert _metric(metrics, "costmeter_ledger_integrity_ok") == 0
        assert _metric(metrics, 'costmeter_ledger_integrity_check_timestamp_seconds{check="full"}') > 0
        assert "the ledger is damaged" in caplog.text
    finally:
        exp.stop()


def test_serve_with_the_full_check_after_ready_turns_not_ready_on_damage(tmp_path):
    import requests
    state = _filled_state(tmp_path, n=60_000)          # more than the fast check reads at both ends
    leaves = _pages(state / "ledger.db", "events_ts")
    _scribble(state / "ledger.db", leaves[len(leaves) // 2])
    assert _run_serve(state).returncode == 1                   # auto, small ledger: refused before ready
    p = _serve(state, "--storage.integrity-check=background").start()
    try:
        deadline = time.monotonic() + 20
        while "the ledger is damaged" not in p.log() and time.monotonic() < deadline:
            assert p.proc.poll() is None, p.log()
            time.sleep(0.05)
        assert "costmeter_ledger_integrity_ok 0" in requests.get(p.url + "/metrics").text
        assert requests.get(p.url + "/-/ready").status_code == 503
    finally:
        p.stop()


@pytest.mark.parametrize("mode, where", [
    ("background", "last"),    # the next writes go to the last pages: the fast check reads them before
                               # ready, even when the full check is after ready
    ("start", "middle"),       # start: the whole of a large ledger is checked before ready
])
def test_damage_a_large_ledger_is_refused_at_start(tmp_path, monkeypatch, mode, where):
    from costmeter.server.ledger import LedgerError
    state = _filled_state(tmp_path)
    leaves = _pages(state / "ledger.db", "events_ts")
    _scribble(state / "ledger.db", leaves[-1] if where == "last" else leaves[len(leaves) // 2])
    _large(monkeypatch)
    cfg = tmp_path / "exporter.yaml"
    cfg.write_text(f"storage: {{integrity_check: {mode}}}\n")
    with pytest.raises(LedgerError) as e:
        Exporter.embedded(state_dir=str(state), config_file=str(cfg), listen_address=None)
    assert f"{state / 'ledger.db'}: the ledger is damaged" in str(e.value)


def test_damaged_snapshots_are_refused_at_start_naming_the_file(tmp_path, monkeypatch):
    state = _filled_state(tmp_path)
    snap = state / "snapshots.db"
    _scribble(snap, _pages(snap, "cells")[0])
    r = _run_serve(state)
    assert r.returncode == 1, r.stderr
    assert f"{snap}: the snapshots are damaged" in r.stderr and "move it" in r.stderr
    assert "Traceback" not in r.stderr


def _crashed_copy(tmp_path, n=500):
    """A state directory as SIGKILL leaves it: ledger.db with acknowledged events still in its WAL."""
    import shutil
    live, copy = tmp_path / "live", tmp_path / "crashed"
    exp = Exporter.embedded(state_dir=str(live), listen_address=None)
    try:
        exp.ingest([{"id": f"e{i}", "provider": "openai", "model": "gpt-4o-mini", "cost_usd": 0.1}
                    for i in range(n)])
        exp.snapshot()
        shutil.copytree(live, copy)             # while open: the WAL is not checkpointed
    finally:
        exp.stop()
    assert (copy / "ledger.db-wal").stat().st_size > 32
    return copy


def test_a_wal_with_a_damaged_header_is_refused_rather_than_ignored(tmp_path):
    state = _crashed_copy(tmp_path)
    good = Ledger(str(tmp_path / "check"), start_empty=True)     # (the copy as it is holds every event)
    good.close()
    with open(state / "ledger.db-wal", "r+b") as f:
        f.seek(16)                                    # the salt: the header's checksum no longer matches
        f.write(b"\xde\xad\xbe\xef")
    r = _run_serve(state)
    assert r.returncode == 1, r.stderr
    assert f"{state}: ledger.db-wal: the WAL header's checksum does not match" in r.stderr
    assert "move the WAL" in r.stderr and "Traceback" not in r.stderr


def test_a_crashed_ledger_with_a_good_wal_starts_with_every_event(tmp_path):
    state = _crashed_copy(tmp_path)
    exp = Exporter.embedded(state_dir=str(state), listen_address=None)
    try:
        assert exp.ledger.count() == 500 and exp.health["accepted"] == 500
    finally:
        exp.stop()


def test_integrity_metrics_after_a_clean_start(tmp_path):
    import requests
    state = _filled_state(tmp_path, n=10)
    exp = Exporter.embedded(state_dir=str(state))
    try:
        metrics = requests.get(exp.url + "/metrics").text
        assert _metric(metrics, "costmeter_ledger_integrity_ok") == 1
        for check in ("fast", "full"):        # a small ledger: both ran before ready
            when = _metric(metrics, f'costmeter_ledger_integrity_check_timestamp_seconds{{check="{check}"}}')
            assert time.time() - 60 < when <= time.time()
            assert _metric(metrics, f'costmeter_ledger_integrity_check_duration_seconds{{check="{check}"}}') >= 0
    finally:
        exp.stop()


def test_integrity_check_setting_is_validated(tmp_path):
    import pytest
    from costmeter.config.loader import ConfigError
    from costmeter.config.settings import load_settings
    cfg = tmp_path / "exporter.yaml"
    cfg.write_text("storage:\n  integrity_check: never\n")
    with pytest.raises(ConfigError) as e:
        load_settings(str(cfg))
    assert str(e.value).startswith(f"{cfg}:2: storage.integrity_check: must be auto, start or background")


def test_a_check_still_running_is_stopped_by_cancel_and_finds_nothing(tmp_path):
    """stop() must not wait for a full check of a large ledger after ready."""
    from costmeter.server import integrity
    endless = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT count(*) FROM c"
    check = integrity.Check("full", lambda c: c.connect(str(tmp_path / "x.db")).execute(endless).fetchone())
    time.sleep(0.2)
    t0 = time.monotonic()
    check.cancel()
    assert check.wait() is None and check.cancelled
    assert time.monotonic() - t0 < 1.0
