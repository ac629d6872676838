"""YAML loading that remembers where every key came from.

Config validation reports errors as ``file:line: key: message`` so that a user
can jump straight to the mistake. ``load(path)`` returns a :class:`Doc` whose
``data`` is plain Python (dicts, lists, scalars) and whose ``line(path)``
answers the 1-based line of any key path, e.g. ``("budgets", 2, "limit_usd")``.

Every config module raises :class:`ConfigError` (or collects several into a
:class:`ConfigErrors`) so the CLI can print them all and exit non-zero.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable, Sequence

import yaml

KeyPath = Sequence[Any]


class ConfigError(Exception):
    """One problem in one config file, with where it is."""

    def __init__(self, file: str | None, line: int | None, key: str | None, message: str):
        self.file, self.line, self.key, self.message = file, line, key, message
        super().__init__(self.render())

    def render(self) -> str:
        where = self.file or "<config>"
        if self.line:
            where += f":{self.line}"
        return f"{where}: {self.key}: {self.message}" if self.key else f"{where}: {self.message}"


class ConfigErrors(Exception):
    """Several ConfigError at once, so a user fixes them in one go."""

    def __init__(self, errors: Iterable[ConfigError]):
        self.errors = list(errors)
        super().__init__("\n".join(e.render() for e in self.errors))


def key_name(path: KeyPath) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


@dataclass
class Doc:
    file: str | None
    data: Any
    lines: dict[tuple, int] = field(default_factory=dict)

    def line(self, path: KeyPath) -> int | None:
        path = tuple(path)
        while path:
            if path in self.lines:
                return self.lines[path]
            path = path[:-1]
        return self.lines.get((), None)

    def error(self, path: KeyPath, message: str) -> ConfigError:
        return ConfigError(self.file, self.line(path), key_name(path) or None, message)


def _walk(node: yaml.Node, path: tuple, lines: dict[tuple, int], loader: yaml.SafeLoader) -> Any:
    lines.setdefault(path, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        out: dict = {}
        loader.flatten_mapping(node)
        for knode, vnode in node.value:
            key = loader.construct_object(knode, deep=True)
            if isinstance(key, (list, dict)):
                raise ConfigError(None, knode.start_mark.line + 1, None, "mapping keys must be scalars")
            if key in out:
                raise ConfigError(None, knode.start_mark.line + 1, key_name(path + (key,)), "duplicate key")
            lines[path + (key,)] = knode.start_mark.line + 1
            out[key] = _walk(vnode, path + (key,), lines, loader)
        return out
    if isinstance(node, yaml.SequenceNode):
        return [_walk(item, path + (i,), lines, loader) for i, item in enumerate(node.value)]
    try:
        return loader.construct_object(node, deep=True)
    except ValueError as e:   # e.g. an impossible unquoted date such as 2025-13-40
        raise ConfigError(None, node.start_mark.line + 1, key_name(path) or None,
                          f"cannot read {node.value!r}: {e}") from None


def loads(text: str, file: str | None = None) -> Doc:
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        lines: dict[tuple, int] = {}
        data = {} if node is None else _walk(node, (), lines, loader)
    except ConfigError as e:
        raise ConfigError(file, e.line, e.key, e.message) from None
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        raise ConfigError(file, mark.line + 1 if mark else None, None,
                          f"invalid YAML: {e.problem or e.context}") from None
    except yaml.YAMLError as e:
        raise ConfigError(file, None, None, f"invalid YAML: {e}") from None
    finally:
        loader.dispose()
    return Doc(file, data, lines)


def load(path: str) -> Doc:
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except OSError as e:
        raise ConfigError(path, None, None, f"cannot read: {e.strerror}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ConfigError(path, None, None, f"not UTF-8 at byte {e.start}") from None
    return loads(text, path)


# ---- small typed accessors used by every config module -------------------

def expect_mapping(doc: Doc, path: KeyPath, value: Any, allowed: Iterable[str] | None = None) -> dict:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise doc.error(path, f"must be a mapping, got {type(value).__name__}")
    if allowed is not None:
        allowed = set(allowed)
        for k in value:
            if k not in allowed:
                raise doc.error(tuple(path) + (k,), f"unknown key (allowed: {', '.join(sorted(allowed))})")
    return value


def expect_number(doc: Doc, path: KeyPath, value: Any, *, minimum: float | None = None,
                  maximum: float | None = None, positive: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise doc.error(path, f"must be a number, got {value!r}")
    v = float(value)
    if v != v or v in (float("inf"), float("-inf")):
        raise doc.error(path, "must be a finite number")
    if positive and v <= 0:
        raise doc.error(path, f"must be greater than 0, got {value!r}")
    if minimum is not None and v < minimum:
        raise doc.error(path, f"must be >= {minimum}, got {value!r}")
    if maximum is not None and v > maximum:
        raise doc.error(path, f"must be <= {maximum}, got {value!r}")
    return v


def expect_str(doc: Doc, path: KeyPath, value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise doc.error(path, f"must be a non-empty string, got {value!r}")
    return value
