"""``track_cost``: the decorator, its context-manager form, and stream wrappers.

    @track_cost(provider="openai", endpoint="/v1/chat", tenant=lambda user, q: user.org)
    def ask(user, q):
        return client.chat.completions.create(model="gpt-4o-mini", messages=[...], max_tokens=200)

Per call: tenant and endpoint come from the argument (a string, or a callable
given the call's own arguments), else from :mod:`costmeter.sdk.context`, else
``default`` / ``unknown``. The function's result is read for usage and model
(:mod:`costmeter.sdk.usage`); the provider is the argument or, if absent, the
package the response type comes from. Exceptions propagate unchanged and are
recorded as errors. A result that is an iterator or async iterator (OpenAI
``Stream``/``AsyncStream``, Anthropic streams, generators) is returned
wrapped: usage is recorded once, when the stream is exhausted, closed, left
through ``with``, fails, or is garbage collected unfinished.

``enforce=True`` reserves the call's estimated maximum cost before the
function runs and raises :class:`BudgetExceededError` instead of calling it
when a budget would be exceeded (see :mod:`costmeter.sdk.enforcement`).

Context-manager form, for code that is not one function::

    with track_cost(provider="anthropic", tenant="acme", endpoint="/summarize") as call:
        msg = client.messages.create(...)
        call.record(msg)            # returns msg (or a wrapped stream)

The block is one call: responses given to ``call.record`` add up, and it is
recorded on leaving the block (as an error if an exception escapes).
"""
from __future__ import annotations

import functools
import inspect
import logging
import time
from contextvars import ContextVar
from typing import Any, Callable

from costmeter.sdk.context import current_endpoint, current_tenant
from costmeter.sdk.enforcement import BudgetExceededError, estimate_prompt_tokens, max_output_tokens
from costmeter.events import DEFAULT_ENDPOINT, DEFAULT_MODEL, DEFAULT_TENANT
from costmeter.sdk.recorder import cost_tracker
from costmeter.sdk.usage import StreamUsage, extract

log = logging.getLogger("costmeter")
_perf = time.perf_counter

# per result type: 0 plain value, 1 sync iterator, 2 async iterator
_KIND: dict[type, int] = {dict: 0, str: 0, bytes: 0, list: 0, type(None): 0}
_PROVIDER_OF_TYPE: dict[type, str | None] = {}
_current_call: ContextVar[list | None] = ContextVar("costmeter_call", default=None)
_warned_no_usage: set = set()


def _kind(t: type) -> int:
    k = _KIND.get(t)
    if k is None:
        if getattr(t, "__anext__", None) is not None:
            k = 2
        elif getattr(t, "__next__", None) is not None:
            k = 1
        else:
            k = 0
        _KIND[t] = k
    return k


def _provider_of(t: type) -> str | None:
    p = _PROVIDER_OF_TYPE.get(t, 0)
    if p == 0:
        mod = getattr(t, "__module__", "") or ""
        root = mod.split(".", 1)[0]
        p = root if root in ("openai", "anthropic") else None
        _PROVIDER_OF_TYPE[t] = p
    return p


def mark_cache_hit(saved_cost_usd: float | None = None) -> None:
    """Inside a tracked call: the result came from a response cache, not the provider.

    The call is recorded as a cache hit whose saved cost is ``saved_cost_usd``, or the price of
    the returned response's usage. Outside a tracked call use ``cost_tracker.record_cache_lookup``.
    """
    c = _current_call.get()
    if c is None:
        raise RuntimeError("mark_cache_hit() is only meaningful inside a call tracked by track_cost")
    c[0] = True
    c[1] = saved_cost_usd


def mark_cache_miss() -> None:
    """Inside a tracked call: a response cache was looked up and missed (the provider is called)."""
    c = _current_call.get()
    if c is None:
        raise RuntimeError("mark_cache_miss() is only meaningful inside a call tracked by track_cost")
    c[0] = False


