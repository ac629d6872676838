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
    assert t == (500, 400, 100, 300, 200)
    assert sum(t) == 1000 + 500          # nothing billed twice, nothing dropped


def test_openai_objects_and_missing_details():
    u = CompletionUsage(prompt_tokens=12, completion_tokens=3, total_tokens=15)
    assert tokens_from_usage(u) == (12, 0, 0, 3, 0)
    assert extract({"model": "text-embedding-3-small", "usage": {"prompt_tokens": 8, "total_tokens": 8}}) == \
        ("text-embedding-3-small", (8, 0, 0, 0, 0))


def test_openai_responses_shape():
    u = {"input_tokens": 2000, "input_tokens_details": {"cached_tokens": 1500, "cache_write_tokens": 0},
         "output_tokens": 900, "output_tokens_details": {"reasoning_tokens": 600}, "total_tokens": 2900}
    assert tokens_from_usage(u) == (500, 1500, 0, 300, 600)


def test_anthropic_input_excludes_cache_and_thinking_is_reasoning():
    u = AnthropicUsage(input_tokens=50, output_tokens=400, cache_creation_input_tokens=2000,
                       cache_read_input_tokens=10000, output_tokens_details={"thinking_tokens": 150})
    t = tokens_from_usage(u)
    assert t == (50, 10000, 2000, 250, 150)
    assert sum(t) == 50 + 10000 + 2000 + 400
    assert tokens_from_usage({"input_tokens": 7, "output_tokens": 3, "cache_read_input_tokens": None}) == (7, 0, 0, 3, 0)


def test_bare_usage_dict_and_no_usage():
    assert extract({"prompt_tokens": 3, "completion_tokens": 1}) == (None, (3, 0, 0, 1, 0))
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
    assert (s.model, s.tokens) == ("gpt-4o-mini-2024-07-18", (4, 6, 0, 4, 0))

    a = StreamUsage()
    a.feed({"type": "message_start", "message": {"model": "claude-haiku-4-5", "usage": {
        "input_tokens": 20, "output_tokens": 1, "cache_read_input_tokens": 100, "cache_creation_input_tokens": 0}}})
    a.feed({"type": "content_block_delta", "delta": {"type": "text_delta", "text": "x"}})
    a.feed({"type": "message_delta", "usage": {"output_tokens": 30}})
    a.feed({"type": "message_delta", "usage": {"output_tokens": 55, "input_tokens": 20}})
    assert (a.model, a.tokens) == ("claude-haiku-4-5", (20, 100, 0, 55, 0))
