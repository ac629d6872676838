"""Token usage from provider responses, by duck typing (no provider imports).

Every extractor returns the six disjoint token counts of ``cost_provider_tokens_total``, in the
order of :data:`costmeter.events.TOKEN_FIELDS`::

    (input, cached_input, cache_write, cache_write_1h, output, reasoning)

Provider conventions differ, and the mapping makes them disjoint so that the
sum is the billable count, with nothing counted twice or dropped:

* OpenAI chat completions / embeddings (``usage.prompt_tokens``...):
  ``prompt_tokens`` INCLUDES ``prompt_tokens_details.cached_tokens`` (and
  ``cache_write_tokens``), ``completion_tokens`` INCLUDES
  ``completion_tokens_details.reasoning_tokens``. So
  input = prompt - cached - cache_write, output = completion - reasoning.
* OpenAI Responses API (``usage.input_tokens`` with ``input_tokens_details``):
  same convention with the Responses field names.
* Anthropic messages (``usage.input_tokens`` without ``input_tokens_details``):
  ``input_tokens`` EXCLUDES ``cache_read_input_tokens`` and
  ``cache_creation_input_tokens``, which are taken as they are;
  ``output_tokens`` includes ``output_tokens_details.thinking_tokens``.
  ``usage.cache_creation`` splits the cache writes by lifetime
  (``ephemeral_5m_input_tokens``, ``ephemeral_1h_input_tokens``, billed at
  1.25x and 2x input): when it is there, cache_write is the 5-minute part and
  cache_write_1h the 1-hour part; without it, every cache write is a
  5-minute one (the default TTL).
* OpenAI-compatible APIs that report cache hits as
  ``prompt_cache_hit_tokens`` (DeepSeek) instead of
  ``prompt_tokens_details.cached_tokens``: the hits are cached_input.

Objects (pydantic models of openai / anthropic) and plain dicts of the same
shape are both accepted.
"""
from __future__ import annotations

from typing import Any

Tokens = tuple  # (input, cached_input, cache_write, cache_write_1h, output, reasoning)
ZERO: Tokens = (0, 0, 0, 0, 0, 0)


# Per class: is it a pydantic model (openai and anthropic types are)? Their fields live in the
# instance __dict__ (undeclared ones the API sent in __pydantic_extra__), so one dict replaces
# several getattr calls, and an absent field costs a dict miss instead of a raised AttributeError
# (microseconds in pydantic's __getattr__).
_PYDANTIC: dict[type, bool] = {}
_EMPTY: dict = {}


class _Attrs:
    """Mapping view of an arbitrary object's attributes."""
    __slots__ = ("o",)

    def __init__(self, o):
        self.o = o

    def get(self, name, default=None):
        return getattr(self.o, name, default)

    def __contains__(self, name) -> bool:
        return getattr(self.o, name, None) is not None


def _m(o):
    """``o`` as something with ``.get(name)``."""
    if o is None:
        return _EMPTY
    t = type(o)
    if t is dict:
        return o
    p = _PYDANTIC.get(t)
    if p is None:
        p = _PYDANTIC[t] = isinstance(getattr(t, "model_fields", None), dict) and hasattr(o, "__dict__")
    if p:
        ex = getattr(o, "__pydantic_extra__", None)
        return {**o.__dict__, **ex} if ex else o.__dict__
    return _Attrs(o)


def _get(o: Any, name: str):
    return _m(o).get(name)


def _int(v) -> int:
    return v if type(v) is int else (int(v) if v else 0)


