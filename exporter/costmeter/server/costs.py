"""``GET /v1/costs``: grouped and filtered spend from the ledger, fast on a large ledger.

Reads go through an hourly rollup kept in the ledger database beside the raw
events::

    costs_hourly(hour, provider, model, tenant, endpoint,      -- hour = floor(ts / 3600), UTC
                 cost, calls, errors, unpriced, <token sums>,
                 cache_hits, cache_lookups, saved, batch_calls)
    meta('costs_hourly_seq')                                    -- last event seq folded in

The rollup is maintained incrementally by the events' sequence number: every
event with ``seq`` above the stored mark is folded in, in chunks, and the mark
moves in the same transaction (so a crash never folds an event twice). The
exporter's housekeeping catches up every second and every query catches up
first; a query is then answered as

* the whole hours inside ``[start, end)`` from the rollup (at most 24 x 30 x
  distinct label sets rows for a 30-day report), plus
* the partial hours at both edges from the raw events (``events_ts`` index), plus
* any event with ``seq`` above the mark that lies in the whole hours (events
  committed after the catch-up), all in one read transaction.

Ingest commits fold their own events (``CostsDB.fold``). The rollup rows an ingest
worker summed for its batches are merged in memory ("held") and upserted, with the
mark, in the commit that comes ``HOLD_EVENTS`` events or ``HOLD_SECONDS`` later, or
in the next catch-up: upserting each commit's rows took about 1.3 us of the exporter's
CPU per event, most of it rewriting the same rollup pages. Held rows are only ever
written where the stored mark is still where they start, so a crash, a failed commit
or a catch-up by another process leaves their events to the catch-up, never twice.

Money is summed in whole nano-dollars (each event's cost rounded to 1e-9 USD),
so the same ledger gives the same JSON whatever order its sums were folded in. Hours before the ledger's retention
stay in the rollup when raw events are pruned (the exporter prunes only what the
rollup has folded in).
"""
from __future__ import annotations

import contextlib
import itertools

import math
import operator
import sqlite3
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Mapping, Sequence
from urllib.parse import parse_qs

from costmeter.server.sqlrows import MultiRowInsert

DIMENSIONS = ("provider", "model", "tenant", "endpoint")
TIME_GROUPS = ("day", "hour")
GROUPS = DIMENSIONS + TIME_GROUPS
TOKEN_TYPES = ("input", "cached_input", "cache_write", "cache_write_1h", "output", "reasoning")
PARAMETERS = ("start", "end", "group_by") + DIMENSIONS
DEFAULT_DAYS = 30
CHUNK = 200_000          # events folded per housekeeping call at most
TXN_ROWS = 20_000        # events per catch-up transaction: it holds ledger.db's write lock,
                         # so ingest commits wait for one (~70 ms at most; 200k took ~450 ms)
TXN_PAUSE = 0.01         # seconds between two catch-up transactions
HOLD_EVENTS = 50_000     # a worker's rollup rows are held in memory for at most this many events
HOLD_SECONDS = 1.0       # or this long, before an ingest commit upserts them
_MARK = "costs_hourly_seq"
_VERSION_KEY = "costs_hourly_version"
ROLLUP_VERSION = "1"      # bump when the rollup's columns change: it is rebuilt from the events

# Sums kept per hour and label set; a ledger without a token column (older schema) reads it as 0.
_SUMS = ("events", "cost", "calls", "errors", "unpriced") + TOKEN_TYPES + ("cache_hits", "cache_lookups", "saved", "batch_calls")


def _raw_exprs(columns: set[str]) -> list[str]:
    # As in cost_provider_api_calls_total and cost_provider_tokens_total, a cache hit made no
    # provider call: it counts as an event and a cache hit, not as a call, error or tokens.
    tok = [f"total(CASE WHEN {_CALL} THEN {t} ELSE 0 END)" if t in columns else "0" for t in TOKEN_TYPES]
    return (["count(*)", _NANO.format("cost"), f"total({_CALL})", f"total(error AND {_CALL})", "total(cost IS NULL)"]
            + tok + ["total(cache_hit)", "count(cache_hit)", _NANO.format("saved"), "total(batch)"])


