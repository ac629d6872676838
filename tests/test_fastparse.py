"""server/fastparse.py against the exact path: for every body, typed decoding gives the
answer ``batch.parse_body`` gives without it (the same rows, rejections and errors), and it
is the path actually taken for bodies of valid events."""
from __future__ import annotations

import json
import random

import pytest

from costmeter.events import KNOWN_FIELDS, MAX_TOKENS
from costmeter.pricing import PricingTable
from costmeter.server import fastparse
from costmeter.server.batch import parse_body, parse_fast
from costmeter.server.decode import BodyError

NOW = 1_796_100_000.0          # 2026-12-01: the timestamps below are before it
PRICE = PricingTable.load().cost

# per field: values parse_event takes, then values it refuses or that the fast path leaves to it
VALUES = {
    "id": (["ev-1", "a" * 128, "é" * 128, "😀 x"], ["", "a" * 129, "bad\x00id", 5, True, "\ud800"]),
    "timestamp": ([NOW - 100, int(NOW) - 5, "2026-11-20T10:00:00Z", "2026-11-20T10:00:00.5+02:00"],
                  ["2026-11-20T10:00:00", "garbage", NOW * 1000, 100, NOW + 3 * 86400, True, [1]]),
    "provider": (["openai", "anthropic", "é" * 128], ["", "x" * 129, "a\tb", 5, None]),
    "model": (["gpt-4o-mini-2024-07-18", "claude-sonnet-4-5-20250929", "house-model-1"], ["", "m\n", 7]),
    "tenant": (["acme", "t-2", "ünï"], ["", "x" * 200, False, "t\x01"]),
    "endpoint": (["/v1/chat", "/e"], ["", "\x7f"]),
    "input_tokens": ([0, 5, 1200, MAX_TOKENS], [100.0, 1.5, -1, MAX_TOKENS + 1, True, "5", 2 ** 70]),
    "cached_input_tokens": ([0, 300], [2.0, -3]),
    "cache_write_tokens": ([0, 40, None], [-40]),
    "cache_write_1h_tokens": ([0, 20], [-1]),
    "output_tokens": ([0, 77, 4000], [1e3, False]),
    "reasoning_tokens": ([0, 12], [0.0]),
    "cost_usd": ([0, 0.0, -0.0, 1e-9, 5, 0.000123456789, 1e5], [1e5 + 1, -1, "1", True]),
    "duration_seconds": ([0.2, 3, 86400], [-0.5, 86401, "1s"]),
    "saved_cost_usd": ([0.0, -0.0, 0.5, 3, None], [-1, 1e6]),
    "error": ([True, False, None], [0, "true"]),
    "cache_hit": ([True, False, None], [1]),
    "batch": ([True, False, None], ["no"]),
}


def event(rnd: random.Random, bad: float) -> dict:
    e = {"provider": rnd.choice(VALUES["provider"][0])}
    for name, (good, odd) in VALUES.items():
        r = rnd.random()
        if r < bad:
            e[name] = rnd.choice(odd)
        elif r < 0.6:
            e[name] = rnd.choice(good)
        elif name == "provider" and bad and r < 0.62:
            del e[name]
    if rnd.random() < bad / 10:
        e["unknown_field"] = 1
    return e


def outcome(body: bytes, ctype: str | None, fast: bool, max_events: int = 1000) -> str:
    """What parse_body answers, as text: repr tells 0.0 from -0.0, which == does not."""
    try:
        p = parse_body(body, ctype, NOW, PRICE, max_events, fast=fast)
    except BodyError as e:
        return repr((type(e).__name__, e.status, e.message))
    return repr((p.events, p.rows, p.rejected))


def check(body: bytes, ctype: str | None = "application/json", max_events: int = 1000) -> bool:
    """The two paths agree on ``body``; returns whether the fast path took it."""
    assert outcome(body, ctype, True, max_events) == outcome(body, ctype, False, max_events)
    return parse_fast(body, ctype, NOW, PRICE, max_events) is not None


def test_the_struct_knows_exactly_the_fields_events_do():
    assert set(fastparse._Event.__struct_fields__) == KNOWN_FIELDS


@pytest.mark.parametrize("bad", [0.0, 0.02, 0.3])
def test_random_bodies_get_the_same_answer_both_ways(bad):
    rnd = random.Random(int(bad * 1000) + 1)
    taken = 0
    for n in range(300):
        evs = [event(rnd, bad) for _ in range(rnd.choice([1, 3, 20]))]
        body = json.dumps(evs, ensure_ascii=rnd.random() < 0.5).encode("utf-8", "surrogatepass")
        taken += check(body, rnd.choice(["application/json", "application/json; charset=utf-8", None]))
    if bad == 0.0:
        assert taken >= 290, "bodies of valid events take the fast path"
    else:
        assert taken < 300, "bodies with a bad event go the exact way"


VALID = {"provider": "openai", "model": "gpt-4o-mini-2024-07-18", "input_tokens": 10, "output_tokens": 3}


@pytest.mark.parametrize("field,value,good", [(f, v, True) for f, (good, _) in VALUES.items() for v in good]
                         + [(f, v, False) for f, (_, odd) in VALUES.items() for v in odd])
def test_each_value_alone_gets_the_same_answer_both_ways(field, value, good):
    """One event with ``field`` set to ``value`` among valid ones: a value parse_event takes
    goes the fast way; any other value sends the body the exact way."""
    evs = [dict(VALID, id=f"v-{i}") for i in range(3)]
    evs[1][field] = value
    for ascii_only in (True, False):
        body = json.dumps(evs, ensure_ascii=ascii_only).encode("utf-8", "surrogatepass")
        assert check(body) is good


@pytest.mark.parametrize("body", [
    b'[{"provider": "a", "provider": "openai", "input_tokens": 5}]',        # duplicate key: the last
    b'[{"provider": "openai", "cost_usd": NaN}]',
    b'[{"provider": "openai", "input_tokens": 1e2}]',
    b'[{"provider": "openai", "input_tokens": 123456789012345678901234567890}]',
    b'[{"provider": "openai", "cost_usd": 1e400}]',
    b'[{"provider": "openai", "model": "a\\ud800"}]',
    b'[{"provider": "op\xffenai"}]',
    b'\xef\xbb\xbf[{"provider": "openai"}]',
    b'[{"provider": "openai"},]',
    b'[{"provider": "openai"}] trailing',
    b'[1, "x", null, [], {"provider": "openai"}]',
    b'{"provider": "openai", "input_tokens": 3}',
    b'{"provider": "openai"}\n{"provider": "anthropic", "output_tokens": 2}\n',
    b'  [ ]  ',
    b'',
    b'[{"provider": "openai", "timestamp": 17000000000000000000000}]',
    b'[{"provider": "openai", "input_tokens": -0, "cost_usd": 0.5e-3}]',
])
def test_edge_bodies_get_the_same_answer_both_ways(body):
    check(body)
    check(body, None)


def test_other_content_types_and_too_many_events_go_the_exact_way():
    body = json.dumps([{"provider": "openai", "input_tokens": i} for i in range(5)]).encode()
    assert check(body)
    assert not check(body, max_events=4)                 # 413 from the exact path
    assert outcome(body, None, True, 4).startswith("('TooManyEvents', 413,")
    assert not check(body, "application/x-ndjson")
    assert not check(body, "text/plain")                 # 415
