"""Shared by the scrape and memory benchmarks: events that make ~N exported series."""
from __future__ import annotations

PROVIDERS = ("openai", "anthropic", "google", "meta")
MODELS = ("gpt-4o-mini", "claude-sonnet-4-5", "gemini-2.5-flash", "llama-3.3-70b-versatile")
# per (provider, model, tenant): calls, errors, 5 token types, cost histogram (16 buckets + Inf + sum + count)
SERIES_PER_KEY = 1 + 1 + 5 + 19


def events_for(series: int) -> list[dict]:
    keys = series // SERIES_PER_KEY
    out = []
    for k in range(keys):
        p = k % 4
        out.append({"id": f"s{k}", "provider": PROVIDERS[p], "model": MODELS[p], "tenant": f"tenant-{k // 4}",
                    "endpoint": "/v1/chat", "input_tokens": 100 + k, "cached_input_tokens": 10,
                    "cache_write_tokens": 1, "output_tokens": 50, "reasoning_tokens": 5, "error": k % 9 == 0,
                    "cost_usd": 0.0001 * (k % 50 + 1)})
    return out
