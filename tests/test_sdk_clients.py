"""track_cost around the real openai and anthropic clients, pointed at a loopback fake of their APIs.

Token counts and USD are checked against values computed by hand from the
vendors' usage (tests/fakes/llm_server.py) and the built-in price table:

  chat gpt-4o-mini: prompt 1200 (1024 cached), completion 300 (128 reasoning)
      input 176 * 0.15 + cached 1024 * 0.075 + output 172 * 0.60 + reasoning 128 * 0.60
      = 26.4 + 76.8 + 103.2 + 76.8 = 283.2 per million -> $0.0002832
  responses o4-mini: input 2000 (1500 cached), output 900 (600 reasoning)
      500 * 1.10 + 1500 * 0.275 + 300 * 4.40 + 600 * 4.40 = 4922.5 per million -> $0.0049225
  embeddings text-embedding-3-small: 8 * 0.02 = 0.16 per million -> $0.00000016
  anthropic claude-sonnet-4-6 (same rates as 4-5): input 50, cache read 10000, cache writes 2000 of which
  usage.cache_creation says 1500 are 5-minute and 500 1-hour writes, output 400
      50 * 3 + 10000 * 0.30 + 1500 * 3.75 + 500 * 6.00 + 400 * 15 = 17775 per million -> $0.017775
"""
from __future__ import annotations

import asyncio
import gc
import inspect

import anthropic
import openai
import pytest
from prometheus_client import CollectorRegistry

import costmeter
from costmeter import cost_tracker, request_context, track_cost
from fakes.llm_server import FakeLLMServer

CHAT_USD, RESP_USD, EMB_USD, ANTH_USD = 0.0002832, 0.0049225, 0.00000016, 0.017775
CHAT_MODEL, RESP_MODEL, ANTH_MODEL = "gpt-4o-mini-2024-07-18", "o4-mini-2025-04-16", "claude-sonnet-4-6"


@pytest.fixture(scope="module")
def srv():
    with FakeLLMServer() as s:
        yield s


@pytest.fixture
def reg():
    r = CollectorRegistry()
    cost_tracker.configure(registry=r)
    yield r
    cost_tracker.shutdown()


def tokens(reg, provider, model, tenant="default"):
    return {tt: reg.get_sample_value("cost_provider_tokens_total",
                                     {"provider": provider, "model": model, "tenant": tenant, "token_type": tt}) or 0
            for tt in ("input", "cached_input", "cache_write", "cache_write_1h", "output", "reasoning")}


def cost_sum(reg, provider, model, endpoint="unknown", tenant="default"):
    return reg.get_sample_value("cost_request_cost_usd_sum",
                                {"provider": provider, "model": model, "endpoint": endpoint, "tenant": tenant})


def calls(reg, provider, model, tenant="default", name="cost_provider_api_calls_total"):
    return reg.get_sample_value(name, {"provider": provider, "model": model, "tenant": tenant})


def oa(srv):
    return openai.OpenAI(base_url=srv.openai_base_url, api_key="sk-test", max_retries=0)


def an(srv):
    return anthropic.Anthropic(base_url=srv.anthropic_base_url, api_key="sk-ant-test", max_retries=0)


MSGS = [{"role": "user", "content": "Say hello."}]


def test_openai_chat_sync(srv, reg):
    client = oa(srv)

    @track_cost(provider="openai", endpoint="/v1/chat", tenant="acme")
    def ask(question: str, *, temperature: float = 0.0) -> object:
        """Ask the model."""
        return client.chat.completions.create(model="gpt-4o-mini", messages=MSGS, max_tokens=300)

    r = ask("hi")
    assert r.choices[0].message.content == "Hello there."
    assert tokens(reg, "openai", CHAT_MODEL, "acme") == {
        "input": 176, "cached_input": 1024, "cache_write": 0, "cache_write_1h": 0, "output": 172, "reasoning": 128}
    assert cost_sum(reg, "openai", CHAT_MODEL, "/v1/chat", "acme") == pytest.approx(CHAT_USD, rel=1e-12)
    assert calls(reg, "openai", CHAT_MODEL, "acme") == 1
    assert reg.get_sample_value("cost_request_duration_seconds_count",
                                {"provider": "openai", "model": CHAT_MODEL, "endpoint": "/v1/chat"}) == 1
    # the decorated function keeps its identity
    assert ask.__name__ == "ask" and ask.__doc__ == "Ask the model."
    sig = inspect.signature(ask)
    assert list(sig.parameters) == ["question", "temperature"]
    assert sig.parameters["temperature"].kind is inspect.Parameter.KEYWORD_ONLY
    assert sig.parameters["temperature"].default == 0.0 and sig.return_annotation == "object"


