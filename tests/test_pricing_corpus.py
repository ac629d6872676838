"""A corpus of realistic calls priced by the shipped table, each cost computed by hand.

One rule per block: 1-hour cache writes, long-context tiers (both sides of
each threshold), batch with cached input, names as users send them (gateway
prefixes, provider aliases, Bedrock ids, snapshots), the names that must stay
unpriced rather than take a lookalike's price, the new providers, and the
current OpenAI, Anthropic and Google models added after the comparison with
LiteLLM's table of 2026-07-24 (docs/pricing.md). The last test sends part of
the corpus through a real `costmeter serve`.
"""
from __future__ import annotations

import re
from datetime import datetime, timezone

import pytest
import requests
import yaml

from costmeter.config.loader import ConfigError
from costmeter.pricing import PricingTable
from exporter_support import ExporterProcess, parse_metrics, sample
from test_pricing import PACKAGE_DATA


def ts(s: str) -> float:
    return datetime.fromisoformat(s).replace(tzinfo=timezone.utc).timestamp()


@pytest.fixture(scope="module")
def table() -> PricingTable:
    return PricingTable.load()


M = 1e6
# (provider, model, tokens, batch, expected USD or None for unpriced), tokens as
# (input, cached_input, cache_write, cache_write_1h, output, reasoning).
CORPUS = [
    # -- Anthropic 1-hour cache writes: 2x input, 5-minute writes 1.25x, reads 0.1x.
    ("anthropic", "claude-sonnet-4-5-20250929", (1000, 10000, 2000, 3000, 500, 0), False,
     (1000 * 3 + 10000 * 0.30 + 2000 * 3.75 + 3000 * 6.00 + 500 * 15) / M),          # 0.039
    ("anthropic", "claude-opus-4-1-20250805", (10, 0, 0, 10000, 100, 0), False,
     (10 * 15 + 10000 * 30 + 100 * 75) / M),
    ("anthropic", "claude-haiku-4-5-20251001", (1000, 5000, 0, 10000, 1000, 0), True,   # batch stacks with caching
     (1000 * 1 + 5000 * 0.10 + 10000 * 2.00 + 1000 * 5) * 0.5 / M),
    # -- Long context, claude-sonnet-4-5 above 200k prompt tokens (input + cached + both cache writes).
    ("anthropic", "claude-sonnet-4-5", (150000, 40000, 5000, 5000, 1000, 0), False,       # exactly 200,000
     (150000 * 3 + 40000 * 0.30 + 5000 * 3.75 + 5000 * 6.00 + 1000 * 15) / M),
    ("anthropic", "claude-sonnet-4-5", (150001, 40000, 5000, 5000, 1000, 0), False,       # 200,001: all at the tier
     (150001 * 6 + 40000 * 0.60 + 5000 * 7.50 + 5000 * 12.00 + 1000 * 22.50) / M),
    ("anthropic", "claude-sonnet-4-5", (195001, 0, 0, 5000, 10, 0), False,               # 1h writes count too
     (195001 * 6 + 5000 * 12.00 + 10 * 22.50) / M),
    # -- gpt-5.4 and gpt-5.5 above 272k: 2x input (and cached), 1.5x output.
    ("openai", "gpt-5.4", (262000, 10000, 0, 0, 1000, 0), False,
     (262000 * 2.50 + 10000 * 0.25 + 1000 * 15) / M),
    ("openai", "gpt-5.4", (262001, 10000, 0, 0, 1000, 0), False,
     (262001 * 5.00 + 10000 * 0.50 + 1000 * 22.50) / M),
    ("openai", "gpt-5.5", (272000, 0, 0, 0, 2000, 0), False, (272000 * 5 + 2000 * 30) / M),
    ("openai", "gpt-5.5", (272001, 0, 0, 0, 1000, 1000), False, (272001 * 10 + 2000 * 45) / M),
    # -- Batch with cached input. Google: the batch discount leaves context caching at its standard rate.
    ("google", "gemini-2.5-pro", (10000, 100000, 0, 0, 2000, 0), True,
     (10000 * 1.25 + 2000 * 10) * 0.5 / M + 100000 * 0.125 / M),
    ("google", "gemini-2.5-pro", (250000, 100000, 0, 0, 1000, 0), True,                 # long context and batch
     (250000 * 2.50 + 1000 * 15) * 0.5 / M + 100000 * 0.25 / M),
    ("google", "gemini-2.5-flash", (10000, 100000, 0, 0, 2000, 0), True,
     (10000 * 0.30 + 2000 * 2.50) * 0.5 / M + 100000 * 0.03 / M),
    ("google", "gemini-2.5-flash-lite", (10000, 100000, 0, 0, 2000, 0), True,
     (10000 * 0.10 + 2000 * 0.40) * 0.5 / M + 100000 * 0.01 / M),
    # OpenAI: 50 % off every token type, cached input included (published for gpt-5: $0.0625).
    ("openai", "gpt-5-2025-08-07", (10000, 50000, 0, 0, 1000, 0), True,
     (10000 * 1.25 + 50000 * 0.125 + 1000 * 10) * 0.5 / M),
    ("openai", "gpt-4o-mini", (1000, 4000, 0, 0, 1000, 0), True, (1000 * 0.15 + 4000 * 0.075 + 1000 * 0.60) * 0.5 / M),
    # -- Names as users send them.
    ("gemini", "gemini-2.5-flash", (1000, 0, 0, 0, 1000, 0), False, (1000 * 0.30 + 1000 * 2.50) / M),
    ("vertex_ai", "gemini-2.5-pro", (1000, 0, 0, 0, 1000, 0), False, (1000 * 1.25 + 1000 * 10) / M),
    ("litellm", "gemini/gemini-2.5-pro", (1000, 0, 0, 0, 1000, 0), False, (1000 * 1.25 + 1000 * 10) / M),
    ("openrouter", "openai/gpt-4o-mini", (1000, 0, 0, 0, 1000, 0), False, (1000 * 0.15 + 1000 * 0.60) / M),
    ("openai", "openai/gpt-4o-mini-2024-07-18", (1000, 0, 0, 0, 1000, 0), False, (1000 * 0.15 + 1000 * 0.60) / M),
    ("anthropic", "anthropic/claude-sonnet-4-5", (1000, 0, 0, 0, 1000, 0), False, (1000 * 3 + 1000 * 15) / M),
    ("azure", "gpt-4o-2024-08-06", (1000, 0, 0, 0, 1000, 0), False, (1000 * 2.50 + 1000 * 10) / M),
    ("azure", "gpt-35-turbo-1106", (1000, 0, 0, 0, 1000, 0), False, (1000 * 1.00 + 1000 * 2.00) / M),
    ("bedrock", "anthropic.claude-3-5-sonnet-20241022-v2:0", (1000, 0, 0, 0, 1000, 0), False,
     (1000 * 3 + 1000 * 15) / M),
    # a geographic (us.) Bedrock id of a Claude 4.5+ model: 10 % over Anthropic's price
    ("bedrock", "us.anthropic.claude-sonnet-4-5-20250929-v1:0", (1000, 0, 0, 1000, 1000, 0), False,
     (1000 * 3.3 + 1000 * 6.6 + 1000 * 16.5) / M),
    ("bedrock", "global.anthropic.claude-sonnet-4-5-20250929-v1:0", (1000, 0, 0, 1000, 1000, 0), False,
     (1000 * 3 + 1000 * 6 + 1000 * 15) / M),
    ("bedrock", "anthropic.claude-sonnet-4-5-20250929-v1:0", (1000, 0, 0, 0, 1000, 0), False,
     (1000 * 3 + 1000 * 15) / M),
    ("bedrock", "eu.anthropic.claude-haiku-4-5-20251001-v1:0", (1000, 0, 0, 0, 1000, 0), False,
     (1000 * 1.1 + 1000 * 5.5) / M),
    ("bedrock", "jp.anthropic.claude-opus-4-7", (300_000, 0, 0, 0, 1000, 0), False,   # no tier: 1M at one price
     (300_000 * 5.5 + 1000 * 27.5) / M),
    # GovCloud: 20 % where the reference gives it; an older model's us. id has no premium
    ("bedrock", "us-gov.anthropic.claude-sonnet-4-5-20250929-v1:0", (1000, 0, 0, 0, 1000, 0), False,
     (1000 * 3.6 + 1000 * 18) / M),
    ("bedrock", "us-gov.anthropic.claude-3-haiku-20240307-v1:0", (1000, 0, 0, 0, 1000, 0), False,
     (1000 * 0.30 + 1000 * 1.50) / M),
    ("bedrock", "us.anthropic.claude-3-5-sonnet-20241022-v2:0", (1000, 0, 0, 0, 1000, 0), False,
     (1000 * 3 + 1000 * 15) / M),
    # a long prompt on a regional id: the tier's rates, 10 % over
    ("bedrock", "us.anthropic.claude-sonnet-4-5-20250929-v1:0", (250_000, 0, 0, 0, 1000, 0), False,
     (250_000 * 6.6 + 1000 * 24.75) / M),
    # GovCloud ids of a model without a known GovCloud price stay unpriced (never the commercial price)
    ("bedrock", "us-gov.anthropic.claude-opus-4-6-v1", (1000, 0, 0, 0, 1000, 0), False, None),
    ("litellm", "bedrock/anthropic.claude-3-haiku-20240307-v1:0", (1000, 0, 0, 0, 1000, 0), False,
     (1000 * 0.25 + 1000 * 1.25) / M),
    ("google", "models/gemini-2.0-flash-001", (1000, 0, 0, 0, 1000, 0), False, (1000 * 0.10 + 1000 * 0.40) / M),
    ("vertex_ai", "claude-sonnet-4-5@20250929", (1000, 0, 0, 1000, 1000, 0), False,
     (1000 * 3 + 1000 * 6 + 1000 * 15) / M),
    ("litellm", "vertex_ai/claude-3-5-sonnet-v2@20241022", (1000, 0, 0, 0, 1000, 0), False,
     (1000 * 3 + 1000 * 15) / M),
    ("groq", "llama-3.3-70b-versatile", (1000, 0, 0, 0, 1000, 0), False, (1000 * 0.59 + 1000 * 0.79) / M),
    # -- Names that used to take a lookalike's price: now their own.
    ("google", "gemini-pro-latest", (1000, 0, 0, 0, 1000, 0), False, (1000 * 2 + 1000 * 12) / M),       # not 1.0 Pro
    ("google", "gemini-2.5-pro-preview-tts", (1000, 0, 0, 0, 1000, 0), False, (1000 * 1 + 1000 * 20) / M),
    ("openai", "gpt-3.5-turbo-1106", (1000, 0, 0, 0, 1000, 0), False, (1000 * 1 + 1000 * 2) / M),
    ("openai", "gpt-3.5-turbo-0613", (1000, 0, 0, 0, 1000, 0), False, (1000 * 1.50 + 1000 * 2) / M),
    ("openai", "gpt-3.5-turbo-0125", (1000, 0, 0, 0, 1000, 0), False, (1000 * 0.50 + 1000 * 1.50) / M),
    ("openai", "chatgpt-4o-latest", (1000, 0, 0, 0, 1000, 0), False, (1000 * 5 + 1000 * 15) / M),    # not gpt-4o
    # -- Names that match nothing exactly: unpriced, never the nearest lookalike.
    ("google", "gemini-flash-latest", (1000, 0, 0, 0, 1000, 0), False, None),
    ("google", "gemini-2.5-pro-exp-03-25", (1000, 0, 0, 0, 1000, 0), False, None),
    ("google", "gemini-2.5-flash-preview-05-20", (1000, 0, 0, 0, 1000, 0), False, None),
    ("google", "gemini-2.5-flash-image", (1000, 0, 0, 0, 1000, 0), False, None),
    ("openai", "gpt-3.5-turbo-0914", (1000, 0, 0, 0, 1000, 0), False, None),
    ("openai", "gpt-4o-mini-tts", (1000, 0, 0, 0, 1000, 0), False, None),
    ("openai", "gpt-4o-realtime-preview", (1000, 0, 0, 0, 1000, 0), False, None),
    ("openai", "gpt-4o-search-preview", (1000, 0, 0, 0, 1000, 0), False, None),   # per-call search fee unmetered
    ("openai", "gpt-5.6-mini", (1000, 0, 0, 0, 1000, 0), False, None),            # not gpt-5.6
    ("openai", "gpt-audio", (1000, 0, 0, 0, 1000, 0), False, None),
    ("openai", "ft:gpt-4.1-2025-04-14", (1000, 0, 0, 0, 1000, 0), False, None),    # fine-tunes cost more
    ("anthropic", "claude-opus-4-9", (1000, 0, 0, 0, 1000, 0), False, None),
    ("vertex_ai", "claude-opus-4-7@latest", (1000, 0, 0, 0, 1000, 0), False, None),  # only @default and @date strip
    ("google", "gemini-3.1-flash-live-preview", (1000, 0, 0, 0, 1000, 0), False, None),
    ("google", "gemini-omni-flash-preview", (1000, 0, 0, 0, 1000, 0), False, None),
    ("google", "gemini-flash-lite-latest", (1000, 0, 0, 0, 1000, 0), False, None),
    ("google", "gemini-3.5-pro", (1000, 0, 0, 0, 1000, 0), False, None),
    ("vertex_ai", "text-embedding-005", (1000, 0, 0, 0, 0, 0), False, None),      # Vertex bills it per character
    ("openai", "gpt-4-0125", (1000, 0, 0, 0, 1000, 0), False, None),
    ("openai", "openai/claude-sonnet-4-5", (1000, 0, 0, 0, 1000, 0), False, None),
    ("litellm", "gpt-4o", (1000, 0, 0, 0, 1000, 0), False, None),                     # no provider to price it
    ("anthropic", "claude-2.1", (1000, 0, 0, 0, 1000, 0), False, None),
    ("bedrock", "anthropic.claude-v2:1", (1000, 0, 0, 0, 1000, 0), False, None),
    ("bedrock", "meta.llama3-70b-instruct-v1:0", (1000, 0, 0, 0, 1000, 0), False, None),
    ("meta", "meta-llama/Llama-3.3-70B-Instruct-Turbo", (1000, 0, 0, 0, 1000, 0), False, None),   # Together's id
    ("mistral", "mistral-medium-2312", (1000, 0, 0, 0, 1000, 0), False, None),
    ("mistral", "mistral-small-2409", (1000, 0, 0, 0, 1000, 0), False, None),
    ("mistral", "mistral-large-2407", (1000, 0, 0, 0, 1000, 0), False, None),
    ("deepseek", "deepseek-v3", (1000, 0, 0, 0, 1000, 0), False, None),
    # -- Mistral and DeepSeek, first-party.
    ("mistral", "mistral-large-latest", (1000, 0, 0, 0, 1000, 0), False, (1000 * 0.50 + 1000 * 1.50) / M),
    ("mistral", "mistral-large-2411", (1000, 0, 0, 0, 1000, 0), False, (1000 * 2 + 1000 * 6) / M),
    ("mistral", "mistral-medium-2508", (1000, 0, 0, 0, 1000, 0), False, (1000 * 0.40 + 1000 * 2) / M),
    ("mistral", "codestral-2501", (1000, 0, 0, 0, 1000, 0), False, (1000 * 0.30 + 1000 * 0.90) / M),
    ("mistral", "mistral-small-latest", (10000, 0, 0, 0, 10000, 0), True, (10000 * 0.10 + 10000 * 0.30) * 0.5 / M),
    ("deepseek", "deepseek-chat", (1000, 9000, 0, 0, 1000, 0), False, (1000 * 0.28 + 9000 * 0.028 + 1000 * 0.42) / M),
    ("deepseek", "deepseek-reasoner", (1000, 0, 0, 0, 500, 1500), False, (1000 * 0.28 + 2000 * 0.42) / M),
    # -- Current models the LiteLLM table of 2026-07-24 lists, added after the comparison.
    # OpenAI GPT-5.6: cache writes 1.25x input, reads 0.1x; over 272k everything doubles but output (1.5x).
    ("openai", "gpt-5.6-sol", (20000, 100000, 8000, 0, 2000, 3000), False,
     (20000 * 5 + 100000 * 0.50 + 8000 * 6.25 + 5000 * 30) / M),
    ("openai", "gpt-5.6", (200000, 64000, 8000, 0, 1000, 0), False,                    # exactly 272,000: alias of Sol
     (200000 * 5 + 64000 * 0.50 + 8000 * 6.25 + 1000 * 30) / M),
    ("openai", "gpt-5.6-sol", (200001, 64000, 8000, 0, 1000, 0), False,                # 272,001: the whole request doubles
     (200001 * 10 + 64000 * 1.00 + 8000 * 12.50 + 1000 * 45) / M),
    ("openai", "gpt-5.6-terra", (10000, 40000, 4000, 0, 1000, 0), True,              # after the cut of 2026-07-30, batch
     (10000 * 2.00 + 40000 * 0.20 + 4000 * 2.50 + 1000 * 12) * 0.5 / M),
    ("litellm", "openai/gpt-5.6-luna", (10000, 0, 0, 0, 1000, 0), False,              # gateway prefix
     (10000 * 0.20 + 1000 * 1.20) / M),
    ("openai", "gpt-5.4-pro-2026-03-05", (272001, 0, 0, 0, 1000, 0), False, (272001 * 60 + 1000 * 270) / M),
    ("azure", "gpt-5.5-pro", (10000, 10000, 0, 0, 1000, 0), True, (10000 * 30 + 10000 * 3 + 1000 * 180) * 0.5 / M),
    ("openai", "gpt-5.3-codex", (1000, 9000, 0, 0, 1000, 0), False, (1000 * 1.75 + 9000 * 0.175 + 1000 * 14) / M),
    ("openai", "babbage-002", (1000, 0, 0, 0, 1000, 0), False, (1000 * 0.40 + 1000 * 0.40) / M),
    ("openai", "text-embedding-ada-002-v2", (1_000_000, 0, 0, 0, 0, 0), False, 0.10),
    # Anthropic: Opus 4.7 / 4.8 / 5 at $5/$25, Fable 5 at twice that; 1h writes 2x input, batch stacks.
    ("anthropic", "claude-opus-4-7-20260416", (2000, 30000, 1000, 4000, 800, 0), False,
     (2000 * 5 + 30000 * 0.50 + 1000 * 6.25 + 4000 * 10 + 800 * 25) / M),
    ("vertex_ai", "claude-opus-4-8@default", (1000, 0, 0, 0, 1000, 0), False, (1000 * 5 + 1000 * 25) / M),
    ("bedrock", "global.anthropic.claude-opus-5", (1000, 1000, 0, 0, 1000, 0), False, (1000 * 5 + 1000 * 0.5 + 1000 * 25) / M),
    ("anthropic", "claude-fable-5", (5000, 50000, 0, 10000, 2000, 0), True,
     (5000 * 10 + 50000 * 1.00 + 10000 * 20 + 2000 * 50) * 0.5 / M),
    ("bedrock", "global.anthropic.claude-opus-4-6-v1", (1000, 0, 0, 0, 1000, 0), False, (1000 * 5 + 1000 * 25) / M),
    ("anthropic", "claude-4-sonnet-20250514", (1000, 0, 0, 0, 1000, 0), False, (1000 * 3 + 1000 * 15) / M),
    # Google: 3.5 / 3.6 Flash, 3.1 Flash-Lite and 3.1 Pro; thinking bills as output, batch leaves cache reads alone.
    ("google", "gemini-3.5-flash", (10000, 20000, 0, 0, 500, 1500), False,
     (10000 * 1.50 + 20000 * 0.15 + 2000 * 9) / M),
    ("gemini", "gemini-3.6-flash", (10000, 20000, 0, 0, 2000, 0), True,
     (10000 * 1.50 + 2000 * 7.50) * 0.5 / M + 20000 * 0.15 / M),
    ("vertex_ai", "gemini-3.5-flash-lite", (10000, 0, 0, 0, 1000, 0), False, (10000 * 0.30 + 1000 * 2.50) / M),
    ("google", "models/gemini-3.1-flash-lite-preview", (10000, 10000, 0, 0, 1000, 0), False,
     (10000 * 0.25 + 10000 * 0.025 + 1000 * 1.50) / M),
    ("google", "gemini-3.1-pro-preview", (150001, 50000, 0, 0, 1000, 0), True,            # 200,001 and batch
     (150001 * 4 + 1000 * 18) * 0.5 / M + 50000 * 0.40 / M),
    ("vertex_ai", "gemini-3.1-pro-preview-customtools", (1000, 0, 0, 0, 1000, 0), False, (1000 * 2 + 1000 * 12) / M),
    ("google", "gemini-embedding-2-preview", (1_000_000, 0, 0, 0, 0, 0), False, 0.20),
    # Previews whose cache reads LiteLLM prices apart from the GA model; 2.0 Flash-Lite's cache reads.
    ("google", "gemini-2.5-flash-preview-09-2025", (1000, 10000, 0, 0, 1000, 0), False,
     (1000 * 0.30 + 10000 * 0.075 + 1000 * 2.50) / M),
    ("google", "gemini-2.0-flash-lite-001", (1000, 10000, 0, 0, 1000, 0), False,
     (1000 * 0.075 + 10000 * 0.01875 + 1000 * 0.30) / M),
]


