"""The durable spend ledger: every accepted usage event, in SQLite (WAL mode).

One row per accepted event, written with ``synchronous=FULL`` inside one
transaction per batch, so an event acknowledged to a client survives a crash
or power loss. ``id`` is the idempotency key: a retried event is found and
counted as a duplicate, never twice.

Metric state is rebuilt on start from a snapshot (the in-memory counters as
of ledger sequence number N, written every few seconds) plus a replay of the
rows after N, so counters never go backwards across restarts and start-up
does not re-read the whole history.

Schema (``seq`` is the replay order)::

    events(seq INTEGER PRIMARY KEY, id TEXT UNIQUE, ts REAL, provider, model,
           tenant, endpoint, input, cached_input, cache_write, output,
           reasoning, cost REAL NULL (NULL = no price), cost_given INTEGER,
           duration REAL NULL, error INTEGER, cache_hit INTEGER NULL,
           saved REAL, batch INTEGER, received REAL, cache_write_1h)

``cache_write_1h`` (1-hour cache writes) came later: a ledger without it gets
the column (0 for the rows already there) when it is opened. Columns are
always named in queries, so their order in the table does not matter.
"""
from __future__ import annotations

import json
import logging
import os
import sqlite3
import threading
import time
from typing import Iterator, Sequence

log = logging.getLogger("costmeter.server.ledger")

SCHEMA_VERSION = 1

# Column order of a ledger row, as written and as replayed.
COLUMNS = ("id", "ts", "provider", "model", "tenant", "endpoint",
           "input", "cached_input", "cache_write", "cache_write_1h", "output", "reasoning",
           "cost", "cost_given", "duration", "error", "cache_hit", "saved", "batch", "received")
