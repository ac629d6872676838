"""LiteLLM's ``model_prices_and_context_window.json`` turned into pricing.yaml.

Each entry of that file is ``"<name>": {"litellm_provider": ..., "mode": ...,
"input_cost_per_token": ..., ...}`` with prices in USD per token. What maps
(prices become USD per million tokens):

    input_cost_per_token                      input
    output_cost_per_token                     output (0 for embeddings without it)
    cache_read_input_token_cost               cached_input
    cache_creation_input_token_cost           cache_write (5-minute writes)
    cache_creation_input_token_cost_above_1hr cache_write_1h
    output_cost_per_reasoning_token           reasoning
    <any of the above>_above_<N>k_tokens      long_context: {above: N * 1000, ...}
    input_cost_per_token_batches,             batch_discount, when both give the
    output_cost_per_token_batches             same fraction off

The provider is ``litellm_provider`` under costmeter's name (``gemini`` ->
``google``; ``vertex_ai-*`` -> ``vertex_ai``, ``bedrock_converse`` ->
``bedrock``; other names as they are), and the model is the entry's name
without its provider prefix (``gemini/gemini-2.5-pro`` -> ``gemini-2.5-pro``).

Nothing is guessed: an entry that cannot be represented exactly (no per-token
price, a mode priced per image or second, a region-, deployment- or
publisher-specific name, two long-context thresholds, batch prices that are not
one discount, two entries with different prices for one model) is left out and
listed with its reason. Two entries for one model that differ only in spelling
out a default (a reasoning rate equal to the output rate, a cache rate equal to
the input rate) price the same and are one model. The file's metadata
(``sample_spec``, ``fallback_generalizations``: routing rules without prices)
is not a model entry and is passed over; any other value that is not an entry
(``last_updated``, added by mirrors of the file) is listed.
Prices of dimensions costmeter does not meter (audio, images, web search,
flex or priority tiers) are listed as notes; the entry's token prices are kept.
"""
from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field

from costmeter.pricing.table import _build_price

__all__ = ["convert", "Conversion"]

_PROVIDERS = {
    "openai": "openai", "text-completion-openai": "openai", "anthropic": "anthropic", "gemini": "google",
    "bedrock_converse": "bedrock", "mistral": "mistral", "codestral": "mistral", "deepseek": "deepseek",
}
_PROVIDER_RE = re.compile(r"^[a-z][a-z0-9_]*$")
_TOKEN_MODES = ("chat", "completion", "embedding", "responses")
_RATES = {
    "input_cost_per_token": "input",
    "output_cost_per_token": "output",
    "cache_read_input_token_cost": "cached_input",
    "cache_creation_input_token_cost": "cache_write",
    "cache_creation_input_token_cost_above_1hr": "cache_write_1h",
    "output_cost_per_reasoning_token": "reasoning",
}
_TIER_RE = re.compile(r"^(?P<base>.+)_above_(?P<k>\d+)k_tokens$")
_BATCH = ("input_cost_per_token_batches", "output_cost_per_token_batches")
_ORDER = ("input", "cached_input", "cache_write", "cache_write_1h", "output", "reasoning")
_PLAIN_KEY = re.compile(r"^[a-z0-9][a-z0-9._-]*$")


@dataclass
class Conversion:
    yaml: str
    skipped: list[tuple[str, str]] = field(default_factory=list)     # (entry, why)
    notes: list[tuple[str, str]] = field(default_factory=list)       # (entry, what was not imported)
    imported: int = 0


def _provider(lp: str) -> str | None:
    if lp in _PROVIDERS:
        return _PROVIDERS[lp]
    if lp.startswith("vertex_ai"):
        return "vertex_ai"
    return lp if _PROVIDER_RE.match(lp) else None


def _per_million(v) -> float:
    return round(float(v) * 1e6, 9)


def _price(v) -> bool:
    """A usable per-token price: a finite number >= 0 (also once per million)."""
    return (isinstance(v, (int, float)) and not isinstance(v, bool) and v >= 0
            and math.isfinite(float(v) * 1e6))


def _entry(name: str, e: dict) -> tuple[str, str, dict] | str:
    """(provider, model, spec) or the reason the entry cannot be mapped."""
    lp = e.get("litellm_provider")
    if not isinstance(lp, str):
        return "no litellm_provider"
    provider = _provider(lp)
    if provider is None:
        return f"litellm_provider {lp!r} is not a provider name costmeter can use"
    mode = e.get("mode")
    if mode is not None and mode not in _TOKEN_MODES:
        return f"mode {mode!r} is not priced per token"
    model = name.strip().lower()
    head, sep, rest = model.partition("/")
    if sep and (head == lp or _provider(head) == provider):
        model = rest
    if provider in ("bedrock", "azure", "vertex_ai") and "/" in model:
        return ("a region-, deployment- or publisher-specific name (azure/eu/..., bedrock/us-east-1/..., "
                "vertex_ai/meta/...): costmeter cannot look it up as written")
    if not model:
        return "no model name"
    for k in ("input_cost_per_token",) + (() if mode == "embedding" else ("output_cost_per_token",)):
        if not _price(e.get(k)):
            return f"no per-token price ({k})"
    spec: dict = {}
    tiers: dict[int, dict] = {}
    for k, v in e.items():
        if v is None:
            continue
        if k in _RATES:
            if not _price(v):          # never priced at a fallback instead: the entry is left out
                return f"{k} is not a price ({v!r:.40})"
            spec[_RATES[k]] = _per_million(v)
            continue
        t = _TIER_RE.match(k)
        if t and t.group("base") in _RATES:
            if not _price(v):
                return f"{k} is not a price ({v!r:.40})"
            tiers.setdefault(int(t.group("k")) * 1000, {})[_RATES[t.group("base")]] = _per_million(v)
    spec.setdefault("output", 0.0)
    if len(tiers) > 1:
        return f"several long-context thresholds ({', '.join(str(a) for a in sorted(tiers))}); costmeter has one"
    if tiers:
        (above, rates), = tiers.items()
        spec["long_context"] = {"above": above, **rates}
    bi, bo = e.get(_BATCH[0]), e.get(_BATCH[1])
    for k, v in zip(_BATCH, (bi, bo)):
        if v is not None and not _price(v):
            return f"{k} is not a price ({v!r:.40})"
    if bi is not None or bo is not None:
        fracs = []
        for base, b in ((spec["input"], bi), (spec["output"], bo)):
            if b is None or not base:
                continue
            fracs.append(round(1.0 - _per_million(b) / base, 6))
        if not fracs or any(abs(f - fracs[0]) > 1e-6 for f in fracs) or not 0 <= fracs[0] <= 1:
            return "batch prices that are not one discount off input and output"
        spec["batch_discount"] = fracs[0]
    return provider, model, spec