def test_openai_chat_stream_sync_include_usage(srv, reg):
    client = oa(srv)

    @track_cost(provider="openai", endpoint="/v1/chat")
    def ask():
        return client.chat.completions.create(model="gpt-4o-mini", messages=MSGS, stream=True,
                                              stream_options={"include_usage": True})

    stream = ask()
    assert calls(reg, "openai", CHAT_MODEL) is None          # nothing recorded until the stream ends
    text = "".join((c.choices[0].delta.content or "") for c in stream if c.choices)
    assert text == "Hello there."
    assert tokens(reg, "openai", CHAT_MODEL) == {
        "input": 176, "cached_input": 1024, "cache_write": 0, "cache_write_1h": 0, "output": 172, "reasoning": 128}
    assert cost_sum(reg, "openai", CHAT_MODEL, "/v1/chat") == pytest.approx(CHAT_USD, rel=1e-12)
    stream.close()                                             # closing after exhaustion records nothing more
    assert calls(reg, "openai", CHAT_MODEL) == 1


def test_openai_responses_and_embeddings(srv, reg):
    client = oa(srv)

    @track_cost(provider="openai")
    def respond():
        return client.responses.create(model="o4-mini", input="Say hello.", max_output_tokens=1000)

    @track_cost(provider="openai")
    def embed():
        return client.embeddings.create(model="text-embedding-3-small", input=["hello"])

    respond()
    embed()
    assert tokens(reg, "openai", RESP_MODEL) == {
        "input": 500, "cached_input": 1500, "cache_write": 0, "cache_write_1h": 0, "output": 300, "reasoning": 600}
    assert cost_sum(reg, "openai", RESP_MODEL) == pytest.approx(RESP_USD, rel=1e-12)
    assert tokens(reg, "openai", "text-embedding-3-small")["input"] == 8
    assert cost_sum(reg, "openai", "text-embedding-3-small") == pytest.approx(EMB_USD, rel=1e-12)


def test_openai_responses_stream(srv, reg):
    client = oa(srv)

    @track_cost(provider="openai")
    def respond():
        return client.responses.create(model="o4-mini", input="Say hello.", stream=True)

    kinds = [ev.type for ev in respond()]
    assert kinds[-1] == "response.completed"
    assert tokens(reg, "openai", RESP_MODEL)["reasoning"] == 600
    assert cost_sum(reg, "openai", RESP_MODEL) == pytest.approx(RESP_USD, rel=1e-12)


def test_anthropic_messages_sync_and_stream(srv, reg):
    client = an(srv)

    @track_cost(provider="anthropic", tenant="t1")
    def ask(stream=False):
        return client.messages.create(model="claude-sonnet-4-6", max_tokens=1024, messages=MSGS, stream=stream)

    msg = ask()
    assert msg.content[0].text == "Hello there."
    want = {"input": 50, "cached_input": 10000, "cache_write": 1500, "cache_write_1h": 500, "output": 400,
            "reasoning": 0}
    assert tokens(reg, "anthropic", ANTH_MODEL, "t1") == want
    assert cost_sum(reg, "anthropic", ANTH_MODEL, tenant="t1") == pytest.approx(ANTH_USD, rel=1e-12)

    events = [e.type for e in ask(stream=True)]
    assert events[0] == "message_start" and events[-1] == "message_stop"
    # message_start reported output_tokens 1; message_delta's cumulative 400 replaced it
    assert tokens(reg, "anthropic", ANTH_MODEL, "t1") == {k: 2 * v for k, v in want.items()}
    assert cost_sum(reg, "anthropic", ANTH_MODEL, tenant="t1") == pytest.approx(2 * ANTH_USD, rel=1e-12)
    assert calls(reg, "anthropic", ANTH_MODEL, "t1") == 2


def test_async_clients_and_async_streams(srv, reg):
    aoa = openai.AsyncOpenAI(base_url=srv.openai_base_url, api_key="sk-test", max_retries=0)
    aan = anthropic.AsyncAnthropic(base_url=srv.anthropic_base_url, api_key="sk-ant-test", max_retries=0)

    @track_cost(provider="openai", tenant="async")
    async def chat(stream=False):
        """async chat"""
        kw = {"stream": True, "stream_options": {"include_usage": True}} if stream else {}
        return await aoa.chat.completions.create(model="gpt-4o-mini", messages=MSGS, **kw)

    @track_cost(provider="anthropic", tenant="async")
    async def msg():
        return await aan.messages.create(model="claude-sonnet-4-6", max_tokens=1024, messages=MSGS, stream=True)

    assert inspect.iscoroutinefunction(chat) and chat.__doc__ == "async chat"

    async def main():
        await chat()
        s = await chat(stream=True)
        async for _ in s:
            pass
        async for _ in await msg():
            pass
        await aoa.close()
        await aan.close()

    asyncio.run(main())
    t = tokens(reg, "openai", CHAT_MODEL, "async")
    assert t == {"input": 352, "cached_input": 2048, "cache_write": 0, "cache_write_1h": 0, "output": 344,
                 "reasoning": 256}
    assert cost_sum(reg, "openai", CHAT_MODEL, tenant="async") == pytest.approx(2 * CHAT_USD, rel=1e-12)
    assert cost_sum(reg, "anthropic", ANTH_MODEL, tenant="async") == pytest.approx(ANTH_USD, rel=1e-12)


