"""Ingest workers (server/parsepool.py): large bodies are decoded, validated and priced in
worker processes; what the exporter records and answers is the same as without them."""
from __future__ import annotations

import itertools
import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import threading
import time

import psutil
import pytest
import requests

from costmeter.server import costs
from costmeter.server.ledger import Ledger
from costmeter.server.parsepool import MIN_BODY_BYTES
from exporter_support import ExporterProcess, costmeter_cmd, kill_mid_stream, parse_metrics, post_until_acked, sample

MODELS = [("openai", "gpt-4o-mini-2024-07-18"), ("anthropic", "claude-sonnet-4-5-20250929"),
          ("google", "gemini-2.5-flash"), ("acme_llm", "house-1")]      # the last has no price


def events(prefix: str, n: int, seed: int = 0) -> list[dict]:
    rnd = random.Random(seed)
    out = []
    for i in range(n):
        provider, model = MODELS[i % len(MODELS)]
        e = {"id": f"{prefix}-{i}", "provider": provider, "model": model, "tenant": f"t{i % 7}",
             "endpoint": f"/e{i % 3}", "input_tokens": rnd.randrange(0, 5000),
             "output_tokens": rnd.randrange(0, 2000), "duration_seconds": rnd.random() * 3,
             "timestamp": 1_790_000_000 + rnd.randrange(-7200, 0)}
        if i % 11 == 0:
            e["cache_hit"], e["saved_cost_usd"] = bool(i % 2), 0.0012
        if i % 13 == 0:
            e["error"] = True
        if i % 17 == 0:
            e["cost_usd"] = 0.000123456789
        if i % 19 == 0:
            e["batch"] = True
        out.append(e)
    return out


def body(evs: list[dict]) -> bytes:
    b = json.dumps(evs).encode()
    assert len(b) >= MIN_BODY_BYTES          # goes to a worker
    return b


def post(url: str, data: bytes, ctype: str = "application/json") -> requests.Response:
    return requests.post(url + "/v1/events", data=data, headers={"Content-Type": ctype}, timeout=30)


def wait_for_worker(p: ExporterProcess, n: int = 1, timeout: float = 20.0) -> list[psutil.Process]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        m = parse_metrics(requests.get(p.url + "/metrics").text)
        kids = psutil.Process(p.proc.pid).children()
        if sample(m, "costmeter_ingest_workers") == n and len(kids) == n:
            return kids
        time.sleep(0.05)
    raise AssertionError(f"{n} ingest worker(s) not up: {p.log()}")


COST_FAMILIES = ("cost_request_cost_usd", "cost_provider_api_calls_total", "cost_provider_api_errors_total",
                 "cost_provider_tokens_total", "cost_request_duration_seconds", "cost_cache_hits_total",
                 "cost_cache_lookups_total", "cost_cache_savings_usd_total", "costmeter_unpriced_calls_total",
                 "costmeter_ingest_events_total", "costmeter_ingest_duplicate_events_total",
                 "costmeter_ingest_rejected_events_total")


def usage(p: ExporterProcess) -> dict:
    m = parse_metrics(requests.get(p.url + "/metrics").text)
    return {k: v for k, v in m.items() if k[0].startswith(COST_FAMILIES)}


def test_large_bodies_through_workers_record_and_answer_as_the_exporter_itself(tmp_path):
    bad = events("bad", 300, seed=3)
    bad[5]["input_tokens"] = -1
    bad[9]["tenant"] = "x" * 500
    bad[12]["colour"] = "blue"
    bodies = [body(events("a", 400, seed=1)), body(events("b", 400, seed=2)),
              body(events("a", 200, seed=1) + events("c", 200, seed=4)),     # 200 duplicates
              body(bad)]
    ndjson = "\n".join(json.dumps(e) for e in events("n", 300, seed=5)).encode()
    with ExporterProcess(str(tmp_path / "w"), "--ingest.workers=1") as w, \
            ExporterProcess(str(tmp_path / "x"), "--ingest.workers=0") as x:
        for p in (w, x):
            assert post(p.url, bodies[0]).json()["accepted"] == 400
        kids = wait_for_worker(w)
        cpu0 = sum(kids[0].cpu_times()[:2])
        answers = {}
        for p in (w, x):
            answers[p] = [(r.status_code, r.json()) for r in
                          [post(p.url, b) for b in bodies[1:]] + [post(p.url, ndjson, "application/x-ndjson")]]
        assert sum(kids[0].cpu_times()[:2]) > cpu0, "the worker parsed nothing"
        assert answers[w] == answers[x]
        assert [a[0] for a in answers[w]] == [200, 200, 422, 200]
        assert answers[w][1][1]["duplicates"] == 200
        assert answers[w][2][1]["rejected_count"] == 3
        assert usage(w) == usage(x)
        assert sample(parse_metrics(requests.get(x.url + "/metrics").text), "costmeter_ingest_workers") == 0
        q = "/v1/costs?start=1789900000&end=1790100000&group_by=tenant,model,hour"
        assert requests.get(w.url + q).json() == requests.get(x.url + q).json()
        assert len(requests.get(w.url + q).json()["rows"]) > 10


