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


class ErrorCollector:
    """Collects ConfigError from each check so that one run reports every problem."""

    def __init__(self) -> None:
        self.errors: list[ConfigError] = []

    def run(self, fn, *args, **kw):
        """``fn(*args, **kw)``, or None with its ConfigError(s) collected."""
        try:
            return fn(*args, **kw)
        except ConfigErrors as e:
            self.errors.extend(e.errors)
        except ConfigError as e:
            self.errors.append(e)
        return None

    def raise_if_any(self, order=None) -> None:
        """Raise the one error, or ConfigErrors of all (sorted by ``order`` when given)."""
        if order is not None:
            self.errors.sort(key=order)
        if len(self.errors) == 1:
            raise self.errors[0]
        if self.errors:
            raise ConfigErrors(self.errors)


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


# Aliases may make a document bigger than its text, but not by more than this:
# a config file never needs it, and an "alias bomb" (nested aliases of aliases)
# would otherwise expand to billions of values.
MAX_ALIAS_EXPANSION = 10
MAX_ALIAS_EXTRA = 10_000
MAX_DEPTH = 100      # levels of lists and mappings: far more than a config needs, far from Python's recursion limit


def _count_nodes(root: yaml.Node) -> int:
    """Distinct nodes of the composed graph (aliases point at nodes already counted)."""
    seen: set[int] = set()
    todo = [root]
    while todo:
        node = todo.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        if isinstance(node, yaml.MappingNode):
            for k, v in node.value:
                todo += (k, v)
        elif isinstance(node, yaml.SequenceNode):
            todo += node.value
    return len(seen)


class _Walk:
    """Turns the composed node graph into plain data, refusing cycles and alias bombs."""

    def __init__(self, loader: yaml.SafeLoader, root: yaml.Node):
        self.loader = loader
        self.lines: dict[tuple, int] = {}
        self.budget = MAX_ALIAS_EXPANSION * _count_nodes(root) + MAX_ALIAS_EXTRA
        self.active: set[int] = set()     # nodes on the current path: seeing one again is a cycle

    def _fail(self, node: yaml.Node, path: tuple, message: str) -> ConfigError:
        return ConfigError(None, self.lines.get(path, node.start_mark.line + 1), key_name(path) or None, message)

    def walk(self, node: yaml.Node, path: tuple) -> Any:
        self.lines.setdefault(path, node.start_mark.line + 1)
        self.budget -= 1
        if self.budget < 0:
            raise self._fail(node, path[:1], "aliases expand this file to too many values (an alias bomb?); "
                                         "write the values out instead")
        if not isinstance(node, (yaml.MappingNode, yaml.SequenceNode)):
            return self._scalar(node, path)
        if id(node) in self.active:
            raise self._fail(node, path, f"recursive alias: this value contains itself "
                                         f"(anchor at line {node.start_mark.line + 1})")
        if len(path) > MAX_DEPTH:
            raise self._fail(node, path, f"nested more than {MAX_DEPTH} levels deep")
        self.active.add(id(node))
        try:
            if isinstance(node, yaml.SequenceNode):
                return [self.walk(item, path + (i,)) for i, item in enumerate(node.value)]
            return self._mapping(node, path)
        finally:
            self.active.discard(id(node))

    def _mapping(self, node: yaml.MappingNode, path: tuple) -> dict:
        out: dict = {}
        self.loader.flatten_mapping(node)
        for knode, vnode in node.value:
            if not isinstance(knode, yaml.ScalarNode):
                raise ConfigError(None, knode.start_mark.line + 1, None, "mapping keys must be scalars")
            key = self._scalar(knode, path)
            if key in out:
                raise ConfigError(None, knode.start_mark.line + 1, key_name(path + (key,)), "duplicate key")
            self.lines[path + (key,)] = knode.start_mark.line + 1
            out[key] = self.walk(vnode, path + (key,))
        return out

    def _scalar(self, node: yaml.Node, path: tuple) -> Any:
        try:
            return self.loader.construct_object(node, deep=True)
        except ValueError as e:   # e.g. an impossible unquoted date such as 2025-13-40
            raise ConfigError(None, node.start_mark.line + 1, key_name(path) or None,
                              f"cannot read {node.value!r}: {e}") from None


class _Loader(yaml.SafeLoader):
    """SafeLoader whose composer refuses nesting deeper than MAX_DEPTH, naming the line:
    PyYAML composes recursively, so deeper nesting would end in a RecursionError that
    knows no line."""

    depth = 0
    node_line: int | None = None      # of the node composed last (Reader has a "line" of its own)

    def compose_node(self, parent, index):
        self.depth += 1
        try:
            self.node_line = self.peek_event().start_mark.line + 1
            if self.depth > MAX_DEPTH:
                raise ConfigError(None, self.node_line, None,
                                  f"nested too deeply: more than {MAX_DEPTH} levels of lists and mappings")
            return super().compose_node(parent, index)
        finally:
            self.depth -= 1


def _walk(node: yaml.Node, path: tuple, lines: dict[tuple, int], loader: yaml.SafeLoader) -> Any:
    w = _Walk(loader, node)
    w.lines = lines
    return w.walk(node, path)


def _reader_error(file: str | None, text: str, e: yaml.reader.ReaderError) -> ConfigError:
    code = ord(e.character) if isinstance(e.character, str) else int(e.character)
    line = text.count("\n", 0, max(e.position, 0)) + 1
    what = "a NUL byte" if code == 0 else f"character U+{code:04X}"
    return ConfigError(file, line, None, f"{what} is not allowed in YAML (is this a text file?)")


def loads(text: str, file: str | None = None) -> Doc:
    try:
        loader = _Loader(text)    # the reader checks every character here
    except yaml.reader.ReaderError as e:
        raise _reader_error(file, text, e) from None
    try:
        node = loader.get_single_node()
        lines: dict[tuple, int] = {}
        data = {} if node is None else _walk(node, (), lines, loader)
    except ConfigError as e:
        raise ConfigError(file, e.line, e.key, e.message) from None
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        raise ConfigError(file, mark.line + 1 if mark else loader.get_mark().line + 1, None,
                          f"invalid YAML: {e.problem or e.context}") from None
    except yaml.reader.ReaderError as e:
        raise _reader_error(file, text, e) from None
    except yaml.YAMLError as e:
        raise ConfigError(file, loader.get_mark().line + 1, None, f"invalid YAML: {e}") from None
    except RecursionError:     # called with most of the stack in use already: the line reached
        raise ConfigError(file, loader.node_line, None, "invalid YAML: nested too deeply") from None
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
        raise ConfigError(path, raw.count(b"\n", 0, e.start) + 1, None,
                          f"not UTF-8 at byte {e.start} (is this a text file?)") from None
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
