"""The ``billing`` section of ``exporter.yaml``, validated into :class:`BillingConfig`.

    billing:
      interval: 1h               # default for every source; each may set its own
      sources:
        - {name: openai, type: openai, api_key_env: OPENAI_ADMIN_KEY}
        - {name: anthropic, type: anthropic, api_key_file: /run/secrets/anthropic-admin-key}
        - {name: aws, type: aws, region: us-east-1, metric: UnblendedCost}
        - {name: exports, type: focus, paths: ["/data/focus/**/*.csv.gz"]}

Keys are never written in this file: ``api_key_env`` names an environment
variable and ``api_key_file`` a file that holds the key (read at every pull,
so a rotated key is picked up). A value that looks like a key, or an
``api_key`` entry, is refused with a hint, and no error message ever repeats
the value. ``base_url`` (openai, anthropic) and ``endpoint_url`` (aws)
replace the vendor's address, for proxies and tests.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from typing import Any, Mapping

from costmeter.config import loader
from costmeter.config.loader import ConfigError, Doc, ErrorCollector

__all__ = ["BillingConfig", "SourceConfig", "SecretUnavailable", "parse_duration", "unknown_sources", "TYPES",
           "AWS_METRICS"]

TYPES = ("openai", "anthropic", "aws", "focus")
AWS_METRICS = ("UnblendedCost", "BlendedCost", "AmortizedCost", "NetUnblendedCost", "NetAmortizedCost")
DEFAULT_INTERVAL = 3600.0
_COMMON = ("name", "type", "interval")
_KEYS = {
    "openai": _COMMON + ("api_key_env", "api_key_file", "base_url"),
    "anthropic": _COMMON + ("api_key_env", "api_key_file", "base_url"),
    "aws": _COMMON + ("region", "endpoint_url", "metric"),
    "focus": _COMMON + ("paths",),
}
DEFAULT_BASE_URL = {"openai": "https://api.openai.com", "anthropic": "https://api.anthropic.com"}
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$")
_ENV_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")
_DURATION_RE = re.compile(r"^(?:(\d+(?:\.\d+)?)(ms|s|m|h|d))+$")
_PART_RE = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")
_UNIT = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
# What vendors' secret keys start with; such a value is a key, not a variable name.
_KEY_PREFIXES = ("sk-", "sk_", "AKIA", "ASIA")
_KEY_HINT = ("put the key in an environment variable and name that variable here "
             "(api_key_env: OPENAI_ADMIN_KEY), or in a file named by api_key_file; "
             "keys are never written in exporter.yaml")


class SecretUnavailable(Exception):
    """A source's key cannot be read; the message names the variable or file, never the key."""


def parse_duration(text: str) -> float:
    """Seconds in a Go-style duration such as ``1h``, ``90s`` or ``1h30m`` (``d`` allowed)."""
    if not isinstance(text, str) or not _DURATION_RE.match(text.strip()):
        raise ValueError(f"must be a duration such as 1h, 30m, 90s or 1h30m, got {text!r}")
    return sum(float(n) * _UNIT[u] for n, u in _PART_RE.findall(text.strip()))


@dataclass(frozen=True)
class SourceConfig:
    name: str
    type: str
    interval: float = DEFAULT_INTERVAL
    api_key_env: str | None = None
    api_key_file: str | None = None
    base_url: str | None = None
    endpoint_url: str | None = None
    region: str | None = None
    metric: str = "UnblendedCost"
    paths: tuple[str, ...] = ()

    @property
    def key_origin(self) -> str:
        """Where the key comes from, for log lines: never the key itself."""
        if self.api_key_env:
            return f"environment variable {self.api_key_env}"
        if self.api_key_file:
            return f"file {self.api_key_file}"
        return "no key configured"

    def api_key(self, env: Mapping[str, str] | None = None) -> str:
        """Read the key now (so a rotated key is used at the next pull)."""
        env = os.environ if env is None else env
        if self.api_key_env:
            value = env.get(self.api_key_env, "").strip()
            if not value:
                raise SecretUnavailable(f"environment variable {self.api_key_env} is not set or empty")
            return value
        if self.api_key_file:
            try:
                with open(self.api_key_file, encoding="utf-8") as f:
                    value = f.read().strip()
            except (OSError, UnicodeDecodeError) as e:
                raise SecretUnavailable(f"cannot read the key file {self.api_key_file}: "
                                f"{getattr(e, 'strerror', None) or type(e).__name__}") from None
            if not value:
                raise SecretUnavailable(f"the key file {self.api_key_file} is empty")
            return value
        raise SecretUnavailable("no api_key_env or api_key_file is configured")


@dataclass
class BillingConfig:
    interval: float = DEFAULT_INTERVAL
    sources: list[SourceConfig] = field(default_factory=list)

    def get(self, name: str) -> SourceConfig | None:
        return next((s for s in self.sources if s.name == name), None)

    @classmethod
    def from_yaml(cls, doc: Doc, path: tuple, value: Any) -> "BillingConfig":
        """Validate the ``billing`` section found at ``path`` of ``doc`` (None: no sources).
        Raises ConfigError or ConfigErrors, each with file, line and key."""
        path = tuple(path)
        section = loader.expect_mapping(doc, path, value, ("interval", "sources"))
        errs = ErrorCollector()

        cfg = cls()
        if "interval" in section:
            cfg.interval = errs.run(lambda: _interval(doc, path + ("interval",), section["interval"])) or cfg.interval
        items = section.get("sources")
        if items is not None and not isinstance(items, list):
            errs.errors.append(doc.error(path + ("sources",), f"must be a list of sources, got {type(items).__name__}"))
            items = None
        base_dir = os.path.dirname(os.path.abspath(doc.file)) if doc.file else os.getcwd()
        seen: dict[str, int] = {}
        for i, item in enumerate(items or []):
            p = path + ("sources", i)
            src = errs.run(lambda p=p, item=item: _source(doc, p, item, cfg.interval, base_dir))
            if src is None:
                continue
            if src.name in seen:
                errs.errors.append(doc.error(p + ("name",), f"duplicate source name {src.name!r} "
                                                       f"(first at line {doc.line(path + ('sources', seen[src.name]))})"))
                continue
            seen[src.name] = i
            cfg.sources.append(src)
        errs.raise_if_any()
        return cfg