def test_a_killed_worker_loses_no_event_and_is_replaced(tmp_path):
    with ExporterProcess(str(tmp_path / "s"), "--ingest.workers=1") as p:
        assert post(p.url, body(events("a", 300))).json()["accepted"] == 300
        (kid,) = wait_for_worker(p)
        kid.send_signal(signal.SIGKILL)
        while kid.is_running() and kid.status() != psutil.STATUS_ZOMBIE:
            time.sleep(0.01)
        accepted = sum(post(p.url, body(events(f"k{i}", 300))).json()["accepted"] for i in range(5))
        assert accepted == 1500                  # parsed by the exporter while no worker runs
        (new,) = wait_for_worker(p)
        assert new.pid != kid.pid
        assert post(p.url, body(events("z", 300))).json()["accepted"] == 300
        m = parse_metrics(requests.get(p.url + "/metrics").text)
        assert sample(m, "costmeter_ingest_events_total") == 300 * 7
    assert "ingest worker" in p.log()


def test_reloaded_prices_reach_the_workers(tmp_path):
    pricing = tmp_path / "pricing.yaml"
    pricing.write_text("providers: {}\n")
    ev = [{"id": f"u{i}", "provider": "acme_llm", "model": "house-1", "tenant": "t", "input_tokens": 1_000_000,
           "endpoint": "/padding-" + "p" * 60} for i in range(300)]
    with ExporterProcess(str(tmp_path / "s"), f"--pricing.file={pricing}", "--ingest.workers=1") as p:
        post(p.url, body(ev)).raise_for_status()
        wait_for_worker(p)
        post(p.url, body([dict(e, id="v" + e["id"]) for e in ev])).raise_for_status()
        pricing.write_text("providers:\n  acme_llm:\n    models:\n      house-1: {input: 2.0, output: 8.0}\n")
        assert requests.post(p.url + "/-/reload").status_code == 200
        post(p.url, body([dict(e, id="w" + e["id"]) for e in ev])).raise_for_status()
        m = parse_metrics(requests.get(p.url + "/metrics").text)
        assert sample(m, "costmeter_unpriced_calls_total", provider="acme_llm", model="house-1") == 600
        assert sample(m, "cost_request_cost_usd_sum", provider="acme_llm", model="house-1",
                      endpoint=ev[0]["endpoint"], tenant="t") == pytest.approx(600.0)


def test_whole_body_errors_from_a_worker_are_the_exporters(tmp_path):
    cfg = tmp_path / "exporter.yaml"
    cfg.write_text("ingest:\n  max_events_per_request: 200\n  workers: 1\n")
    with ExporterProcess(str(tmp_path / "s"), f"--config.file={cfg}") as p:
        post(p.url, body(events("a", 200))).raise_for_status()
        wait_for_worker(p)
        r = post(p.url, body(events("b", 201)))
        assert r.status_code == 413 and "201 events in one request; the limit is 200" in r.json()["error"]
        r = post(p.url, body(events("c", 200))[:-1])
        assert r.status_code == 400 and "malformed JSON" in r.json()["error"]
        r = post(p.url, body(events("d", 200)), "text/csv")
        assert r.status_code == 415
        m = parse_metrics(requests.get(p.url + "/metrics").text)
        assert sample(m, "costmeter_ingest_rejected_events_total", reason="malformed") == 2   # 413 is not
        assert sample(m, "costmeter_ingest_workers") == 1


def _ledger_rows(n: int, seed: int) -> list[tuple]:
    rnd = random.Random(seed)
    rows = []
    for i in range(n):
        hit = rnd.choice([None, None, 0, 1])
        cost = rnd.choice([None, 0.0, 0.0000000005, 0.0000000015, 1.2345678915, rnd.random() / 10])
        rows.append((f"id{seed}-{i}", 1_790_000_000 + rnd.choice([0.0, -0.0001, 3599.9999, rnd.random() * 9000]),
                     rnd.choice("pq"), rnd.choice(["m1", "m2"]), f"t{rnd.randrange(3)}", "/e",
                     *(rnd.randrange(0, 1000) for _ in range(6)), cost, int(rnd.random() < 0.2),
                     rnd.choice([None, 0.3]), int(rnd.random() < 0.1), hit,
                     rnd.choice([0.0, 0.0000000025, rnd.random()]), int(rnd.random() < 0.2), 1_790_000_000.0))
    return rows


