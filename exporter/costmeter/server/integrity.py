"""Integrity checks of the state directory's SQLite files, fast and full.

Restart must not wait for a read of the whole ledger (issue 9: ready within a second at
10M events), and must not serve numbers from a damaged file either. So there are two:

* ``fast`` (``fast_check`` and ``wal_problem``), always done before ready, costs the same
  whatever the ledger's size. It covers what start-up itself depends on and where writes
  go next: the WAL headers (a WAL whose header is not valid is ignored by SQLite, with
  every commit in it), ``snapshots.db`` whole (``PRAGMA quick_check``; it is small), the
  ledger's schema and meta rows, and the first and last ``TAIL_ROWS`` rows of the events
  table and of its ``ts`` index (reading them makes SQLite walk and decode those pages,
  so a damaged one raises). The rows replayed after the snapshot are read by the restore
  anyway.
* ``full``: ``PRAGMA quick_check`` over the whole of ``ledger.db`` (every page and b-tree:
  about 0.3 s per million events). Before ready or after it, as ``storage.integrity_check``
  says (docs/exporter.md, "Integrity at start").

Each check runs in a thread of its own (:class:`Check`) with its own connection, so it
never holds the ledger's lock and can run beside the state restore.
"""
from __future__ import annotations

import os
import sqlite3
import struct
import threading
import time
from typing import Callable

from costmeter.server.exposition import gauge_family

TAIL_ROWS = 20_000          # rows (and index entries) read at each end of the events table
_WAL_MAGIC = (0x377F0682, 0x377F0683)      # little- or big-endian checksums
_WAL_VERSION = 3007000


class Check:
    """One check in a thread of its own: ``problem`` (None if none found), ``seconds`` it
    took and when it ended (``finished``, Unix time; 0 while running)."""

    def __init__(self, name: str, run: Callable[["Check"], str | None]):
        self.name = name
        self.problem: str | None = None
        self.seconds = 0.0
        self.finished = 0.0
        self.cancelled = False
        self.db: sqlite3.Connection | None = None      # the connection reading, while it reads
        self._lock = threading.Lock()                  # connect against cancel
        self._thread = threading.Thread(target=self._run, args=(run,), name=f"costmeter-integrity-{name}",
                                        daemon=True)
        self._thread.start()

    def _run(self, run: Callable[["Check"], str | None]) -> None:
        t0 = time.monotonic()
        try:
            self.problem = run(self)
        except sqlite3.DatabaseError as e:
            self.problem = None if self.cancelled else str(e)
        except OSError as e:
            self.problem = f"cannot read: {e.strerror or e}"
        finally:
            self.seconds = time.monotonic() - t0
            self.finished = time.time()

    def wait(self) -> str | None:
        self._thread.join()
        return self.problem

    def cancel(self, wait: float = 1.0) -> None:
        """Stop a check still reading (the exporter is stopping): it then finds nothing.
        SQLite's interrupt only reaches a statement already running, so it is repeated
        until the check's thread ends (at most ``wait`` seconds)."""
        self.cancelled = True
        deadline = time.monotonic() + wait
        while self._thread.is_alive() and time.monotonic() < deadline:
            with self._lock:
                if self.db is not None:
                    try:
                        self.db.interrupt()
                    except sqlite3.ProgrammingError:      # closed already: that read is over
                        pass
            self._thread.join(0.01)

    def connect(self, path: str) -> sqlite3.Connection:
        with self._lock:
            if self.cancelled:
                raise sqlite3.OperationalError("interrupted")
            self.db = sqlite3.connect(path, check_same_thread=False)
            return self.db


def _wal_checksum(data: bytes, big_endian: bool) -> tuple[int, int]:
    words = struct.unpack((">" if big_endian else "<") + f"{len(data) // 4}I", data)
    s0 = s1 = 0
    for i in range(0, len(words), 2):
        s0 = (s0 + words[i] + s1) & 0xFFFFFFFF
        s1 = (s1 + words[i + 1] + s0) & 0xFFFFFFFF
    return s0, s1


