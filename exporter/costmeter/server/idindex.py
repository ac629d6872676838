"""The idempotency index: has an event id been recorded already?

A unique B-tree index on random ids (uuid4) costs about one dirty 4 KiB page per
insert once it outgrows the cache: 1,000 new ids dirty ~1,000 pages, all written
to the WAL and fsynced with the batch. So ids are kept log-structured instead:

* ``recent``: the ids of the last events (at most ``RUN_SIZE`` or so), in a dict
  in memory. They are durable already, in the ``id`` column of the ledger's
  events table; after a crash they are read back from there (the events after
  the last run, so a bounded number).
* runs: every ``RUN_SIZE`` ids, a background thread writes the recent ids,
  sorted, as one more read-only table ``run_<k>`` of ``ids.db`` beside the
  ledger (a sequential write, not random inserts) and records the range of
  ledger sequence numbers it covers.
* a Bloom filter over every id in a run (16 MiB, 4 hashes: under 0.5 % false
  positives at 10M ids), saved to ``ids.bloom`` after each run, so a new id is
  usually known to be new without touching disk. Only a positive looks in the
  runs, newest first. Its probes come from two CRC-32s of the id (:func:`hashes`),
  which an ingest worker computes beside the rows it parses, so the exporter's own
  process tests and sets a batch's bits with numpy, not one id at a time in Python.

ids.db and ids.bloom are derived from the ledger: if ids.bloom is missing, stale
or torn, it is rebuilt from the runs; if ids.db is missing or unreadable, it is
rebuilt from the ledger's events (slow, once, logged). A run is dropped when
pruning removed every event it covers.
"""
from __future__ import annotations

import logging
import os
import sqlite3
import struct
import threading
import uuid
import zlib
from array import array
from typing import Iterable

import orjson

log = logging.getLogger("costmeter.server.idindex")

RUN_SIZE = 131_072             # ids per run
BLOOM_BITS = 1 << 27           # 16 MiB
_MASK = BLOOM_BITS - 1
_HEADER = struct.Struct("<8sQI")   # magic, runs covered (highest run number), crc32 of the bits
_MAGIC = b"cmbloom1"
_CHUNK = 5000                  # bound variables per IN (...)
_SEED = 0x5BD1E995
# below this many ids, known() tests the Bloom filter in Python: numpy's fixed cost per call
# (~20 us) is more than the SDK's batches of 10 take that way
VECTOR_MIN = 64
assert array("I").itemsize == 4


def _probes(rid: str) -> tuple[int, int, int, int]:
    """Four bit positions by double hashing two CRC-32s (fast, and stable across runs)."""
    b = rid.encode()
    h1 = zlib.crc32(b)
    h2 = zlib.crc32(b, _SEED) | 1
    return (h1 & _MASK, (h1 + h2) & _MASK, (h1 + 2 * h2) & _MASK, (h1 + 3 * h2 + (h2 >> 5)) & _MASK)


def hashes(ids: Iterable[str]) -> bytes:
    """``(h1, h2)`` of each id as native uint32 pairs: the two CRC-32s that :func:`_probes`
    derives its four bit positions from. Computed where the ids are parsed (an ingest
    worker), and handed to :meth:`IdIndex.known` and :meth:`IdIndex.add` with them."""
    out = array("I")
    put, crc, seed = out.append, zlib.crc32, _SEED
    for rid in ids:
        b = rid.encode()
        put(crc(b))
        put(crc(b, seed) | 1)
    return out.tobytes()


def _numpy():
    """numpy, imported when an id index first needs it: modules that only read ledger
    constants (the SDK's recorder among them) must not load it into an application."""
    import numpy
    return numpy


def _positions(pairs: bytes):
    """The four bit positions of :func:`_probes` for each ``(h1, h2)`` of :func:`hashes`,
    as an (n, 4) numpy array."""
    np = _numpy()
    h = np.frombuffer(pairs, dtype=np.uint32).reshape(-1, 2).astype(np.uint64)
    h1, h2 = h[:, 0], h[:, 1]
    pos = np.empty((len(h), 4), dtype=np.uint64)
    pos[:, 0] = h1
    pos[:, 1] = h1 + h2
    pos[:, 2] = h1 + 2 * h2
    pos[:, 3] = h1 + 3 * h2 + (h2 >> 5)
    pos &= _MASK
    return pos