_CALL = "coalesce(cache_hit, 0) = 0"


# Money is summed as whole nano-dollars (each event rounded to 1e-9 USD): integer sums are
# exact in any order, so the rollup and the raw events give the same answer to the last digit.
_NANO = "coalesce(sum(CAST(round({} * 1e9) AS INTEGER)), 0)"
_INT_SUMS = ("cost", "saved")


_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS meta(k TEXT PRIMARY KEY, v TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS costs_hourly(
    hour INTEGER NOT NULL, provider TEXT NOT NULL, model TEXT NOT NULL, tenant TEXT NOT NULL,
    endpoint TEXT NOT NULL, {', '.join(f"{s} {'INTEGER' if s in _INT_SUMS else 'REAL'} NOT NULL" for s in _SUMS)},
    PRIMARY KEY (hour, provider, model, tenant, endpoint)) WITHOUT ROWID;
"""


def rollup_rows(rows: Sequence[tuple]) -> list[tuple]:
    """The rollup's ``(hour, provider, model, tenant, endpoint, *_SUMS)`` rows for ledger rows
    (``ledger.COLUMNS`` order), summed exactly as the catch-up's SQL sums them (_raw_exprs):
    ``CAST(ts / 3600 AS INTEGER)``, and money as ``CAST(round(x * 1e9) AS INTEGER)`` (SQLite's
    round(x) of a positive x is ``(int64)(x + 0.5)``). An ingest worker computes them for its
    body, so that the ledger's commit folds a few rows per label set into the rollup instead of
    the catch-up reading every event again (tests/test_ingest_workers.py compares the two)."""
    acc: dict[tuple, list] = {}
    for r in rows:
        ts, p, m, t, e = r[1], r[2], r[3], r[4], r[5]
        key = (int(ts / 3600), p, m, t, e)
        a = acc.get(key)
        if a is None:
            a = acc[key] = [0] * len(_SUMS)
        a[0] += 1
        cost, hit = r[12], r[16]
        if cost is None:
            a[4] += 1
        else:
            a[1] += int(cost * 1e9 + 0.5)
        if not hit:                       # coalesce(cache_hit, 0) = 0: a provider call
            a[2] += 1
            if r[15]:
                a[3] += 1
            a[5] += r[6]
            a[6] += r[7]
            a[7] += r[8]
            a[8] += r[9]
            a[9] += r[10]
            a[10] += r[11]
        if hit is not None:
            a[11] += hit
            a[12] += 1
        a[13] += int(r[17] * 1e9 + 0.5)
        a[14] += r[18]
    return [k + tuple(v) for k, v in acc.items()]


_UPSERT = MultiRowInsert(f"INSERT INTO costs_hourly(hour, provider, model, tenant, endpoint, {', '.join(_SUMS)})",
                         5 + len(_SUMS),
                         f"ON CONFLICT(hour, provider, model, tenant, endpoint) DO UPDATE SET "
                         f"{', '.join(f'{s} = {s} + excluded.{s}' for s in _SUMS)}")


class QueryError(ValueError):
    """A bad query parameter; ``param`` names it (the 400 says which)."""

    def __init__(self, param: str, message: str):
        self.param, self.message = param, message
        super().__init__(f"{param}: {message}")


@dataclass(frozen=True)
class CostQuery:
    start: float
    end: float
    group_by: tuple[str, ...] = ()
    filters: Mapping[str, str] = field(default_factory=dict)


def parse_time(param: str, value: str) -> float:
    """RFC 3339 or Unix seconds."""
    v = value.strip()
    try:
        ts = float(v)
    except ValueError:
        try:
            d = datetime.fromisoformat(v.replace("Z", "+00:00") if v.endswith(("Z", "z")) else v)
        except ValueError:
            raise QueryError(param, f"{value!r} is neither RFC 3339 (2026-11-20T00:00:00Z) nor Unix seconds") from None
        if d.tzinfo is None:
            raise QueryError(param, f"{value!r} has no UTC offset (add Z or +00:00)")
        ts = d.timestamp()
    if not math.isfinite(ts) or ts < 0 or ts > 1e11:
        raise QueryError(param, f"{value!r} is not a time in Unix seconds")
    return ts


def parse_group_by(value: str, param: str = "group_by") -> tuple[str, ...]:
    items = tuple(s.strip() for s in value.split(",") if s.strip())
    for g in items:
        if g not in GROUPS:
            raise QueryError(param, f"{g!r} is not one of {', '.join(GROUPS)}")
    if len(set(items)) != len(items):
        raise QueryError(param, "names a group twice")
    if "day" in items and "hour" in items:
        raise QueryError(param, "day and hour together: pick one")
    return items


def parse_query(params: Mapping[str, Sequence[str]], now: float | None = None) -> CostQuery:
    """Query parameters (as ``urllib.parse.parse_qs`` gives them) to a CostQuery, or QueryError."""
    now = time.time() if now is None else now
    for k, vs in params.items():
        if k not in PARAMETERS:
            raise QueryError(k, f"unknown parameter; known: {', '.join(PARAMETERS)}")
        if len(vs) != 1:
            raise QueryError(k, "given more than once")
    one = {k: vs[0] for k, vs in params.items()}
    end = parse_time("end", one["end"]) if "end" in one else now
    start = parse_time("start", one["start"]) if "start" in one else end - DEFAULT_DAYS * 86400.0
    if start >= end:
        raise QueryError("start", "must be before end")
    group_by = parse_group_by(one.get("group_by", ""))
    filters = {}
    for d in DIMENSIONS:
        if d in one:
            if not one[d]:
                raise QueryError(d, "must not be empty")
            filters[d] = one[d]
    return CostQuery(start, end, group_by, filters)


def day_label(day_index: int) -> str:
    return datetime.fromtimestamp(day_index * 86400, timezone.utc).strftime("%Y-%m-%d")


def hour_label(hour_index: int) -> str:
    return datetime.fromtimestamp(hour_index * 3600, timezone.utc).strftime("%Y-%m-%dT%H")


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, timezone.utc).isoformat().replace("+00:00", "Z")


class CostsDB:
    """The rollup and its queries over one ledger.db. Opens its own connection per call."""

    def __init__(self, path: str, writable: bool = True):
        self.path, self.writable = path, writable
        self._columns: set[str] | None = None
        self._fold_text: str | None = None
        self._held: dict[tuple, list] = {}      # rollup rows of events _held_from+1.._held_to, not written
        self._held_from = self._held_to = 0
        self._held_since = 0.0
        # The exporter's ingest lock: each catch-up transaction takes it, so ingest commits
        # and the rollup take turns on ledger.db's write lock instead of SQLite busy-waits.
        self.write_lock: Any = contextlib.nullcontext()
        if writable:
            db = self._connect()
            try:
                db.executescript(_SCHEMA)
                row = db.execute("SELECT v FROM meta WHERE k=?", (_VERSION_KEY,)).fetchone()
                if row is None or row[0] != ROLLUP_VERSION:     # columns changed: rebuild from the events
                    db.executescript(f"BEGIN IMMEDIATE; DROP TABLE costs_hourly; {_SCHEMA}"
                                     f"DELETE FROM meta WHERE k='{_MARK}'; "
                                     f"INSERT OR REPLACE INTO meta VALUES ('{_VERSION_KEY}', '{ROLLUP_VERSION}'); COMMIT;")
            except sqlite3.OperationalError:      # read-only file or directory: query without catching up
                self.writable = False
            finally:
                db.close()

    def _connect(self) -> sqlite3.Connection:
        if self.writable:
            db = sqlite3.connect(self.path, timeout=10.0, isolation_level=None)
        else:
            db = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, timeout=10.0, isolation_level=None)
        return db

    def _event_columns(self, db: sqlite3.Connection) -> set[str]:
        if self._columns is None:
            self._columns = {r[1] for r in db.execute("PRAGMA table_info(events)")}
        return self._columns

    @staticmethod
    def _mark(db: sqlite3.Connection) -> int:
        try:
            row = db.execute("SELECT v FROM meta WHERE k=?", (_MARK,)).fetchone()
        except sqlite3.OperationalError:
            return 0
        return int(row[0]) if row else 0

    def mark(self) -> int:
        db = self._connect()
        try:
            return self._mark(db)
        finally:
            db.close()

    def fold(self, db: sqlite3.Connection, before: int, last: int, rollup: list | None) -> bool:
        """Inside the ledger's write transaction that just added events ``before+1..last``: fold
        them into the rollup if it is caught up to ``before`` (else the catch-up folds them
        later). ``rollup`` is their rollup_rows, held in memory until due (see the module's
        docstring); None sums them from the events, with what is held, in this transaction.
        Call ``abandon`` if the transaction does not commit. Returns whether they were folded."""
        if not self.writable:
            return False
        try:
            if self._held and self._held_to != before:
                self._held = {}              # a commit that did not come here: the catch-up's to fold
            if not self._held:
                if self._mark(db) != before:
                    return False
                self._held_from, self._held_to, self._held_since = before, before, time.monotonic()
            if rollup is None:
                if not self._release(db):
                    return False
                db.execute(self._fold_sql(db), (before, last))
                db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (_MARK, str(last)))
                return True
            held, add = self._held, operator.add
            for r in rollup:
                key = r[:5]
                a = held.get(key)
                if a is None:
                    held[key] = list(r[5:])
                else:
                    a[:] = map(add, a, r[5:])
            self._held_to = last
            if last - self._held_from >= HOLD_EVENTS or time.monotonic() - self._held_since >= HOLD_SECONDS:
                self._release(db)
            return True
        except BaseException:
            self._held = {}
            raise

    def abandon(self) -> None:
        """The ledger's transaction that called ``fold`` rolled back: forget what is held (its
        events are folded by the catch-up, from the ledger as it is)."""
        self._held = {}

    def _release(self, db: sqlite3.Connection) -> bool:
        """Upsert the held rows and move the mark past them, in ``db``'s write transaction, if
        the mark is still where they start; returns whether the rollup is caught up to
        ``_held_to`` (True with nothing held)."""
        held, self._held = self._held, {}
        if not held:
            return True
        if self._mark(db) != self._held_from:       # another process folded meanwhile
            return False
        _UPSERT.run(db, [k + tuple(v) for k, v in held.items()])
        db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (_MARK, str(self._held_to)))
        return True

    def _fold_sql(self, db: sqlite3.Connection) -> str:
        """The statement folding events ``seq > ? AND seq <= ?`` (built once: every commit
        without a worker's rollup rows runs it)."""
        if self._fold_text is None:
            cols = self._event_columns(db)
            sums = ", ".join(_SUMS)
            upd = ", ".join(f"{s} = {s} + excluded.{s}" for s in _SUMS)
            self._fold_text = (
                f"INSERT INTO costs_hourly(hour, provider, model, tenant, endpoint, {sums}) "
                f"SELECT CAST(ts / 3600 AS INTEGER), provider, model, tenant, endpoint, "
                f"{', '.join(_raw_exprs(cols))} FROM events WHERE seq > ? AND seq <= ? "
                f"GROUP BY 1, 2, 3, 4, 5 "
                f"ON CONFLICT(hour, provider, model, tenant, endpoint) DO UPDATE SET {upd}")
        return self._fold_text

    def catch_up(self, limit: int | None = None) -> int:
        """Fold events after the mark into the rollup; returns how many were folded."""
        if not self.writable:
            return 0
        db = self._connect()
        folded = 0
        try:
            sql = self._fold_sql(db)
            for txn in itertools.count():
                if limit is not None and folded >= limit:
                    break
                if txn:                      # a window for ingest: a lock released and taken again
                    time.sleep(TXN_PAUSE)    # at once is rarely won by a waiting thread
                with self.write_lock:
                    db.execute("BEGIN IMMEDIATE")
                    try:
                        self._release(db)            # held rows first: the events after them next
                        mark = self._mark(db)
                        top = db.execute("SELECT max(seq) FROM events").fetchone()[0] or 0
                        if top <= mark:
                            db.execute("COMMIT")
                            break
                        upto = min(top, mark + TXN_ROWS)
                        n = db.execute("SELECT count(*) FROM events WHERE seq > ? AND seq <= ?",
                                       (mark, upto)).fetchone()[0]
                        db.execute(sql, (mark, upto))
                        db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (_MARK, str(upto)))
                        db.execute("COMMIT")
                        folded += n
                    except BaseException:
                        db.execute("ROLLBACK")
                        raise
        finally:
            db.close()
        return folded

    def query(self, q: CostQuery, catch_up: bool = True) -> dict:
        """The ``GET /v1/costs`` answer for ``q``."""
        if catch_up:
            self.catch_up()
        db = self._connect()
        try:
            db.execute("BEGIN")          # one snapshot: rollup, mark and raw tail agree
            try:
                groups = self._collect(db, q)
            finally:
                db.execute("COMMIT")
        finally:
            db.close()
        return _answer(q, groups)

    def _collect(self, db: sqlite3.Connection, q: CostQuery) -> dict[tuple, list[float]]:
        has_rollup = db.execute(
            "SELECT 1 FROM sqlite_master WHERE type='table' AND name='costs_hourly'").fetchone() is not None
        mark = self._mark(db) if has_rollup else 0
        cols = self._event_columns(db)
        raw_sums = ", ".join(_raw_exprs(cols))
        where_f = "".join(f" AND {d} = ?" for d in q.filters)
        args_f = list(q.filters.values())
        h0 = math.ceil(q.start / 3600.0)
        h1 = math.floor(q.end / 3600.0)
        out: dict[tuple, list[float]] = {}

        def raw(where: str, args: list) -> None:
            sel = [_raw_group(g) for g in q.group_by]
            sql = (f"SELECT {', '.join(sel + [raw_sums])} FROM events WHERE {where}{where_f}"
                   + (f" GROUP BY {', '.join(str(i + 1) for i in range(len(sel)))}" if sel else ""))
            _merge(out, db.execute(sql, args + args_f), len(sel))

        if not has_rollup or h0 >= h1:
            raw("ts >= ? AND ts < ?", [q.start, q.end])
            return out
        t0, t1 = h0 * 3600.0, h1 * 3600.0
        if q.start < t0:
            raw("ts >= ? AND ts < ?", [q.start, t0])
        if t1 < q.end:
            raw("ts >= ? AND ts < ?", [t1, q.end])
        raw("seq > ? AND +ts >= ? AND +ts < ?", [mark, t0, t1])   # the seq range, not the ts index
        sel = [_rollup_group(g) for g in q.group_by]
        sums = [f"coalesce(sum({s}), 0)" if s in _INT_SUMS else f"total({s})" for s in _SUMS]
        sql = (f"SELECT {', '.join(sel + sums)} FROM costs_hourly "
               f"WHERE hour >= ? AND hour < ?{where_f}"
               + (f" GROUP BY {', '.join(str(i + 1) for i in range(len(sel)))}" if sel else ""))
        _merge(out, db.execute(sql, [h0, h1] + args_f), len(sel))
        return out

    # ---- budget sums: a budget period's spend per label key -------------------------

    def budget_sums(self, start: float, end: float,
                    max_seq: int | None = None) -> list[tuple[str, str, str, str, float]]:
        """Priced spend per ``(provider, model, tenant, endpoint)`` of the events with
        ``start <= ts < end`` (and ``seq <= max_seq`` if given), for a budget period new to
        the book (a reload, or a restart with a new period): the rollup's whole hours inside
        the period, the raw events of the partial hours at both edges (a period starting at
        a :30 or :45 offset, or a fixed range), and the raw events after the rollup's mark
        (or, if the rollup has gone past ``max_seq``, minus those after ``max_seq``). Its
        cost grows with hours x label sets, not with events.

        Exactly :meth:`raw_budget_sums` (each event's cost rounded to 1e-9 USD, as the
        rollup keeps it): within 0.5e-9 USD per event of summing the raw floats. Keys with
        no priced event are left out, as ``Ledger.sums`` does."""
        top = (1 << 63) - 1 if max_seq is None else max_seq
        db = self._connect()
        try:
            db.execute("BEGIN")          # one snapshot: rollup, mark and raw rows agree
            try:
                acc: dict[tuple, list[int]] = {}
                has_rollup = db.execute(
                    "SELECT 1 FROM sqlite_master WHERE type='table' AND name='costs_hourly'").fetchone() is not None
                mark = self._mark(db) if has_rollup else 0
                h0, h1 = math.ceil(start / 3600.0), math.floor(end / 3600.0)
                if mark == 0 or h0 >= h1:          # no rollup yet (or no whole hour): the ts index alone
                    _add(acc, db.execute(_BUDGET_RAW + "ts >= ? AND ts < ? AND seq <= ?" + _BY_KEY,
                                         (start, end, top)))
                    return _spend(acc)
                # An event is in rollup hour CAST(ts / 3600) exactly when h * 3600 <= ts < (h + 1) * 3600:
                # 3600 < 2**12, so a ts one ulp below h * 3600 divides to more than half an ulp of h
                # below h, and the rounded quotient stays below h. The edges compare ts directly.
                t0, t1 = h0 * 3600.0, h1 * 3600.0
                for lo, hi in ((start, t0), (t1, end)):      # partial hours at the edges
                    if lo < hi:
                        _add(acc, db.execute(_BUDGET_RAW + "ts >= ? AND ts < ? AND seq <= ?" + _BY_KEY, (lo, hi, top)))
                _add(acc, db.execute(
                    "SELECT provider, model, tenant, endpoint, sum(cost), CAST(sum(events - unpriced) AS INTEGER) FROM costs_hourly "
                    "WHERE hour >= ? AND hour < ?" + _BY_KEY, (h0, h1)))
                if mark < top:               # committed after the last catch-up: by seq, not the ts index
                    _add(acc, db.execute(_BUDGET_RAW + "seq > ? AND seq <= ? AND +ts >= ? AND +ts < ?" + _BY_KEY,
                                         (mark, top, t0, t1)))
                elif mark > top:             # folded in already but after max_seq: take them out
                    _add(acc, db.execute(_BUDGET_RAW + "seq > ? AND seq <= ? AND +ts >= ? AND +ts < ?" + _BY_KEY,
                                         (top, mark, t0, t1)), -1)
                return _spend(acc)
            finally:
                db.execute("COMMIT")
        finally:
            db.close()

    def raw_budget_sums(self, start: float, end: float,
                        max_seq: int | None = None) -> list[tuple[str, str, str, str, float]]:
        """What :meth:`budget_sums` answers, from the raw events alone (the reference of its
        tests and the baseline of bench/bench_ledger_size.py)."""
        top = (1 << 63) - 1 if max_seq is None else max_seq
        db = self._connect()
        try:
            acc: dict[tuple, list[int]] = {}
            _add(acc, db.execute(_BUDGET_RAW + "ts >= ? AND ts < ? AND seq <= ?" + _BY_KEY, (start, end, top)))
            return _spend(acc)
        finally:
            db.close()

    def raw_query(self, q: CostQuery) -> dict:
        """The same answer from the raw events alone (the baseline of bench/bench_costs.py)."""
        db = self._connect()
        try:
            cols = self._event_columns(db)
            sel = [_raw_group(g) for g in q.group_by]
            where_f = "".join(f" AND {d} = ?" for d in q.filters)
            sql = (f"SELECT {', '.join(sel + _raw_exprs(cols))} FROM events WHERE ts >= ? AND ts < ?{where_f}"
                   + (f" GROUP BY {', '.join(str(i + 1) for i in range(len(sel)))}" if sel else ""))
            out: dict[tuple, list[float]] = {}
            _merge(out, db.execute(sql, [q.start, q.end] + list(q.filters.values())), len(sel))
        finally:
            db.close()
        return _answer(q, out)


