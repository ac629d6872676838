"""pricing.yaml: the file format, parsed into one layer of specs per file.

The format and how names resolve are documented in :mod:`costmeter.pricing`; this module
only reads and validates a file (errors carry file, line and key).
"""
from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass, field
from datetime import date, datetime, timezone
from importlib import resources
from typing import Any

from costmeter.config import loader
from costmeter.config.loader import ConfigError, ConfigErrors, Doc

__all__ = ["RATE_KEYS", "default_pricing_path"]

# Token types, as in events.TOKEN_TYPES and the token_type label.
RATE_KEYS = ("input", "cached_input", "cache_write", "cache_write_1h", "output", "reasoning")
_TOP_KEYS = ("include_defaults", "provider_aliases", "providers")
_PROVIDER_KEYS = ("batch_discount", "batch_undiscounted", "models")
_MODEL_META_KEYS = ("prices", "aliases", "patterns", "regex", "batch_discount", "batch_undiscounted", "source",
                    "regional_premium", "govcloud_premium")
_ENTRY_KEYS = RATE_KEYS + ("effective_from", "long_context")
_TIER_KEYS = RATE_KEYS + ("above",)
_PROVIDER_RE = re.compile(r"^[a-z][a-z0-9_]*$")


def default_pricing_path() -> str:
    """Filesystem path of the built-in table (package data)."""
    return str(resources.files("costmeter.pricing").joinpath("data", "pricing.yaml"))


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
    batch_undiscounted: tuple[str, ...] | None = None
    source: str | None = None
    # Bedrock ids with a geographic prefix (us., eu., apac., au., ca., jp.) bill this
    # fraction more; us-gov. ids are priced only when govcloud_premium is given.
    regional_premium: float = 0.0
    govcloud_premium: float | None = None


@dataclass
class _ProviderSpec:
    batch_discount: float | None = None
    models: dict[str, _ModelSpec] = field(default_factory=dict)
    batch_undiscounted: tuple[str, ...] | None = None


@dataclass
class _Layer:
    file: str | None
    include_defaults: bool
    providers: dict[str, _ProviderSpec]
    # alias -> (providers it is priced as, in order; line)
    provider_aliases: dict[str, tuple[tuple[str, ...], int | None]] = field(default_factory=dict)


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


def _undiscounted(doc: Doc, path: tuple, value: Any, errors: list) -> tuple[str, ...] | None:
    """``batch_undiscounted``: token types the batch discount does not apply to."""
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list):
        errors.append(doc.error(path, f"must be a list of token types, got {type(value).__name__}"))
        return None
    out = []
    for i, v in enumerate(value):
        if v not in RATE_KEYS:
            errors.append(doc.error(path + (i,), f"{v!r} is not a token type ({', '.join(RATE_KEYS)})"))
        else:
            out.append(v)
    return tuple(out)


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
    bu = None
    if "batch_undiscounted" in m:
        bu = _undiscounted(doc, path + ("batch_undiscounted",), m["batch_undiscounted"], errors)
    src = m.get("source")
    if src is not None and not isinstance(src, str):
        errors.append(doc.error(path + ("source",), f"must be a string (where the price comes from), got {src!r}"))
        src = None
    premiums: dict[str, float | None] = {"regional_premium": 0.0, "govcloud_premium": None}
    for key in premiums:
        if key in m:
            try:
                premiums[key] = loader.expect_number(doc, path + (key,), m[key], minimum=0, maximum=10)
            except ConfigError as e:
                errors.append(e)
    return _ModelSpec(name, entries, aliases, pats, bd, doc.file, doc.line(path), bu, src,
                      premiums["regional_premium"] or 0.0, premiums["govcloud_premium"])


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
        if "batch_undiscounted" in pval:
            spec.batch_undiscounted = _undiscounted(doc, ppath + ("batch_undiscounted",), pval["batch_undiscounted"],
                                                    errors)
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
    paliases: dict[str, tuple[tuple[str, ...], int | None]] = {}
    if "provider_aliases" in top:
        try:
            amap = loader.expect_mapping(doc, ("provider_aliases",), top["provider_aliases"])
        except ConfigError as e:
            errors.append(e)
            amap = {}
        for a, target in amap.items():
            apath = ("provider_aliases", a)
            if not isinstance(a, str) or not _PROVIDER_RE.match(a):
                errors.append(doc.error(apath, "provider names are lower-case letters, digits and _ (e.g. vertex_ai)"))
                continue
            targets = [target] if isinstance(target, str) else target
            if (not isinstance(targets, list) or not targets
                    or not all(isinstance(t, str) and _PROVIDER_RE.match(t) for t in targets)):
                errors.append(doc.error(apath, f"must name a provider or a list of providers (e.g. google), "
                                               f"got {target!r}"))
            elif a in targets:
                errors.append(doc.error(apath, "a provider cannot be an alias of itself"))
            else:
                paliases[a] = (tuple(targets), doc.line(apath))
    if len(errors) == 1:
        raise errors[0]
    if errors:
        raise ConfigErrors(errors)
    return _Layer(doc.file, inc, providers, paliases)


_default_layer: _Layer | None = None


def _defaults() -> _Layer:
    global _default_layer
    if _default_layer is None:
        _default_layer = _parse(_read(None, default_pricing_path()))
    return _default_layer