class _Spec:
    """The arguments of one ``track_cost(...)``; a decorator and a context-manager factory."""

    def __init__(self, provider, model, tenant, endpoint, enforce, fail_closed, estimate_usd,
                 max_output_tokens_default, batch, record_args):
        self.provider = provider
        self.model = model
        self.tenant = tenant
        self.endpoint = endpoint
        self.enforce = enforce
        self.fail_closed = fail_closed
        self.estimate_usd = estimate_usd
        self.max_out = max_output_tokens_default
        self.batch = batch
        self._cm_stack: ContextVar[list] = ContextVar("costmeter_cm", default=[])

    # ---- labels -----------------------------------------------------------------------------

    def _labels(self, args, kwargs):
        t = self.tenant
        if t is None:
            tenant = current_tenant.get() or DEFAULT_TENANT
        elif t.__class__ is str:
            tenant = t
        else:
            tenant = t(*args, **kwargs) or DEFAULT_TENANT
        e = self.endpoint
        if e is None:
            endpoint = current_endpoint.get() or DEFAULT_ENDPOINT
        elif e.__class__ is str:
            endpoint = e
        else:
            endpoint = e(*args, **kwargs) or DEFAULT_ENDPOINT
        return tenant, endpoint

    def _reserve(self, tenant, endpoint, args, kwargs):
        enf = cost_tracker.enforcer if cost_tracker._ready else (cost_tracker._ensure() or cost_tracker.enforcer)
        if enf is None or enf.source is None:
            return None
        provider = self.provider or "unknown"
        model = kwargs.get("model") or self.model
        est = self.estimate_usd
        if est is None:
            amount = None
            if model:
                amount = cost_tracker.pricing.max_cost(provider, model, estimate_prompt_tokens(kwargs),
                                                       max_output_tokens(kwargs, self.max_out))
        elif callable(est):
            amount = est(*args, **kwargs)
        else:
            amount = est
        return enf.reserve(tenant, provider, model, endpoint, amount or 0.0, self.fail_closed)

    # ---- recording --------------------------------------------------------------------------

    def _record(self, result, kwargs, tenant, endpoint, duration, error, res, cache, tokens=None, model=None,
                provider=None):
        provider = self.provider or provider
        if result is not None:
            rm, tk = extract(result)
            if tk is not None:
                tokens = tk
            if rm:
                model = rm
            if provider is None:
                provider = _provider_of(type(result))
        provider = provider or "unknown"
        model = model or (kwargs.get("model") if kwargs else None) or self.model or DEFAULT_MODEL
        hit = None if cache is None else cache[0]
        if hit:
            saved = cache[1]
            if saved is None:
                saved = (cost_tracker.price(provider, model, tokens, self.batch) or 0.0) if tokens else 0.0
            enf = cost_tracker.enforcer
            if res is not None and enf is not None:
                enf.settle(res, 0.0)
            cost_tracker.record(provider, model, tenant, endpoint, None, duration, error, cache_hit=True,
                                saved_cost_usd=saved, batch=self.batch)
            return
        if res is None:
            cost_tracker.record(provider, model, tenant, endpoint, tokens, duration, error, cache_hit=hit,
                                batch=self.batch)
            return
        cost = cost_tracker.price(provider, model, tokens, self.batch) if tokens is not None else 0.0
        pend = cost_tracker.enforcer.settle(res, cost)
        cost_tracker.record(provider, model, tenant, endpoint, tokens, duration, error, cost_usd=cost, priced=True,
                            cache_hit=hit, batch=self.batch, pend=pend)

    def _release(self, res):
        if res is not None and cost_tracker.enforcer is not None:
            cost_tracker.enforcer.settle(res, 0.0)

    # ---- decorator --------------------------------------------------------------------------

    def __call__(self, fn: Callable) -> Callable:
        spec = self
        enforce = self.enforce
        record = self._record
        labels = self._labels
        cur = _current_call

        if inspect.iscoroutinefunction(fn):
            @functools.wraps(fn)
            async def async_wrapper(*args, **kwargs):
                tenant, endpoint = labels(args, kwargs)
                res = spec._reserve(tenant, endpoint, args, kwargs) if enforce else None
                cache = [None, None]
                tok = cur.set(cache)
                t0 = _perf()
                try:
                    result = await fn(*args, **kwargs)
                except BaseException:
                    cur.reset(tok)
                    record(None, kwargs, tenant, endpoint, _perf() - t0, True, res, cache)
                    raise
                cur.reset(tok)
                k = _KIND.get(type(result))
                if k is None:
                    k = _kind(type(result))
                if k:
                    return _wrap_stream(result, k, spec, kwargs, tenant, endpoint, t0, res, cache)
                record(result, kwargs, tenant, endpoint, _perf() - t0, False, res, cache)
                return result
            return async_wrapper

        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            tenant, endpoint = labels(args, kwargs)
            res = spec._reserve(tenant, endpoint, args, kwargs) if enforce else None
            cache = [None, None]
            tok = cur.set(cache)
            t0 = _perf()
            try:
                result = fn(*args, **kwargs)
            except BaseException:
                cur.reset(tok)
                record(None, kwargs, tenant, endpoint, _perf() - t0, True, res, cache)
                raise
            cur.reset(tok)
            k = _KIND.get(type(result))
            if k is None:
                k = _kind(type(result))
            if k:
                return _wrap_stream(result, k, spec, kwargs, tenant, endpoint, t0, res, cache)
            record(result, kwargs, tenant, endpoint, _perf() - t0, False, res, cache)
            return result
        return wrapper

    # ---- context manager --------------------------------------------------------------------

    def __enter__(self) -> "TrackedBlock":
        b = TrackedBlock(self)
        self._cm_stack.set(self._cm_stack.get() + [b])
        b._start()
        return b

    def __exit__(self, et, ev, tb) -> None:
        stack = self._cm_stack.get()
        b = stack[-1]
        self._cm_stack.set(stack[:-1])
        b._end(et is not None)

    async def __aenter__(self) -> "TrackedBlock":
        return self.__enter__()

    async def __aexit__(self, et, ev, tb) -> None:
        self.__exit__(et, ev, tb)


