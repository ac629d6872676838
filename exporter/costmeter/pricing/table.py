"""The price table: lookups of a model's price by provider, name and time, and the cost of a call.

See :mod:`costmeter.pricing` for how a name finds its price.
"""
from __future__ import annotations

import bisect
import dataclasses
import re
import time
from dataclasses import dataclass
from typing import Any

from costmeter.config.loader import ConfigError, ConfigErrors

from costmeter.pricing.file import RATE_KEYS, _defaults, _Layer, _ModelSpec, _parse, _read, default_pricing_path

__all__ = ["PricingTable", "ModelPrice", "RATE_KEYS", "default_pricing_path"]

# Suffixes that name a dated snapshot of a model family, priced as the family:
# -2024-07-18, -20241022, @20240620 (Vertex), -v2:0 (Bedrock), and Vertex's
# @default (the default version of that very model). Stripped one at a
# time, the name looked up after each. Deliberately NOT stripped, because the
# vendors price them differently from the bare name: -0613 / -1106 style
# (gpt-3.5-turbo-1106 is $1/$2, gpt-3.5-turbo $0.50/$1.50), -05-20 style
# (Gemini previews), -latest (moves to whatever model is current), -2411 style
# (Mistral versions). Those resolve only through an explicit name or alias.
_SUFFIX_RE = re.compile(r"(?:[-_@](?:\d{4}-\d{2}-\d{2}|\d{8})|-v\d+:\d+|@default)$")
# Prefixes of a name that only say where it is served: Google's "models/",
# Vertex's resource path.
_PATH_PREFIXES = ("models/", "publishers/google/models/")
# Bedrock-style ids: an optional cross-region inference prefix (us., eu., apac.,
# global., ...) and the vendor ("anthropic."), as in us.anthropic.claude-sonnet-4-5-20250929-v1:0.
_REGION_RE = re.compile(r"^(us|eu|apac|au|ca|jp|global|us-gov)\.")
# Which prefixes bill the model's regional_premium (Bedrock's geographic cross-region and
# in-region endpoints) and which its govcloud_premium; global. bills the vendor's price.
_GEOGRAPHIC = frozenset(("us", "eu", "apac", "au", "ca", "jp"))
_CACHE_LIMIT = 10_000
_MISSING: Any = object()


@dataclass(frozen=True, slots=True)
class ModelPrice:
    """Rates in USD per million tokens for one model, as in force from ``effective_from``.

    Fallbacks are already applied: ``cached_input`` and ``cache_write`` are
    the input rate, ``cache_write_1h`` the cache_write rate and ``reasoning``
    the output rate unless the table says otherwise. ``long_context`` holds
    the rates that apply to a whole request whose prompt (input + cached_input
    + cache_write + cache_write_1h) exceeds ``long_context_above`` tokens.
    ``batch_discount`` is taken off every token type of a batch call except
    those in ``batch_undiscounted``.
    """

    provider: str
    model: str
    input: float
    cached_input: float
    cache_write: float
    output: float
    reasoning: float
    cache_write_1h: float = -1.0                  # -1: the cache_write rate (set in __post_init__)
    batch_discount: float = 0.0
    effective_from: float | None = None          # Unix seconds; None: since always
    long_context_above: int | None = None
    long_context: "ModelPrice | None" = None
    batch_undiscounted: tuple[str, ...] = ()
    source: str | None = None

    def __post_init__(self) -> None:
        if self.cache_write_1h < 0:
            object.__setattr__(self, "cache_write_1h", self.cache_write)

    def rates(self) -> dict[str, float]:
        return {k: getattr(self, k) for k in RATE_KEYS}

    def tier(self, prompt_tokens: int) -> "ModelPrice":
        """The rates for a request whose prompt (input + cached + cache writes) is this long."""
        above = self.long_context_above
        if above is not None and prompt_tokens > above:
            return self.long_context  # type: ignore[return-value]
        return self

    def cost(self, input_tokens: int = 0, cached_input_tokens: int = 0, cache_write_tokens: int = 0,
             output_tokens: int = 0, reasoning_tokens: int = 0, *, batch: bool = False,
             cache_write_1h_tokens: int = 0) -> float:
        p = self
        above = p.long_context_above
        if above is not None and (input_tokens + cached_input_tokens + cache_write_tokens
                                  + cache_write_1h_tokens) > above:
            p = p.long_context  # type: ignore[assignment]
        c = (input_tokens * p.input + cached_input_tokens * p.cached_input
             + cache_write_tokens * p.cache_write + cache_write_1h_tokens * p.cache_write_1h
             + output_tokens * p.output + reasoning_tokens * p.reasoning)
        if batch and p.batch_discount:
            if p.batch_undiscounted:
                n = {"input": input_tokens, "cached_input": cached_input_tokens, "cache_write": cache_write_tokens,
                     "cache_write_1h": cache_write_1h_tokens, "output": output_tokens,
                     "reasoning": reasoning_tokens}
                full = sum(n[k] * getattr(p, k) for k in p.batch_undiscounted)
                c = (c - full) * (1.0 - p.batch_discount) + full
            else:
                c *= 1.0 - p.batch_discount
        return c * 1e-6


