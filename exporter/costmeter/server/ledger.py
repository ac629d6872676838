"""The durable spend ledger: every accepted usage event, in SQLite (WAL mode).

One row per accepted event, written with ``synchronous=FULL`` inside one
transaction per batch, so an event acknowledged to a client survives a crash
or power loss. ``id`` is the idempotency key: a retried event is found and
counted as a duplicate, never twice (``idindex.IdIndex`` answers which ids are
recorded, without a random-insert B-tree index on them).

Group commit: appends that arrive while a commit runs share the next
transaction and its one fsync; each returns only once that commit is durable.

Metric state is rebuilt on start from a snapshot (the in-memory counters as
of ledger sequence number N, written every few seconds) plus a replay of the
rows after N, so counters never go backwards across restarts and start-up
does not re-read the whole history.

Schema (``seq`` is the replay order)::

    events(seq INTEGER PRIMARY KEY, id TEXT, ts REAL, provider, model,
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

from costmeter.server import idindex, integrity
from costmeter.server.idindex import IdIndex
from costmeter.server.sqlrows import MultiRowInsert
from typing import Any, Callable, Iterator, Sequence

log = logging.getLogger("costmeter.server.ledger")

SCHEMA_VERSION = 1
# storage.integrity_check: auto runs the full check before ready up to this size of ledger.db
# and its WAL, about 600k events (bench/bench_start_integrity.py: quick_check reads 250-400 MB/s
# on 2 shared cores, so it adds 0.15-0.25 s to a restart)
FULL_CHECK_BEFORE_READY_BYTES = 64 * 1024 * 1024

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
CREATE INDEX IF NOT EXISTS events_ts ON events(ts);
CREATE TABLE IF NOT EXISTS snapshots(name TEXT PRIMARY KEY, seq INTEGER NOT NULL, data TEXT NOT NULL);
"""
_INSERT = MultiRowInsert(f"INSERT INTO events({','.join(COLUMNS)})", len(COLUMNS))


class LedgerError(RuntimeError):
    pass


def _add_missing_columns(db: sqlite3.Connection) -> None:
    """Bring a ledger written by an older costmeter up to the current columns."""
    have = {r[1] for r in db.execute("PRAGMA table_info(events)")}
    if "cache_write_1h" not in have:
        db.execute("ALTER TABLE events ADD COLUMN cache_write_1h INTEGER NOT NULL DEFAULT 0")


def _free_bytes(directory: str) -> int | str:
    try:
        st = os.statvfs(directory)
        return st.f_bavail * st.f_frsize
    except OSError:
        return "unknown"


MARKER = "ledger.present"     # beside ledger.db from its first open: says a ledger lives here


def _emptied(state_dir: str, path: str) -> str | None:
    """Why ``state_dir`` looks like it held a ledger that is gone now, or None."""
    if os.path.exists(path) and os.path.getsize(path) > 0:
        return None
    for name in (MARKER, "ledger.db-wal", "snapshots.db", "governance.jsonl"):
        other = os.path.join(state_dir, name)
        if os.path.exists(other) and os.path.getsize(other) > 0:
            what = "is empty (0 bytes)" if os.path.exists(path) else "is missing"
            return f"{path} {what}, but {other} is there from an earlier run"
    return None         # a first start (SQLite may have made an empty file a moment ago)


class _Pending:
    """One append waiting for a group commit."""
    __slots__ = ("rows", "apply", "rollup", "pairs", "keep", "last", "error", "done", "wake")

    def __init__(self, rows, apply, rollup, pairs):
        self.rows, self.apply, self.rollup, self.pairs = rows, apply, rollup, pairs
        self.keep: list[int] = []
        self.last = 0
        self.error: BaseException | None = None
        self.done = False
        # held until a leader is done with this batch or hands the lead to it: a bare lock
        # wakes a thread for a fraction of what threading.Event costs (16 threads x batches
        # of 10: 73k events/s against 52k with an Event)
        self.wake = threading.Lock()
        self.wake.acquire()


def _write_budget_sums(db: sqlite3.Connection, d) -> None:
    """Apply a budgets.stored.SumsDelta inside the snapshot's transaction."""
    if d.replace_all:
        db.execute("DELETE FROM budget_sums")
    for track in list(d.drop) + list(d.replace):
        db.execute("DELETE FROM budget_sums WHERE track=?", (track,))
    db.executemany("DELETE FROM budget_sums WHERE track=? AND pstart<?", d.trim)
    db.executemany("INSERT OR REPLACE INTO budget_sums VALUES (?, ?, ?, ?, ?, ?, ?)", d.rows)