def _effective(spec: dict):
    """The prices as costmeter applies them (defaults filled in), to tell real differences from spelling."""
    rates = {k: spec[k] for k in _ORDER if k in spec}
    return _build_price("", "", None, rates, spec.get("long_context"), spec.get("batch_discount", 0.0))


def _unmetered(e: dict) -> list[str]:
    known = set(_RATES) | set(_BATCH)
    out = []
    for k, v in e.items():
        if ("cost" not in k and "price" not in k) or k in known or not v:
            continue
        t = _TIER_RE.match(k)
        if t and t.group("base") in _RATES:
            continue
        out.append(k)
    return sorted(out)


def _num(v: float) -> str:
    """A number as YAML reads it back as that number: YAML 1.1 (PyYAML) takes 1.0e+36 and
    2.5e-05 for floats but 1e+36 and 1e-05 for strings, so a mantissa always has a point."""
    s = repr(float(v))
    if s.endswith(".0"):
        return s[:-2]
    mantissa, e, exponent = s.partition("e")
    if e and "." not in mantissa:
        return f"{mantissa}.0e{exponent}"
    return s


def _key(s: str) -> str:
    return s if _PLAIN_KEY.match(s) else json.dumps(s)


def _flow(spec: dict) -> str:
    parts = [f"{k}: {_num(spec[k])}" for k in _ORDER if k in spec]
    if "long_context" in spec:
        lc = spec["long_context"]
        inner = [f"above: {lc['above']}"] + [f"{k}: {_num(lc[k])}" for k in _ORDER if k in lc]
        parts.append("long_context: {" + ", ".join(inner) + "}")
    if "batch_discount" in spec:
        parts.append(f"batch_discount: {_num(spec['batch_discount'])}")
    parts.append(f"source: {json.dumps(spec['source'])}")
    return "{" + ", ".join(parts) + "}"


def convert(data, file_name: str, imported_on: str) -> Conversion:
    """Convert the decoded JSON of a LiteLLM price file (raises ValueError if it is not one)."""
    if not isinstance(data, dict):
        raise ValueError(f"{file_name}: expected a JSON object of model entries, got {type(data).__name__}")
    conv = Conversion(yaml="")
    out: dict[str, dict[str, tuple[str, dict]]] = {}
    clashed: set[tuple[str, str]] = set()
    for name, e in data.items():
        if name in ("sample_spec", "fallback_generalizations"):   # the format's documentation; routing rules
            continue
        if not isinstance(e, dict):
            kind = {str: "string", list: "array", bool: "boolean", type(None): "null"}.get(type(e), "number")
            conv.skipped.append((name, f"not a model entry (a JSON {kind}, not an object)"))
            continue
        got = _entry(name, e)
        if isinstance(got, str):
            conv.skipped.append((name, got))
            continue
        provider, model, spec = got
        spec["source"] = f"LiteLLM {file_name}: {name} (imported {imported_on})"
        models = out.setdefault(provider, {})
        if (provider, model) in clashed:
            conv.skipped.append((name, f"{provider}/{model} has entries with different prices"))
            continue
        if model in models:
            first, fspec = models[model]
            same = _effective(fspec) == _effective(spec)
            if not same:
                del models[model]
                clashed.add((provider, model))
                conv.skipped.append((first, f"{provider}/{model} has entries with different prices ({first}, {name})"))
                conv.skipped.append((name, f"{provider}/{model} has entries with different prices ({first}, {name})"))
            continue
        models[model] = (name, spec)
        extra = _unmetered(e)
        if extra:
            conv.notes.append((name, "not imported (costmeter does not meter them): " + ", ".join(extra)))
    kept = {name for models in out.values() for name, _spec in models.values()}
    conv.notes = [(name, why) for name, why in conv.notes if name in kept]   # none for an entry left out later
    lines = [f"# Generated by `costmeter pricing import-litellm {file_name}` on {imported_on}.",
             "# USD per million tokens, from LiteLLM's per-token prices. Use it with --pricing.file:",
             "# it is merged over the built-in table (a model here replaces the built-in entry).",
             "providers:"]
    for provider in sorted(out):
        if not out[provider]:
            continue
        lines.append(f"  {provider}:")
        lines.append("    models:")
        for model in sorted(out[provider]):
            lines.append(f"      {_key(model)}: {_flow(out[provider][model][1])}")
            conv.imported += 1
    if conv.imported == 0:
        lines[-1] = "providers: {}"
    conv.yaml = "\n".join(lines) + "\n"
    return conv