class IdIndex:
    """Which ids are recorded. Used by the ledger under its lock; flushes in its own thread."""

    def __init__(self, state_dir: str, ledger_path: str, ledger_db: sqlite3.Connection):
        self.path = os.path.join(state_dir, "ids.db")
        self.bloom_path = os.path.join(state_dir, "ids.bloom")
        self._ledger_path = ledger_path
        self.recent: set[str] = set()          # ids after the newest run
        self.flushing: set[str] = set()        # ids of the run being written
        # hashes() of every id in recent, in chunks: the bits their run sets (recent.update and
        # this go together, or an id would be in a run that the Bloom filter says it is not)
        self._recent_hashes: list[bytes] = []
        self.runs: list[int] = []              # runs, oldest first, named by the last seq they cover
        self._hi = 0                           # last seq covered by a run
        self._flusher: threading.Thread | None = None
        self._lock = threading.Lock()          # guards runs/recent/flushing swaps against the flusher
        self._open(ledger_db)

    # ---- start ------------------------------------------------------------------
    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=30)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")     # derived data: rebuilt from the ledger if lost
        db.execute("CREATE TABLE IF NOT EXISTS runs(k INTEGER PRIMARY KEY, lo INTEGER NOT NULL, "
                   "hi INTEGER NOT NULL, n INTEGER NOT NULL)")
        db.execute("CREATE TABLE IF NOT EXISTS meta(k TEXT PRIMARY KEY, v TEXT NOT NULL)")
        return db

    def _open(self, ledger_db: sqlite3.Connection) -> None:
        try:
            self._db = self._connect()
            runs = self._db.execute("SELECT k, hi FROM runs ORDER BY k").fetchall()
        except sqlite3.DatabaseError as e:
            log.warning("%s unreadable (%s): rebuilding it from the ledger", self.path, e)
            for p in (self.path, self.path + "-wal", self.path + "-shm", self.bloom_path):
                if os.path.exists(p):
                    os.remove(p)
            self._db = self._connect()
            runs = []
        self._set_bloom(bytearray(BLOOM_BITS // 8))
        last = ledger_db.execute("SELECT max(seq) FROM events").fetchone()[0] or 0
        # ids.db belongs to one ledger: an id of another ledger's would wrongly refuse an event
        lid = ledger_db.execute("SELECT v FROM meta WHERE k='ledger_id'").fetchone()
        if lid is None:
            lid = (uuid.uuid4().hex,)
            ledger_db.execute("INSERT INTO meta VALUES ('ledger_id', ?)", lid)
        mine = self._db.execute("SELECT v FROM meta WHERE k='ledger_id'").fetchone()
        if (runs and mine != lid) or (runs and runs[-1][1] > last):
            # another ledger's, or ahead of this one (a ledger restored from an older backup)
            log.warning("%s does not match %s: rebuilding it", self.path, self._ledger_path)
            for k, _ in runs:
                self._db.execute(f"DROP TABLE IF EXISTS run_{k}")
            self._db.execute("DELETE FROM runs")
            runs = []
        if not runs and os.path.exists(self.bloom_path):
            os.remove(self.bloom_path)         # it described another ids.db
        self._db.execute("INSERT OR REPLACE INTO meta VALUES ('ledger_id', ?)", lid)
        legacy = ledger_db.execute(
            "SELECT 1 FROM sqlite_master WHERE type='index' AND name='events_id'").fetchone() is not None
        if not runs and (last > RUN_SIZE or legacy) and last > 0:
            # an older ledger (unique index on id) or a lost ids.db: one sorted run of every id
            log.warning("building the idempotency index of %d ledger events (once)", last)
            self._write_run(None, 1, last)
            runs = [(last, last)]
        if legacy:
            ledger_db.execute("DROP INDEX events_id")
        self.runs = [k for k, _ in runs]
        self._hi = runs[-1][1] if runs else 0
        self._load_bloom()
        back = [r[0] for r in ledger_db.execute(
            "SELECT id FROM events WHERE seq > ? AND id IS NOT NULL", (self._hi,))]
        self.recent.update(back)
        self._recent_hashes.append(hashes(back))       # their bits are set when their run is written

    def _set_bloom(self, bits: bytearray) -> None:
        self.bloom = bits                                    # tested bit by bit in Python
        np = _numpy()
        self._bits = np.frombuffer(bits, dtype=np.uint8)     # the same bytes, for whole batches

    def _load_bloom(self) -> None:
        covered = 0
        try:
            with open(self.bloom_path, "rb") as f:
                magic, covered, crc = _HEADER.unpack(f.read(_HEADER.size))
                f.readinto(self.bloom)
            if magic != _MAGIC or zlib.crc32(self.bloom) != crc:
                raise ValueError("torn or foreign file")
        except (OSError, ValueError, struct.error) as e:
            if self.runs and not isinstance(e, FileNotFoundError):
                log.warning("%s: %s; rebuilding it from %d runs", self.bloom_path, e, len(self.runs))
            self._set_bloom(bytearray(BLOOM_BITS // 8))
            covered = 0
        missing = [k for k in self.runs if k > covered]      # runs are named by their last seq
        for k in missing:
            self._add_to_bloom(r[0] for r in self._db.execute(f"SELECT id FROM run_{k}"))
        if missing:
            self._save_bloom()

    # ---- look-ups (caller holds the ledger lock) ------------------------------------
    def known(self, ids: list[str], pairs: bytes | None = None) -> set[str]:
        """The ids among ``ids`` recorded already. ``pairs``: their :func:`hashes`, if known."""
        recent, flushing, bloom = self.recent, self.flushing, self.bloom
        out: set[str] = set()
        maybe: list[str] = []
        if pairs is not None or len(ids) >= VECTOR_MIN:
            out = recent.intersection(ids)
            if flushing:
                out |= flushing.intersection(ids)
            np = _numpy()
            pos = _positions(hashes(ids) if pairs is None else pairs)
            bits = (self._bits[pos >> 3] >> (pos & 7).astype(np.uint8)) & 1
            maybe = [ids[i] for i in np.flatnonzero(bits.all(axis=1)).tolist() if ids[i] not in out]
            ids = ()
        crc, mask, seed = zlib.crc32, _MASK, _SEED
        for rid in ids:
            if rid in recent or rid in flushing:
                out.add(rid)
                continue
            # _probes inlined, stopping at the first unset bit: most new ids cost one or two
            b = rid.encode()
            h1 = crc(b)
            p = h1 & mask
            if not (bloom[p >> 3] >> (p & 7)) & 1:
                continue
            h2 = crc(b, seed) | 1
            p = (h1 + h2) & mask
            if not (bloom[p >> 3] >> (p & 7)) & 1:
                continue
            p = (h1 + 2 * h2) & mask
            if not (bloom[p >> 3] >> (p & 7)) & 1:
                continue
            p = (h1 + 3 * h2 + (h2 >> 5)) & mask
            if (bloom[p >> 3] >> (p & 7)) & 1:
                maybe.append(rid)
        if maybe:
            with self._lock:
                runs = list(self.runs)
            for k in reversed(runs):                 # a retry is usually of a recent event
                for i in range(0, len(maybe), _CHUNK):
                    chunk = maybe[i:i + _CHUNK]
                    q = f"SELECT id FROM run_{k} WHERE id IN ({','.join('?' * len(chunk))})"
                    found = {r[0] for r in self._db.execute(q, chunk)}
                    out |= found
                maybe = [m for m in maybe if m not in out]
                if not maybe:
                    break
        return out

    def add(self, ids: Iterable[str], last_seq: int, pairs: Iterable[bytes] | None = None) -> None:
        """Ids just committed to the ledger (up to ``last_seq``), with their :func:`hashes` (in
        any order and chunks) if the caller has them. Starts a flush when due."""
        if pairs is None:
            ids = list(ids)
            pairs = (hashes(ids),)
        recent = self.recent
        recent.update(ids)
        self._recent_hashes.extend(pairs)
        if len(recent) >= RUN_SIZE and self._flusher is None:
            self.flushing, self.recent = recent, set()
            chunks, self._recent_hashes = self._recent_hashes, []
            self._flusher = threading.Thread(target=self._flush, args=(self.flushing, last_seq, chunks),
                                             name="costmeter-idindex", daemon=True)
            self._flusher.start()

    # ---- runs ---------------------------------------------------------------------
    def _flush(self, ids: set, hi: int, chunks: list[bytes]) -> None:
        try:
            self._write_run(ids, self._hi + 1, hi)
            self._set_bits(b"".join(chunks))
            with self._lock:
                self.runs.append(hi)
                self._hi = hi
            self.flushing = set()
            self._save_bloom()
        except Exception:
            log.exception("writing an idempotency run failed; its ids stay in memory")
            self.recent.update(self.flushing)
            self._recent_hashes.extend(chunks)
            self.flushing = set()
        finally:
            self._flusher = None

    def _write_run(self, ids: Iterable[str] | None, lo: int, hi: int) -> None:
        """Write ``ids`` (or, for None, every id of the ledger up to ``hi``) as table run_<hi>.
        The ids go to SQLite as one JSON array that SQLite itself sorts and inserts, in one
        statement that runs without the GIL (0.1 us of Python per id, against 1.7 us for
        sorting in Python and inserting row by row: ingest goes on meanwhile)."""
        k = hi
        db = sqlite3.connect(self.path, isolation_level=None, timeout=30)
        try:
            db.execute("BEGIN IMMEDIATE")
            db.execute(f"CREATE TABLE run_{k}(id TEXT PRIMARY KEY) WITHOUT ROWID")
            if ids is None:            # from the ledger itself (first start on an older ledger)
                db.execute("ATTACH DATABASE ? AS ledger", (self._ledger_path,))
                db.execute(f"INSERT OR IGNORE INTO run_{k} SELECT id FROM ledger.events "
                           f"WHERE id IS NOT NULL AND seq <= ? ORDER BY id", (hi,))
            else:
                db.execute(f"INSERT INTO run_{k} SELECT value FROM json_each(?) ORDER BY 1",
                           (orjson.dumps(list(ids)),))
            n = db.execute(f"SELECT count(*) FROM run_{k}").fetchone()[0]
            db.execute("INSERT INTO runs VALUES (?, ?, ?, ?)", (k, lo, hi, n))
            db.execute("COMMIT")
            if ids is None:
                db.execute("DETACH DATABASE ledger")
        finally:
            db.close()

    def _add_to_bloom(self, ids: Iterable[str]) -> None:
        self._set_bits(hashes(ids))

    def _set_bits(self, pairs: bytes) -> None:
        """Set the Bloom bits of the ids whose :func:`hashes` are ``pairs``."""
        np, pos = _numpy(), _positions(pairs)
        np.bitwise_or.at(self._bits, pos >> 3, np.left_shift(1, pos & 7).astype(np.uint8))

    def _save_bloom(self) -> None:
        bits = bytes(self.bloom)
        tmp = self.bloom_path + ".tmp"
        with open(tmp, "wb") as f:
            f.write(_HEADER.pack(_MAGIC, self.runs[-1] if self.runs else 0, zlib.crc32(bits)))
            f.write(bits)
        os.replace(tmp, self.bloom_path)

    def drop_runs_before(self, min_seq: int) -> int:
        """Drop runs whose every event was pruned (their ids stay in the Bloom filter,
        which only makes a look-up in the runs a little more likely)."""
        with self._lock:
            gone = [k for (k,) in self._db.execute("SELECT k FROM runs WHERE hi < ?", (min_seq,))]
            for k in gone:
                self._db.execute(f"DROP TABLE IF EXISTS run_{k}")
                self._db.execute("DELETE FROM runs WHERE k=?", (k,))
            self.runs = [k for k in self.runs if k not in gone]
        return len(gone)

    def close(self) -> None:
        t = self._flusher
        if t is not None:
            t.join()
        self._db.close()
