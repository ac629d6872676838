"""The price table: USD per million tokens by provider, model and token type.

The built-in table is package data (``costmeter/pricing/data/pricing.yaml``, a byte
copy of ``config/pricing.yaml``); a user's file is loaded on top of it. The
YAML schema is documented at the top of that file. In short::

    include_defaults: true          # false: start from an empty table
    providers:
      openai:
        batch_discount: 0.5         # fraction taken off when an event has batch: true
        models:
          gpt-4o-mini: {input: 0.15, cached_input: 0.075, output: 0.60, source: "https://..."}
          o3:
            prices:                 # several prices, each in force from its date
              - {input: 10.0, cached_input: 2.50, output: 40.0}   # the first may omit its date
              - {effective_from: 2025-06-10, input: 2.0, cached_input: 0.50, output: 8.0}
      anthropic:
        models:
          claude-sonnet-4-5:
            input: 3.0
            ...
            cache_write: 3.75               # 5-minute cache writes
            cache_write_1h: 6.0             # 1-hour cache writes
            long_context: {above: 200000, input: 6.0, output: 22.50}

How a model name finds its price (:meth:`PricingTable.explain`; the rules are
in docs/pricing.md), first hit wins: the name itself or an explicit alias; a
gateway prefix naming a provider (``gemini/gemini-2.5-pro``) prices the rest
of the name with that provider; ``models/`` and Bedrock's
``[region.]anthropic.`` are removed; then a dated snapshot suffix
(``gpt-4o-mini-2024-07-18`` -> ``gpt-4o-mini``, ``-20241022``, ``-v2:0``,
Vertex's ``@default``);
then glob ``patterns`` and ``regex`` entries, where the one with the most
literal characters wins. ``provider_aliases`` price one provider name as
another (``vertex_ai`` as ``google``). Nothing else is guessed: a name that
matches nothing is unpriced. Lookups ignore case.

:meth:`PricingTable.cost` is on the ingest hot path: resolution is cached per
(provider, model) string pair, and a repeated call is a dict lookup plus
six multiplications.

Modules: ``file`` (pricing.yaml parsed and validated), ``table`` (PricingTable, ModelPrice),
``show`` (what ``costmeter pricing show`` prints), ``litellm`` (LiteLLM's price file as pricing.yaml).
Imports only :mod:`costmeter.config`.
"""
from costmeter.pricing.table import RATE_KEYS, ModelPrice, PricingTable, default_pricing_path

__all__ = ["PricingTable", "ModelPrice", "RATE_KEYS", "default_pricing_path"]
