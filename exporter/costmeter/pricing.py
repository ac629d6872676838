"""The price table: USD per million tokens by provider, model and token type.

The built-in table is package data (``costmeter/data/pricing.yaml``, a byte
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
"""
from __future__ import annotations

import bisect
import fnmatch
import re
import time
from dataclasses import dataclass, field
from datetime import date, datetime, timezone
from importlib import resources
from typing import Any

from costmeter.config import loader
from costmeter.config.loader import ConfigError, ConfigErrors, Doc

__all__ = ["PricingTable", "ModelPrice", "RATE_KEYS", "default_pricing_path"]

# Token types, as in events.TOKEN_TYPES and the token_type label.
RATE_KEYS = ("input", "cached_input", "cache_write", "output", "reasoning")
_TOP_KEYS = ("include_defaults", "providers")
_PROVIDER_KEYS = ("batch_discount", "models")
_MODEL_META_KEYS = ("prices", "aliases", "patterns", "regex", "batch_discount")
_ENTRY_KEYS = RATE_KEYS + ("effective_from", "long_context")
_TIER_KEYS = RATE_KEYS + ("above",)
_PROVIDER_RE = re.compile(r"^[a-z][a-z0-9_]*$")
# Suffixes that name a snapshot of a model family: -2024-07-18, -20241022,
# @20240620 (Vertex), -0613, -05-20, -latest, -v2:0 (Bedrock). Stripped one at
# a time, the name looked up after each.
_SUFFIX_RE = re.compile(r"(?:[-_@](?:\d{4}-\d{2}-\d{2}|\d{8}|\d{4}|\d{2}-\d{2})|-latest|-v\d+(?::\d+)?)$")
_CACHE_LIMIT = 10_000
_MISSING: Any = object()


def default_pricing_path() -> str:
    """Filesystem path of the built-in table (package data)."""
    return str(resources.files("costmeter").joinpath("data", "pricing.yaml"))


@dataclass(frozen=True, slots=True)
class ModelPrice:
    """Rates in USD per million tokens for one model, as in force from ``effective_from``.

    Fallbacks are already applied: ``cached_input`` and ``cache_write`` are
    the input rate and ``reasoning`` is the output rate unless the table says
    otherwise. ``long_context`` holds the rates that apply to a whole request
    whose prompt (input + cached_input + cache_write) exceeds
    ``long_context_above`` tokens.
    """

    provider: str
    model: str
    input: float
    cached_input: float
    cache_write: float
    output: float
    reasoning: float
    batch_discount: float = 0.0
    effective_from: float | None = None          # Unix seconds; None: since always
    long_context_above: int | None = None
    long_context: "ModelPrice | None" = None

    def rates(self) -> dict[str, float]:
        return {k: getattr(self, k) for k in RATE_KEYS}

    def cost(self, input_tokens: int = 0, cached_input_tokens: int = 0, cache_write_tokens: int = 0,
             output_tokens: int = 0, reasoning_tokens: int = 0, *, batch: bool = False) -> float:
        p = self
        above = p.long_context_above
        if above is not None and input_tokens + cached_input_tokens + cache_write_tokens > above:
            p = p.long_context  # type: ignore[assignment]
        c = (input_tokens * p.input + cached_input_tokens * p.cached_input
             + cache_write_tokens * p.cache_write + output_tokens * p.output
             + reasoning_tokens * p.reasoning) * 1e-6
        if batch:
            c *= 1.0 - p.batch_discount
        return c


# ---- parsed file (one layer) ------------------------------------------------

@dataclass
class _ModelSpec:
    name: str
    entries: list[tuple[float | None, dict[str, float], dict[str, float] | None]]
    aliases: list[tuple[str, int | None]]            # (alias, line)
    patterns: list[tuple[re.Pattern, int, str]]      # (compiled, literal chars, source)
    batch_discount: float | None
    file: str | None
    line: int | None