@pytest.mark.parametrize("provider, model, tokens, batch, want", CORPUS,
                         ids=[f"{c[0]}:{c[1]}:{i}" for i, c in enumerate(CORPUS)])
def test_corpus(table, provider, model, tokens, batch, want):
    i, c, w, w1h, o, r = tokens
    got = table.cost(provider, model, i, c, w, o, r, batch=batch, cache_write_1h_tokens=w1h,
                     at=ts("2026-11-30T12:00:00"))
    if want is None:
        assert got is None, f"{provider}/{model} must be unpriced, got ${got}"
        assert table.resolve(provider, model) is None
    else:
        assert got == pytest.approx(want, rel=1e-12)


# Every long-context threshold of the shipped table, by hand: (provider, model, above, base
# input/output, tier input/output). One token either side, with the prompt split over input,
# cached input and both cache writes so that every part is seen to count.
TIERS = [
    ("anthropic", "claude-sonnet-4", 200_000, (3, 15), (6, 22.50)),
    ("anthropic", "claude-sonnet-4-5", 200_000, (3, 15), (6, 22.50)),
    ("google", "gemini-2.5-computer-use-preview-10-2025", 200_000, (1.25, 10), (2.50, 15)),
    ("google", "gemini-3.1-pro-preview", 200_000, (2, 12), (4, 18)),
    ("openai", "gpt-5.4-pro", 272_000, (30, 180), (60, 270)),
    ("openai", "gpt-5.5-pro", 272_000, (30, 180), (60, 270)),
    ("openai", "gpt-5.6-sol", 272_000, (5, 30), (10, 45)),
    ("openai", "gpt-5.6-terra", 272_000, (2, 12), (4, 18)),                 # since the cut of 2026-07-30
    ("openai", "gpt-5.6-luna", 272_000, (0.20, 1.20), (0.40, 1.80)),
    ("google", "gemini-1.5-flash", 128_000, (0.075, 0.30), (0.15, 0.60)),
    ("google", "gemini-1.5-pro", 128_000, (1.25, 5), (2.50, 10)),
    ("google", "gemini-2.5-pro", 200_000, (1.25, 10), (2.50, 15)),
    ("google", "gemini-3-pro-preview", 200_000, (2, 12), (4, 18)),
    ("openai", "gpt-5.4", 272_000, (2.50, 15), (5, 22.50)),
    ("openai", "gpt-5.5", 272_000, (5, 30), (10, 45)),
]