class TrackedBlock:
    """One call made by a ``with track_cost(...)`` block."""

    def __init__(self, spec: _Spec):
        self.spec = spec
        self.model: str | None = spec.model
        self.tokens: list[int] | None = None
        self._streams = 0
        self._done = False
        self._error = False
        self._cache = [None, None]

    def _start(self) -> None:
        s = self.spec
        self.tenant, self.endpoint = s._labels((), {})
        self._res = None
        if s.enforce:
            self._res = s._reserve(self.tenant, self.endpoint, (), {"model": s.model} if s.model else {})
        self._tok = _current_call.set(self._cache)
        self._t0 = _perf()

    def record(self, response: Any = None, *, model: str | None = None, input_tokens: int = 0,
               cached_input_tokens: int = 0, cache_write_tokens: int = 0, output_tokens: int = 0,
               reasoning_tokens: int = 0, cache_write_1h_tokens: int = 0):
        """Add a response's usage (or explicit disjoint token counts) to this call; returns the
        response, wrapped if it is a stream (the call is then recorded when the stream ends)."""
        if response is not None:
            k = _kind(type(response))
            if k:
                self._streams += 1
                return _wrap_stream(response, k, self.spec, None, self.tenant, self.endpoint, self._t0, None,
                                    self._cache, block=self)
            rm, tk = extract(response)
            if rm:
                self.model = rm
            if tk is not None:
                self._add(tk)
            if getattr(self, "provider", None) is None:
                self.provider = _provider_of(type(response))
        if model:
            self.model = model
        if input_tokens or cached_input_tokens or cache_write_tokens or cache_write_1h_tokens or output_tokens \
                or reasoning_tokens:
            self._add((input_tokens, cached_input_tokens, cache_write_tokens, cache_write_1h_tokens, output_tokens,
                       reasoning_tokens))
        return response

    def _add(self, tk) -> None:
        if self.tokens is None:
            self.tokens = [0, 0, 0, 0, 0, 0]
        for i in range(6):
            self.tokens[i] += tk[i]

    def _stream_done(self, model, tokens, error) -> None:
        if model:
            self.model = model
        if tokens is not None:
            self._add(tokens)
        self._error = self._error or error
        self._streams -= 1
        if self._done and self._streams == 0:
            self._flush()

    def _end(self, error: bool) -> None:
        try:
            _current_call.reset(self._tok)
        except ValueError:
            pass
        self._error = self._error or error
        self._done = True
        if self._streams == 0:
            self._flush()

    def _flush(self) -> None:
        self.spec._record(None, None, self.tenant, self.endpoint, _perf() - self._t0, self._error, self._res,
                          self._cache, tokens=tuple(self.tokens) if self.tokens else None, model=self.model,
                          provider=getattr(self, "provider", None))


# ---- streams -----------------------------------------------------------------------------------

def _wrap_stream(result, kind, spec, kwargs, tenant, endpoint, t0, res, cache, block=None):
    cls = _TrackedAsyncStream if kind == 2 else _TrackedStream
    return cls(result, spec, kwargs, tenant, endpoint, t0, res, cache, block)