@dataclass
class _ProviderSpec:
    batch_discount: float | None = None
    models: dict[str, _ModelSpec] = field(default_factory=dict)


@dataclass
class _Layer:
    file: str | None
    include_defaults: bool
    providers: dict[str, _ProviderSpec]


def _parse_date(doc: Doc, path: tuple, value: Any) -> float:
    if isinstance(value, datetime):
        d = value
    elif isinstance(value, date):
        d = datetime(value.year, value.month, value.day, tzinfo=timezone.utc)
    elif isinstance(value, str):
        try:
            d = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            raise doc.error(path, f"{value!r} is not a date (use YYYY-MM-DD or RFC 3339)") from None
        if len(value) > 10 and d.tzinfo is None:
            raise doc.error(path, f"{value!r} has no UTC offset (add Z or +00:00)")
    else:
        raise doc.error(path, f"must be a date (YYYY-MM-DD), got {value!r}")
    if d.tzinfo is None:
        d = d.replace(tzinfo=timezone.utc)
    return d.timestamp()


def _rate(doc: Doc, path: tuple, value: Any) -> float:
    return loader.expect_number(doc, path, value, minimum=0)


def _unknown_key(doc: Doc, path: tuple, key: Any, allowed: tuple) -> ConfigError:
    rates = ", ".join(RATE_KEYS)
    others = ", ".join(k for k in allowed if k not in RATE_KEYS)
    if any(k in RATE_KEYS for k in allowed):
        return doc.error(path + (key,), f"unknown token type or key (token types: {rates}; other keys: {others})")
    return doc.error(path + (key,), f"unknown key (allowed: {', '.join(allowed)})")


def _rates(doc: Doc, path: tuple, m: dict, allowed: tuple, errors: list) -> dict[str, float]:
    out: dict[str, float] = {}
    for k, v in m.items():
        if k not in allowed:
            errors.append(_unknown_key(doc, path, k, allowed))
        elif k in RATE_KEYS:
            try:
                out[k] = _rate(doc, path + (k,), v)
            except ConfigError as e:
                errors.append(e)
    return out


def _literal_chars(pattern: str, glob: bool) -> int:
    if glob:
        return sum(1 for ch in pattern if ch not in "*?[]!")
    s = re.sub(r"\\.", "x", pattern)
    return sum(1 for ch in s if ch not in ".^$*+?{}[]()|")


def _parse_entry(doc: Doc, path: tuple, m: dict, errors: list, *, need_date: bool):
    rates = _rates(doc, path, m, _ENTRY_KEYS, errors)
    for req in ("input", "output"):
        if req not in m:
            errors.append(doc.error(path, f"missing '{req}' rate (USD per million tokens)"))
    ts = None
    if "effective_from" in m:
        try:
            ts = _parse_date(doc, path + ("effective_from",), m["effective_from"])
        except ConfigError as e:
            errors.append(e)
    elif need_date:
        errors.append(doc.error(path, "missing 'effective_from' (only the first price may omit it)"))
    tier = None
    if "long_context" in m:
        tpath = path + ("long_context",)
        try:
            t = loader.expect_mapping(doc, tpath, m["long_context"])
            tier = _rates(doc, tpath, t, _TIER_KEYS, errors)
            if "above" not in t:
                errors.append(doc.error(tpath, "missing 'above' (prompt tokens above which these rates apply)"))
            else:
                a = t["above"]
                if isinstance(a, bool) or not isinstance(a, int) or a <= 0:
                    errors.append(doc.error(tpath + ("above",), f"must be a whole number of tokens > 0, got {a!r}"))
                else:
                    tier["above"] = a
        except ConfigError as e:
            errors.append(e)
    return ts, rates, tier


