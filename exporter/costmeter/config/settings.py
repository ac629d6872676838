"""exporter.yaml: the exporter's own settings, validated once at start.

Every key is optional; with no file at all the exporter runs on built-in
defaults. Command-line flags override the file, and the environment
overrides secrets (``COSTMETER_INGEST_TOKENS``, comma separated) and the
state directory (``COSTMETER_STATE_DIR``). Relative paths in the file are
relative to the file's directory.

    web:
      listen_address: ":9469"
      config_file: web-config.yml      # TLS / basic auth, exporter-toolkit format
      max_body_bytes: 16777216         # larger POST bodies get 413
      max_connections: 480             # default: half the fd limit less 64, at most 512
    storage:
      path: /var/lib/costmeter         # ledger.db and governance.jsonl live here
      snapshot_interval_seconds: 10
      retention_days: 400              # raw events kept for reports and de-duplication
      integrity_check: auto            # start | background (docs/exporter.md, "Integrity at start")
    budgets_file: budgets.yaml
    pricing_file: pricing.yaml          # merged over the built-in price table
    governance_log: governance.jsonl    # relative to storage.path
    ingest:
      bearer_tokens_file: ingest-tokens.txt   # one token per line
      max_events_per_request: 100000
      workers: 1                        # processes that parse large bodies; default: CPUs less one, at most 4
    cardinality:
      max_values: {provider: 50, model: 500, tenant: 2000, endpoint: 500}
    resources: {...}                    # see config/resources.py
    billing: {...}                      # see config/billing.py
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Mapping

from costmeter.config import loader
from costmeter.config.billing import BillingConfig
from costmeter.config.loader import ConfigError, Doc
from costmeter.config.resources import ResourcesConfig

DEFAULT_LISTEN = ":9469"
# Distinct values per label before the cardinality guard folds the rest into __overflow__.
DEFAULT_LIMITS = {"provider": 50, "model": 500, "tenant": 2000, "endpoint": 500}


def default_state_dir(env: Mapping[str, str] | None = None) -> str:
    env = os.environ if env is None else env
    if env.get("COSTMETER_STATE_DIR"):
        return env["COSTMETER_STATE_DIR"]
    base = env.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local", "state")
    return os.path.join(base, "costmeter")


@dataclass
class Settings:
    config_file: str | None = None
    listen_address: str = DEFAULT_LISTEN
    web_config_file: str | None = None
    max_body_bytes: int = 16 * 1024 * 1024
    max_connections: int | None = None   # None: from the fd limit (server/http.py)
    state_dir: str = field(default_factory=default_state_dir)
    snapshot_interval_seconds: float = 10.0
    retention_days: float = 400.0
    # auto: the full check before ready on a small ledger, after ready on a large one;
    # start: always before ready; background: always after (a fast check is always before)
    integrity_check: str = "auto"
    start_empty: bool = False      # --storage.start-empty: open where a ledger was lost
    budgets_file: str | None = None
    pricing_file: str | None = None
    governance_log: str | None = None
    bearer_tokens: tuple[str, ...] = ()
    max_events_per_request: int = 100_000
    ingest_workers: int | None = None    # None: parsepool.default_workers() (CPUs less one, at most 4)
    cardinality: dict[str, int] = field(default_factory=lambda: dict(DEFAULT_LIMITS))
    resources: Any = None          # ResourcesConfig
    billing: Any = None            # BillingConfig

    @property
    def governance_path(self) -> str:
        p = self.governance_log or "governance.jsonl"
        return p if os.path.isabs(p) else os.path.join(self.state_dir, p)


def parse_listen_address(addr: str) -> tuple[str, int]:
    host, sep, port = addr.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"{addr!r} is not host:port (for example :9469 or 127.0.0.1:9469)")
    host = host.strip("[]")
    return host or "0.0.0.0", int(port)


def _read_tokens(doc: Doc, path: tuple, filename: str) -> list[str]:
    try:
        with open(filename, encoding="utf-8") as f:
            return [ln.strip() for ln in f if ln.strip() and not ln.lstrip().startswith("#")]
    except OSError as e:
        raise doc.error(path, f"cannot read {filename}: {e.strerror}") from None


def load_settings(config_file: str | None = None, overrides: Mapping[str, Any] | None = None,
                  env: Mapping[str, str] | None = None) -> Settings:
    """Build Settings from an optional exporter.yaml, flag overrides and the environment."""

    env = os.environ if env is None else env
    s = Settings(state_dir=default_state_dir(env))
    resources_value, billing_value, doc = None, None, None
    if config_file:
        doc = loader.load(config_file)
        s.config_file = config_file
        base = os.path.dirname(os.path.abspath(config_file))

        def rel(p: str) -> str:
            return p if os.path.isabs(p) else os.path.join(base, p)

        top = loader.expect_mapping(doc, (), doc.data, (
            "web", "storage", "budgets_file", "pricing_file", "governance_log", "ingest", "cardinality", "resources",
            "billing"))
        web = loader.expect_mapping(doc, ("web",), top.get("web"), ("listen_address", "config_file", "max_body_bytes",
                                                                           "max_connections"))
        if "listen_address" in web:
            s.listen_address = loader.expect_str(doc, ("web", "listen_address"), web["listen_address"])
            try:
                parse_listen_address(s.listen_address)
            except ValueError as e:
                raise doc.error(("web", "listen_address"), str(e)) from None
        if "config_file" in web:
            s.web_config_file = rel(loader.expect_str(doc, ("web", "config_file"), web["config_file"]))
        if "max_body_bytes" in web:
            s.max_body_bytes = int(loader.expect_number(doc, ("web", "max_body_bytes"), web["max_body_bytes"], minimum=1024))
        if "max_connections" in web:
            s.max_connections = int(loader.expect_number(doc, ("web", "max_connections"), web["max_connections"],
                                                         minimum=2, maximum=100_000))
        st = loader.expect_mapping(doc, ("storage",), top.get("storage"), ("path", "snapshot_interval_seconds", "retention_days",
                                                                                   "integrity_check"))
        if "path" in st:
            s.state_dir = rel(loader.expect_str(doc, ("storage", "path"), st["path"]))
        if "snapshot_interval_seconds" in st:
            s.snapshot_interval_seconds = loader.expect_number(
                doc, ("storage", "snapshot_interval_seconds"), st["snapshot_interval_seconds"], minimum=1, maximum=3600)
        if "retention_days" in st:
            s.retention_days = loader.expect_number(doc, ("storage", "retention_days"), st["retention_days"], minimum=1)
        if "integrity_check" in st:
            if st["integrity_check"] not in ("auto", "start", "background"):
                raise doc.error(("storage", "integrity_check"),
                                f"must be auto, start or background, got {st['integrity_check']!r}")
            s.integrity_check = st["integrity_check"]
        for key in ("budgets_file", "pricing_file"):
            if key in top:
                setattr(s, key, rel(loader.expect_str(doc, (key,), top[key])))
        if "governance_log" in top:
            s.governance_log = loader.expect_str(doc, ("governance_log",), top["governance_log"])
        ing = loader.expect_mapping(doc, ("ingest",), top.get("ingest"),
                                      ("bearer_tokens", "bearer_tokens_file", "max_events_per_request", "workers"))
        tokens: list[str] = []
        if "bearer_tokens" in ing:
            v = ing["bearer_tokens"]
            if not isinstance(v, list) or not all(isinstance(t, str) and t for t in v):
                raise doc.error(("ingest", "bearer_tokens"), "must be a list of non-empty strings")
            tokens += v
        if "bearer_tokens_file" in ing:
            path = rel(loader.expect_str(doc, ("ingest", "bearer_tokens_file"), ing["bearer_tokens_file"]))
            tokens += _read_tokens(doc, ("ingest", "bearer_tokens_file"), path)
        s.bearer_tokens = tuple(tokens)
        if "max_events_per_request" in ing:
            s.max_events_per_request = int(loader.expect_number(
                doc, ("ingest", "max_events_per_request"), ing["max_events_per_request"], minimum=1))
        if "workers" in ing:
            w = ing["workers"]
            if isinstance(w, bool) or not isinstance(w, int) or not 0 <= w <= 64:
                raise doc.error(("ingest", "workers"), f"must be a whole number from 0 to 64, got {w!r}")
            s.ingest_workers = w
        card = loader.expect_mapping(doc, ("cardinality",), top.get("cardinality"), ("max_values",))
        mv = loader.expect_mapping(doc, ("cardinality", "max_values"), card.get("max_values"), tuple(DEFAULT_LIMITS))
        for label, n in mv.items():
            s.cardinality[label] = int(loader.expect_number(doc, ("cardinality", "max_values", label), n, minimum=1))
        resources_value, billing_value = top.get("resources"), top.get("billing")
    s.resources = ResourcesConfig.from_yaml(doc or Doc(config_file, {}), ("resources",), resources_value)
    s.billing = BillingConfig.from_yaml(doc or Doc(config_file, {}), ("billing",), billing_value)

    if env.get("COSTMETER_INGEST_TOKENS"):
        s.bearer_tokens = tuple(t.strip() for t in env["COSTMETER_INGEST_TOKENS"].split(",") if t.strip())
    for key, value in (overrides or {}).items():
        if value is None:
            continue
        if key == "listen_address":
            try:
                parse_listen_address(value)
            except ValueError as e:
                raise ConfigError(None, None, "--web.listen-address", str(e)) from None
        setattr(s, key, value)
    return s
