"""Usage events: the unit of ingest, validated once at the edge.

An event as sent to ``POST /v1/events`` (README.md, "Ingest API")::

    {"id": "3f0c...", "timestamp": "2026-11-22T10:00:00Z",
     "provider": "openai", "model": "gpt-4o-mini-2024-07-18",
     "tenant": "acme", "endpoint": "/v1/chat",
     "input_tokens": 600, "cached_input_tokens": 400,
     "cache_write_tokens": 0, "cache_write_1h_tokens": 0,
     "output_tokens": 300, "reasoning_tokens": 200,
     "cost_usd": 0.00042, "duration_seconds": 0.84,
     "error": false, "cache_hit": false, "saved_cost_usd": 0.0,
     "batch": false}

``batch`` (optional, default false) marks a call made through a provider's
batch API, priced with the batch discount. Token fields are disjoint:
``input_tokens`` excludes cached and cache-write tokens, ``output_tokens``
excludes reasoning tokens, so their sum is the billable token count.
``cache_write_tokens`` are 5-minute cache writes, ``cache_write_1h_tokens``
1-hour ones (Anthropic bills them at 1.25x and 2x the input rate).

:func:`parse_event` turns one decoded JSON object into a ledger row (the
tuple of ``ledger.COLUMNS``), priced when it carries no ``cost_usd``, or
raises :class:`EventError` naming the field.
"""
from __future__ import annotations

import math
from datetime import datetime, timezone
from typing import Callable

TOKEN_FIELDS = ("input_tokens", "cached_input_tokens", "cache_write_tokens", "cache_write_1h_tokens",
                "output_tokens", "reasoning_tokens")
# token_type label value for each token field (cost_provider_tokens_total).
TOKEN_TYPES = ("input", "cached_input", "cache_write", "cache_write_1h", "output", "reasoning")
LABEL_FIELDS = ("provider", "model", "tenant", "endpoint")
DEFAULT_TENANT = "default"
DEFAULT_MODEL = "unknown"
DEFAULT_ENDPOINT = "unknown"

MAX_ID_LENGTH = 128
MAX_LABEL_LENGTH = 128
MAX_TOKENS = 100_000_000          # per event; the largest context windows are ~2M tokens
MAX_COST_USD = 100_000.0          # per event
MAX_DURATION_SECONDS = 86_400.0
MAX_FUTURE_SECONDS = 86_400.0     # clocks drift; a day ahead is a bug, not drift
MIN_TIMESTAMP = 946_684_800.0     # 2000-01-01: older is a unit mistake (ms vs s is caught above)

KNOWN_FIELDS = frozenset(
    ("id", "timestamp", "cost_usd", "duration_seconds", "error", "cache_hit", "saved_cost_usd", "batch")
    + TOKEN_FIELDS + LABEL_FIELDS)


class EventError(ValueError):
    """A field of one event is wrong. ``field`` is None for whole-event problems."""

    def __init__(self, field: str | None, message: str):
        self.field, self.message = field, message
        super().__init__(f"{field}: {message}" if field else message)


def _label(obj: dict, name: str, default: str | None) -> str:
    v = obj.get(name)
    if v is None:
        if default is None:
            raise EventError(name, "is required")
        return default
    if type(v) is not str:
        raise EventError(name, f"must be a string, got {type(v).__name__}")
    if not v:
        if default is None:
            raise EventError(name, "must not be empty")
        return default
    if len(v) > MAX_LABEL_LENGTH:
        raise EventError(name, f"is {len(v)} characters long; the limit is {MAX_LABEL_LENGTH}")
    if not v.isprintable():
        if any("\udc80" <= c <= "\udcff" for c in v):
            raise EventError(name, "is not valid UTF-8")
        raise EventError(name, "contains control characters")
    return v


def _count(obj: dict, name: str) -> int:
    v = obj.get(name, 0)
    if v is None:
        return 0
    t = type(v)
    if t is float:
        if not v.is_integer():
            raise EventError(name, f"must be a whole number, got {v!r}")
        v = int(v)
    elif t is not int:
        raise EventError(name, f"must be an integer, got {type(v).__name__}")
    if v < 0:
        raise EventError(name, f"must not be negative, got {v}")
    if v > MAX_TOKENS:
        raise EventError(name, f"{v} is more than {MAX_TOKENS:,} tokens in one event")
    return v


def _amount(obj: dict, name: str, maximum: float) -> float | None:
    v = obj.get(name)
    if v is None:
        return None
    t = type(v)
    if t is not float and t is not int:
        raise EventError(name, f"must be a number, got {type(v).__name__}")
    v = float(v)
    if not math.isfinite(v) or v < 0:
        raise EventError(name, f"must be a finite number >= 0, got {v!r}")
    if v > maximum:
        raise EventError(name, f"{v} is more than the limit of {maximum:g}")
    return v


def _flag(obj: dict, name: str) -> bool:
    v = obj.get(name, False)
    if v is None:
        return False
    if type(v) is not bool:
        raise EventError(name, f"must be true or false, got {v!r}")
    return v


