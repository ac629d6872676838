"""``costmeter serve``: run the exporter until SIGTERM or SIGINT; SIGHUP reloads."""
from __future__ import annotations

import logging
import signal
import sys
import threading

from costmeter import __version__
from costmeter.cli.common import FILES_RULE, add_config_flags, overrides, print_errors
from costmeter.config.loader import ConfigError, ConfigErrors


def register(sub) -> None:
    p = sub.add_parser("serve", help="run the exporter (works with no config file at all)",
                       description="Run the exporter: ingest API, ledger, budgets, /metrics. " + FILES_RULE)
    add_config_flags(p)
    p.set_defaults(func=run)


def run(args) -> int:
    from costmeter.config.settings import load_settings
    from costmeter.server.exporter import Exporter
    from costmeter.server.ledger import LedgerError

    try:
        exporter = Exporter(load_settings(args.config_file, overrides(args)))
        exporter.start()
    except (ConfigError, ConfigErrors, LedgerError) as e:
        print_errors(e)
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
