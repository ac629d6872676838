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
    p.add_argument("--storage.start-empty", dest="start_empty", action="store_true",
                   help="start even though the state directory held a ledger that is now empty or missing "
                        "(counters and budgets then start from zero); without it that is refused")
    p.add_argument("--storage.integrity-check", dest="integrity_check", choices=("auto", "start", "background"),
                   help="when the full check of ledger.db runs: auto (default; before ready up to 64 MiB, else "
                        "after), start (before ready) or background (after ready); a fast check always runs "
                        "before ready (overrides storage.integrity_check)")
    p.set_defaults(func=run)


def run(args) -> int:
    from costmeter.config.settings import load_settings
    from costmeter.server.exporter import Exporter
    from costmeter.server.ledger import LedgerError

    log = logging.getLogger("costmeter")
    # SIGHUP is handled from the first moment: restoring a large ledger takes a while,
    # and the default action would kill the process. A SIGHUP before ready is held
    # and applied once the exporter is ready.
    held = threading.Event()
    exporter = None

    def reload() -> None:
        try:
            exporter.reload()
        except (ConfigError, ConfigErrors) as e:
            log.error("reload failed, previous configuration kept: %s", e)
        except Exception:     # the reload thread reports, the exporter keeps serving
            log.exception("reload failed, previous configuration kept")

    def on_sighup(*_) -> None:
        if exporter is None or not exporter.ready:
            log.info("SIGHUP during start-up: the configuration is reloaded once the exporter is ready")
            held.set()
            return
        threading.Thread(target=reload, name="costmeter-reload", daemon=True).start()
    signal.signal(signal.SIGHUP, on_sighup)

    try:
        settings = load_settings(args.config_file, overrides(args))
        settings.start_empty = bool(getattr(args, "start_empty", False))
        if getattr(args, "integrity_check", None):
            settings.integrity_check = args.integrity_check
        exporter = Exporter(settings)
        exporter.start()
    except (ConfigError, ConfigErrors, LedgerError) as e:
        print_errors(e)
        return 1
    except OSError as e:
        print(f"costmeter: cannot start: {e}", file=sys.stderr)
        return 1
    logging.getLogger("costmeter").info(
        "costmeter %s serving on %s, state in %s", __version__, exporter.url, exporter.settings.state_dir)
    if held.is_set():
        threading.Thread(target=reload, name="costmeter-reload", daemon=True).start()
    done = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: done.set())
    # Python runs signal handlers in the main thread only, and a signal delivered to another
    # thread cannot wake a main thread blocked in an untimed wait: wake up twice a second.
    while not done.wait(0.5):
        pass
    exporter.stop()
    return 0