@pytest.mark.parametrize("provider, model, above, base, tier", TIERS, ids=[t[1] for t in TIERS])
def test_every_threshold_both_sides(table, provider, model, above, base, tier):
    have = {(p, m): pr.long_context_above for p, m, pr in table.models() if pr.long_context_above}
    assert set(have) == {(t[0], t[1]) for t in TIERS}, "a tier was added or removed: list it here"
    assert have[(provider, model)] == above
    p = table.price(provider, model)
    quarter = above // 4
    for prompt, (i_rate, o_rate) in ((above, base), (above + 1, tier)):
        inp = prompt - 3 * quarter
        got = table.cost(provider, model, inp, quarter, quarter, 1000, cache_write_1h_tokens=quarter)
        rates = p if prompt == above else p.long_context
        want = (inp * i_rate + quarter * (rates.cached_input + rates.cache_write + rates.cache_write_1h)
                + 1000 * o_rate) / M
        assert got == pytest.approx(want, rel=1e-12), prompt


def test_deepseek_prices_by_date(table):
    tok = dict(input_tokens=1000, cached_input_tokens=9000, output_tokens=1000)
    assert table.cost("deepseek", "deepseek-chat", **tok, at=ts("2025-08-01T00:00:00")) == \
        pytest.approx((1000 * 0.27 + 9000 * 0.07 + 1000 * 1.10) / M)
    assert table.cost("deepseek", "deepseek-chat", **tok, at=ts("2025-09-04T23:59:59")) == \
        pytest.approx((1000 * 0.27 + 9000 * 0.07 + 1000 * 1.10) / M)
    assert table.cost("deepseek", "deepseek-chat", **tok, at=ts("2025-09-05T00:00:00")) == \
        pytest.approx((1000 * 0.56 + 9000 * 0.07 + 1000 * 1.68) / M)
    assert table.cost("deepseek", "deepseek-reasoner", **tok, at=ts("2025-08-01T00:00:00")) == \
        pytest.approx((1000 * 0.55 + 9000 * 0.14 + 1000 * 2.19) / M)
    assert table.cost("deepseek", "deepseek-reasoner", **tok, at=ts("2025-09-29T00:00:00")) == \
        pytest.approx((1000 * 0.28 + 9000 * 0.028 + 1000 * 0.42) / M)