def tokens_from_usage(u: Any) -> Tokens | None:
    """Map one provider ``usage`` object or dict onto the disjoint token types."""
    if u is None:
        return None
    u = _m(u)
    pt = u.get("prompt_tokens")
    if pt is not None:                                   # OpenAI chat completions, embeddings
        d = _m(u.get("prompt_tokens_details"))
        cached = _int(d.get("cached_tokens")) or _int(u.get("prompt_cache_hit_tokens"))
        cwrite = _int(d.get("cache_write_tokens"))
        ct = _int(u.get("completion_tokens"))
        r = min(_int(_m(u.get("completion_tokens_details")).get("reasoning_tokens")), ct)
        return (max(_int(pt) - cached - cwrite, 0), cached, cwrite, 0, ct - r, r)
    it = u.get("input_tokens")
    ot = u.get("output_tokens")
    if it is None and ot is None:
        return None
    it, ot = _int(it), _int(ot)
    od = _m(u.get("output_tokens_details"))
    idet = u.get("input_tokens_details")
    if idet is not None:                                  # OpenAI Responses: input includes cached
        idet = _m(idet)
        cached = _int(idet.get("cached_tokens"))
        cwrite = _int(idet.get("cache_write_tokens"))
        inp = max(it - cached - cwrite, 0)
        r = _int(od.get("reasoning_tokens"))
        cw1h = 0
    else:                                                 # Anthropic: input excludes cache reads/writes
        cached = _int(u.get("cache_read_input_tokens"))
        cwrite = _int(u.get("cache_creation_input_tokens"))
        cw1h = 0
        split = u.get("cache_creation")
        if split is not None:                             # by TTL: 5-minute and 1-hour writes
            split = _m(split)
            w5, w1h = split.get("ephemeral_5m_input_tokens"), split.get("ephemeral_1h_input_tokens")
            if w5 is not None or w1h is not None:
                cwrite, cw1h = _int(w5), _int(w1h)
        inp = it
        r = _int(od.get("thinking_tokens")) or _int(od.get("reasoning_tokens"))
    r = min(r, ot)
    return (inp, cached, cwrite, cw1h, ot - r, r)


def extract(resp: Any) -> tuple[str | None, Tokens | None]:
    """(model, tokens) from a whole (non-streamed) response or a bare usage object/dict."""
    if resp is None:
        return None, None
    r = _m(resp)
    u = r.get("usage")
    model = r.get("model")
    if type(model) is not str:
        model = None
    if u is None:
        if "prompt_tokens" in r or "input_tokens" in r or "output_tokens" in r:
            return model, tokens_from_usage(r)            # a bare usage object or dict
        return model, None
    return model, tokens_from_usage(u)


class StreamUsage:
    """Accumulates usage over the chunks/events of one streamed response.

    * OpenAI chat completion chunks: ``usage`` is null on every chunk except the
      last one (``stream_options={"include_usage": True}``); the last one wins.
    * OpenAI Responses events: ``response.completed`` / ``response.incomplete`` /
      ``response.failed`` carry the whole response with its usage.
    * Anthropic events: ``message_start`` carries ``message.usage`` (input and
      cache counts, output so far); ``message_delta.usage`` carries CUMULATIVE
      counts, so each non-null field replaces the one before.
    """

    __slots__ = ("model", "tokens", "_anthropic")

    def __init__(self) -> None:
        self.model: str | None = None
        self.tokens: Tokens | None = None
        self._anthropic: dict | None = None

    def feed(self, ev: Any) -> None:
        typ = _get(ev, "type")
        if typ is None or typ.__class__ is not str:
            u = _get(ev, "usage")
            if self.model is None:
                m = _get(ev, "model")
                if m.__class__ is str:
                    self.model = m
            if u is not None:
                self.tokens = tokens_from_usage(u)
            return
        if typ == "message_start":
            msg = _get(ev, "message")
            m = _get(msg, "model")
            if m.__class__ is str:
                self.model = m
            self._anthropic = {}
            self._merge(_get(msg, "usage"))
        elif typ == "message_delta":
            if self._anthropic is None:
                self._anthropic = {}
            self._merge(_get(ev, "usage"))
        elif typ in ("response.completed", "response.incomplete", "response.failed"):
            model, tokens = extract(_get(ev, "response"))
            if model:
                self.model = model
            if tokens is not None:
                self.tokens = tokens
        elif typ == "chat.completion.chunk" or _get(ev, "usage") is not None:
            u = _get(ev, "usage")
            m = _get(ev, "model")
            if m.__class__ is str:
                self.model = m
            if u is not None:
                self.tokens = tokens_from_usage(u)

    def _merge(self, u: Any) -> None:
        if u is None:
            return
        a = self._anthropic
        for f in ("input_tokens", "output_tokens", "cache_creation_input_tokens", "cache_read_input_tokens"):
            v = _get(u, f)
            if v is not None:
                a[f] = v
        cc = _get(u, "cache_creation")
        if cc is not None:
            a["cache_creation"] = {k: _get(cc, k) for k in ("ephemeral_5m_input_tokens", "ephemeral_1h_input_tokens")}
        od = _get(u, "output_tokens_details")
        if od is not None:
            a["output_tokens_details"] = {"thinking_tokens": _get(od, "thinking_tokens")}
        self.tokens = tokens_from_usage(a)
