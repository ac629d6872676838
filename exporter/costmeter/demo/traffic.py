"""The traffic of ``costmeter demo``: a small company's LLM calls, made through the real SDK.

It doubles as an example of instrumenting code. The "providers" are local
functions that return response objects of OpenAI's and Anthropic's shapes
(plain dicts, read by the SDK exactly as it reads the real clients' objects);
every call goes through ``@track_cost``, a response cache through
``mark_cache_hit`` / ``mark_cache_miss``, and the SDK ships the events to the
exporter in the background (shipped mode)::

    @track_cost(provider="openai", endpoint="/v1/chat")
    def chat(call):
        return openai_client.chat.completions.create(model=call.model, ...)

The scenario (all of it drawn from one seeded random generator, so ``--seed``
repeats it):

* five tenants, the four of config/budgets.yaml and ``acme`` (on the tenant
  defaults), on OpenAI, Anthropic and Google models;
* a daily rhythm (a working-day peak at 14:00 UTC, quiet nights, weekends at
  half);
* ``trial-tier`` grows over the month and heads over its $1/day budget;
* one anomalous spike: ``startup-tier`` at 12x its rate, for an hour three
  days ago in the backfill, and for the first ``SPIKE_SECONDS`` of every
  hour of live traffic after the first 20 seconds;
* a support-answer endpoint behind a response cache with a 60 % hit rate;
* about 2 % of calls fail (rate limits, timeouts);
* ``acme`` also calls ``selfhosted/acme-distill-7b``, a model with no price.
"""
from __future__ import annotations

import math
import random
import time
from dataclasses import dataclass

DAY = 86400.0
CACHE_ENDPOINT = "/v1/support/answer"
CACHE_HIT_RATIO = 0.60       # the target cache hit rate the dashboards colour green
ERROR_RATIO = 0.02
SPIKE_TENANT = "startup-tier"
SPIKE_FACTOR = 12.0
SPIKE_SECONDS = 120.0
OVER_BUDGET_TENANT = "trial-tier"
UNPRICED = ("selfhosted", "acme-distill-7b")


@dataclass(frozen=True)
class Route:
    """One kind of call a tenant makes: provider, model, endpoint, prompt and answer sizes."""
    provider: str
    model: str
    endpoint: str
    prompt: int            # mean prompt tokens
    answer: int            # mean output tokens
    weight: float          # share of the tenant's calls
    reasoning: int = 0     # mean reasoning tokens (o-series)


@dataclass(frozen=True)
class Tenant:
    name: str
    calls_per_hour: float  # at the daily peak, on a weekday
    routes: tuple


TENANTS = (
    Tenant("enterprise-tier", 40.0, (
        Route("anthropic", "claude-sonnet-4-5", "/v1/chat", 3000, 700, 0.5),
        Route("openai", "gpt-4o", "/v1/summarize", 5000, 400, 0.3),
        Route("openai", "gpt-4o-mini", CACHE_ENDPOINT, 900, 250, 0.2),
    )),
    Tenant("premium-tier", 60.0, (
        Route("openai", "gpt-4o-mini", "/v1/chat", 1500, 400, 0.5),
        Route("anthropic", "claude-haiku-4-5", CACHE_ENDPOINT, 1200, 300, 0.3),
        Route("openai", "o4-mini", "/v1/reason", 1200, 300, 0.2, reasoning=900),
    )),
    Tenant("startup-tier", 25.0, (
        Route("google", "gemini-2.5-flash", "/v1/chat", 2000, 500, 0.6),
        Route("openai", "gpt-4o-mini", CACHE_ENDPOINT, 900, 250, 0.4),
    )),
    Tenant("trial-tier", 9.0, (
        Route("openai", "gpt-4o", "/v1/chat", 2500, 600, 1.0),
    )),
    Tenant("acme", 15.0, (
        Route("anthropic", "claude-sonnet-4-5", "/v1/chat", 2500, 500, 0.6),
        Route("openai", "gpt-4o-mini", CACHE_ENDPOINT, 800, 200, 0.3),
        Route(*UNPRICED, "/v1/classify", 600, 20, 0.1),
    )),
)


@dataclass(frozen=True)
class Call:
    """One call, fully decided in advance (so a seed repeats the traffic)."""
    tenant: str
    route: Route
    prompt_tokens: int
    cached_tokens: int        # prompt tokens served from the provider's prompt cache
    output_tokens: int
    reasoning_tokens: int
    latency: float            # seconds the provider takes
    error: bool
    cache_lookup: bool        # the endpoint has a response cache in front of the provider
    cache_hit: bool