def unknown_sources(refs: list[tuple[str, str, int | None]], file: str | None,
                    billing: "BillingConfig | None") -> list[ConfigError]:
    """Budgets whose ``billing_source`` names no source of exporter.yaml's billing section."""
    names = [s.name for s in billing.sources] if billing is not None else []
    return [ConfigError(file or "budgets.yaml", line, f"budget {budget!r}: billing_source",
                        f"no billing source named {source!r} in exporter.yaml "
                        f"({'sources: ' + ', '.join(names) if names else 'it declares no billing sources'})")
            for budget, source, line in refs if source not in names]


def _interval(doc: Doc, path: tuple, value: Any) -> float:
    try:
        seconds = parse_duration(value)
    except ValueError as e:
        raise doc.error(path, str(e)) from None
    if seconds < 1:
        raise doc.error(path, f"must be at least 1s, got {value!r}")
    return seconds


def _looks_like_key(value: str) -> bool:
    return value.startswith(_KEY_PREFIXES) or len(value) > 40 or (
        len(value) >= 20 and bool(re.search(r"[a-z]", value)) and bool(re.search(r"[0-9]", value)))


def _source(doc: Doc, p: tuple, item: Any, default_interval: float, base_dir: str) -> SourceConfig:
    if isinstance(item, dict) and "api_key" in item:
        raise doc.error(p + ("api_key",), "a key in the config file is refused: " + _KEY_HINT)
    m = loader.expect_mapping(doc, p, item)
    for k in ("name", "type"):
        if k not in m:
            raise doc.error(p, f"missing key '{k}'" + (f" (one of {', '.join(TYPES)})" if k == "type" else ""))
    name = loader.expect_str(doc, p + ("name",), m["name"])
    if not _NAME_RE.match(name):
        raise doc.error(p + ("name",), f"must be 1-64 characters of A-Z a-z 0-9 _ . : -, got {name!r}")
    kind = m["type"]
    if kind not in TYPES:
        raise doc.error(p + ("type",), f"unknown type {kind!r} (expected one of {', '.join(TYPES)})")
    loader.expect_mapping(doc, p, m, _KEYS[kind])
    kw: dict[str, Any] = {"name": name, "type": kind, "interval": default_interval}
    if "interval" in m:
        kw["interval"] = _interval(doc, p + ("interval",), m["interval"])
    if kind in ("openai", "anthropic"):
        given = [k for k in ("api_key_env", "api_key_file") if k in m]
        if len(given) != 1:
            raise doc.error(p, f"source {name!r} needs exactly one of api_key_env (the name of the environment "
                               "variable holding the admin key) or api_key_file")
        if "api_key_env" in m:
            var = m["api_key_env"]
            if not isinstance(var, str) or not var:
                raise doc.error(p + ("api_key_env",), "must be the name of an environment variable")
            # Never repeat the value: it may be a secret pasted in the wrong place.
            if _looks_like_key(var):
                raise doc.error(p + ("api_key_env",), "this looks like a key, not the name of an environment "
                                                      "variable: " + _KEY_HINT)
            if not _ENV_RE.match(var):
                raise doc.error(p + ("api_key_env",), "is not an environment variable name (letters, digits "
                                                      "and _, not starting with a digit)")
            kw["api_key_env"] = var
        else:
            f = loader.expect_str(doc, p + ("api_key_file",), m["api_key_file"])
            f = f if os.path.isabs(f) else os.path.join(base_dir, f)
            if not os.path.isfile(f):
                raise doc.error(p + ("api_key_file",), f"no such file: {f}")
            kw["api_key_file"] = f
        kw["base_url"] = DEFAULT_BASE_URL[kind]
        if "base_url" in m:
            kw["base_url"] = _url(doc, p + ("base_url",), m["base_url"])
    elif kind == "aws":
        if "region" in m:
            kw["region"] = loader.expect_str(doc, p + ("region",), m["region"])
        if "endpoint_url" in m:
            kw["endpoint_url"] = _url(doc, p + ("endpoint_url",), m["endpoint_url"])
        if "metric" in m:
            if m["metric"] not in AWS_METRICS:
                raise doc.error(p + ("metric",), f"unknown Cost Explorer metric {m['metric']!r} "
                                                 f"(one of {', '.join(AWS_METRICS)})")
            kw["metric"] = m["metric"]
    else:
        paths = m.get("paths")
        if isinstance(paths, str):
            paths = [paths]
        if not isinstance(paths, list) or not paths or not all(isinstance(x, str) and x for x in paths):
            raise doc.error(p + ("paths",), "needs a list of file globs, e.g. [\"/data/focus/**/*.csv.gz\"]")
        kw["paths"] = tuple(x if os.path.isabs(x) else os.path.join(base_dir, x) for x in paths)
    return SourceConfig(**kw)


def _url(doc: Doc, path: tuple, value: Any) -> str:
    url = loader.expect_str(doc, path, value)
    if not re.match(r"^https?://[^/\s]+", url):
        raise doc.error(path, f"must be an http:// or https:// URL, got {url!r}")
    return url.rstrip("/")
