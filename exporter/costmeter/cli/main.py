"""``costmeter``: the parser, with one sub-command per module, and the entry point."""
from __future__ import annotations

import argparse
import logging
import sys

from costmeter import __version__
from costmeter.cli import anomalies, check, demo, forecast, pricing, recommend, report, roi, serve
from costmeter.cli.common import LOG_LEVELS

# Each module has register(subparsers); the order is the order in --help.
COMMANDS = [serve, check, report, anomalies, forecast, recommend, roi, demo, pricing]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="costmeter", description="Cost observability for LLM-backed services.")
    p.add_argument("--version", action="version", version=f"costmeter {__version__}")
    p.add_argument("--log.level", dest="log_level", default="info", choices=LOG_LEVELS)
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    for module in COMMANDS:
        module.register(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:           # `costmeter` alone: the help, as git and promtool do
        parser.print_help()
        return 0
    level = getattr(args, "sub_log_level", None) or args.log_level
    logging.basicConfig(level=getattr(logging, level.upper().replace("WARN", "WARNING")),
                        format="ts=%(asctime)s level=%(levelname)s logger=%(name)s msg=%(message)s")
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
