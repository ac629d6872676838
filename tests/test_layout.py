"""The package layout holds: every subpackage imports only the layers below it (lazy
imports inside functions included), and each says in its __init__ docstring what it holds."""
from __future__ import annotations

import ast
import os

PKG = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "exporter", "costmeter")

# What each part may import (besides itself). Lowest first: config <- pricing, budgets <-
# collectors <- server <- sdk, analysis <- cli. `events` is the event schema every layer shares;
# the root package is imported only for __version__.
BASE = {"events", "__version__"}
ALLOWED = {
    "events": set(),
    "config": set(),
    "pricing": {"config"},
    "budgets": {"config"},
    "collectors": {"config", "pricing"},
    "server": {"config", "pricing", "budgets", "collectors"},
    "analysis": {"config", "pricing", "budgets", "collectors", "server"},
    "sdk": {"config", "pricing", "budgets", "server"},
    "demo": {"config", "pricing", "budgets", "server", "sdk"},
    "cli": {"config", "pricing", "budgets", "collectors", "server", "analysis", "sdk", "demo"},
}


def _part(module: str) -> str:
    """costmeter.server.ledger -> server; costmeter -> __root__."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__root__"


def _imports(path: str):
    tree = ast.parse(open(path, encoding="utf-8").read(), path)
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module == "costmeter":
                for alias in node.names:
                    yield node.lineno, alias.name if alias.name == "__version__" else alias.name
            elif node.module.startswith("costmeter."):
                yield node.lineno, _part(node.module)
        elif isinstance(node, ast.ImportFrom) and node.level:
            raise AssertionError(f"{path}:{node.lineno}: relative import; use costmeter.<part>.<module>")
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("costmeter."):
                    yield node.lineno, _part(alias.name)


def _modules():
    for d, _, files in os.walk(PKG):
        for f in files:
            if f.endswith(".py"):
                path = os.path.join(d, f)
                rel = os.path.relpath(path, PKG)
                part = rel.split(os.sep)[0]
                yield path, (part[:-3] if part.endswith(".py") else part)


def test_lower_layers_never_import_higher_ones():
    bad = []
    for path, part in _modules():
        if part in ("__init__", "__main__"):
            continue                      # the root re-exports the SDK: it is the public API
        for line, target in _imports(path):
            if target == part or target in BASE:
                continue
            if target not in ALLOWED.get(part, set()):
                bad.append(f"{os.path.relpath(path, PKG)}:{line}: {part} imports {target}")
    assert not bad, "layering violations:\n" + "\n".join(bad)


def test_every_subpackage_says_what_it_holds():
    for name in sorted(os.listdir(PKG)):
        init = os.path.join(PKG, name, "__init__.py")
        if os.path.isdir(os.path.join(PKG, name)) and os.path.exists(init):
            doc = ast.get_docstring(ast.parse(open(init).read()))
            assert doc and len(doc.splitlines()) >= 3, f"{name}/__init__.py needs a docstring"
            assert name in ALLOWED, f"{name} is a new subpackage: add its allowed imports here"


def test_the_checker_catches_a_violation(tmp_path):
    bad = tmp_path / "m.py"
    bad.write_text("def f():\n    from costmeter.sdk.recorder import CostTracker\n")
    assert list(_imports(str(bad))) == [(2, "sdk")]
    assert "sdk" not in ALLOWED["server"]


def test_the_sdk_does_not_load_the_exporters_ingest_libraries_into_an_app():
    """numpy (the id index) and msgspec (typed decoding) serve the exporter's ingest; an app
    that imports the SDK (which reads ledger constants) must not pay for them."""
    import subprocess
    import sys
    code = ("import sys, costmeter.sdk, costmeter.server.ledger; "
            "print(sorted(m for m in ('numpy', 'msgspec') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.strip() == "[]"
