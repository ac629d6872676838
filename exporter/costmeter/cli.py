"""costmeter command line: flags in the style of Go exporters.

    costmeter serve   [--config.file=F] [--web.listen-address=:9469] [--storage.path=DIR] ...
    costmeter check   [same flags]   validate every config file, report file:line: key: problem
"""
from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading

from costmeter import __version__
from costmeter.config.loader import ConfigError, ConfigErrors

DEFAULT_CONFIG_DIR = "config"
LOG_LEVELS = ("debug", "info", "warn", "error")


def _config_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config.file", dest="config_file", metavar="FILE",
                   help="exporter.yaml; optional, every setting has a default")
    p.add_argument("--web.listen-address", dest="listen_address", metavar="ADDR",
                   help="address to listen on (default :9469)")
    p.add_argument("--web.config.file", dest="web_config_file", metavar="FILE",
                   help="TLS and basic auth, in the Prometheus exporter-toolkit web-config.yml format")
    p.add_argument("--storage.path", dest="state_dir", metavar="DIR",
                   help="state directory for the ledger and governance log "
                        "(default $COSTMETER_STATE_DIR or ~/.local/state/costmeter)")
    p.add_argument("--budgets.file", dest="budgets_file", metavar="FILE", help="budgets.yaml")
    p.add_argument("--pricing.file", dest="pricing_file", metavar="FILE",
                   help="pricing.yaml merged over the built-in price table")
    p.add_argument("--log.level", dest="sub_log_level", choices=LOG_LEVELS, help="log level (default info)")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="costmeter", description="Cost observability for LLM-backed services.")
    p.add_argument("--version", action="version", version=f"costmeter {__version__}")
    p.add_argument("--log.level", dest="log_level", default="info", choices=LOG_LEVELS)
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    serve = sub.add_parser("serve", help="run the exporter (works with no config file at all)",
                           description="Run the exporter: ingest API, ledger, budgets, /metrics.")
    _config_flags(serve)
    check = sub.add_parser("check", help="validate every config file; errors name file, line, key",
                           description="Validate exporter.yaml, budgets.yaml, pricing.yaml and web-config.yml. "
                                       "With no flags, checks the files present in ./config/, and "
                                       "prometheus.yml and alertmanager.yml there with promtool and amtool "
                                       "when they are installed.")
    _config_flags(check)
    return p


def _overrides(args) -> dict:
    return {k: getattr(args, k) for k in ("listen_address", "web_config_file", "state_dir",
                                          "budgets_file", "pricing_file")}


def _print_errors(e: Exception) -> None:
    errors = e.errors if isinstance(e, ConfigErrors) else [e]
    for err in errors:
        print(f"costmeter: {err}", file=sys.stderr)


def cmd_serve(args) -> int:
    from costmeter.server.exporter import Exporter
    from costmeter.server.ledger import LedgerError
    from costmeter.config.settings import load_settings

    try:
        exporter = Exporter(load_settings(args.config_file, _overrides(args)))
        exporter.start()
    except (ConfigError, ConfigErrors, LedgerError) as e:
        _print_errors(e)
        return 1
    except OSError as e:
        print(f"costmeter: cannot start: {e}", file=sys.stderr)
        return 1
    logging.getLogger("costmeter").info(
        "costmeter %s serving on %s, state in %s", __version__, exporter.url, exporter.settings.state_dir)
    done = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: done.set())

    def reload(*_):
        try:
            exporter.reload()
        except (ConfigError, ConfigErrors) as e:
            logging.getLogger("costmeter").error("reload failed, previous configuration kept: %s", e)
    signal.signal(signal.SIGHUP, lambda *_: threading.Thread(target=reload, name="costmeter-reload").start())
    done.wait()
    exporter.stop()
    return 0


def cmd_check(args) -> int:
    from costmeter.budgets.config import load_budgets
    from costmeter.pricing import PricingTable
    from costmeter.config.settings import load_settings

    cfg = args.config_file
    budgets, pricing, web = args.budgets_file, args.pricing_file, args.web_config_file
    if not any((cfg, budgets, pricing, web)):
        def present(name):
            path = os.path.join(DEFAULT_CONFIG_DIR, name)
            return path if os.path.exists(path) else None
        cfg = present("exporter.yaml")
        budgets, pricing, web = present("budgets.yaml"), present("pricing.yaml"), None
    errors: list[Exception] = []
    checked: list[str] = []

    def attempt(label, fn):
        try:
            fn()
            checked.append(label)
        except ConfigErrors as e:
            errors.extend(e.errors)
        except ConfigError as e:
            errors.append(e)

    settings = None

    def load():
        nonlocal settings
        settings = load_settings(cfg, _overrides(args))
    attempt(cfg or "built-in exporter settings", load)
    if settings is not None:
        budgets = settings.budgets_file or budgets
        pricing = settings.pricing_file or pricing
        web = settings.web_config_file or web
    attempt(_shown(budgets) or "budgets from the environment", lambda: load_budgets(budgets))
    attempt(_shown(pricing) or "built-in pricing table", lambda: PricingTable.load(pricing))
    if web:
        from costmeter.server.webconfig import load_web_config
        attempt(_shown(web), lambda: load_web_config(web))
    external_failed = False
    if not any((args.config_file, args.budgets_file, args.pricing_file, args.web_config_file)):
        external_failed = _check_external(checked)
    for e in errors:
        _print_errors(e)
    for label in checked:
        print(f"ok: {label}")
    return 1 if errors or external_failed else 0


def _shown(path: str | None) -> str | None:
    """A path as the user would write it: relative when it is under the working directory."""
    if path is None:
        return None
    rel = os.path.relpath(path)
    return path if rel.startswith("..") else rel


def _check_external(checked: list[str]) -> bool:
    """./config/prometheus.yml and alertmanager.yml, with promtool and amtool when installed."""
    import shutil
    import subprocess

    failed = False
    for name, tool, argv in (("prometheus.yml", "promtool", ["check", "config"]),
                             ("alertmanager.yml", "amtool", ["check-config"])):
        path = os.path.join(DEFAULT_CONFIG_DIR, name)
        if not os.path.exists(path):
            continue
        exe = shutil.which(tool)
        if exe is None:
            print(f"skipped: {path} ({tool} is not installed)")
            continue
        res = subprocess.run([exe, *argv, path], capture_output=True, text=True)
        if res.returncode == 0:
            checked.append(f"{path} ({tool})")
        else:
            failed = True
            print(f"costmeter: {path}: {tool} {' '.join(argv)} failed:\n{res.stdout}{res.stderr}", file=sys.stderr)
    return failed


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    level = getattr(args, "sub_log_level", None) or args.log_level
    logging.basicConfig(level=getattr(logging, level.upper().replace("WARN", "WARNING")),
                        format="ts=%(asctime)s level=%(levelname)s logger=%(name)s msg=%(message)s")
    return {"serve": cmd_serve, "check": cmd_check}[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