def test_gpt_5_6_terra_and_luna_before_and_after_the_cut(table):
    # Launch prices (as in LiteLLM's table of 2026-07-24) until 2026-07-29, the cut from 2026-07-30.
    tok = dict(input_tokens=10000, cached_input_tokens=20000, cache_write_tokens=4000, output_tokens=1000)
    before, after = ts("2026-07-29T23:59:59"), ts("2026-07-30T00:00:00")
    assert table.cost("openai", "gpt-5.6-terra", **tok, at=before) == \
        pytest.approx((10000 * 2.50 + 20000 * 0.25 + 4000 * 3.125 + 1000 * 15) / M)
    assert table.cost("openai", "gpt-5.6-terra", **tok, at=after) == \
        pytest.approx((10000 * 2.00 + 20000 * 0.20 + 4000 * 2.50 + 1000 * 12) / M)
    assert table.cost("openai", "gpt-5.6-luna", **tok, at=before) == \
        pytest.approx((10000 * 1.00 + 20000 * 0.10 + 4000 * 1.25 + 1000 * 6) / M)
    assert table.cost("openai", "gpt-5.6-luna", **tok, at=after) == \
        pytest.approx((10000 * 0.20 + 20000 * 0.02 + 4000 * 0.25 + 1000 * 1.20) / M)
    long = dict(input_tokens=272_001, output_tokens=1000)
    assert table.cost("openai", "gpt-5.6-luna", **long, at=before) == pytest.approx((272_001 * 2 + 1000 * 9) / M)
    assert table.cost("openai", "gpt-5.6-luna", **long, at=after) == pytest.approx((272_001 * 0.40 + 1000 * 1.80) / M)


