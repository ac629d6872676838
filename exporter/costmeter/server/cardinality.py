"""Cardinality guard: at most N distinct values per label, the rest folded.

Values are admitted first come, first served, up to the configured limit for
their label; later new values become ``__overflow__`` and each folded event
increments ``costmeter_series_overflow_total{label=...}``. Folding only
changes the label a sample is exported under; spend is still summed (into
the ``__overflow__`` series) and budgets still see the real value.
"""
from __future__ import annotations

from costmeter.config.settings import DEFAULT_LIMITS

OVERFLOW = "__overflow__"


class CardinalityGuard:
    def __init__(self, limits: dict[str, int] | None = None):
        self.limits = dict(DEFAULT_LIMITS if limits is None else limits)
        self.admitted: dict[str, set[str]] = {label: set() for label in self.limits}
        self.overflow: dict[str, int] = {label: 0 for label in self.limits}

    def admits(self, label: str, value: str) -> bool:
        """True if ``value`` is (or can become) an exported value of ``label``."""
        seen = self.admitted.get(label)
        if seen is None or value in seen:
            return True
        return len(seen) < self.limits[label]

    def fold(self, label: str, value: str) -> str:
        seen = self.admitted.get(label)
        if seen is None or value in seen:
            return value
        if len(seen) < self.limits[label]:
            seen.add(value)
            return value
        self.overflow[label] += 1
        return OVERFLOW

    def copy(self) -> "CardinalityGuard":
        """A copy to read outside the ingest lock (copying the sets is cheap next to sorting them
        for ``state``)."""
        c = CardinalityGuard(self.limits)
        c.admitted = {k: set(v) for k, v in self.admitted.items()}
        c.overflow = dict(self.overflow)
        return c

    def state(self) -> dict:
        return {"admitted": {k: sorted(v) for k, v in self.admitted.items()}, "overflow": dict(self.overflow)}

    def restore(self, state: dict) -> None:
        for label, values in state.get("admitted", {}).items():
            if label in self.admitted:
                self.admitted[label].update(values)
        for label, n in state.get("overflow", {}).items():
            if label in self.overflow:
                self.overflow[label] = n