# ---- the table --------------------------------------------------------------

class _Model:
    """A model's price history, ready for lookups."""

    __slots__ = ("name", "provider", "starts", "prices", "single", "spec")

    def __init__(self, name: str, prices: list[ModelPrice], provider: str = "", spec: _ModelSpec | None = None):
        self.name = name
        self.provider = provider
        self.spec = spec
        self.prices = sorted(prices, key=lambda p: -1e300 if p.effective_from is None else p.effective_from)
        self.starts = [-1e300 if p.effective_from is None else p.effective_from for p in self.prices]
        self.single = self.prices[0] if len(self.prices) == 1 and self.prices[0].effective_from is None else None

    def at(self, ts: float) -> ModelPrice | None:
        i = bisect.bisect_right(self.starts, ts) - 1
        return self.prices[i] if i >= 0 else None

    def scaled(self, factor: float) -> "_Model":
        """This model with every rate (tiers included) multiplied by ``factor``."""
        def scale(p: ModelPrice | None) -> ModelPrice | None:
            if p is None:
                return None
            return dataclasses.replace(p, long_context=scale(p.long_context),
                                       **{k: getattr(p, k) * factor for k in RATE_KEYS})
        return _Model(self.name, [scale(p) for p in self.prices], self.provider, self.spec)


def _build_price(provider: str, model: str, ts: float | None, rates: dict[str, float],
                 tier: dict[str, float] | None, batch_discount: float,
                 batch_undiscounted: tuple[str, ...] = (), source: str | None = None) -> ModelPrice:
    def fill(r: dict[str, float], base: dict[str, float] | None) -> dict[str, float]:
        if base is not None:           # a tier inherits the base rates it does not set
            r = {**base, **{k: v for k, v in r.items() if k in RATE_KEYS}}
            return r
        inp, out = r["input"], r["output"]
        cw = r.get("cache_write", inp)
        return {"input": inp, "cached_input": r.get("cached_input", inp), "cache_write": cw,
                "cache_write_1h": r.get("cache_write_1h", cw), "output": out, "reasoning": r.get("reasoning", out)}

    extra = {"batch_discount": batch_discount, "batch_undiscounted": batch_undiscounted, "source": source,
             "effective_from": ts}
    base = fill(rates, None)
    long_price, above = None, None
    if tier is not None:
        above = int(tier["above"])
        t = dict(tier)
        # Unset tier reasoning follows the tier's output rate; unset cache rates follow the tier's input
        # (cache_write_1h: the tier's cache_write).
        if "output" in t and "reasoning" not in t and "reasoning" not in rates:
            t["reasoning"] = t["output"]
        if "input" in t:
            for k in ("cached_input", "cache_write"):
                if k not in t and k not in rates:
                    t[k] = t["input"]
        if "cache_write_1h" not in t and "cache_write_1h" not in rates and "cache_write" in t:
            t["cache_write_1h"] = t["cache_write"]
        long_price = ModelPrice(provider, model, **extra, **fill(t, base))
    return ModelPrice(provider, model, long_context_above=above, long_context=long_price, **extra, **base)