def test_without_a_1h_rate_1h_writes_cost_the_cache_write_rate():
    t = PricingTable.loads("include_defaults: false\nproviders:\n  acme:\n    models:\n"
                           "      a: {input: 2, cache_write: 3, output: 8}\n      b: {input: 2, output: 8}\n")
    assert t.cost("acme", "a", cache_write_1h_tokens=1_000_000) == pytest.approx(3)
    assert t.cost("acme", "b", cache_write_1h_tokens=1_000_000) == pytest.approx(2)


def test_batch_undiscounted_from_a_user_file():
    t = PricingTable.loads("""include_defaults: false
providers:
  acme:
    batch_discount: 0.5
    batch_undiscounted: [cached_input, cache_write_1h]
    models:
      m: {input: 2, cached_input: 1, cache_write_1h: 4, output: 8}
      n: {input: 2, cached_input: 1, output: 8, batch_undiscounted: []}
""")
    assert t.cost("acme", "m", 1_000_000, 1_000_000, 0, 1_000_000, batch=True, cache_write_1h_tokens=1_000_000) == \
        pytest.approx((2 + 8) * 0.5 + 1 + 4)
    assert t.cost("acme", "n", 1_000_000, 1_000_000, 0, 1_000_000, batch=True) == pytest.approx((2 + 1 + 8) * 0.5)