def _parse_model(doc: Doc, path: tuple, name: str, m: Any, errors: list) -> _ModelSpec | None:
    try:
        m = loader.expect_mapping(doc, path, m)
    except ConfigError as e:
        errors.append(e)
        return None
    if not m:
        errors.append(doc.error(path, "model has no prices (needs at least input and output)"))
        return None
    entries = []
    if "prices" in m:
        stray = [k for k in m if k not in _MODEL_META_KEYS]
        for k in stray:
            errors.append(doc.error(path + (k,), "rates go either directly under the model or in 'prices', not both"
                                    if k in _ENTRY_KEYS else "unknown key (allowed: " + ", ".join(_MODEL_META_KEYS) + ")"))
        plist = m["prices"]
        if not isinstance(plist, list) or not plist:
            errors.append(doc.error(path + ("prices",), "must be a non-empty list of prices"))
            plist = []
        seen: dict[float | None, int] = {}
        for i, item in enumerate(plist):
            ipath = path + ("prices", i)
            try:
                item = loader.expect_mapping(doc, ipath, item)
            except ConfigError as e:
                errors.append(e)
                continue
            ts, rates, tier = _parse_entry(doc, ipath, item, errors, need_date=i > 0)
            if ts is not None or i == 0:
                if ts in seen:
                    errors.append(doc.error(ipath + ("effective_from",),
                                            f"a price for this date is already given at prices[{seen[ts]}]"))
                seen[ts] = i
            entries.append((ts, rates, tier))
    else:
        allowed = _ENTRY_KEYS + _MODEL_META_KEYS
        for k in m:
            if k not in allowed:
                errors.append(_unknown_key(doc, path, k, allowed))
        entry_part = {k: v for k, v in m.items() if k in _ENTRY_KEYS}
        entries.append(_parse_entry(doc, path, entry_part, errors, need_date=False))

    aliases: list[tuple[str, int | None]] = []
    pats: list[tuple[re.Pattern, int, str]] = []
    for key in ("aliases", "patterns", "regex"):
        if key not in m:
            continue
        lst = m[key]
        if isinstance(lst, str):
            lst = [lst]
        if not isinstance(lst, list):
            errors.append(doc.error(path + (key,), f"must be a list of strings, got {type(lst).__name__}"))
            continue
        for i, s in enumerate(lst):
            ipath = path + (key, i)
            if not isinstance(s, str) or not s.strip():
                errors.append(doc.error(ipath, f"must be a non-empty string, got {s!r}"))
                continue
            s = s.strip().lower()
            if key == "aliases":
                aliases.append((s, doc.line(ipath)))
            elif key == "patterns":
                pats.append((re.compile(fnmatch.translate(s)), _literal_chars(s, True), s))
            else:
                try:
                    pats.append((re.compile(s, re.IGNORECASE), _literal_chars(s, False), s))
                except re.error as e:
                    errors.append(doc.error(ipath, f"invalid regular expression {s!r}: {e}"))
    bd = None
    if "batch_discount" in m:
        try:
            bd = loader.expect_number(doc, path + ("batch_discount",), m["batch_discount"], minimum=0, maximum=1)
        except ConfigError as e:
            errors.append(e)
    return _ModelSpec(name, entries, aliases, pats, bd, doc.file, doc.line(path))


def _read(text: str | None, file: str | None) -> Doc:
    return loader.load(file) if text is None else loader.loads(text, file)  # type: ignore[arg-type]