class Ledger:
    """Thread-safe append-only ledger. Writes are serialised by one lock.

    ``start_empty``: open even where a ledger used to be and is now empty or gone
    (otherwise that is refused, naming the file: the numbers would start from zero).
    """

    def __init__(self, state_dir: str, start_empty: bool = False):
        os.makedirs(state_dir, exist_ok=True)
        self.path = os.path.join(state_dir, "ledger.db")
        self.lock = threading.RLock()
        self.fast: integrity.Check | None = None      # the integrity checks (server/integrity.py)
        self.full: integrity.Check | None = None
        self._checks_cancelled = False
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
        self._qlock = threading.Lock()       # guards _queue only
        self._queue: list[_Pending] = []
        self._leading = False                # a request is committing queued batches
        self._snap_lock = threading.Lock()   # guards the snapshots.db connection
        self._snapdb: sqlite3.Connection | None = None
        self.commits = 0                     # durable transactions (one per group of appends)
        # GET /v1/costs' rollup (costs.CostsDB): ``rollup.fold(db, before, last, rows)`` is called
        # inside each write transaction after its events (seq before+1..last) are in, to fold them
        # in (rows: their costs.rollup_rows, or None), and ``rollup.abandon()`` if it rolls back
        self.rollup: Any = None
        for db in (self.path, os.path.join(state_dir, "snapshots.db")):     # before SQLite reads a WAL
            problem = integrity.wal_problem(db)
            if problem:       # once more: another process (a report's rollup) may be rewriting it
                time.sleep(0.05)
                problem = integrity.wal_problem(db)
            if problem:
                raise self.wal_damaged(problem)
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
        try:
            self.ids = IdIndex(state_dir, self.path, self._db)     # reads every id: damage shows here
        except sqlite3.DatabaseError as e:
            raise self.damaged(e) from None

    # ---- integrity ---------------------------------------------------------
    def damaged(self, detail) -> LedgerError:
        return LedgerError(
            f"{self.path}: the ledger is damaged ({detail}); costmeter will not start on it, as it would "
            f"serve wrong numbers. Stop anything using it, move it aside, and restore it from a backup, or "
            f"recover what is readable: sqlite3 {self.path} .recover | sqlite3 ledger-recovered.db, then "
            f"put ledger-recovered.db in its place as ledger.db.")

    def snapshots_damaged(self, detail) -> LedgerError:
        snap = os.path.join(os.path.dirname(self.path), "snapshots.db")
        return LedgerError(
            f"{snap}: the snapshots are damaged ({detail}); costmeter will not start on them, as it would "
            f"serve wrong numbers. Restore it from a backup, or move it (with its -wal and -shm) aside: the "
            f"state is then rebuilt by replaying {self.path} (slow once on a large ledger), and the "
            f"counters that have no ledger rows (duplicates, rejections, infrastructure USD) start from 0.")

    def wal_damaged(self, detail) -> LedgerError:
        return LedgerError(
            f"{os.path.dirname(self.path)}: {detail}; SQLite would ignore that WAL and every event in it. "
            f"Restore the state directory from a backup, or, to start without what the WAL holds, stop "
            f"costmeter and move the WAL and its -shm aside.")

    @property
    def small(self) -> bool:
        """Small enough for the full check to finish well within a second (``storage.integrity_check: auto``)."""
        size = sum(os.path.getsize(p) for p in (self.path, self.path + "-wal") if os.path.exists(p))
        return size <= FULL_CHECK_BEFORE_READY_BYTES

    def start_integrity_check(self) -> None:
        """Start the checks of ``server/integrity.py`` beside the state restore, in threads with their
        own connections: the fast one always, the full ``PRAGMA quick_check`` of ledger.db too when
        the ledger is :attr:`small`. :meth:`check_fast` and :meth:`check_full` wait for them.
        (ids.db is derived and rebuilt by IdIndex.)"""
        snap = os.path.join(os.path.dirname(self.path), "snapshots.db")

        def fast(check: integrity.Check) -> str | None:
            if os.path.exists(snap):
                problem = integrity.read_all(snap, check)
                if problem:
                    return "snapshots.db: " + problem
            return integrity.fast_check(self.path, check=check)
        self.fast = integrity.Check("fast", fast)
        if self.small and self.full is None:
            self.full = self._full_check()

    def _full_check(self) -> integrity.Check:
        """Start ``PRAGMA quick_check`` over ledger.db in its own thread and connection."""
        return integrity.Check("full", lambda check: integrity.quick_check(self.path, check))

    def check_fast(self) -> None:
        """Raise LedgerError if the fast check found a problem (starting it if it is not running)."""
        if self.fast is None:
            self.start_integrity_check()
        problem = self.fast.wait()
        if problem and problem.startswith("snapshots.db: "):
            raise self.snapshots_damaged(problem[len("snapshots.db: "):])
        if problem:
            raise self.damaged(problem)

    def check_full(self) -> None:
        """Raise LedgerError if PRAGMA quick_check over ledger.db found a problem (running it if
        it did not start beside the restore)."""
        if self.full is None:
            self.full = self._full_check()
            if self._checks_cancelled:         # stop() came first
                self.full.cancel()
        problem = self.full.wait()
        if problem:
            raise self.damaged(problem)

    def cancel_checks(self) -> None:
        """Stop integrity checks still running (the exporter is stopping)."""
        self._checks_cancelled = True
        for check in (self.fast, self.full):
            if check is not None:
                check.cancel()

    # ---- writes ---------------------------------------------------------
    def append(self, rows: Sequence[tuple], apply: Callable[[list[int], int], None] | None = None,
               rollup: list | None = None, pairs: bytes | None = None) -> tuple[list[int], int]:
        """Durably append rows (tuples in COLUMNS order), skipping ids already stored.

        Returns (indexes of the rows written, sequence number of the last row written).

        Group commit: requests that arrive while a commit is running queue up, and the
        oldest of them, once that commit is done, writes every queued batch in one
        transaction with one fsync (the others sleep until theirs is durable). Do not
        call it holding ``self.lock``. Each batch is deduplicated against the ledger and the batches before it,
        and returns only after the commit that holds it is durable. ``apply(keep, last)``
        runs for each batch, in ledger order, after that commit and still under
        ``self.lock``, so in-memory state follows the ledger exactly. ``rollup`` is
        ``costs.rollup_rows(rows)`` when the caller has it (an ingest worker made it), and
        ``pairs`` the ``idindex.hashes`` of the rows' ids (those not None, in row order).
        """
        item = _Pending(rows, apply, rollup, pairs)
        with self._qlock:
            self._queue.append(item)
            lead = not self._leading
            self._leading = True
        if not lead:
            item.wake.acquire()                     # done by a leader, or made the next leader
        if not item.done:
            self._lead(item)
        if item.error is not None:
            raise item.error
        return item.keep, item.last

    def _lead(self, item: "_Pending") -> None:
        """Commit every queued batch (``item``'s among them) in one transaction, then hand
        over to the oldest request that queued meanwhile, or stand down."""
        with self._qlock:
            group, self._queue = self._queue, []
        try:
            with self.lock:
                self._commit(group)
        except BaseException as e:                  # _commit reports per batch: a bug or a signal
            for p in group:
                if not p.done:
                    p.error, p.done = e, True
            raise
        finally:
            for p in group:
                if p is not item:
                    p.wake.release()
            with self._qlock:
                if self._queue:
                    self._queue[0].wake.release()   # the oldest waiting request leads next
                else:
                    self._leading = False

    def _commit(self, group: list["_Pending"]) -> None:
        db = self._db
        try:
            self._staged: set[str] = set()
            self._staged_pairs: list[bytes] = []
            db.execute("BEGIN IMMEDIATE")
            try:
                before = db.execute("SELECT max(seq) FROM events").fetchone()[0] or 0
                for p in group:
                    p.keep = self._insert_new(db, p.rows, p.pairs)
                last = db.execute("SELECT max(seq) FROM events").fetchone()[0] or 0
                if self.rollup is not None and last > before:
                    self._fold(db, group, before, last)
                db.execute("COMMIT")
            except BaseException as e:
                if self.rollup is not None:
                    self.rollup.abandon()
                self._rollback(e)
                raise
        except BaseException as e:                  # nothing in the group was written
            for p in group:
                p.error, p.done = e, True
            return
        self.commits += 1
        self.ids.add(self._staged, last, self._staged_pairs)
        for p in group:
            p.last = last
            try:
                if p.apply is not None:
                    p.apply(p.keep, last)
            except BaseException as e:              # durable already; report, keep the others going
                p.error = e
            p.done = True

    def _fold(self, db: sqlite3.Connection, group: list["_Pending"], before: int, last: int) -> None:
        """Fold this transaction's events into the rollup (see ``fold``). A failure other than
        a full disk leaves them to the catch-up, not the events unrecorded."""
        whole = all(p.rollup is not None and len(p.keep) == len(p.rows) for p in group)
        rollup = [r for p in group for r in p.rollup] if whole else None
        db.execute("SAVEPOINT fold")
        try:
            self.rollup.fold(db, before, last, rollup)
        except sqlite3.Error as e:
            if "full" in str(e):
                raise
            db.execute("ROLLBACK TO fold")
            log.warning("folding events into the costs rollup failed (%s); the catch-up folds them", e)
        db.execute("RELEASE fold")

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

    def _insert_new(self, db: sqlite3.Connection, rows: Sequence[tuple], pairs: bytes | None) -> list[int]:
        """Insert the rows whose id is new; return their indexes. Inside a transaction."""
        staged = self._staged                       # ids written earlier in this transaction
        ids = [r[ROW_ID] for r in rows if r[ROW_ID] is not None]
        if pairs is None and len(ids) >= idindex.VECTOR_MIN:
            pairs = idindex.hashes(ids)             # once, for the look-up and for the index after
        seen = self.ids.known(ids, pairs)
        if staged:
            seen.update(i for i in ids if i in staged)
        if not seen and len(ids) == len(rows) and len(set(ids)) == len(ids):
            # the common case: every row new (none in staged either: see above), every id distinct
            _INSERT.run(db, rows)
            staged.update(ids)
            self._staged_pairs.append(pairs if pairs is not None else idindex.hashes(ids))
            return list(range(len(rows)))
        keep: list[int] = []
        new: list[str] = []
        for i, r in enumerate(rows):
            rid = r[ROW_ID]
            if rid is not None:
                if rid in seen:
                    continue
                seen.add(rid)          # a duplicate inside the same batch
                new.append(rid)
            keep.append(i)
        if keep:
            _INSERT.run(db, [rows[i] for i in keep] if len(keep) != len(rows) else rows)
        staged.update(new)
        self._staged_pairs.append(idindex.hashes(new))
        return keep

    def save_snapshot(self, name: str, seq: int, data: dict, cells: Sequence[tuple] = (),
                      budget_sums=None) -> None:
        """Durably save ``data`` as the state as of ``seq``, with ``cells`` (``(family, labels,
        values)`` changed since the last one, upserted in the same transaction), in
        ``snapshots.db``: a database of its own, so writing it never holds the ledger's
        write lock nor ``self.lock``. ``budget_sums`` (a ``budgets.stored.SumsDelta``)
        updates the budget book's per-key sums in the same transaction."""
        text = json.dumps(data, separators=(",", ":"))
        rows = [(f, json.dumps(k, separators=(",", ":")), json.dumps(v, separators=(",", ":")))
                for f, k, v in cells]
        with self._snap_lock:
            db = self._snap()
            db.execute("BEGIN IMMEDIATE")
            try:
                db.executemany("INSERT OR REPLACE INTO cells VALUES (?, ?, ?)", rows)
                if budget_sums is not None:
                    _write_budget_sums(db, budget_sums)
                db.execute("INSERT OR REPLACE INTO snapshots VALUES (?, ?, ?)", (name, seq, text))
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise

    def save_served(self, data: dict) -> None:
        """Durably save the counters a scrape is about to serve that have no ledger rows
        (read back with ``load_snapshot("served")``); one small fsynced write."""
        text = json.dumps(data, separators=(",", ":"))
        with self._snap_lock:
            self._snap().execute("INSERT OR REPLACE INTO snapshots VALUES ('served', 0, ?)", (text,))

    def load_budget_sums(self) -> list[tuple]:
        """The budget book's per-key sums saved with the snapshots: rows ``(track, pstart,
        provider, model, tenant, endpoint, spend)`` (see budgets/stored.py)."""
        with self._snap_lock:
            return self._snap().execute(
                "SELECT track, pstart, provider, model, tenant, endpoint, spend FROM budget_sums").fetchall()

    def load_cells(self) -> Iterator[tuple[str, list, list]]:
        """Every cell saved with the snapshots: ``(family, labels, values)``."""
        with self._snap_lock:
            try:
                rows = self._snap().execute("SELECT fam, labels, v FROM cells").fetchall()
            except sqlite3.DatabaseError as e:
                raise self.snapshots_damaged(e) from None
        for f, k, v in rows:
            try:
                yield f, json.loads(k), json.loads(v)
            except ValueError as e:
                raise self.snapshots_damaged(f"a cell of {f!r} is not JSON: {e}") from None

    def prune(self, received_before: float, max_seq: int) -> int:
        """Delete raw events *received* before ``received_before`` and already folded into a snapshot.

        By receipt time, not event time: an event's id must stay known for the whole
        retention after it arrived, or a retry of an old event (a replayed spool) would
        be counted again. Rows are in receipt order, so this walks only the rows it deletes.

        The newest row is always kept: ``seq`` is SQLite's rowid, which restarts from the
        largest one left, so an emptied table would hand out sequence numbers again that
        snapshots, the costs rollup and the id index have already seen.
        """
        with self.lock:
            cur = self._db.execute(
                "DELETE FROM events WHERE seq <= ? AND seq < coalesce("
                "(SELECT seq FROM events WHERE received >= ? ORDER BY seq LIMIT 1), ? + 1) "
                "AND seq < (SELECT max(seq) FROM events)",
                (max_seq, received_before, max_seq))
            if cur.rowcount:
                first = self._db.execute("SELECT min(seq) FROM events").fetchone()[0]
                self.ids.drop_runs_before(first if first is not None else max_seq + 1)
            return cur.rowcount

    # ---- reads ------------------------------------------------------------
    def load_snapshot(self, name: str) -> tuple[int, dict | None]:
        """The state saved last as of some seq; (0, None) if none. Older costmeters kept
        snapshots in ledger.db: read there when snapshots.db has none."""
        with self._snap_lock:
            try:
                row = self._snap().execute("SELECT seq, data FROM snapshots WHERE name=?", (name,)).fetchone()
            except sqlite3.DatabaseError as e:
                raise self.snapshots_damaged(e) from None
        if row is None:
            row = self._db.execute("SELECT seq, data FROM snapshots WHERE name=?", (name,)).fetchone()
        try:
            return (0, None) if row is None else (row[0], json.loads(row[1]))
        except ValueError as e:
            raise self.snapshots_damaged(f"snapshot {name!r} is not JSON: {e}") from None

    def _snap(self) -> sqlite3.Connection:
        if self._snapdb is None:
            db = sqlite3.connect(os.path.join(os.path.dirname(self.path), "snapshots.db"),
                                 isolation_level=None, check_same_thread=False)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=FULL")
            db.execute("CREATE TABLE IF NOT EXISTS snapshots(name TEXT PRIMARY KEY, seq INTEGER NOT NULL, "
                       "data TEXT NOT NULL)")
            db.execute("CREATE TABLE IF NOT EXISTS cells(fam TEXT NOT NULL, labels TEXT NOT NULL, v TEXT NOT NULL, "
                       "PRIMARY KEY (fam, labels)) WITHOUT ROWID")
            db.execute("CREATE TABLE IF NOT EXISTS budget_sums(track TEXT NOT NULL, pstart REAL NOT NULL, "
                       "provider TEXT NOT NULL, model TEXT NOT NULL, tenant TEXT NOT NULL, endpoint TEXT NOT NULL, "
                       "spend REAL NOT NULL, PRIMARY KEY (track, pstart, provider, model, tenant, endpoint)) "
                       "WITHOUT ROWID")
            self._snapdb = db
        return self._snapdb

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

    def sums(self, start_ts: float, end_ts: float,
             max_seq: int | None = None) -> list[tuple[str, str, str, str, float]]:
        """Priced spend per (provider, model, tenant, endpoint) for events in [start, end)
        (only those with ``seq <= max_seq`` if given)."""
        db = sqlite3.connect(self.path)
        try:
            return db.execute(
                "SELECT provider, model, tenant, endpoint, sum(cost) FROM events "
                "WHERE ts >= ? AND ts < ? AND cost IS NOT NULL AND seq <= ? "
                "GROUP BY provider, model, tenant, endpoint",
                (start_ts, end_ts, (1 << 63) - 1 if max_seq is None else max_seq)).fetchall()
        finally:
            db.close()

    def count(self) -> int:
        return self._db.execute("SELECT count(*) FROM events").fetchone()[0]

    def close(self) -> None:
        with self.lock:
            self.ids.close()
            self._db.close()
        with self._snap_lock:
            if self._snapdb is not None:
                self._snapdb.close()