def test_rollup_rows_sum_as_the_catch_up_does(tmp_path):
    """The fold from a worker's rollup_rows, in the ingest commit, and the catch-up's SQL over the
    same events give the same rollup, to the last nano-dollar."""
    got = {}
    for name, with_rollup in (("fold", True), ("sql", False)):
        d = tmp_path / name
        led = Ledger(str(d))
        db = costs.for_ledger(led.path)
        if with_rollup:
            led.rollup = db
        for s in range(20):
            rows = _ledger_rows(250, s)
            led.append(rows, rollup=costs.rollup_rows(rows) if with_rollup else None)
        led.append(_ledger_rows(50, 3))          # all duplicates: nothing to fold
        if with_rollup:                          # folded by the commits themselves; the last ones
            assert db.catch_up() == 0 and db.mark() == 5000      # held in memory, written by the catch-up
        else:
            assert db.mark() == 0 and db.catch_up() == 5000
        led.close()
        con = sqlite3.connect(led.path)
        got[name] = con.execute("SELECT * FROM costs_hourly ORDER BY 1, 2, 3, 4, 5").fetchall()
        con.close()
    assert len(got["fold"]) > 20
    assert got["fold"] == got["sql"]


def test_commits_fold_their_events_without_a_worker_too(tmp_path):
    led = Ledger(str(tmp_path))
    db = costs.for_ledger(led.path)
    led.rollup = db
    led.append(_ledger_rows(100, 1))                       # no rollup rows: summed by SQL in the commit
    led.append(_ledger_rows(100, 2), rollup=costs.rollup_rows(_ledger_rows(100, 2)))
    assert db.catch_up() == 0 and db.mark() == 200         # the held rows written, nothing left to sum
    led.close()


def _rollup_table(path) -> list[tuple]:
    con = sqlite3.connect(path)
    try:
        return con.execute("SELECT * FROM costs_hourly ORDER BY 1, 2, 3, 4, 5").fetchall()
    finally:
        con.close()


def _sql_truth(tmp_path, batches) -> list[tuple]:
    """The rollup the catch-up's SQL makes of the same batches."""
    led = Ledger(str(tmp_path / "truth"))
    for rows in batches:
        led.append(rows)
    costs.for_ledger(led.path).catch_up()
    led.close()
    return _rollup_table(led.path)


def test_held_rollup_rows_are_written_when_due_and_equal_the_sql_rollup(tmp_path, monkeypatch):
    monkeypatch.setattr(costs, "HOLD_EVENTS", 1000)
    monkeypatch.setattr(costs, "HOLD_SECONDS", 3600)      # by count only, however slow the machine
    batches = [_ledger_rows(300, s) for s in range(10)]
    led = Ledger(str(tmp_path / "led"))
    db = costs.for_ledger(led.path)
    led.rollup = db
    marks = []
    for rows in batches:
        led.append(rows, rollup=costs.rollup_rows(rows))
        marks.append(db.mark())
    assert marks == [0, 0, 0, 1200, 1200, 1200, 1200, 2400, 2400, 2400], "written every 1,000 events or more"
    assert db.catch_up() == 0 and db.mark() == 3000
    led.close()
    assert _rollup_table(led.path) == _sql_truth(tmp_path, batches)