_BUDGET_RAW = (f"SELECT provider, model, tenant, endpoint, {_NANO.format('cost')}, count(cost) "
               f"FROM events WHERE ")
_BY_KEY = " GROUP BY provider, model, tenant, endpoint"


def _add(acc: dict, cursor, sign: int = 1) -> None:
    """Add (provider, model, tenant, endpoint, nano-dollars, priced events) rows into ``acc``."""
    for p, m, t, e, nanos, priced in cursor:
        a = acc.get((p, m, t, e))
        if a is None:
            acc[(p, m, t, e)] = [sign * nanos, sign * priced]
        else:
            a[0] += sign * nanos
            a[1] += sign * priced


def _spend(acc: dict) -> list[tuple[str, str, str, str, float]]:
    # sorted: a budget adding these up gets the same float whichever way they were read
    return [k + (nanos / 1e9,) for k, (nanos, priced) in sorted(acc.items()) if priced > 0]


def _raw_group(g: str) -> str:
    if g == "day":
        return "CAST(ts / 86400 AS INTEGER)"
    if g == "hour":
        return "CAST(ts / 3600 AS INTEGER)"
    return g


def _rollup_group(g: str) -> str:
    if g == "day":
        return "hour / 24"
    return g


def _merge(out: dict, cursor, nkeys: int) -> None:
    for r in cursor:
        key = r[:nkeys]
        vals = r[nkeys:]
        if vals[0] == 0:            # an aggregate over no rows (no GROUP BY)
            continue
        acc = out.get(key)
        if acc is None:
            out[key] = list(vals)
        else:
            for i, v in enumerate(vals):
                acc[i] += v