def parse_timestamp(v, now: float) -> float:
    if v is None:
        return now
    t = type(v)
    if t is int or t is float:
        ts = float(v)
        if not math.isfinite(ts):
            raise EventError("timestamp", "must be finite")
        if ts > 1e11:
            raise EventError("timestamp", f"{v} looks like milliseconds; send Unix seconds")
    elif t is str:
        try:
            d = datetime.fromisoformat(v)
        except ValueError:
            raise EventError("timestamp", f"{v!r} is neither RFC 3339 nor Unix seconds") from None
        if d.tzinfo is None:
            raise EventError("timestamp", f"{v!r} has no UTC offset (add Z or +00:00)")
        ts = d.timestamp()
    else:
        raise EventError("timestamp", f"must be an RFC 3339 string or Unix seconds, got {t.__name__}")
    if ts < MIN_TIMESTAMP:
        raise EventError("timestamp", f"{v!r} is before the year 2000")
    if ts > now + MAX_FUTURE_SECONDS:
        raise EventError("timestamp", f"{v!r} is more than a day in the future")
    return ts


def _fast_label(v, obj: dict, name: str, default: str | None) -> str:
    if type(v) is str and 0 < len(v) <= MAX_LABEL_LENGTH and v.isprintable():
        return v
    return _label(obj, name, default)      # defaults, or raises naming the problem


def _fast_count(v, obj: dict, name: str) -> int:
    if v is None:
        return 0
    if type(v) is int and 0 <= v <= MAX_TOKENS:
        return v
    return _count(obj, name)


def parse_event(obj, now: float, price: Callable[..., float | None]) -> tuple:
    """Validate one decoded JSON value into a ledger row (raises EventError).

    ``price`` is ``PricingTable.cost``; it is called when the event carries no
    ``cost_usd`` and was not answered by a cache. A row whose cost is None is
    an unpriced call. On the ingest hot path: the common, valid case is
    checked inline and only unusual values go through the helpers that
    explain what is wrong.
    """
    if type(obj) is not dict:
        raise EventError(None, f"an event must be a JSON object, got {type(obj).__name__}")
    if not KNOWN_FIELDS.issuperset(obj):
        unknown = sorted(k for k in obj if k not in KNOWN_FIELDS)
        raise EventError(unknown[0], "unknown field")
    g = obj.get
    eid = g("id")
    if eid is not None:
        if type(eid) is not str or not eid:
            raise EventError("id", "must be a non-empty string")
        if len(eid) > MAX_ID_LENGTH:
            raise EventError("id", f"is longer than {MAX_ID_LENGTH} characters")
        if not eid.isprintable():
            raise EventError("id", "contains control characters or bytes that are not UTF-8")
    ts = g("timestamp")
    ts = now if ts is None else parse_timestamp(ts, now)
    cost = g("cost_usd")
    if cost is not None:
        cost = _amount(obj, "cost_usd", MAX_COST_USD)
    dur = g("duration_seconds")
    if dur is not None:
        dur = _amount(obj, "duration_seconds", MAX_DURATION_SECONDS)
    hit = g("cache_hit")
    if hit is not None:
        hit = int(_flag(obj, "cache_hit"))
        saved = _amount(obj, "saved_cost_usd", MAX_COST_USD) or 0.0
    elif g("saved_cost_usd") is not None:
        saved = _amount(obj, "saved_cost_usd", MAX_COST_USD) or 0.0
    else:
        saved = 0.0
    err = g("error")
    if err is not None and err is not False:
        err = _flag(obj, "error")
    batch = g("batch")
    if batch is not None and batch is not False:
        batch = _flag(obj, "batch")
    provider = _fast_label(g("provider"), obj, "provider", None)
    model = _fast_label(g("model"), obj, "model", DEFAULT_MODEL)
    i = _fast_count(g("input_tokens"), obj, "input_tokens")
    ci = _fast_count(g("cached_input_tokens"), obj, "cached_input_tokens")
    cw = _fast_count(g("cache_write_tokens"), obj, "cache_write_tokens")
    cw1h = _fast_count(g("cache_write_1h_tokens"), obj, "cache_write_1h_tokens")
    o = _fast_count(g("output_tokens"), obj, "output_tokens")
    r = _fast_count(g("reasoning_tokens"), obj, "reasoning_tokens")
    given = 1
    if cost is None:
        given = 0
        # a cache hit made no provider call: nothing to price
        cost = 0.0 if hit else price(provider, model, i, ci, cw, o, r, at=ts, batch=bool(batch),
                                     cache_write_1h_tokens=cw1h)
    return (eid, ts, provider, model,
            _fast_label(g("tenant"), obj, "tenant", DEFAULT_TENANT),
            _fast_label(g("endpoint"), obj, "endpoint", DEFAULT_ENDPOINT),
            i, ci, cw, cw1h, o, r, cost, given, dur, 1 if err else 0, hit, saved, 1 if batch else 0, now)




def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, timezone.utc).isoformat().replace("+00:00", "Z")
