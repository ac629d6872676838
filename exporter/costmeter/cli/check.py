"""``costmeter check``: validate what ``serve`` with the same flags would read.

Every problem is printed as ``file:line: key: message`` and the exit code is 1.
With ``--config.file``, ``prometheus.yml`` and ``alertmanager.yml`` beside it are
also checked with promtool and amtool when those are installed.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys

from costmeter.cli.common import FILES_RULE, add_config_flags, overrides, print_errors
from costmeter.config.loader import ConfigError, ConfigErrors


def register(sub) -> None:
    p = sub.add_parser("check", help="validate every config file; errors name file, line, key",
                       description="Validate exporter.yaml, budgets.yaml, pricing.yaml and web-config.yml "
                                   "exactly as `serve` with the same flags would load them, and "
                                   "prometheus.yml and alertmanager.yml beside --config.file with promtool "
                                   "and amtool when they are installed. " + FILES_RULE)
    add_config_flags(p)
    p.set_defaults(func=run)


def run(args) -> int:
    from costmeter.budgets.config import load_budgets
    from costmeter.config.billing import unknown_sources
    from costmeter.config.settings import load_settings
    from costmeter.pricing import PricingTable

    budgets, pricing, web = args.budgets_file, args.pricing_file, args.web_config_file
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
        settings = load_settings(args.config_file, overrides(args))
    attempt(_shown(args.config_file) or "built-in exporter settings", load)
    if settings is not None:
        budgets = settings.budgets_file or budgets
        pricing = settings.pricing_file or pricing
        web = settings.web_config_file or web
    def budgets_and_sources():
        cfg = load_budgets(budgets)
        errs = unknown_sources(cfg.billing_refs, cfg.file, settings.billing if settings else None)
        if errs:
            raise ConfigErrors(errs)
    attempt(_shown(budgets) or "budgets from the environment", budgets_and_sources)
    attempt(_shown(pricing) or "built-in pricing table", lambda: PricingTable.load(pricing))
    if web:
        from costmeter.server.webconfig import load_web_config
        attempt(_shown(web), lambda: load_web_config(web))
    external_failed = False
    if args.config_file:
        external_failed = _check_external(os.path.dirname(args.config_file), checked)
    for e in errors:
        print_errors(e)
    for label in checked:
        print(f"ok: {label}")
    return 1 if errors or external_failed else 0


def _shown(path: str | None) -> str | None:
    """A path as the user would write it: relative when it is under the working directory."""
    if path is None:
        return None
    rel = os.path.relpath(path)
    return path if rel.startswith("..") else rel


def _check_external(directory: str, checked: list[str]) -> bool:
    """prometheus.yml and alertmanager.yml in ``directory``, with promtool and amtool when installed."""
    failed = False
    for name, tool, argv in (("prometheus.yml", "promtool", ["check", "config"]),
                             ("alertmanager.yml", "amtool", ["check-config"])):
        path = os.path.join(directory, name)
        if not os.path.exists(path):
            continue
        exe = shutil.which(tool)
        if exe is None:
            print(f"skipped: {_shown(path)} ({tool} is not installed)")
            continue
        res = subprocess.run([exe, *argv, path], capture_output=True, text=True)
        if res.returncode == 0:
            checked.append(f"{_shown(path)} ({tool})")
        else:
            failed = True
            print(f"costmeter: {_shown(path)}: {tool} {' '.join(argv)} failed:\n{res.stdout}{res.stderr}",
                  file=sys.stderr)
    return failed
