"""Regenerate every dashboard's JSON from its grafanalib source.

    python dashboards/generate.py          # write dashboards/NAME.json for each NAME.dashboard.py
    python dashboards/generate.py --check  # exit 1, naming the files, if any committed JSON differs

Needs grafanalib (``pip install -e '.[dashboards]'``).
"""
from __future__ import annotations

import argparse
import glob
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
SUFFIX = ".dashboard.py"


def sources() -> list[str]:
    return sorted(glob.glob(os.path.join(HERE, "*" + SUFFIX)))


def json_path(source: str) -> str:
    return source[: -len(SUFFIX)] + ".json"


def generate(source: str) -> str:
    """The JSON text of one ``NAME.dashboard.py`` (its variable ``dashboard``)."""
    if HERE not in sys.path:
        sys.path.insert(0, HERE)
    from grafanalib._gen import loader
    import costmeter_dashboards
    return costmeter_dashboards.render(loader(source))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--check", action="store_true", help="compare with the committed JSON instead of writing")
    args = p.parse_args(argv)
    stale = []
    for src in sources():
        text, path = generate(src), json_path(src)
        if args.check:
            try:
                with open(path, encoding="utf-8") as f:
                    same = f.read() == text
            except FileNotFoundError:
                same = False
            if not same:
                stale.append(os.path.relpath(path))
        else:
            with open(path, "w", encoding="utf-8") as f:
                f.write(text)
            print(f"wrote {os.path.relpath(path)}")
    if stale:
        print("out of date (run python dashboards/generate.py): " + ", ".join(stale), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
