"""Token usage from provider responses, by duck typing (no provider imports).

Every extractor returns the five disjoint token counts of SPEC.md, in the
order of :data:`costmeter.events.TOKEN_FIELDS`::

    (input, cached_input, cache_write, output, reasoning)

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

Objects (pydantic models of openai / anthropic) and plain dicts of the same
shape are both accepted.
"""
from __future__ import annotations

from typing import Any

Tokens = tuple  # (input, cached_input, cache_write, output, reasoning)
ZERO: Tokens = (0, 0, 0, 0, 0)


def _get(o: Any, name: str):
    if o is None:
        return None
    if type(o) is dict:
        return o.get(name)
    return getattr(o, name, None)


def _int(v) -> int:
    return v if type(v) is int else (int(v) if v else 0)


def tokens_from_usage(u: Any) -> Tokens | None:
    """Map one provider ``usage`` object or dict onto the disjoint token types."""
    if u is None:
        return None
    pt = _get(u, "prompt_tokens")
    if pt is not None:                                   # OpenAI chat completions, embeddings
        d = _get(u, "prompt_tokens_details")
        cached = _int(_get(d, "cached_tokens"))
        cwrite = _int(_get(d, "cache_write_tokens"))
        ct = _int(_get(u, "completion_tokens"))
        r = min(_int(_get(_get(u, "completion_tokens_details"), "reasoning_tokens")), ct)
        return (max(_int(pt) - cached - cwrite, 0), cached, cwrite, ct - r, r)
    it = _get(u, "input_tokens")
    ot = _get(u, "output_tokens")
    if it is None and ot is None:
        return None
    it, ot = _int(it), _int(ot)
    od = _get(u, "output_tokens_details")
    idet = _get(u, "input_tokens_details")
    if idet is not None:                                  # OpenAI Responses: input includes cached
        cached = _int(_get(idet, "cached_tokens"))
        cwrite = _int(_get(idet, "cache_write_tokens"))
        inp = max(it - cached - cwrite, 0)
    else:                                                 # Anthropic: input excludes cache reads/writes
        cached = _int(_get(u, "cache_read_input_tokens"))
        cwrite = _int(_get(u, "cache_creation_input_tokens"))
        inp = it
    r = _int(_get(od, "reasoning_tokens")) or _int(_get(od, "thinking_tokens"))
    r = min(r, ot)
    return (inp, cached, cwrite, ot - r, r)


def extract(resp: Any) -> tuple[str | None, Tokens | None]:
    """(model, tokens) from a whole (non-streamed) response or a bare usage object/dict."""
    if resp is None:
        return None, None
    if type(resp) is dict:
        u = resp.get("usage")
        if u is None and ("prompt_tokens" in resp or "input_tokens" in resp or "output_tokens" in resp):
            return resp.get("model"), tokens_from_usage(resp)
        return resp.get("model"), tokens_from_usage(u)
    u = getattr(resp, "usage", None)
    if u is None:
        # a bare usage object (e.g. CompletionUsage) passed on its own
        if getattr(resp, "prompt_tokens", None) is not None or getattr(resp, "input_tokens", None) is not None:
            return None, tokens_from_usage(resp)
        return getattr(resp, "model", None), None
    model = getattr(resp, "model", None)
    return (model if type(model) is str else None), tokens_from_usage(u)


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
        if type(ev) is dict:
            typ = ev.get("type")
        else:
            typ = getattr(ev, "type", None)
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
        od = _get(u, "output_tokens_details")
        if od is not None:
            a["output_tokens_details"] = {"thinking_tokens": _get(od, "thinking_tokens")}
        self.tokens = tokens_from_usage(a)
