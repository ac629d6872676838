"""Decoding ``POST /v1/events`` bodies into candidate events.

A body is a JSON array of events, a single JSON object, or NDJSON (one
object per line). Decoding never fails the whole batch for one bad line:
an NDJSON line that is not JSON becomes an :class:`Invalid` entry, which the
exporter reports as rejected with its index, while the other lines go on.
"""
from __future__ import annotations

import json

import orjson

NDJSON_TYPES = frozenset(("application/x-ndjson", "application/ndjson", "application/jsonl",
                          "application/x-jsonlines", "application/jsonlines"))
JSON_TYPES = frozenset(("application/json", "text/json"))


class BodyError(ValueError):
    """The whole body is unusable; ``status`` is the HTTP status to answer with."""

    def __init__(self, status: int, message: str):
        self.status, self.message = status, message
        super().__init__(message)


class Invalid:
    __slots__ = ("message",)

    def __init__(self, message: str):
        self.message = message


def _int(text: str):
    """JSON integers past 300 digits become floats (inf, or near 1e300): Python refuses to
    parse more than 4,300 digits and to turn more than ~308 into a float, and no field takes
    such a number, so the event's check then names the field. (orjson does the same past 64 bits.)"""
    return int(text) if len(text) <= 301 else float(text)


def _loads(text: str):
    return json.loads(text, parse_int=_int)


def media_type(content_type: str | None) -> str:
    return (content_type or "").split(";", 1)[0].strip().lower()


def decode(body: bytes, content_type: str | None) -> list:
    """Return a list whose items are decoded JSON values or Invalid markers."""
    mt = media_type(content_type)
    if mt and mt not in JSON_TYPES and mt not in NDJSON_TYPES:
        raise BodyError(415, f"unsupported Content-Type {mt!r}: send application/json (an array of events) "
                             "or application/x-ndjson (one event per line)")
    if not body.strip():
        raise BodyError(400, "empty body: send a JSON array of events or NDJSON")
    if mt not in NDJSON_TYPES:
        try:                      # fast path: valid UTF-8 JSON, decoded by orjson
            value = orjson.loads(body)
        except orjson.JSONDecodeError:
            pass                  # explained below by the stdlib decoder
        else:
            return _events(value)
    # Bytes that are not UTF-8 are kept as lone surrogates so that the event
    # and field holding them can be named (events.parse_event rejects them).
    text = body.decode("utf-8", "surrogateescape")
    if mt in NDJSON_TYPES:
        return _lines(text)
    try:
        value = _loads(text)
    except RecursionError:
        raise BodyError(400, "JSON nested too deeply") from None
    except json.JSONDecodeError as e:
        if "\n" in text.strip() and text.lstrip()[:1] == "{":
            return _lines(text)           # NDJSON sent as application/json
        raise BodyError(400, f"malformed JSON at line {e.lineno} column {e.colno}: {e.msg}") from None
    return _events(value)


def _events(value) -> list:
    if isinstance(value, list):
        return value
    if isinstance(value, dict):
        return [value]
    raise BodyError(400, f"expected a JSON array of events or an event object, got {type(value).__name__}")


def _lines(text: str) -> list:
    out: list = []
    loads = _loads
    for n, line in enumerate(text.split("\n"), 1):
        if not line.strip():
            continue
        try:
            out.append(loads(line))
        except RecursionError:
            out.append(Invalid(f"line {n}: JSON nested too deeply"))
        except json.JSONDecodeError as e:
            out.append(Invalid(f"line {n}: malformed JSON at column {e.colno}: {e.msg}"))
    return out
