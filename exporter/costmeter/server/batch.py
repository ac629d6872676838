"""One ``POST /v1/events`` body to ledger rows: decode, validate and price every event.

A pure function of (body, Content-Type, receipt time, pricing table), so that it
runs the same in the exporter's process or in an ingest worker process
(``parsepool.py``). What it returns is plain tuples, cheap to send between
processes with :mod:`marshal`:

* ``rows``: one ledger row (``ledger.COLUMNS`` order) per valid event, in body order;
* ``rejected``: ``(index, id, field, message, reason)`` per invalid event.
"""
from __future__ import annotations

from typing import Callable, NamedTuple

from costmeter.events import EventError, parse_event
from costmeter.server import fastparse
from costmeter.server.decode import JSON_TYPES, BodyError, Invalid, decode, media_type

_JSON_OR_NONE = JSON_TYPES | {""}
REJECT_REASONS = ("malformed", "missing_field", "unknown_field", "invalid_field")


class TooManyEvents(BodyError):
    """More events in one body than ``ingest.max_events_per_request``."""


class Parsed(NamedTuple):
    events: int                      # events in the body, valid or not
    rows: list                       # ledger rows of the valid ones
    rejected: list                   # (index, id, field, message, reason) of the others
    rollup: list | None = None       # costs.rollup_rows(rows), made by an ingest worker
    pairs: bytes | None = None       # idindex.hashes of the rows' ids, made by an ingest worker


def reason(err: EventError) -> str:
    """The ``reason`` label of costmeter_ingest_rejected_events_total for ``err``."""
    if err.field is None:
        return "malformed"
    if err.message == "unknown field":
        return "unknown_field"
    if err.message == "is required":
        return "missing_field"
    return "invalid_field"


def parse_events(objs: list, now: float, price: Callable[..., float | None]) -> Parsed:
    """Validate and price decoded events (items of ``decode.decode``)."""
    rows: list[tuple] = []
    rejected: list[tuple] = []
    for i, obj in enumerate(objs):
        if isinstance(obj, Invalid):
            rejected.append((i, None, None, obj.message, "malformed"))
            continue
        try:
            rows.append(parse_event(obj, now, price))
        except EventError as e:
            eid = obj.get("id") if isinstance(obj, dict) and isinstance(obj.get("id"), str) else None
            rejected.append((i, eid, e.field, e.message, reason(e)))
    return Parsed(len(objs), rows, rejected)


def parse_fast(body: bytes, content_type: str | None, now: float, price: Callable[..., float | None],
               max_events: int) -> Parsed | None:
    """A JSON array of valid events, parsed by typed decoding (fastparse.py); None for any
    other body, which :func:`parse_body` then parses."""
    if media_type(content_type) not in _JSON_OR_NONE:
        return None
    got = fastparse.parse(body, now, price, max_events)
    return None if got is None else Parsed(got[0], got[1], [])


def parse_body(body: bytes, content_type: str | None, now: float, price: Callable[..., float | None],
               max_events: int, fast: bool = True) -> Parsed:
    """Decode and validate a whole body; raises BodyError (with its HTTP status) when the
    body as a whole is unusable or holds more than ``max_events`` events. ``fast``: try
    :func:`parse_fast` first (the answer is the same; a caller that tried it passes False)."""
    if fast:
        parsed = parse_fast(body, content_type, now, price, max_events)
        if parsed is not None:
            return parsed
    objs = decode(body, content_type)
    if len(objs) > max_events:
        raise TooManyEvents(413, f"{len(objs)} events in one request; the limit is {max_events}")
    return parse_events(objs, now, price)
