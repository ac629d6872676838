"""The common ``POST /v1/events`` body, parsed with typed decoding: a JSON array of events
that are all valid.

msgspec decodes the body straight into :class:`_Event` structs, checking in C what
``events.parse_event`` checks in Python one value at a time: that every field is known
and has its JSON type, that counts are whole numbers in range and amounts are finite
numbers in range. What is left (printable ids and labels, timestamps, pricing) is done
here, and the rows are those ``parse_event`` makes, value for value.

Anything else (a body that is not a JSON array, a decoding or type error, any event
that ``parse_event`` would refuse or that holds a value this path does not handle the
same way, such as ``1.0`` tokens) makes :func:`parse` return None, and the caller
parses the body with ``batch.parse_body``'s exact path, which names every problem.
tests/test_fastparse.py checks the two paths give the same result, body for body.
"""
from __future__ import annotations

from typing import Annotated, Callable, Optional, Union

import msgspec

from costmeter.events import (DEFAULT_ENDPOINT, DEFAULT_MODEL, DEFAULT_TENANT, MAX_COST_USD,
                              MAX_DURATION_SECONDS, MAX_ID_LENGTH, MAX_LABEL_LENGTH, MAX_TOKENS,
                              EventError, parse_timestamp)

_Count = Optional[Annotated[int, msgspec.Meta(ge=0, le=MAX_TOKENS)]]
_Label = Optional[Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_LABEL_LENGTH)]]


class _Event(msgspec.Struct, forbid_unknown_fields=True):
    """events.KNOWN_FIELDS; ``None`` is what parse_event also takes for an absent field."""
    id: Optional[Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_ID_LENGTH)]] = None
    timestamp: Union[float, str, None] = None
    provider: _Label = None
    model: _Label = None
    tenant: _Label = None
    endpoint: _Label = None
    input_tokens: _Count = None
    cached_input_tokens: _Count = None
    cache_write_tokens: _Count = None
    cache_write_1h_tokens: _Count = None
    output_tokens: _Count = None
    reasoning_tokens: _Count = None
    cost_usd: Optional[Annotated[float, msgspec.Meta(ge=0.0, le=MAX_COST_USD)]] = None
    duration_seconds: Optional[Annotated[float, msgspec.Meta(ge=0.0, le=MAX_DURATION_SECONDS)]] = None
    saved_cost_usd: Optional[Annotated[float, msgspec.Meta(ge=0.0, le=MAX_COST_USD)]] = None
    error: Optional[bool] = None
    cache_hit: Optional[bool] = None
    batch: Optional[bool] = None


_decoder = msgspec.json.Decoder(list[_Event])


class _Refused(Exception):
    """An event this path does not take: the exact path parses the body."""


def parse(body: bytes, now: float, price: Callable[..., float | None], max_events: int):
    """``(events, rows)`` for a body of valid events, each label value one shared string
    object (marshal writes it once, the exporter hashes it once); None for any other body."""
    if body[:1] != b"[" and body.lstrip()[:1] != b"[":
        return None
    try:
        events = _decoder.decode(body)
    except (msgspec.ValidationError, msgspec.DecodeError):
        return None
    if len(events) > max_events:
        return None
    try:
        return len(events), _rows(events, now, price)
    except (_Refused, EventError):
        return None


def _rows(events: list[_Event], now: float, price: Callable[..., float | None]) -> list[tuple]:
    labels: dict[str, str] = {}
    share = labels.setdefault
    out = []
    put = out.append
    for e in events:
        eid = e.id
        if eid is not None and not eid.isprintable():
            raise _Refused
        ts = e.timestamp
        ts = now if ts is None else parse_timestamp(ts, now)
        provider = e.provider
        if provider is None or not provider.isprintable():
            raise _Refused
        model, tenant, endpoint = e.model, e.tenant, e.endpoint
        if model is None:
            model = DEFAULT_MODEL
        elif not model.isprintable():
            raise _Refused
        if tenant is None:
            tenant = DEFAULT_TENANT
        elif not tenant.isprintable():
            raise _Refused
        if endpoint is None:
            endpoint = DEFAULT_ENDPOINT
        elif not endpoint.isprintable():
            raise _Refused
        hit = e.cache_hit
        saved = e.saved_cost_usd
        if hit is not None:
            hit = int(hit)
        saved = saved if saved else 0.0          # parse_event: _amount(...) or 0.0
        err, batch = e.error, e.batch
        i = e.input_tokens or 0
        ci = e.cached_input_tokens or 0
        cw = e.cache_write_tokens or 0
        cw1h = e.cache_write_1h_tokens or 0
        o = e.output_tokens or 0
        r = e.reasoning_tokens or 0
        cost = e.cost_usd
        given = 1
        provider, model = share(provider, provider), share(model, model)
        if cost is None:
            given = 0
            cost = 0.0 if hit else price(provider, model, i, ci, cw, o, r, at=ts, batch=bool(batch),
                                         cache_write_1h_tokens=cw1h)
        put((eid, ts, provider, model, share(tenant, tenant), share(endpoint, endpoint),
             i, ci, cw, cw1h, o, r, cost, given, e.duration_seconds, 1 if err else 0, hit, saved,
             1 if batch else 0, now))
    return out