def test_bad_provider_alias_and_batch_undiscounted_are_named(tmp_path):
    from costmeter.config.loader import ConfigError, ConfigErrors
    f = tmp_path / "p.yaml"
    f.write_text("provider_aliases:\n  vertex: nosuch\nproviders:\n  google:\n    batch_undiscounted: [cache]\n")
    with pytest.raises((ConfigError, ConfigErrors)) as ei:
        PricingTable.load(str(f))
    text = str(ei.value)
    assert "batch_undiscounted" in text and "'cache' is not a token type" in text and ":5:" in text
    f.write_text("provider_aliases:\n  vertex: nosuch\n")
    with pytest.raises(ConfigError, match="p.yaml:2: provider_aliases.vertex: 'nosuch' is not a provider"):
        PricingTable.load(str(f))


def test_user_provider_beats_builtin_alias():
    # A user who prices Bedrock apart (regional endpoints cost 10 % more) gets their own prices
    # for the models they list; the others are still priced as the alias says.
    t = PricingTable.loads("providers:\n  bedrock:\n    models:\n"
                           "      claude-sonnet-4-5: {input: 3.3, output: 16.5}\n")
    assert t.cost("bedrock", "us.anthropic.claude-sonnet-4-5-20250929-v1:0", 100_000) == pytest.approx(0.33)
    assert t.cost("bedrock", "claude-sonnet-4-5", 100_000) == pytest.approx(0.33)
    assert t.cost("bedrock", "anthropic.claude-3-haiku-20240307-v1:0", 100_000) == pytest.approx(0.025)
    assert t.explain("bedrock", "claude-3-haiku")["provider"] == "anthropic"
    assert t.cost("anthropic", "claude-sonnet-4-5", 100_000) == pytest.approx(0.30)


