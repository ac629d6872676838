"""Usage extraction maps every provider convention onto disjoint token types (README.md, "Metrics")."""
from __future__ import annotations

from openai.types.chat import ChatCompletionChunk
from openai.types.completion_usage import CompletionUsage
from anthropic.types import Usage as AnthropicUsage

from costmeter.sdk.usage import StreamUsage, extract, tokens_from_usage


def test_openai_chat_dict_input_includes_cached_and_output_includes_reasoning():
    u = {"prompt_tokens": 1000, "completion_tokens": 500,
         "prompt_tokens_details": {"cached_tokens": 400, "cache_write_tokens": 100},
         "completion_tokens_details": {"reasoning_tokens": 200}}
    t = tokens_from_usage(u)
    assert t == (500, 400, 100, 0, 300, 200)
    assert sum(t) == 1000 + 500          # nothing billed twice, nothing dropped


def test_openai_objects_and_missing_details():
    u = CompletionUsage(prompt_tokens=12, completion_tokens=3, total_tokens=15)
    assert tokens_from_usage(u) == (12, 0, 0, 0, 3, 0)
    assert extract({"model": "text-embedding-3-small", "usage": {"prompt_tokens": 8, "total_tokens": 8}}) == \
        ("text-embedding-3-small", (8, 0, 0, 0, 0, 0))


def test_openai_responses_shape():
    u = {"input_tokens": 2000, "input_tokens_details": {"cached_tokens": 1500, "cache_write_tokens": 0},
         "output_tokens": 900, "output_tokens_details": {"reasoning_tokens": 600}, "total_tokens": 2900}
    assert tokens_from_usage(u) == (500, 1500, 0, 0, 300, 600)


def test_anthropic_input_excludes_cache_and_thinking_is_reasoning():
    u = AnthropicUsage(input_tokens=50, output_tokens=400, cache_creation_input_tokens=2000,
                       cache_read_input_tokens=10000, output_tokens_details={"thinking_tokens": 150})
    t = tokens_from_usage(u)
    assert t == (50, 10000, 2000, 0, 250, 150)
    assert sum(t) == 50 + 10000 + 2000 + 400
    assert tokens_from_usage({"input_tokens": 7, "output_tokens": 3, "cache_read_input_tokens": None}) == (7, 0, 0, 0, 3, 0)


def test_bare_usage_dict_and_no_usage():
    assert extract({"prompt_tokens": 3, "completion_tokens": 1}) == (None, (3, 0, 0, 0, 1, 0))
    assert extract({"model": "x"}) == ("x", None)
    assert extract("just text") == (None, None)
    assert extract(None) == (None, None)


def test_stream_accumulators():
    s = StreamUsage()
    base = {"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "gpt-4o-mini-2024-07-18"}
    s.feed(ChatCompletionChunk.construct(**base, choices=[{"index": 0, "delta": {"content": "hi"}}], usage=None))
    assert s.tokens is None
    s.feed(ChatCompletionChunk.construct(**base, choices=[], usage={"prompt_tokens": 10, "completion_tokens": 4,
                                                         "prompt_tokens_details": {"cached_tokens": 6}}))
    assert (s.model, s.tokens) == ("gpt-4o-mini-2024-07-18", (4, 6, 0, 0, 4, 0))

    a = StreamUsage()
    a.feed({"type": "message_start", "message": {"model": "claude-haiku-4-5", "usage": {
        "input_tokens": 20, "output_tokens": 1, "cache_read_input_tokens": 100, "cache_creation_input_tokens": 0}}})
    a.feed({"type": "content_block_delta", "delta": {"type": "text_delta", "text": "x"}})
    a.feed({"type": "message_delta", "usage": {"output_tokens": 30}})
    a.feed({"type": "message_delta", "usage": {"output_tokens": 55, "input_tokens": 20}})
    assert (a.model, a.tokens) == ("claude-haiku-4-5", (20, 100, 0, 0, 55, 0))


def test_anthropic_cache_creation_split_by_ttl():
    # The API's shape: cache_creation_input_tokens is the total, cache_creation splits it by TTL.
    u = AnthropicUsage(input_tokens=40, output_tokens=300, cache_creation_input_tokens=3000,
                       cache_read_input_tokens=9000,
                       cache_creation={"ephemeral_5m_input_tokens": 1000, "ephemeral_1h_input_tokens": 2000})
    t = tokens_from_usage(u)
    assert t == (40, 9000, 1000, 2000, 300, 0)
    assert sum(t) == 40 + 9000 + 3000 + 300
    # A plain dict of the same shape, only 1-hour writes.
    d = {"input_tokens": 5, "output_tokens": 7, "cache_creation_input_tokens": 800, "cache_read_input_tokens": 0,
         "cache_creation": {"ephemeral_5m_input_tokens": 0, "ephemeral_1h_input_tokens": 800}}
    assert tokens_from_usage(d) == (5, 0, 0, 800, 7, 0)
    # Without the split (older API versions), every write is a 5-minute one.
    assert tokens_from_usage({"input_tokens": 5, "output_tokens": 7, "cache_creation_input_tokens": 800}) == \
        (5, 0, 800, 0, 7, 0)
    assert tokens_from_usage(AnthropicUsage(input_tokens=5, output_tokens=7, cache_creation_input_tokens=800,
                                            cache_creation=None)) == (5, 0, 800, 0, 7, 0)


def test_anthropic_stream_keeps_the_ttl_split():
    a = StreamUsage()
    a.feed({"type": "message_start", "message": {"model": "claude-sonnet-4-5-20250929", "usage": {
        "input_tokens": 20, "output_tokens": 1, "cache_read_input_tokens": 100, "cache_creation_input_tokens": 700,
        "cache_creation": {"ephemeral_5m_input_tokens": 200, "ephemeral_1h_input_tokens": 500}}}})
    a.feed({"type": "message_delta", "usage": {"output_tokens": 55}})
    assert (a.model, a.tokens) == ("claude-sonnet-4-5-20250929", (20, 100, 200, 500, 55, 0))


def test_deepseek_cache_hits_are_cached_input():
    u = {"prompt_tokens": 1000, "completion_tokens": 50, "prompt_cache_hit_tokens": 800,
         "prompt_cache_miss_tokens": 200}
    assert tokens_from_usage(u) == (200, 800, 0, 0, 50, 0)
