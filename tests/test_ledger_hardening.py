"""The ledger against time, bad disks and lost files: idempotency that does not depend on
an event's timestamp, an integrity check at start, a full disk named as such."""
from __future__ import annotations

import time

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


def test_background_integrity_check_turns_not_ready_and_refuses_writes_on_damage(tmp_path, monkeypatch):
    import threading
    import requests
    cfg = tmp_path / "exporter.yaml"
    cfg.write_text("storage: {integrity_check: background}\n")
    found = threading.Event()

    def damaged_after_ready(self):
        found.wait(10)                         # the check finishes after the exporter is ready
        raise self.damaged("database disk image is malformed")
    monkeypatch.setattr(Ledger, "check_integrity", damaged_after_ready)
    exp = Exporter.embedded(state_dir=str(tmp_path / "state"), config_file=str(cfg))
    try:
        assert exp.ready and requests.get(exp.url + "/-/ready").status_code == 200
        found.set()
        deadline = time.monotonic() + 5
        while exp.ready and time.monotonic() < deadline:
            time.sleep(0.02)
        assert requests.get(exp.url + "/-/ready").status_code == 503
        r = requests.post(exp.url + "/v1/events", json=[{"provider": "openai", "cost_usd": 1.0}])
        assert r.status_code == 503 and "the ledger is damaged" in r.json()["error"]
        assert exp.ledger.count() == 0
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
    assert str(e.value).startswith(f"{cfg}:2: storage.integrity_check: must be start or background")