def rhythm(ts: float) -> float:
    """0-1: how busy the hour is. Peak at 14:00 UTC, nights at 0.15, weekends at half."""
    hour = (ts % DAY) / 3600.0
    day_curve = 0.15 + 0.85 * math.exp(-((hour - 14.0) / 4.0) ** 2)
    weekday = time.gmtime(ts).tm_wday
    return day_curve * (0.5 if weekday >= 5 else 1.0)


def trend(tenant: str, ts: float, now: float) -> float:
    """Growth: the over-budget tenant doubles its usage over 30 days, ending at today's rate."""
    if tenant != OVER_BUDGET_TENANT:
        return 1.0
    age_days = max(0.0, (now - ts) / DAY)
    return 1.0 / (1.0 + age_days / 30.0)


def spike(tenant: str, ts: float, now: float, live_start: float | None) -> float:
    if tenant != SPIKE_TENANT:
        return 1.0
    if live_start is None:              # backfill: one hour, three days ago, at the afternoon peak
        day = math.floor((now - 3 * DAY) / DAY) * DAY
        return SPIKE_FACTOR if day + 14 * 3600 <= ts < day + 15 * 3600 else 1.0
    since = ts - live_start - 20.0
    return SPIKE_FACTOR if since >= 0 and since % 3600.0 < SPIKE_SECONDS else 1.0


def rate_per_hour(tenant: Tenant, ts: float, now: float, live_start: float | None = None) -> float:
    return tenant.calls_per_hour * rhythm(ts) * trend(tenant.name, ts, now) * spike(tenant.name, ts, now, live_start)


def draw_call(rng: random.Random, tenant: Tenant) -> Call:
    routes = tenant.routes
    route = rng.choices(routes, weights=[r.weight for r in routes])[0]
    prompt = max(1, int(rng.lognormvariate(math.log(route.prompt), 0.5)))
    cached = int(prompt * rng.choice((0.0, 0.0, 0.5, 0.8))) if route.provider != "selfhosted" else 0
    output = max(1, int(rng.lognormvariate(math.log(route.answer), 0.6)))
    reasoning = int(rng.lognormvariate(math.log(route.reasoning), 0.5)) if route.reasoning else 0
    latency = min(30.0, rng.lognormvariate(math.log(0.25 + (output + reasoning) / 250.0), 0.4))
    lookup = route.endpoint == CACHE_ENDPOINT
    hit = lookup and rng.random() < CACHE_HIT_RATIO
    error = not hit and rng.random() < ERROR_RATIO
    return Call(tenant.name, route, prompt, cached, output, reasoning, latency, error, lookup, hit)


def pick_tenant(rng: random.Random, ts: float, now: float, live_start: float | None) -> Tenant:
    weights = [rate_per_hour(t, ts, now, live_start) for t in TENANTS]
    return rng.choices(TENANTS, weights=weights)[0]


def total_rate_per_hour(ts: float, now: float, live_start: float | None = None) -> float:
    return sum(rate_per_hour(t, ts, now, live_start) for t in TENANTS)


# ---- the provider's answer, in the vendor's own response shape ----------------------------------

def response(call: Call) -> dict:
    r = call.route
    if r.provider == "anthropic":
        # Anthropic: input_tokens excludes cache reads and writes.
        return {"type": "message", "role": "assistant", "model": r.model, "content": [{"type": "text", "text": "..."}],
                "usage": {"input_tokens": call.prompt_tokens - call.cached_tokens,
                          "cache_read_input_tokens": call.cached_tokens, "cache_creation_input_tokens": 0,
                          "output_tokens": call.output_tokens}}
    # OpenAI's chat completion (Google and self-hosted servers speak the same shape):
    # prompt_tokens includes cached tokens, completion_tokens includes reasoning tokens.
    return {"object": "chat.completion", "model": r.model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "..."}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": call.prompt_tokens,
                      "completion_tokens": call.output_tokens + call.reasoning_tokens,
                      "total_tokens": call.prompt_tokens + call.output_tokens + call.reasoning_tokens,
                      "prompt_tokens_details": {"cached_tokens": call.cached_tokens},
                      "completion_tokens_details": {"reasoning_tokens": call.reasoning_tokens}}}


class ProviderError(RuntimeError):
    """What a provider call that fails raises (429s and timeouts happen)."""
