"""The governance log: budget decisions as JSON lines.

Every decision the budget code takes (a call denied or throttled, a threshold
crossed, an anomaly found) is appended to one file, one JSON object a line,
so it can be tailed, grepped, shipped with promtail or read with ``jq``::

    {"time": "2026-11-22T14:03:07.412Z", "kind": "threshold_crossed", "budget": "tenant:trial-tier",
     "period": "daily", "level": "warning", "threshold_ratio": 0.8, "spend_usd": 0.81, "limit_usd": 1.0, ...}
    {"time": "2026-11-22T14:05:10.009Z", "kind": "deny", "budget": "tenant:trial-tier", "tenant": "trial-tier",
     "reason": "budget tenant:trial-tier (daily): ...", ...}

``time`` is when the line was written, ISO 8601 in UTC; ``kind`` is one of
:data:`KINDS` (others are accepted, so new decision kinds need no change here).
The file is opened in append mode and every line is flushed before ``append``
returns, so several processes may share one file (each line is a single write
smaller than PIPE_BUF on Linux for ordinary records) and a crash loses at
most the line being written.
"""
from __future__ import annotations

import json
import os
import threading
import time
from datetime import datetime, timezone
from typing import Callable

KINDS = ("deny", "throttle", "threshold_crossed", "anomaly")


def _iso_ms(ts: float) -> str:
    return datetime.fromtimestamp(ts, timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class GovernanceLog:
    """Append-only JSON-lines log of budget decisions; safe to share between threads."""

    def __init__(self, path: str, clock: Callable[[], float] | None = None):
        self.path = path
        # The default looks time.time up per call, so freezegun (which swaps module
        # attributes, not bound references) moves this clock too.
        self._clock = clock if clock is not None else (lambda: time.time())
        self._lock = threading.Lock()
        parent = os.path.dirname(os.path.abspath(path))
        os.makedirs(parent, exist_ok=True)
        self._file = open(path, "a", encoding="utf-8")

    def append(self, kind: str, **fields) -> None:
        """Write one record ``{"time": ..., "kind": kind, **fields}`` and flush it."""
        if not isinstance(kind, str) or not kind:
            raise ValueError(f"kind must be a non-empty string, got {kind!r}")
        if "time" in fields or "kind" in fields:
            raise ValueError("'time' and 'kind' are set by the log, not by the caller")
        record = {"time": _iso_ms(self._clock()), "kind": kind}
        record.update(fields)
        line = json.dumps(record, ensure_ascii=False, allow_nan=False, default=str) + "\n"
        with self._lock:
            self._file.write(line)
            self._file.flush()

    def close(self) -> None:
        with self._lock:
            self._file.close()

    def __enter__(self) -> "GovernanceLog":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def read(path: str) -> list[dict]:
    """Every record in a governance log, oldest first; [] when there is no file.

    A torn last line (the process died mid-write) is skipped; a bad line
    anywhere else raises ValueError naming the line.
    """
    try:
        with open(path, encoding="utf-8") as f:
            lines = f.read().split("\n")
    except FileNotFoundError:
        return []
    out = []
    last = len(lines) - 1
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as e:
            if i == last:          # no trailing newline: the write was cut short
                break
            raise ValueError(f"{path}:{i + 1}: not a JSON object: {e.msg}") from None
        if not isinstance(rec, dict):
            raise ValueError(f"{path}:{i + 1}: not a JSON object")
        out.append(rec)
    return out