# ---- the shipped table: sources, and no lookalike machinery ------------------------------

def test_every_shipped_model_names_its_source_and_date():
    raw = yaml.safe_load(PACKAGE_DATA.read_text())
    n = 0
    for provider, spec in raw["providers"].items():
        for model, m in spec["models"].items():
            src = m.get("source")
            assert isinstance(src, str), f"{provider}/{model} has no source"
            assert re.search(r"\b20\d\d-\d\d-\d\d\b", src), f"{provider}/{model}: no date in {src!r}"
            assert src.startswith("https://") or "users' own table" in src, f"{provider}/{model}: {src!r}"
            n += 1
    assert n >= 80


def test_shipped_table_guesses_nothing():
    raw = yaml.safe_load(PACKAGE_DATA.read_text())
    for provider, spec in raw["providers"].items():
        for model, m in spec["models"].items():
            assert "patterns" not in m and "regex" not in m, f"{provider}/{model}: a pattern can match a lookalike"
    assert raw["provider_aliases"] == {"gemini": "google", "vertex_ai": ["google", "anthropic"], "azure": "openai",
                                       "bedrock": "anthropic", "groq": "meta"}


def test_anthropic_1h_writes_are_twice_input_everywhere(table):
    for provider, model, p in table.models():
        if provider != "anthropic" or model == "claude-3-sonnet":
            continue
        assert p.cache_write_1h == pytest.approx(2 * p.input), model
        if p.long_context is not None:
            assert p.long_context.cache_write_1h == pytest.approx(2 * p.long_context.input), model