def test_held_rows_are_dropped_when_another_process_folded_or_the_commit_failed(tmp_path, monkeypatch):
    """Held rows are written only where the mark still is where they start: a catch-up by another
    process (a report) or a commit that rolled back leaves their events to the catch-up, which
    folds each event once."""
    monkeypatch.setattr(costs, "HOLD_SECONDS", 3600)      # nothing written by time, however slow the machine
    batches = [_ledger_rows(200, s) for s in range(6)]
    led = Ledger(str(tmp_path / "led"))
    db = costs.for_ledger(led.path)
    led.rollup = db
    for rows in batches[:2]:
        led.append(rows, rollup=costs.rollup_rows(rows))
    assert costs.CostsDB(led.path).catch_up() == 400          # another process's CostsDB: from the events
    led.append(batches[2], rollup=costs.rollup_rows(batches[2]))
    assert db.catch_up() == 200 and db.mark() == 600          # held rows dropped; the events folded once

    def full(conn, rows):                                    # the disk fills as the held rows go in
        raise sqlite3.OperationalError("database or disk is full")
    led.append(batches[3], rollup=costs.rollup_rows(batches[3]))
    monkeypatch.setattr(costs, "HOLD_EVENTS", 1)
    monkeypatch.setattr(costs._UPSERT, "run", full)
    with pytest.raises(Exception, match="disk is full"):
        led.append(batches[4], rollup=costs.rollup_rows(batches[4]))
    monkeypatch.undo()
    monkeypatch.setattr(costs, "HOLD_SECONDS", 3600)
    assert led.count() == 800 and not db._held, "the batch was not recorded, and nothing is held"
    assert db.catch_up() == 200 and db.mark() == 800         # batch 3, held when that commit failed

    class FailsAfterFolding:                                  # the commit fails after fold() took the rows
        def fold(self, *args):
            db.fold(*args)
            assert db._held
            raise RuntimeError("power cut")

        def abandon(self):
            db.abandon()
    led.rollup = FailsAfterFolding()
    with pytest.raises(RuntimeError):
        led.append(batches[4], rollup=costs.rollup_rows(batches[4]))
    assert led.count() == 800 and not db._held, "the rows of a commit that rolled back are not held"
    led.rollup = db
    led.append(batches[4], rollup=costs.rollup_rows(batches[4]))
    led.append(batches[5], rollup=costs.rollup_rows(batches[5]))
    assert db.catch_up() == 0 and db.mark() == 1200          # batches 4 and 5 held, then written
    led.close()
    assert _rollup_table(led.path) == _sql_truth(tmp_path, batches)


@pytest.mark.parametrize("value, problem", [("-1", "from 0 to 64"), ("two", "from 0 to 64"), ("true", "from 0 to 64")])
def test_bad_worker_counts_are_refused(tmp_path, value, problem):
    cfg = tmp_path / "exporter.yaml"
    cfg.write_text(f"ingest:\n  workers: {value}\n")
    r = subprocess.run(costmeter_cmd() + ["check", f"--config.file={cfg}"], capture_output=True, text=True,
                       env=dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path)))
    assert r.returncode != 0
    assert f"{cfg}:2" in r.stderr and "workers" in r.stderr and problem in r.stderr
    r = subprocess.run(costmeter_cmd() + ["serve", f"--ingest.workers={value}"], capture_output=True, text=True)
    assert r.returncode == 2 and "--ingest.workers" in r.stderr and problem in r.stderr


def test_sigkill_with_rollup_rows_held_counts_every_event_once_in_v1_costs(tmp_path):
    """SIGKILL the exporter while a retrying client streams batches that its worker parses: the
    rollup rows held in memory die with it, and after restarts GET /v1/costs counts each
    acknowledged event once."""
    per_batch, batches = 300, 45
    ts = int(time.time()) - 7200     # a whole hour before this one: GET /v1/costs reads it from the rollup

    def batch(name: str) -> bytes:
        return body([{"id": f"{name}-{i}", "provider": "openai", "model": "gpt-4o-mini-2024-07-18",
                      "tenant": f"t{i % 5}", "endpoint": f"/e{i % 3}", "input_tokens": 100 + i,
                      "cost_usd": 0.000123, "duration_seconds": 0.25, "timestamp": ts}
                     for i in range(per_batch)])

    exp = ExporterProcess(str(tmp_path / "state"), "--ingest.workers=1")
    ready = threading.Event()                 # the exporter is up and its worker too
    starts = itertools.count()

    def up() -> None:
        ready.clear()
        exp.start()
        assert post(exp.url, batch(f"warm{next(starts)}")).status_code == 200      # starts the worker
        wait_for_worker(exp)
        ready.set()

    acked: list[int] = []
    done = threading.Event()

    def client():
        s, errors = requests.Session(), [0]
        for b in range(batches):
            s = post_until_acked(s, exp, batch(f"k{b}"), lambda: acked.append(b), errors, gate=ready)
        done.set()

    up()
    t = threading.Thread(target=client)
    t.start()
    kills = kill_mid_stream(exp, acked, done, (8, 20, 33), restart=up)   # mid-stream: rows are held
    t.join(timeout=10)
    assert done.is_set() and kills == 3 and acked == list(range(batches))
    try:
        exp.kill()
        exp.start()
        events = per_batch * (batches + 4)    # and the four warm-up batches
        total = requests.get(exp.url + "/v1/costs", timeout=30).json()["rows"]
        assert len(total) == 1 and total[0]["events"] == events
        assert total[0]["cost_usd"] == pytest.approx(events * 0.000123, abs=1e-9)
        by_tenant = requests.get(exp.url + "/v1/costs?group_by=tenant", timeout=30).json()["rows"]
        assert [r["events"] for r in by_tenant] == [events // 5] * 5
    finally:
        exp.stop()