def test_stream_closed_early_records_once_with_usage_seen(srv, reg):
    client = an(srv)

    @track_cost(provider="anthropic", tenant="early")
    def ask():
        return client.messages.create(model="claude-sonnet-4-6", max_tokens=1024, messages=MSGS, stream=True)

    s = ask()
    first = next(iter(s))
    assert first.type == "message_start"
    s.close()
    s.close()
    # what message_start said: input and cache counts, output 1 so far
    assert tokens(reg, "anthropic", ANTH_MODEL, "early") == {
        "input": 50, "cached_input": 10000, "cache_write": 1500, "cache_write_1h": 500, "output": 1, "reasoning": 0}
    assert calls(reg, "anthropic", ANTH_MODEL, "early") == 1

    # a stream abandoned without close is recorded when it is collected
    s2 = ask()
    next(iter(s2))
    del s2
    gc.collect()
    assert calls(reg, "anthropic", ANTH_MODEL, "early") == 2

    # `with` closes the stream and records once
    with ask() as s3:
        next(iter(s3))
    assert calls(reg, "anthropic", ANTH_MODEL, "early") == 3


def test_errors_propagate_unchanged_and_count(srv, reg):
    client = oa(srv)

    @track_cost(provider="openai", model="gpt-4o-mini", tenant="err")
    def ask():
        return client.chat.completions.create(model="gpt-4o-mini", messages=MSGS)

    srv.fail_next(500)
    with pytest.raises(openai.InternalServerError) as ei:
        ask()
    assert ei.value.status_code == 500
    assert calls(reg, "openai", "gpt-4o-mini", "err", "cost_provider_api_errors_total") == 1
    assert calls(reg, "openai", "gpt-4o-mini", "err") == 1

    class Boom(Exception):
        pass

    @track_cost(provider="openai", model="gpt-4o-mini", tenant="err")
    def broken():
        raise Boom("as is")

    with pytest.raises(Boom, match="as is"):
        broken()
    assert calls(reg, "openai", "gpt-4o-mini", "err", "cost_provider_api_errors_total") == 2


def test_tenant_endpoint_from_callable_and_context(srv, reg):
    client = oa(srv)

    @track_cost(provider="openai", tenant=lambda user, q: user["org"], endpoint=lambda user, q: f"/ask/{q}")
    def ask(user, q):
        return client.embeddings.create(model="text-embedding-3-small", input=q)

    @track_cost(provider="openai")
    def ask_ctx():
        return client.embeddings.create(model="text-embedding-3-small", input="x")

    ask({"org": "globex"}, "a")
    with request_context(tenant="initech", endpoint="/mw"):
        ask_ctx()
    ask_ctx()
    assert cost_sum(reg, "openai", "text-embedding-3-small", "/ask/a", "globex") == pytest.approx(EMB_USD)
    assert cost_sum(reg, "openai", "text-embedding-3-small", "/mw", "initech") == pytest.approx(EMB_USD)
    assert cost_sum(reg, "openai", "text-embedding-3-small", "unknown", "default") == pytest.approx(EMB_USD)


def test_context_manager_form(srv, reg):
    client = an(srv)
    with track_cost(provider="anthropic", tenant="cm", endpoint="/pipeline") as call:
        call.record(client.messages.create(model="claude-sonnet-4-6", max_tokens=10, messages=MSGS))
        call.record(client.messages.create(model="claude-sonnet-4-6", max_tokens=10, messages=MSGS))
    assert calls(reg, "anthropic", ANTH_MODEL, "cm") == 1           # the block is one call
    assert cost_sum(reg, "anthropic", ANTH_MODEL, "/pipeline", "cm") == pytest.approx(2 * ANTH_USD, rel=1e-12)

    with pytest.raises(KeyError):
        with track_cost(provider="anthropic", model="claude-sonnet-4-6", tenant="cm"):
            raise KeyError("x")
    assert calls(reg, "anthropic", "claude-sonnet-4-6", "cm", "cost_provider_api_errors_total") == 1

    async def amain():
        async with track_cost(provider="openai", tenant="cm") as c:
            c.record({"model": "gpt-4o-mini", "usage": {"prompt_tokens": 10, "completion_tokens": 5}})
    asyncio.run(amain())
    assert cost_sum(reg, "openai", "gpt-4o-mini", tenant="cm") == pytest.approx((10 * 0.15 + 5 * 0.6) / 1e6)