def _parse(doc: Doc) -> _Layer:
    errors: list[ConfigError] = []
    top = doc.data
    if top is None or top == {}:
        top = {}
    if not isinstance(top, dict):
        raise doc.error((), f"the pricing file must be a mapping, got {type(top).__name__}")
    for k in top:
        if k not in _TOP_KEYS:
            errors.append(doc.error((k,), f"unknown top-level key (allowed: {', '.join(_TOP_KEYS)})"))
    inc = top.get("include_defaults", True)
    if not isinstance(inc, bool):
        errors.append(doc.error(("include_defaults",), f"must be true or false, got {inc!r}"))
        inc = True
    providers: dict[str, _ProviderSpec] = {}
    try:
        pmap = loader.expect_mapping(doc, ("providers",), top.get("providers"))
    except ConfigError as e:
        errors.append(e)
        pmap = {}
    for pname, pval in pmap.items():
        ppath = ("providers", pname)
        if not isinstance(pname, str) or not _PROVIDER_RE.match(pname):
            errors.append(doc.error(ppath, "provider names are lower-case letters, digits and _ (e.g. openai)"))
            continue
        try:
            pval = loader.expect_mapping(doc, ppath, pval, _PROVIDER_KEYS)
        except ConfigError as e:
            errors.append(e)
            continue
        spec = _ProviderSpec()
        if "batch_discount" in pval:
            try:
                spec.batch_discount = loader.expect_number(doc, ppath + ("batch_discount",), pval["batch_discount"],
                                                             minimum=0, maximum=1)
            except ConfigError as e:
                errors.append(e)
        try:
            mmap = loader.expect_mapping(doc, ppath + ("models",), pval.get("models"))
        except ConfigError as e:
            errors.append(e)
            mmap = {}
        owner: dict[str, str] = {}
        for mname, mval in mmap.items():
            mpath = ppath + ("models", mname)
            if not isinstance(mname, str) or not mname.strip():
                errors.append(doc.error(mpath, "model names must be non-empty strings"))
                continue
            key = mname.strip().lower()
            if key in spec.models:
                errors.append(doc.error(mpath, f"model defined twice (names ignore case: {key})"))
                continue
            ms = _parse_model(doc, mpath, key, mval, errors)
            if ms is None:
                continue
            spec.models[key] = ms
            for alias, line in ms.aliases:
                if alias in owner and owner[alias] != key:
                    errors.append(ConfigError(doc.file, line, loader.key_name(mpath + ("aliases",)),
                                              f"alias {alias!r} is already an alias of {owner[alias]}"))
                owner[alias] = key
        for alias, mkey in owner.items():
            if alias in spec.models and alias != mkey:
                line = next(ln for a, ln in spec.models[mkey].aliases if a == alias)
                errors.append(ConfigError(doc.file, line, loader.key_name(ppath + ("models", mkey, "aliases")),
                                          f"alias {alias!r} is the name of another model"))
        providers[pname] = spec
    if len(errors) == 1:
        raise errors[0]
    if errors:
        raise ConfigErrors(errors)
    return _Layer(doc.file, inc, providers)


_default_layer: _Layer | None = None


def _defaults() -> _Layer:
    global _default_layer
    if _default_layer is None:
        _default_layer = _parse(_read(None, default_pricing_path()))
    return _default_layer


# ---- the table --------------------------------------------------------------

class _Model:
    """A model's price history, ready for lookups."""

    __slots__ = ("name", "starts", "prices", "single")

    def __init__(self, name: str, prices: list[ModelPrice]):
        self.name = name
        self.prices = sorted(prices, key=lambda p: -1e300 if p.effective_from is None else p.effective_from)
        self.starts = [-1e300 if p.effective_from is None else p.effective_from for p in self.prices]
        self.single = self.prices[0] if len(self.prices) == 1 and self.prices[0].effective_from is None else None

    def at(self, ts: float) -> ModelPrice | None:
        i = bisect.bisect_right(self.starts, ts) - 1
        return self.prices[i] if i >= 0 else None


def _build_price(provider: str, model: str, ts: float | None, rates: dict[str, float],
                 tier: dict[str, float] | None, batch_discount: float) -> ModelPrice:
    def fill(r: dict[str, float], base: dict[str, float] | None) -> dict[str, float]:
        if base is not None:           # a tier inherits the base rates it does not set
            r = {**base, **{k: v for k, v in r.items() if k in RATE_KEYS}}
            return r
        inp, out = r["input"], r["output"]
        return {"input": inp, "cached_input": r.get("cached_input", inp), "cache_write": r.get("cache_write", inp),
                "output": out, "reasoning": r.get("reasoning", out)}

    base = fill(rates, None)
    long_price, above = None, None
    if tier is not None:
        above = int(tier["above"])
        t = dict(tier)
        # Unset tier reasoning follows the tier's output rate; unset cache rates follow the tier's input.
        if "output" in t and "reasoning" not in t and "reasoning" not in rates:
            t["reasoning"] = t["output"]
        if "input" in t:
            for k in ("cached_input", "cache_write"):
                if k not in t and k not in rates:
                    t[k] = t["input"]
        long_price = ModelPrice(provider, model, effective_from=ts, batch_discount=batch_discount, **fill(t, base))
    return ModelPrice(provider, model, effective_from=ts, batch_discount=batch_discount,
                      long_context_above=above, long_context=long_price, **base)