class _StreamBase:
    def __init__(self, inner, spec, kwargs, tenant, endpoint, t0, res, cache, block):
        self._inner = inner
        self._it = None
        self._acc = StreamUsage()
        self._done = False
        self._ctx = (spec, kwargs, tenant, endpoint, t0, res, cache, block)

    def _finish(self, error: bool) -> None:
        if self._done:
            return
        self._done = True
        spec, kwargs, tenant, endpoint, t0, res, cache, block = self._ctx
        acc = self._acc
        if acc.tokens is None and not error:
            key = (spec.provider, id(spec))
            if key not in _warned_no_usage:
                _warned_no_usage.add(key)
                log.warning("costmeter: a stream ended without usage; for OpenAI chat completions pass "
                            "stream_options={'include_usage': True} (tokens recorded as 0)")
        if block is not None:
            block._stream_done(acc.model, acc.tokens, error)
            return
        try:
            spec._record(None, kwargs, tenant, endpoint, _perf() - t0, error, res, cache,
                         tokens=acc.tokens, model=acc.model, provider=_provider_of(type(self._inner)))
        except Exception:  # noqa: BLE001 - recording must never break the app's stream
            log.exception("costmeter: recording a stream failed")

    def __getattr__(self, name):
        return getattr(self._inner, name)

    def __del__(self):
        try:
            if not self._done:
                self._finish(False)
        except Exception:  # noqa: BLE001
            pass


class _TrackedStream(_StreamBase):
    """A sync stream that records its usage once, when it ends."""

    def __iter__(self):
        return self

    def __next__(self):
        it = self._it
        if it is None:
            it = self._it = iter(self._inner)
        try:
            chunk = next(it)
        except StopIteration:
            self._finish(False)
            raise
        except BaseException:
            self._finish(True)
            raise
        self._acc.feed(chunk)
        return chunk

    def close(self) -> None:
        try:
            c = getattr(self._inner, "close", None)
            if c is not None:
                c()
        finally:
            self._finish(False)

    def __enter__(self):
        e = getattr(self._inner, "__enter__", None)
        if e is not None:
            e()
        return self

    def __exit__(self, et, ev, tb):
        try:
            x = getattr(self._inner, "__exit__", None)
            if x is not None:
                return x(et, ev, tb)
            c = getattr(self._inner, "close", None)
            if c is not None:
                c()
        finally:
            self._finish(et is not None)


class _TrackedAsyncStream(_StreamBase):
    """An async stream that records its usage once, when it ends."""

    def __aiter__(self):
        return self

    async def __anext__(self):
        it = self._it
        if it is None:
            it = self._it = self._inner.__aiter__()
        try:
            chunk = await it.__anext__()
        except StopAsyncIteration:
            self._finish(False)
            raise
        except BaseException:
            self._finish(True)
            raise
        self._acc.feed(chunk)
        return chunk

    async def aclose(self) -> None:
        try:
            c = getattr(self._inner, "aclose", None) or getattr(self._inner, "close", None)
            if c is not None:
                r = c()
                if inspect.isawaitable(r):
                    await r
        finally:
            self._finish(False)

    close = aclose      # openai/anthropic AsyncStream.close() is a coroutine too

    async def __aenter__(self):
        e = getattr(self._inner, "__aenter__", None)
        if e is not None:
            await e()
        return self

    async def __aexit__(self, et, ev, tb):
        try:
            x = getattr(self._inner, "__aexit__", None)
            if x is not None:
                return await x(et, ev, tb)
            c = getattr(self._inner, "aclose", None) or getattr(self._inner, "close", None)
            if c is not None:
                r = c()
                if inspect.isawaitable(r):
                    await r
        finally:
            self._finish(et is not None)


def track_cost(fn: Callable | str | None = None, /, *, provider: str | None = None, model: str | None = None,
               tenant: str | Callable[..., str] | None = None, endpoint: str | Callable[..., str] | None = None,
               enforce: bool = False, fail_closed: bool | None = None,
               estimate_usd: float | Callable[..., float] | None = None, max_output_tokens: int = 4096,
               batch: bool = False):
    """Track the cost of a function's provider calls (decorator) or of a block (``with``).

    provider     "openai", "anthropic", ...; default: the package of the response's type
    model        used when the response names none (the response's own model wins)
    tenant       a string, a callable given the call's arguments, or None (context, else "default")
    endpoint     the same, for the endpoint label (default "unknown")
    enforce      check budgets first; raise BudgetExceededError instead of calling when exceeded
    fail_closed  deny when the budget state cannot be read (default: the configured value, fail open)
    estimate_usd the reservation, or a callable of the call's arguments; default: the model's
                 max_cost for the prompt estimate and max_tokens (else ``max_output_tokens``)
    batch        the call goes through a provider's batch API (priced with its discount)
    """
    if isinstance(fn, str):
        provider, fn = fn, None
    spec = _Spec(provider, model, tenant, endpoint, enforce, fail_closed, estimate_usd, max_output_tokens, batch,
                 None)
    if fn is not None:
        return spec(fn)
    return spec


__all__ = ["track_cost", "mark_cache_hit", "mark_cache_miss", "TrackedBlock", "BudgetExceededError"]