def _row_values(v: Sequence[float]) -> dict:
    s = dict(zip(_SUMS, v))
    return {
        "cost_usd": s["cost"] / 1e9, "calls": int(s["calls"]), "errors": int(s["errors"]),
        "events": int(s["events"]),
        "unpriced_calls": int(s["unpriced"]),
        "tokens": {t: int(s[t]) for t in TOKEN_TYPES},
        "cache_hits": int(s["cache_hits"]), "cache_lookups": int(s["cache_lookups"]),
        "saved_usd": s["saved"] / 1e9, "batch_calls": int(s["batch_calls"]),
    }


def _answer(q: CostQuery, groups: dict[tuple, list[float]]) -> dict:
    rows = []
    for key in sorted(groups):
        row = {}
        for g, k in zip(q.group_by, key):
            row[g] = day_label(k) if g == "day" else hour_label(k) if g == "hour" else k
        row.update(_row_values(groups[key]))
        rows.append(row)
    return {"start": iso(q.start), "end": iso(q.end), "group_by": list(q.group_by), "rows": rows}


# ---- the exporter's side: one CostsDB per ledger file ------------------------------

_DBS: dict[str, CostsDB] = {}
_DBS_LOCK = threading.Lock()


def for_ledger(path: str) -> CostsDB:
    with _DBS_LOCK:
        db = _DBS.get(path)
        if db is None:
            db = _DBS[path] = CostsDB(path)
        return db


def answer(exporter, query_string: str) -> tuple[int, dict]:
    """(HTTP status, JSON body) for ``GET /v1/costs?<query_string>``; ``exporter`` has ``ledger``."""
    try:
        q = parse_query(parse_qs(query_string, keep_blank_values=True))
    except QueryError as e:
        return 400, {"error": f"bad parameter {e.param}: {e.message}", "parameter": e.param}
    ledger = getattr(exporter, "ledger", None)
    if ledger is None:
        return 503, {"error": "starting: the ledger is not open yet, retry"}
    try:
        return 200, for_ledger(ledger.path).query(q)
    except sqlite3.DatabaseError as e:
        return 503, {"error": f"the ledger cannot be read: {e}"}