ROW_ID, ROW_TS, ROW_PROVIDER, ROW_MODEL, ROW_TENANT, ROW_ENDPOINT = range(6)
ROW_TOKENS = slice(6, 12)           # events.TOKEN_TYPES order
ROW_COST, ROW_COST_GIVEN, ROW_DURATION, ROW_ERROR, ROW_CACHE_HIT, ROW_SAVED, ROW_BATCH = range(12, 19)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta(k TEXT PRIMARY KEY, v TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS events(
    seq INTEGER PRIMARY KEY,
    id TEXT, ts REAL NOT NULL,
    provider TEXT NOT NULL, model TEXT NOT NULL, tenant TEXT NOT NULL, endpoint TEXT NOT NULL,
    input INTEGER NOT NULL, cached_input INTEGER NOT NULL, cache_write INTEGER NOT NULL,
    output INTEGER NOT NULL, reasoning INTEGER NOT NULL,
    cost REAL, cost_given INTEGER NOT NULL, duration REAL, error INTEGER NOT NULL,
    cache_hit INTEGER, saved REAL NOT NULL, batch INTEGER NOT NULL, received REAL NOT NULL,
    cache_write_1h INTEGER NOT NULL DEFAULT 0);
CREATE UNIQUE INDEX IF NOT EXISTS events_id ON events(id) WHERE id IS NOT NULL;
CREATE INDEX IF NOT EXISTS events_ts ON events(ts);
CREATE TABLE IF NOT EXISTS snapshots(name TEXT PRIMARY KEY, seq INTEGER NOT NULL, data TEXT NOT NULL);
"""
_INSERT = f"INSERT INTO events({','.join(COLUMNS)}) VALUES ({','.join('?' * len(COLUMNS))})"
_ID_CHUNK = 5000  # bound variables per IN (...) query; SQLite allows 32766


class LedgerError(RuntimeError):
    pass


def _free_bytes(directory: str) -> int | str:
    try:
        st = os.statvfs(directory)
        return st.f_bavail * st.f_frsize
    except OSError:
        return "unknown"


def _add_missing_columns(db: sqlite3.Connection) -> None:
    """Bring a ledger written by an older costmeter up to the current columns."""
    have = {r[1] for r in db.execute("PRAGMA table_info(events)")}
    if "cache_write_1h" not in have:
        db.execute("ALTER TABLE events ADD COLUMN cache_write_1h INTEGER NOT NULL DEFAULT 0")


MARKER = "ledger.present"     # beside ledger.db from its first open: says a ledger lives here


def _emptied(state_dir: str, path: str) -> str | None:
    """Why ``state_dir`` looks like it held a ledger that is gone now, or None."""
    if os.path.exists(path):
        return f"{path} is empty (0 bytes)" if os.path.getsize(path) == 0 else None
    for name in (MARKER, "ledger.db-wal", "governance.jsonl"):
        other = os.path.join(state_dir, name)
        if os.path.exists(other) and os.path.getsize(other) > 0:
            return f"{path} is missing, but {other} is there from an earlier run"
    return None


class Ledger:
    """Thread-safe append-only ledger. Writes are serialised by one lock.

    ``start_empty``: open even where a ledger used to be and is now empty or gone
    (otherwise that is refused, naming the file: the numbers would start from zero).
    """

    def __init__(self, state_dir: str, start_empty: bool = False):
        os.makedirs(state_dir, exist_ok=True)
        self.path = os.path.join(state_dir, "ledger.db")
        self.lock = threading.RLock()
        self._integrity: threading.Thread | None = None
        self._integrity_problem: str | None = None
        gone = _emptied(state_dir, self.path)
        if gone and not start_empty:
            raise LedgerError(f"{gone}: the ledger that was here is lost, and starting would serve every "
                              "counter and budget from zero. Restore ledger.db from a backup, or pass "
                              "--storage.start-empty to start with an empty ledger anyway.")
        if gone:
            log.warning("%s; starting with an empty ledger as --storage.start-empty asks", gone)
            for suffix in ("-wal", "-shm"):     # an old WAL must not be replayed into the new file
                if os.path.exists(self.path + suffix):
                    aside = f"{self.path}{suffix}.lost-{int(time.time())}"
                    os.replace(self.path + suffix, aside)
                    log.warning("moved the old %s aside to %s", self.path + suffix, aside)
        try:
            self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.executescript(_SCHEMA)
            _add_missing_columns(self._db)
            row = self._db.execute("SELECT v FROM meta WHERE k='schema_version'").fetchone()
        except sqlite3.DatabaseError as e:
            raise self.damaged(e) from None
        if row is None:
            self._db.execute("INSERT INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
        marker = os.path.join(state_dir, MARKER)
        if not os.path.exists(marker):
            with open(marker, "w") as f:
                f.write("costmeter keeps its ledger.db in this directory; if ledger.db goes missing while "
                        "this file is here, costmeter refuses to start (see --storage.start-empty).\n")
        if row is not None and int(row[0]) > SCHEMA_VERSION:
            raise LedgerError(f"{self.path}: ledger schema {row[0]} is newer than this costmeter ({SCHEMA_VERSION})")

    # ---- integrity ---------------------------------------------------------
    def damaged(self, detail) -> LedgerError:
        return LedgerError(
            f"{self.path}: the ledger is damaged ({detail}); costmeter will not start on it, as it would "
            f"serve wrong numbers. Stop anything using it, move it aside, and restore it from a backup, or "
            f"recover what is readable: sqlite3 {self.path} .recover | sqlite3 ledger-recovered.db, then "
            f"put ledger-recovered.db in its place as ledger.db.")

    def start_integrity_check(self) -> None:
        """Run SQLite's ``PRAGMA quick_check`` (every page and b-tree of the file) in a thread
        with its own connection, beside the state restore; :meth:`check_integrity` waits for it."""
        def run() -> None:
            try:
                db = sqlite3.connect(self.path)
                try:
                    rows = db.execute("PRAGMA quick_check(5)").fetchall()
                finally:
                    db.close()
                if rows != [("ok",)]:
                    self._integrity_problem = "; ".join(str(r[0]) for r in rows)
            except sqlite3.DatabaseError as e:
                self._integrity_problem = str(e)
        self._integrity = threading.Thread(target=run, name="costmeter-integrity-check", daemon=True)
        self._integrity.start()

    def check_integrity(self) -> None:
        """Raise LedgerError if the integrity check found a problem (starting one if none ran)."""
        if self._integrity is None:
            self.start_integrity_check()
        self._integrity.join()
        if self._integrity_problem:
            raise self.damaged(self._integrity_problem)

    # ---- writes ---------------------------------------------------------
    def append(self, rows: Sequence[tuple]) -> tuple[list[int], int]:
        """Durably append rows (tuples in COLUMNS order), skipping ids already stored.

        Returns (indexes of the rows written, sequence number of the last
        row written). Caller holds ``self.lock`` if it must apply the rows to
        in-memory state in ledger order.
        """
        with self.lock:
            db = self._db
            db.execute("BEGIN IMMEDIATE")
            try:
                keep = self._insert_new(db, rows)
                last = db.execute("SELECT max(seq) FROM events").fetchone()[0] or 0
                db.execute("COMMIT")
            except BaseException as e:
                self._rollback(e)
                raise
            return keep, last

    def _rollback(self, e: BaseException) -> None:
        """Roll back a failed write; raise a LedgerError that says why if SQLite gave up.

        On SQLITE_FULL SQLite has already rolled the transaction back itself, so a
        plain ROLLBACK would fail with "no transaction is active" and hide the cause.
        """
        if self._db.in_transaction:
            self._db.execute("ROLLBACK")
        if isinstance(e, sqlite3.OperationalError) and "full" in str(e):
            free = _free_bytes(os.path.dirname(self.path))
            raise LedgerError(f"the disk is full: {self.path} cannot grow ({free} bytes free); "
                              "nothing in this batch was recorded") from e

    @staticmethod
    def _insert_new(db: sqlite3.Connection, rows: Sequence[tuple]) -> list[int]:
        """Insert the rows whose id is new; return their indexes. Inside a transaction."""
        ids = [r[ROW_ID] for r in rows if r[ROW_ID] is not None]
        if len(set(ids)) == len(ids):
            # Fast path, the common case of a first delivery: insert everything and let
            # the unique index object; only a retried batch pays for the look-ups.
            db.execute("SAVEPOINT fresh")
            try:
                db.executemany(_INSERT, rows)
                db.execute("RELEASE fresh")
                return list(range(len(rows)))
            except sqlite3.IntegrityError:
                db.execute("ROLLBACK TO fresh")
                db.execute("RELEASE fresh")
        seen: set[str] = set()
        for i in range(0, len(ids), _ID_CHUNK):
            chunk = ids[i:i + _ID_CHUNK]
            q = f"SELECT id FROM events WHERE id IN ({','.join('?' * len(chunk))})"
            seen.update(r[0] for r in db.execute(q, chunk))
        keep: list[int] = []
        for i, r in enumerate(rows):
            rid = r[ROW_ID]
            if rid is not None:
                if rid in seen:
                    continue
                seen.add(rid)          # a duplicate inside the same batch
            keep.append(i)
        if keep:
            db.executemany(_INSERT, [rows[i] for i in keep] if len(keep) != len(rows) else rows)
        return keep

    def save_snapshot(self, name: str, seq: int, data: dict) -> None:
        text = json.dumps(data, separators=(",", ":"))
        with self.lock:
            self._db.execute("INSERT OR REPLACE INTO snapshots VALUES (?, ?, ?)", (name, seq, text))

    def prune(self, received_before: float, max_seq: int) -> int:
        """Delete raw events *received* before ``received_before`` and already folded into a snapshot.

        By receipt time, not event time: an event's id must stay known for the whole
        retention after it arrived, or a retry of an old event (a replayed spool) would
        be counted again. Rows are in receipt order, so this walks only the rows it deletes.
        """
        with self.lock:
            cur = self._db.execute(
                "DELETE FROM events WHERE seq <= ? AND seq < coalesce("
                "(SELECT seq FROM events WHERE received >= ? ORDER BY seq LIMIT 1), ? + 1)",
                (max_seq, received_before, max_seq))
            return cur.rowcount

    # ---- reads ------------------------------------------------------------
    def load_snapshot(self, name: str) -> tuple[int, dict | None]:
        row = self._db.execute("SELECT seq, data FROM snapshots WHERE name=?", (name,)).fetchone()
        return (0, None) if row is None else (row[0], json.loads(row[1]))

    def replay(self, after_seq: int, batch: int = 10_000) -> Iterator[tuple[int, tuple]]:
        """Yield (seq, row) for every event after ``after_seq``, in order."""
        cols = ",".join(COLUMNS)
        db = sqlite3.connect(self.path)   # own connection: readers never block the writer
        try:
            last = after_seq
            while True:
                rows = db.execute(f"SELECT seq,{cols} FROM events WHERE seq > ? ORDER BY seq LIMIT ?",
                                  (last, batch)).fetchall()
                if not rows:
                    return
                for r in rows:
                    yield r[0], r[1:]
                last = rows[-1][0]
        finally:
            db.close()

    def sums(self, start_ts: float, end_ts: float) -> list[tuple[str, str, str, str, float]]:
        """Priced spend per (provider, model, tenant, endpoint) for events in [start, end)."""
        db = sqlite3.connect(self.path)
        try:
            return db.execute(
                "SELECT provider, model, tenant, endpoint, sum(cost) FROM events "
                "WHERE ts >= ? AND ts < ? AND cost IS NOT NULL "
                "GROUP BY provider, model, tenant, endpoint", (start_ts, end_ts)).fetchall()
        finally:
            db.close()

    def count(self) -> int:
        return self._db.execute("SELECT count(*) FROM events").fetchone()[0]

    def close(self) -> None:
        with self.lock:
            self._db.close()