def test_provider_inferred_and_unpriced_counted_not_zero(srv, reg):
    client = oa(srv)
    srv.model_override["chat"] = "my-private-finetune"
    try:
        @track_cost
        def ask():
            return client.chat.completions.create(model="gpt-4o-mini", messages=MSGS)
        ask()
    finally:
        del srv.model_override["chat"]
    assert reg.get_sample_value("costmeter_unpriced_calls_total",
                                {"provider": "openai", "model": "my-private-finetune"}) == 1
    assert not reg.get_sample_value("cost_request_cost_usd_count", {   # never observed as $0
        "provider": "openai", "model": "my-private-finetune", "endpoint": "unknown", "tenant": "default"})
    assert tokens(reg, "openai", "my-private-finetune")["input"] == 176


def test_cache_hits_record_the_cost_avoided(srv, reg):
    client = oa(srv)
    cache: dict = {}

    @track_cost(provider="openai", tenant="c")
    def ask(q):
        if q in cache:
            costmeter.mark_cache_hit()
            return cache[q]
        costmeter.mark_cache_miss()
        cache[q] = r = client.chat.completions.create(model="gpt-4o-mini", messages=MSGS)
        return r

    for q in ["a", "a", "a", "b"]:
        ask(q)
    lbl = {"provider": "openai", "model": CHAT_MODEL, "tenant": "c"}
    assert reg.get_sample_value("cost_cache_lookups_total", lbl) == 4
    assert reg.get_sample_value("cost_cache_hits_total", lbl) == 2
    assert reg.get_sample_value("cost_cache_savings_usd_total", lbl) == pytest.approx(2 * CHAT_USD, rel=1e-12)
    assert calls(reg, "openai", CHAT_MODEL, "c") == 2                # only misses reached the provider
    assert cost_sum(reg, "openai", CHAT_MODEL, tenant="c") == pytest.approx(2 * CHAT_USD, rel=1e-12)

    saved = cost_tracker.record_cache_lookup("openai", "gpt-4o-mini", True, tenant="c2",
                                             tokens=(1000, 0, 0, 100, 0))
    assert saved == pytest.approx((1000 * 0.15 + 100 * 0.6) / 1e6)
    assert reg.get_sample_value("cost_cache_savings_usd_total",
                                {"provider": "openai", "model": "gpt-4o-mini", "tenant": "c2"}) == pytest.approx(saved)


def test_legacy_cost_tracker_signatures(reg):
    cost_tracker.record_request(endpoint="/v1/chat", provider="openai", cost_usd=0.001)
    cost_tracker.record_request("/v1/chat", "openai", 0.002)
    cost_tracker.record_api_call("openai", "gpt-4o-mini")
    cost_tracker.record_tokens(provider="openai", model="gpt-4o-mini", input_tokens=100, output_tokens=50)
    assert reg.get_sample_value("cost_request_cost_usd_sum", {"provider": "openai", "model": "unknown",
                                                              "endpoint": "/v1/chat", "tenant": "default"}) == \
        pytest.approx(0.003)
    assert calls(reg, "openai", "gpt-4o-mini") == 1
    assert tokens(reg, "openai", "gpt-4o-mini") == {"input": 100, "cached_input": 0, "cache_write": 0,
                                                     "cache_write_1h": 0, "output": 50, "reasoning": 0}


def test_1h_cache_writes_recorded_and_priced(reg):
    # claude-haiku-4-5: input 1, 5-minute write 1.25, 1-hour write 2.00, output 5 per million.
    with track_cost(provider="anthropic", model="claude-haiku-4-5", tenant="h1") as call:
        call.record(input_tokens=100, cache_write_tokens=1000, cache_write_1h_tokens=2000, output_tokens=10)
    assert tokens(reg, "anthropic", "claude-haiku-4-5", "h1") == {
        "input": 100, "cached_input": 0, "cache_write": 1000, "cache_write_1h": 2000, "output": 10, "reasoning": 0}
    assert cost_sum(reg, "anthropic", "claude-haiku-4-5", tenant="h1") == \
        pytest.approx((100 * 1 + 1000 * 1.25 + 2000 * 2 + 10 * 5) / 1e6, rel=1e-12)
    # The five counts of earlier versions (no 1-hour writes) are still accepted.
    got = cost_tracker.record("anthropic", "claude-haiku-4-5", "h5", None, (100, 0, 1000, 10, 0))
    assert got == pytest.approx((100 * 1 + 1000 * 1.25 + 10 * 5) / 1e6, rel=1e-12)
    assert tokens(reg, "anthropic", "claude-haiku-4-5", "h5") == {
        "input": 100, "cached_input": 0, "cache_write": 1000, "cache_write_1h": 0, "output": 10, "reasoning": 0}