class PricingTable:
    """Prices by (provider, model); see the module docstring for the file format."""

    def __init__(self, layers: list[_Layer] | None = None):
        self._models: dict[str, dict[str, _Model]] = {}
        self._names: dict[str, dict[str, str]] = {}          # provider -> lower name/alias -> model
        self._patterns: dict[str, list[tuple[re.Pattern, int, int, int, str]]] = {}
        self._cache: dict[tuple[str, str], Any] = {}
        self._build(layers or [])

    # -- construction --
    @classmethod
    def load(cls, path: str | None = None) -> "PricingTable":
        """The built-in table, with the user's file at ``path`` (if any) on top."""
        if path is None:
            return cls([_defaults()])
        user = _parse(_read(None, path))
        return cls([_defaults(), user] if user.include_defaults else [user])

    @classmethod
    def loads(cls, text: str, file: str = "<string>") -> "PricingTable":
        """A table from YAML text, on top of the built-in one unless it says include_defaults: false."""
        user = _parse(_read(text, file))
        return cls([_defaults(), user] if user.include_defaults else [user])

    def _build(self, layers: list[_Layer]) -> None:
        merged: dict[str, dict[str, tuple[int, _ModelSpec]]] = {}
        provider_bd: dict[str, float] = {}
        for li, layer in enumerate(layers):
            for pname, pspec in layer.providers.items():
                if pspec.batch_discount is not None:
                    provider_bd[pname] = pspec.batch_discount
                models = merged.setdefault(pname, {})
                for mname, ms in pspec.models.items():
                    models[mname] = (li, ms)          # a later layer replaces the whole model
        errors: list[ConfigError] = []
        for pname, models in merged.items():
            names: dict[str, str] = {m: m for m in models}
            pats: list[tuple[re.Pattern, int, int, int, str]] = []
            built: dict[str, _Model] = {}
            alias_defs: list[tuple[int, str, str, _ModelSpec, int | None]] = []
            for order, (mname, (li, ms)) in enumerate(models.items()):
                bd = ms.batch_discount if ms.batch_discount is not None else provider_bd.get(pname, 0.0)
                built[mname] = _Model(mname, [_build_price(pname, mname, ts, rates, tier, bd)
                                              for ts, rates, tier in ms.entries])
                alias_defs.extend((li, alias, mname, ms, line) for alias, line in ms.aliases)
                pats.extend((rx, lit, li, order, mname) for rx, lit, _src in ms.patterns)
            alias_defs.sort(key=lambda a: a[0])          # stable: a later file wins an alias clash
            for li, alias, mname, ms, line in alias_defs:
                if alias in models and alias != mname:
                    if models[alias][0] > li:            # a newer file defines it as a model: the model wins
                        continue
                    errors.append(ConfigError(ms.file, line, f"providers.{pname}.models.{mname}.aliases",
                                              f"alias {alias!r} is the name of another model"))
                    continue
                names[alias] = mname
            pats.sort(key=lambda p: (-p[1], -p[2], p[3]))   # most literal characters, then newest file
            self._models[pname] = built
            self._names[pname] = names
            self._patterns[pname] = pats
        if len(errors) == 1:
            raise errors[0]
        if errors:
            raise ConfigErrors(errors)

    # -- lookups --
    def _lookup(self, provider: str, model: str) -> Any:
        p = provider.strip().lower()
        found = _MISSING
        models = self._models.get(p)
        if models is not None and model:
            name = self._resolve(p, model)
            if name is not None:
                found = models[name]
        if len(self._cache) >= _CACHE_LIMIT:
            self._cache.clear()
        self._cache[(provider, model)] = found
        return found

    def _resolve(self, p: str, model: str) -> str | None:
        names = self._names[p]
        m = model.strip().lower()
        for prefix in ("models/", p + "/"):
            if m.startswith(prefix) and len(m) > len(prefix):
                m = m[len(prefix):]
        candidates = [m]
        c = m
        for _ in range(3):
            c2 = _SUFFIX_RE.sub("", c)
            if c2 == c or not c2:
                break
            candidates.append(c2)
            c = c2
        for c in candidates:
            hit = names.get(c)
            if hit is not None:
                return hit
        for rx, _lit, _layer, _order, mname in self._patterns[p]:   # most literal characters first
            for c in candidates:
                if rx.fullmatch(c):
                    return mname
        return None

    def resolve(self, provider: str, model: str) -> str | None:
        """The canonical model name that prices ``model``, or None."""
        e = self._cache.get((provider, model))
        if e is None:
            e = self._lookup(provider, model)
        return None if e is _MISSING else e.name

    def price(self, provider: str, model: str, at: float | None = None) -> ModelPrice | None:
        """Rates in force at ``at`` (Unix seconds; None: now), or None when there is no price."""
        e = self._cache.get((provider, model))
        if e is None:
            e = self._lookup(provider, model)
        if e is _MISSING:
            return None
        return e.single or e.at(time.time() if at is None else at)

    def cost(self, provider: str, model: str, input_tokens: int = 0, cached_input_tokens: int = 0,
             cache_write_tokens: int = 0, output_tokens: int = 0, reasoning_tokens: int = 0, *,
             at: float | None = None, batch: bool = False) -> float | None:
        """USD for one request, or None when the model has no price (never a silent $0).

        Token counts are disjoint, as in events.UsageEvent. A prompt (input +
        cached_input + cache_write) over the model's long-context threshold is
        priced entirely at the long-context rates; ``batch`` applies the batch
        discount.
        """
        e = self._cache.get((provider, model))
        if e is None:
            e = self._lookup(provider, model)
        if e is _MISSING:
            return None
        p = e.single
        if p is None:
            p = e.at(time.time() if at is None else at)
            if p is None:
                return None
        return p.cost(input_tokens, cached_input_tokens, cache_write_tokens, output_tokens, reasoning_tokens,
                      batch=batch)

    def max_cost(self, provider: str, model: str, input_tokens: int, max_output_tokens: int, *,
                 at: float | None = None) -> float | None:
        """An upper bound on a request's cost before it is made, for budget reservations.

        ``input_tokens`` is the whole prompt; it is priced at the dearest input
        rate (a cache write costs more than plain input) and the output at the
        dearer of output and reasoning, in the long-context tier when the
        prompt is over its threshold. No batch discount.
        """
        p = self.price(provider, model, at)
        if p is None:
            return None
        if p.long_context_above is not None and input_tokens > p.long_context_above:
            p = p.long_context  # type: ignore[assignment]
        return (input_tokens * max(p.input, p.cached_input, p.cache_write)
                + max_output_tokens * max(p.output, p.reasoning)) * 1e-6

    def models(self) -> list[tuple[str, str, ModelPrice]]:
        """(provider, model, price in force now) for every priced model, sorted."""
        now = time.time()
        out = []
        for pname in sorted(self._models):
            for mname in sorted(self._models[pname]):
                m = self._models[pname][mname]
                p = m.single or m.at(now)
                if p is not None:
                    out.append((pname, mname, p))
        return out

    def aliases(self, provider: str) -> dict[str, str]:
        """Every explicit name and alias of a provider, mapped to its model (for docs and `costmeter check`)."""
        return dict(self._names.get(provider.lower(), {}))