# ---- through the exporter ----------------------------------------------------------------------

def test_corpus_through_the_exporter(tmp_path):
    events = []
    chosen = {("anthropic", "claude-sonnet-4-5-20250929"), ("google", "gemini-2.5-pro"),
              ("vertex_ai", "gemini-2.5-pro"), ("bedrock", "anthropic.claude-3-5-sonnet-20241022-v2:0"),
              ("litellm", "vertex_ai/claude-3-5-sonnet-v2@20241022"), ("google", "gemini-pro-latest"),
              ("google", "gemini-flash-latest"), ("anthropic", "claude-2.1"), ("openai", "gpt-4o-search-preview"),
              ("anthropic", "claude-opus-4-7-20260416"), ("vertex_ai", "claude-opus-4-8@default"),
              ("gemini", "gemini-3.6-flash")}
    picks = [k for k, c in enumerate(CORPUS) if (c[0], c[1]) in chosen]
    assert len(picks) == 13         # gemini-2.5-pro twice: batch, and batch over 200k
    for k in picks:
        p, m, t, b, _ = CORPUS[k]
        events.append({"id": f"c{k}", "provider": p, "model": m, "tenant": f"corpus{k}", "batch": b,
                       "input_tokens": t[0], "cached_input_tokens": t[1], "cache_write_tokens": t[2],
                       "cache_write_1h_tokens": t[3], "output_tokens": t[4], "reasoning_tokens": t[5]})
    with ExporterProcess(str(tmp_path / "state")) as exp:
        r = requests.post(exp.url + "/v1/events", json=events, timeout=10)
        assert r.status_code == 200 and r.json()["accepted"] == len(picks), r.text
        m = parse_metrics(requests.get(exp.url + "/metrics", timeout=10).text)
    for k in picks:
        p, model, t, _, want = CORPUS[k]
        got = sample(m, "cost_request_cost_usd_sum", provider=p, model=model, endpoint="unknown", tenant=f"corpus{k}")
        if want is None:
            assert sample(m, "costmeter_unpriced_calls_total", provider=p, model=model) == 1
        else:
            assert got == pytest.approx(want, rel=1e-9), (p, model)
    k0 = next(k for k in picks if CORPUS[k][1] == "claude-sonnet-4-5-20250929")
    lbl = dict(provider="anthropic", model="claude-sonnet-4-5-20250929", tenant=f"corpus{k0}")
    assert sample(m, "cost_provider_tokens_total", token_type="cache_write_1h", **lbl) == 3000
    assert sample(m, "cost_provider_tokens_total", token_type="cache_write", **lbl) == 2000


def test_regional_premium_in_a_user_file_and_its_errors(tmp_path):
    t = PricingTable.loads("providers:\n  acme:\n    models:\n"
                           "      m1: {input: 1.0, output: 2.0, regional_premium: 0.25}\n")
    assert t.cost("acme", "eu.acme.m1", 1_000_000) == pytest.approx(1.25)
    assert t.cost("acme", "global.acme.m1", 1_000_000) == pytest.approx(1.0)
    assert t.cost("acme", "us-gov.acme.m1", 1_000_000) is None        # no govcloud_premium: unpriced
    f = tmp_path / "pricing.yaml"
    f.write_text("providers:\n  acme:\n    models:\n      m1:\n        input: 1.0\n        output: 2.0\n"
                 "        regional_premium: -0.1\n")
    with pytest.raises(ConfigError) as e:
        PricingTable.load(str(f))
    assert f"{f}:7" in str(e.value) and "regional_premium" in str(e.value)
