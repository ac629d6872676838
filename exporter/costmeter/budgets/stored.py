"""The budget book's share of the exporter's snapshot, written in proportion to what changed.

The bulk of the book is its per-key sums: spend per label key ``(provider, model,
tenant, endpoint)`` for each track (a period in a time zone). They are rows of their
own, upserted in the snapshot's transaction (``server/ledger.py``, table
``budget_sums`` of ``snapshots.db``)::

    (track, pstart, provider, model, tenant, endpoint, spend)

``track`` names the track (``["daily","UTC",null]``), ``pstart`` is the start of the
period the sum belongs to: a track's current sums are its rows at ``pstart = start``,
the sums held for the next period at ``pstart = end``. So a period roll rewrites
nothing (the held rows become current through the bounds saved with the snapshot);
rows of past periods are deleted (``pstart < start``).

The snapshot's JSON keeps the rest, all small (``STATE_VERSION`` 2, ``"sums":
"budget_sums"``): each track's bounds, the named budgets' spend and logged levels, the
levels logged per tenant.

What a snapshot writes: the sums changed since the last one. ``observe`` writes each
new sum into the track's dict of changes as well (one more dict store per event and
track), and a snapshot takes those dicts, swapping in empty ones: under the ingest lock
that is O(tracks), whatever changed. The rows and the JSON are built outside the lock.
The whole book (dict copies under the lock, O(label keys)) is written only when the
table cannot be trusted: on a first start, after a restore from a snapshot of an older
costmeter (whole-book JSON), after a reload, and after a failed write; a track the table
does not hold yet (a period or time zone new at a restart) is written whole.
"""
from __future__ import annotations

import json

__all__ = ["SumsDelta", "VERSION", "TABLE", "inflate", "track_name"]

VERSION = 2
TABLE = "budget_sums"


def track_name(period: str, tz: str, fixed) -> str:
    return json.dumps([period, tz, list(fixed) if fixed is not None else None], separators=(",", ":"))


class SumsDelta:
    """What ``BudgetBook.snapshot_delta`` took under the lock (changed sums, or copies of
    whole tracks); rows and JSON built from it on demand, outside the lock. Read by
    ``Ledger.save_snapshot``:

    * ``replace_all``: delete every row first (the whole book follows);
    * ``drop``: tracks no longer configured, and ``replace``: tracks written whole (their
      old rows deleted first);
    * ``trim``: ``(track, start)``: rows of periods before ``start`` are deleted;
    * ``rows``: ``(track, pstart, provider, model, tenant, endpoint, spend)`` to upsert.
    """

    def __init__(self, replace_all: bool, tracks: list, named: list, fired: list, drop: list[str]):
        self.replace_all = replace_all
        # (name, period, tz, fixed, start, end, next_end, whole, cur, nxt): cur and nxt are
        # copies of a track written whole, else its entries changed since the last snapshot
        self._tracks = tracks
        self._named, self._fired = named, fired
        self.drop = drop
        self._rows: list[tuple] | None = None

    @property
    def replace(self) -> list[str]:
        return [t[0] for t in self._tracks if t[7] and not self.replace_all]

    @property
    def trim(self) -> list[tuple[str, float]]:
        return [(t[0], t[4]) for t in self._tracks]

    @property
    def rows(self) -> list[tuple]:
        if self._rows is None:
            out: list[tuple] = []
            for name, _p, _tz, _f, start, end, next_end, _whole, cur, nxt in self._tracks:
                out.extend((name, start) + k + (v,) for k, v in cur.items())
                if next_end > end:
                    out.extend((name, end) + k + (v,) for k, v in nxt.items())
            self._rows = out
        return self._rows

    def state(self) -> dict:
        """The JSON part of the snapshot (small: no per-key sums)."""
        return {"version": VERSION, "sums": TABLE,
                "tracks": [{"period": p, "tz": tz, "fixed": f, "start": s, "end": e, "next_end": ne}
                           for _n, p, tz, f, s, e, ne, _w, _c, _x in self._tracks],
                "named": [{"name": i.spec.name, "period": i.spec.period, "tz": i.spec.timezone,
                           "selector": i.spec.selector, "fixed": i.spec.fixed, "start": start,
                           "spend": sp, "next_spend": nsp, "fired": f} for i, start, sp, nsp, f in self._named],
                "tenant_fired": {f"{period}/{tz}/{start!r}": f for period, tz, start, f in self._fired}}


def inflate(saved: dict, rows) -> dict:
    """A version-2 JSON part plus the table's rows, as the whole-book form (version 1)."""
    by: dict[tuple, list] = {}
    for name, pstart, p, m, t, e, v in rows:
        lst = by.get((name, pstart))
        if lst is None:
            lst = by[(name, pstart)] = []
        lst.append((p, m, t, e, v))
    tracks = []
    for t in saved["tracks"]:
        name = track_name(t["period"], t["tz"], t["fixed"])
        tracks.append(dict(t, cur=by.get((name, t["start"]), []),
                           nxt=by.get((name, t["end"]), []) if t["next_end"] > t["end"] else []))
    return {"version": 1, "tracks": tracks, "named": saved["named"], "tenant_fired": saved.get("tenant_fired", {})}
