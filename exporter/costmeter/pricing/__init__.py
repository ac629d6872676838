"""The price table: USD per million tokens by provider, model and token type.

The built-in table is package data (``costmeter/pricing/data/pricing.yaml``, a byte
copy of ``config/pricing.yaml``); a user's file is loaded on top of it. The
YAML schema is documented at the top of that file. In short::

    include_defaults: true          # false: start from an empty table
    providers:
      openai:
        batch_discount: 0.5         # fraction taken off when an event has batch: true
        models:
          gpt-4o-mini: {input: 0.15, cached_input: 0.075, output: 0.60}
          o3:
            prices:                 # several prices, each in force from its date
              - {input: 10.0, cached_input: 2.50, output: 40.0}   # the first may omit its date
              - {effective_from: 2025-06-10, input: 2.0, cached_input: 0.50, output: 8.0}
      anthropic:
        models:
          claude-sonnet-4-5:
            input: 3.0
            ...
            long_context: {above: 200000, input: 6.0, output: 22.50}

How a model name finds its price (:meth:`PricingTable.resolve`), first hit
wins: the name itself or an explicit alias; then the name with a date or
version suffix stripped (``gpt-4o-mini-2024-07-18`` -> ``gpt-4o-mini``,
``claude-3-5-sonnet-20241022`` -> ``claude-3-5-sonnet``); then glob
``patterns`` and ``regex`` entries, where the one with the most literal
characters wins (so ``gpt-4o-mini*`` beats ``gpt-4o*``). Lookups ignore case.

:meth:`PricingTable.cost` is on the ingest hot path: resolution is cached per
(provider, model) string pair, and a repeated call is a dict lookup plus
five multiplications.

Modules: ``file`` (pricing.yaml parsed and validated), ``table`` (PricingTable, ModelPrice).
Imports only :mod:`costmeter.config`.
"""
from costmeter.pricing.table import RATE_KEYS, ModelPrice, PricingTable, default_pricing_path

__all__ = ["PricingTable", "ModelPrice", "RATE_KEYS", "default_pricing_path"]
