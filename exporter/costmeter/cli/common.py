"""Flags and output shared by the commands."""
from __future__ import annotations

import argparse
import sys

from costmeter.config.loader import ConfigErrors

LOG_LEVELS = ("debug", "info", "warn", "error")

STATE_DIR_HELP = ("state directory for the ledger and governance log (default: storage.path of the "
                  "exporter.yaml given, else $COSTMETER_STATE_DIR, "
                  "else $XDG_STATE_HOME/costmeter, else ~/.local/state/costmeter)")

FILES_RULE = ("Files are read only when named: by these flags, or by the exporter.yaml given with "
              "--config.file (its budgets_file and pricing_file, relative to it). With no flags, the "
              "built-in defaults and the environment are used; ./config/ is not read implicitly. "
              "`serve` and `check` follow the same rule, so `check` validates exactly what `serve` would run.")


def add_config_flags(p: argparse.ArgumentParser) -> None:
    """The flags of ``serve`` and ``check``: every file the exporter reads."""
    p.add_argument("--config.file", dest="config_file", metavar="FILE",
                   help="exporter.yaml; optional, every setting has a default")
    p.add_argument("--web.listen-address", dest="listen_address", metavar="ADDR",
                   help="address to listen on (default :9469)")
    p.add_argument("--web.config.file", dest="web_config_file", metavar="FILE",
                   help="TLS and basic auth, in the Prometheus exporter-toolkit web-config.yml format")
    p.add_argument("--storage.path", dest="state_dir", metavar="DIR", help=STATE_DIR_HELP)
    p.add_argument("--budgets.file", dest="budgets_file", metavar="FILE", help="budgets.yaml")
    p.add_argument("--pricing.file", dest="pricing_file", metavar="FILE",
                   help="pricing.yaml merged over the built-in price table")
    p.add_argument("--ingest.workers", dest="ingest_workers", metavar="N", type=_workers,
                   help="processes that decode, validate and price large POST /v1/events bodies, 0 to 64; "
                        "0 parses in the exporter's own process (default: CPUs less one, at most 4)")
    add_log_level(p)


def _workers(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a whole number from 0 to 64, got {text!r}") from None
    if not 0 <= n <= 64:
        raise argparse.ArgumentTypeError(f"must be a whole number from 0 to 64, got {text!r}")
    return n


def add_log_level(p: argparse.ArgumentParser) -> None:
    p.add_argument("--log.level", dest="sub_log_level", choices=LOG_LEVELS, help="log level (default info)")


def overrides(args) -> dict:
    """Flag values that override exporter.yaml (None: not given)."""
    return {k: getattr(args, k) for k in ("listen_address", "web_config_file", "state_dir",
                                          "budgets_file", "pricing_file", "ingest_workers")}


def print_errors(e: Exception) -> None:
    errors = e.errors if isinstance(e, ConfigErrors) else [e]
    for err in errors:
        print(f"costmeter: {err}", file=sys.stderr)
