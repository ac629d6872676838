"""Prometheus text exposition (format 0.0.4), written directly and fast.

``prometheus_client.generate_latest`` costs ~20 µs a series because it builds
a Metric and Sample object per series at every scrape. The exporter's data
families instead keep, per series, the ready-made ``name{labels} `` prefix,
so a scrape is one string join per family.
"""
from __future__ import annotations

import math

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def escape_label(value: str) -> str:
    if "\\" in value or '"' in value or "\n" in value:
        value = value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return value


def escape_help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def label_str(names: tuple[str, ...], values: tuple[str, ...]) -> str:
    return ",".join(f'{n}="{escape_label(v)}"' for n, v in zip(names, values))


def fmt(v: float) -> str:
    """Float formatting Prometheus parses: repr() plus Go's spelling of infinities."""
    if v == math.inf:
        return "+Inf"
    if v == -math.inf:
        return "-Inf"
    if v != v:
        return "NaN"
    return repr(float(v))


def header(name: str, kind: str, help_text: str) -> str:
    return f"# HELP {name} {escape_help(help_text)}\n# TYPE {name} {kind}\n"


def gauge_family(name: str, help_text: str, labelnames: tuple[str, ...],
                 samples: list[tuple[tuple[str, ...], float]], kind: str = "gauge") -> str:
    """Render a small family computed at scrape time (budgets, resources, health)."""
    return labelled_family(name, help_text, [(label_str(labelnames, values), v) for values, v in samples], kind)


def labelled_family(name: str, help_text: str, samples: list[tuple[str, float]], kind: str = "gauge") -> str:
    """Render a family whose label strings are made already (``label_str``; "" for none), so that
    several families of the same series (the budgets' seven) escape and join their labels once."""
    return header(name, kind, help_text) + "".join(
        [f"{name}{{{labels}}} {fmt(v)}\n" if labels else f"{name} {fmt(v)}\n" for labels, v in samples])