def wal_problem(db_path: str) -> str | None:
    """What is wrong with ``<db_path>-wal``'s header, or None (also when there is no WAL).

    SQLite ignores a WAL whose header is not valid, and every transaction in it: events
    acknowledged before a crash would silently be gone. A header of zeros, or a WAL too
    short to hold one, never held a commit that reached the disk, and passes. Read before
    SQLite opens the file (its recovery would reset such a WAL)."""
    wal = db_path + "-wal"
    try:
        with open(wal, "rb") as f:
            head = f.read(32)
    except FileNotFoundError:
        return None
    if len(head) < 32 or not head.strip(b"\0"):
        return None
    magic, version = struct.unpack(">II", head[:8])
    name = os.path.basename(wal)
    if magic not in _WAL_MAGIC:
        return f"{name} does not start like a SQLite WAL (magic {magic:#010x})"
    if version != _WAL_VERSION:
        return f"{name} has WAL format {version}, not {_WAL_VERSION}"
    if _wal_checksum(head[:24], magic & 1 == 1) != struct.unpack(">II", head[24:32]):
        return f"{name}: the WAL header's checksum does not match"
    return None


def _connect(path: str, check: Check | None) -> sqlite3.Connection:
    return check.connect(path) if check is not None else sqlite3.connect(path)


def quick_check(path: str, check: Check | None = None) -> str | None:
    """``PRAGMA quick_check`` over every page and b-tree of ``path``: the first problems, or None."""
    db = _connect(path, check)
    try:
        rows = db.execute("PRAGMA quick_check(5)").fetchall()
    finally:
        db.close()
    return None if rows == [("ok",)] else "; ".join(str(r[0]) for r in rows)


def read_all(path: str, check: Check | None = None) -> str | None:
    """``PRAGMA quick_check`` and a read of every row of every table (a small file): decoding
    each record finds damage inside cells that quick_check's b-tree walk does not."""
    problem = quick_check(path, check)
    if problem:
        return problem
    db = _connect(path, check)
    try:
        for (table,) in db.execute("SELECT name FROM sqlite_master WHERE type='table'").fetchall():
            cols = [r[1] for r in db.execute(f'PRAGMA table_info("{table}")')]
            total = " + ".join(f'total(length("{c}"))' for c in cols) or "0"
            db.execute(f'SELECT count(*), {total} FROM "{table}"').fetchone()
        return None
    finally:
        db.close()


def fast_check(ledger_path: str, rows: int | None = None, check: Check | None = None) -> str | None:
    """Read what start-up and the next writes depend on, at a cost bounded by ``rows``:
    schema, meta, both ends of the events table and of its ts index. A problem, or None."""
    rows = TAIL_ROWS if rows is None else rows
    db = _connect(ledger_path, check)
    try:
        db.execute("SELECT count(*), total(length(sql)) FROM sqlite_master").fetchone()
        db.execute("SELECT k, v FROM meta").fetchall()
        # one each: min() and max() in one SELECT would scan the whole table
        lo = db.execute("SELECT min(seq) FROM events").fetchone()[0]
        hi = db.execute("SELECT max(seq) FROM events").fetchone()[0]
        if hi is None:
            return None
        cols = ("total(length(id)) + total(ts) + total(length(provider)) + total(length(model)) + "
                "total(length(tenant)) + total(length(endpoint)) + total(input) + total(output) + "
                "total(cost) + total(received) + total(cache_write_1h)")
        for a, b in ((lo, lo + rows), (hi - rows, hi)):
            db.execute(f"SELECT count(*), {cols} FROM events WHERE seq BETWEEN ? AND ?", (a, b)).fetchone()
        for order in ("ASC", "DESC"):
            db.execute(f"SELECT count(*), total(ts) FROM (SELECT ts FROM events INDEXED BY events_ts "
                       f"ORDER BY ts {order} LIMIT ?)", (rows,)).fetchone()
        return None
    finally:
        db.close()


def families(checks: dict[str, Check | None], ok: bool) -> str:
    """The integrity metrics: whether damage was found, and when each check last ended."""
    done = [((name,), c.finished if c is not None else 0.0) for name, c in checks.items()]
    took = [((name,), c.seconds) for name, c in checks.items() if c is not None and c.finished]
    return "".join((
        gauge_family("costmeter_ledger_integrity_ok",
                     "0 once an integrity check found the state directory's SQLite files damaged (then "
                     "/-/ready answers 503 and writes are refused), else 1.", (), [((), 1.0 if ok else 0.0)]),
        gauge_family("costmeter_ledger_integrity_check_timestamp_seconds",
                     "When each integrity check last ended (0: not yet). fast: before ready, whatever the "
                     "ledger's size; full: PRAGMA quick_check over all of ledger.db.", ("check",), done),
        gauge_family("costmeter_ledger_integrity_check_duration_seconds",
                     "How long each integrity check took when it last ran.", ("check",), took),
    ))