class PricingTable:
    """Prices by (provider, model); see the module docstring for the file format."""

    def __init__(self, layers: list[_Layer] | None = None):
        self._models: dict[str, dict[str, _Model]] = {}
        self._names: dict[str, dict[str, str]] = {}          # provider -> lower name/alias -> model
        self._patterns: dict[str, list[tuple[re.Pattern, int, int, int, str]]] = {}
        self._provider_aliases: dict[str, tuple[str, ...]] = {}   # alias -> providers (gemini -> google)
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
        provider_bu: dict[str, tuple[str, ...]] = {}
        paliases: dict[str, tuple[tuple[str, ...], _Layer, int | None]] = {}
        for li, layer in enumerate(layers):
            for a, (targets, line) in layer.provider_aliases.items():
                paliases[a] = (targets, layer, line)
            for pname, pspec in layer.providers.items():
                if pspec.batch_discount is not None:
                    provider_bd[pname] = pspec.batch_discount
                if pspec.batch_undiscounted is not None:
                    provider_bu[pname] = pspec.batch_undiscounted
                models = merged.setdefault(pname, {})
                for mname, ms in pspec.models.items():
                    models[mname] = (li, ms)          # a later layer replaces the whole model
        errors: list[ConfigError] = []
        for a, (targets, layer, line) in paliases.items():
            missing = [t for t in targets if t not in merged]
            if missing:
                errors.append(ConfigError(layer.file, line, f"provider_aliases.{a}",
                                          f"{missing[0]!r} is not a provider of the price table"))
                continue
            self._provider_aliases[a] = targets
        for pname, models in merged.items():
            names: dict[str, str] = {m: m for m in models}
            pats: list[tuple[re.Pattern, int, int, int, str]] = []
            built: dict[str, _Model] = {}
            alias_defs: list[tuple[int, str, str, _ModelSpec, int | None]] = []
            for order, (mname, (li, ms)) in enumerate(models.items()):
                bd = ms.batch_discount if ms.batch_discount is not None else provider_bd.get(pname, 0.0)
                bu = ms.batch_undiscounted if ms.batch_undiscounted is not None else provider_bu.get(pname, ())
                built[mname] = _Model(mname, [_build_price(pname, mname, ts, rates, tier, bd, bu, ms.source)
                                              for ts, rates, tier in ms.entries], pname, ms)
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
    def _provider(self, name: str) -> str | None:
        """The provider whose prices apply to a provider name (itself, or the one it is an alias of)."""
        if name in self._models:
            return name
        targets = self._provider_aliases.get(name)
        return targets[0] if targets else None

    def _lookup(self, provider: str, model: str) -> Any:
        found = _MISSING
        if model:
            hit = self.explain(provider, model)
            if hit is not None:
                found = self._models[hit["provider"]][hit["model"]]
                if hit["premium"]:
                    found = found.scaled(1.0 + hit["premium"])
        if len(self._cache) >= _CACHE_LIMIT:
            self._cache.clear()
        self._cache[(provider, model)] = found
        return found

    def explain(self, provider: str, model: str) -> dict | None:
        """How a (provider, model) pair finds its price, or None when it has none.

        ``{"provider", "model", "steps": [...]}``: the canonical provider and model,
        and each normalisation applied on the way (provider alias, gateway
        prefix, path or Bedrock prefix, snapshot suffix; then the match: name,
        alias or pattern).
        """
        steps: list[str] = []
        p0 = provider.strip().lower()
        m = model.strip().lower()
        if not m:
            return None
        # A gateway-style name (openai/gpt-4o-mini, gemini/gemini-2.5-pro) names the provider
        # whose prices apply, whatever the event's provider field says (litellm, openrouter...).
        head, sep, rest = m.partition("/")
        if sep and rest and head not in ("models", "publishers"):
            hp = self._provider(head)
            if hp is not None:
                steps.append(f"gateway prefix {head}/")
                return self._find(head, rest, steps)
        return self._find(p0, m, steps)

    def _find(self, p0: str, m: str, steps: list[str]) -> dict | None:
        """Resolve under provider ``p0``: its own models first, then those of the providers it is an alias of,
        in order (model names of different vendors do not overlap)."""
        tries = [(p0, [])] if p0 in self._models else []
        tries += [(alt, [f"provider {p0} is priced as {alt}"]) for alt in self._provider_aliases.get(p0, ())]
        for p, pre in tries:
            s = steps + pre
            hit, premium = self._resolve(p, m, s)
            if hit is not None:
                return {"provider": p, "model": hit, "steps": s, "premium": premium}
            if premium is None:         # found, and its price deliberately unknown: no other provider
                return None
        return None

    def _resolve(self, p: str, m: str, steps: list[str]) -> tuple[str | None, float | None]:
        """The model ``m`` names under provider ``p`` and the Bedrock regional premium its id
        bills over that model's price (0.0 for none); ``(None, 0.0)`` when nothing matches,
        ``(None, None)`` when a model matches but its region has no known price."""
        names = self._names[p]
        hit = names.get(m)                 # an exact name wins over every normalisation
        if hit is not None:
            steps.append(f"name {m}" if hit == m else f"alias {m} of {hit}")
            return hit, 0.0
        for prefix in _PATH_PREFIXES + (p + "/",):
            if m.startswith(prefix) and len(m) > len(prefix):
                steps.append(f"prefix {prefix} removed")
                m = m[len(prefix):]
        bases = [(m, None)]                 # (name, the Bedrock region prefix removed from it)
        if "." in m:                        # Bedrock: [region.]vendor.model, the vendor a known provider
            rm = _REGION_RE.match(m)
            if rm:                          # the vendor's own id without the cross-region prefix
                bases.append((m[rm.end():], rm.group(1)))
            for x, region in list(bases):
                head, _, rest = x.partition(".")
                if rest and (head == p or self._provider(head) is not None):
                    bases.append((rest, region))
                    break
        candidates = []
        for x, region in bases:
            c = x
            candidates.append((c, region))
            for _ in range(3):
                c2 = _SUFFIX_RE.sub("", c)
                if c2 == c or not c2:
                    break
                candidates.append((c2, region))
                c = c2
        hit = c = region = None
        for c, region in candidates:
            hit = names.get(c)
            if hit is not None:
                if c != m:
                    steps.append(f"{m} read as {c} (cross-region, vendor prefix or snapshot suffix removed)")
                steps.append(f"name {c}" if hit == c else f"alias {c} of {hit}")
                break
        else:
            for rx, _lit, _layer, _order, mname in self._patterns[p]:   # most literal characters first
                for c, region in candidates:
                    if rx.fullmatch(c):
                        steps.append(f"pattern {rx.pattern} of {mname} matches {c}")
                        hit = mname
                        break
                if hit is not None:
                    break
        if hit is None or region is None or region == "global":
            return hit, 0.0
        spec = self._models[p][hit].spec
        if region in _GEOGRAPHIC:
            premium = spec.regional_premium if spec is not None else 0.0
            if premium:
                steps.append(f"Bedrock regional id ({region}.): {premium:.0%} over the vendor's price")
            return hit, premium
        premium = spec.govcloud_premium if spec is not None else None      # us-gov.
        if premium is None:             # never the commercial regions' price for GovCloud
            steps.append(f"{region}. ids of {hit} have no known price (its govcloud_premium is not set)")
            return None, None
        steps.append(f"Bedrock GovCloud id ({region}.): {premium:.0%} over the vendor's price")
        return hit, premium

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
             at: float | None = None, batch: bool = False, cache_write_1h_tokens: int = 0) -> float | None:
        """USD for one request, or None when the model has no price (never a silent $0).

        Token counts are disjoint, as in events.UsageEvent. A prompt (input +
        cached_input + cache_write + cache_write_1h) over the model's
        long-context threshold is priced entirely at the long-context rates;
        ``batch`` applies the batch discount. ``cache_write_1h_tokens`` (1-hour
        cache writes) is keyword-only so that positional callers keep working.
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
                      batch=batch, cache_write_1h_tokens=cache_write_1h_tokens)

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
        return (input_tokens * max(p.input, p.cached_input, p.cache_write, p.cache_write_1h)
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

    def provider_aliases(self) -> dict[str, tuple[str, ...]]:
        """Provider names priced as other providers (gemini -> google, bedrock -> anthropic)."""
        return dict(self._provider_aliases)

    def history(self, provider: str, model: str) -> list[ModelPrice]:
        """Every price of the model a name resolves to, oldest first ([] when unpriced)."""
        e = self._cache.get((provider, model))
        if e is None:
            e = self._lookup(provider, model)
        return [] if e is _MISSING else list(e.prices)

    def aliases(self, provider: str) -> dict[str, str]:
        """Every explicit name and alias of a provider, mapped to its model (for docs and `costmeter check`)."""
        return dict(self._names.get(provider.lower(), {}))
