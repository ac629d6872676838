"""The ``resources`` section of ``exporter.yaml``, validated into :class:`ResourcesConfig`.

    resources:
      interval_seconds: 15
      host: true                  # the whole machine, as target "host"
      self: true                  # the exporter's own process, as target "costmeter"
      cpu_core_hour_usd: 0.031611
      memory_gib_hour_usd: 0.004237
      processes:
        - {target: api, pid: 1234}
        - {target: worker, pid_file: /run/worker.pid}      # re-read every sample
        - {target: celery, match: "celery.*worker"}        # regex, all matches summed

The default rates are explained in :mod:`costmeter.collectors.resources`.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from typing import Any

from costmeter.config import loader
from costmeter.config.loader import Doc, ErrorCollector

__all__ = ["DEFAULT_CPU_CORE_HOUR_USD", "DEFAULT_MEMORY_GIB_HOUR_USD", "HOST_TARGET", "SELF_TARGET",
           "ProcessTarget", "ResourcesConfig"]

DEFAULT_CPU_CORE_HOUR_USD = 0.031611   # GCE N2 vCPU-hour, us-central1, on-demand
DEFAULT_MEMORY_GIB_HOUR_USD = 0.004237  # GCE N2 GiB-hour, us-central1, on-demand
HOST_TARGET = "host"
SELF_TARGET = "costmeter"
RESOURCES = ("cpu", "memory")
GIB = float(1 << 30)

_KEYS = ("interval_seconds", "host", "self", "cpu_core_hour_usd", "memory_gib_hour_usd", "processes")
_PROC_KEYS = ("target", "pid", "pid_file", "match")
_TARGET_RE = re.compile(r"^[A-Za-z0-9_.:/-]{1,64}$")


@dataclass(frozen=True)
class ProcessTarget:
    """One ``processes`` entry: exactly one of pid, pid_file, match is set."""
    target: str
    pid: int | None = None
    pid_file: str | None = None
    match: re.Pattern | None = None


@dataclass
class ResourcesConfig:
    interval_seconds: float = 15.0
    host: bool = True
    self_process: bool = True            # the YAML key is `self`
    cpu_core_hour_usd: float = DEFAULT_CPU_CORE_HOUR_USD
    memory_gib_hour_usd: float = DEFAULT_MEMORY_GIB_HOUR_USD
    processes: list[ProcessTarget] = field(default_factory=list)

    def targets(self) -> list[str]:
        """Target label values, in a stable order: host, costmeter, then processes."""
        out = [HOST_TARGET] if self.host else []
        if self.self_process:
            out.append(SELF_TARGET)
        return out + [p.target for p in self.processes]

    @classmethod
    def from_yaml(cls, doc: Doc, path: tuple, value: Any) -> "ResourcesConfig":
        """Validate the ``resources`` section found at key ``path`` of ``doc``.
        ``value`` None gives the defaults. Raises ConfigError (one problem) or
        ConfigErrors (several), each with file, line and key."""
        path = tuple(path)
        section = loader.expect_mapping(doc, path, value, _KEYS)
        errs = ErrorCollector()
        cfg = cls()

        if "interval_seconds" in section:
            v = errs.run(lambda: loader.expect_number(doc, path + ("interval_seconds",),
                                                       section["interval_seconds"], positive=True))
            if v is not None:
                cfg.interval_seconds = v
        for key, attr in (("host", "host"), ("self", "self_process")):
            if key in section:
                if isinstance(section[key], bool):
                    setattr(cfg, attr, section[key])
                else:
                    errs.errors.append(doc.error(path + (key,), f"must be true or false, got {section[key]!r}"))
        for key in ("cpu_core_hour_usd", "memory_gib_hour_usd"):
            if key in section:
                v = errs.run(lambda key=key: loader.expect_number(doc, path + (key,), section[key], minimum=0))
                if v is not None:
                    setattr(cfg, key, v)

        procs = section.get("processes")
        if procs is not None and not isinstance(procs, list):
            errs.errors.append(doc.error(path + ("processes",), f"must be a list, got {type(procs).__name__}"))
            procs = None
        base_dir = os.path.dirname(os.path.abspath(doc.file)) if doc.file else os.getcwd()
        seen = {t: None for t in cfg.targets()}
        for i, entry in enumerate(procs or []):
            p = path + ("processes", i)
            pt = errs.run(lambda p=p, entry=entry: _process_target(doc, p, entry, base_dir))
            if pt is None:
                continue
            if pt.target in seen:
                why = ("is reserved for `host: true`" if pt.target == HOST_TARGET and cfg.host else
                       "is reserved for `self: true`" if pt.target == SELF_TARGET and cfg.self_process else
                       "is used by another entry")
                errs.errors.append(doc.error(p + ("target",), f"target {pt.target!r} {why}"))
                continue
            seen[pt.target] = None
            cfg.processes.append(pt)

        errs.raise_if_any()
        return cfg


def _process_target(doc: Doc, p: tuple, entry: Any, base_dir: str) -> ProcessTarget:
    entry = loader.expect_mapping(doc, p, entry, _PROC_KEYS)
    if "target" not in entry:
        raise doc.error(p, "target is required (the label value for this process)")
    target = loader.expect_str(doc, p + ("target",), entry["target"])
    if not _TARGET_RE.match(target):
        raise doc.error(p + ("target",), f"must be 1-64 characters of A-Z a-z 0-9 _ . : / -, got {target!r}")
    given = [k for k in ("pid", "pid_file", "match") if k in entry]
    if len(given) != 1:
        raise doc.error(p, "give exactly one of pid, pid_file, match" +
                        (f" (got {', '.join(given)})" if given else ""))
    kind = given[0]
    v = entry[kind]
    if kind == "pid":
        if isinstance(v, bool) or not isinstance(v, int) or v <= 0:
            raise doc.error(p + ("pid",), f"must be a positive integer, got {v!r}")
        return ProcessTarget(target, pid=v)
    if kind == "pid_file":
        name = loader.expect_str(doc, p + ("pid_file",), v)
        return ProcessTarget(target, pid_file=name if os.path.isabs(name) else os.path.join(base_dir, name))
    pattern = loader.expect_str(doc, p + ("match",), v)
    try:
        return ProcessTarget(target, match=re.compile(pattern))
    except re.error as e:
        raise doc.error(p + ("match",), f"invalid regular expression: {e}") from None
