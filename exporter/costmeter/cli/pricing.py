"""``costmeter pricing``: how a model name is priced; LiteLLM's price table as pricing.yaml.

    costmeter pricing show MODEL [--provider P] [--pricing.file F] [--json]
    costmeter pricing import-litellm FILE > my-pricing.yaml

``show`` exits 1 when the name has no price. ``import-litellm`` writes YAML on
standard output and lists every entry it left out (and why) on standard error.
"""
from __future__ import annotations

import json
import sys
from datetime import datetime, timezone

from costmeter.cli.common import print_errors
from costmeter.config.loader import ConfigError, ConfigErrors


def register(sub) -> None:
    p = sub.add_parser("pricing", help="show how a model name is priced; import a LiteLLM price table",
                       description="Inspect and refresh the price table.")
    ps = p.add_subparsers(dest="pricing_command", metavar="SUBCOMMAND")
    show = ps.add_parser("show", help="how a name resolves and the prices in force",
                         description="How MODEL resolves (provider alias, gateway prefix, snapshot suffix, alias) "
                                     "and its prices in force now, by token type, long-context tier and batch, "
                                     "in USD per million tokens. Without --provider, every provider that prices "
                                     "the name is shown. Exit code 1: no price.")
    show.add_argument("model", metavar="MODEL")
    show.add_argument("--provider", metavar="P", help="the provider field of the events (openai, gemini, bedrock...)")
    show.add_argument("--pricing.file", dest="pricing_file", metavar="FILE",
                      help="pricing.yaml merged over the built-in price table")
    show.add_argument("--json", action="store_true", help="print JSON for scripts")
    show.set_defaults(func=run_show)
    imp = ps.add_parser("import-litellm", help="LiteLLM's model_prices_and_context_window.json as pricing.yaml",
                        description="Convert LiteLLM's model_prices_and_context_window.json into pricing.yaml on "
                                    "standard output (use it with --pricing.file: it is merged over the built-in "
                                    "table). Entries that cannot be mapped exactly are listed on standard error, "
                                    "never guessed.")
    imp.add_argument("file", metavar="FILE")
    imp.set_defaults(func=run_import)
    p.set_defaults(func=lambda args: (p.print_help(), 0)[1])


def run_show(args) -> int:
    from costmeter.pricing import PricingTable
    from costmeter.pricing.show import describe, render

    try:
        table = PricingTable.load(args.pricing_file)
    except (ConfigError, ConfigErrors) as e:
        print_errors(e)
        return 2
    d = describe(table, args.model, args.provider)
    if args.json:
        print(json.dumps(d, indent=2))
    else:
        sys.stdout.write(render(d))
    return 0 if d["priced"] else 1


def run_import(args) -> int:
    from costmeter.pricing.litellm import convert

    try:
        with open(args.file, encoding="utf-8") as f:
            data = json.load(f)
    except OSError as e:
        print(f"costmeter: {args.file}: cannot read: {e.strerror or e}", file=sys.stderr)
        return 2
    except json.JSONDecodeError as e:
        print(f"costmeter: {args.file}:{e.lineno}: invalid JSON: {e.msg}", file=sys.stderr)
        return 2
    today = datetime.now(timezone.utc).date().isoformat()
    try:
        conv = convert(data, args.file.replace("\\", "/").rsplit("/", 1)[-1], today)
    except ValueError as e:
        print(f"costmeter: {e}", file=sys.stderr)
        return 2
    sys.stdout.write(conv.yaml)
    for name, why in conv.skipped:
        print(f"costmeter: not imported: {name}: {why}", file=sys.stderr)
    for name, what in conv.notes:
        print(f"costmeter: note: {name}: {what}", file=sys.stderr)
    print(f"costmeter: {conv.imported} models imported, {len(conv.skipped)} entries left out", file=sys.stderr)
    return 0
