"""``costmeter roi``: a model's API cost against self-hosting it."""
from __future__ import annotations

from costmeter.cli.analysis_flags import (EXIT_CODES, SOURCE_HELP, add_source_flags, non_negative_float, now,
                                          positive_float, positive_int, ratio, run_analysis)

FORMULAS = """formulas (N tokens/month, p API USD/token, T tokens/s per GPU, U utilization, X USD/GPU-hour,
G minimum GPUs, O operations USD/month, S setup USD):
  capacity per GPU   C = T x U x 2,592,000 (seconds in a 30-day month)
  GPUs needed        g = max(G, ceil(N / C))
  API monthly        A = N x p   (p observed: spend / billable tokens; else the price table,
                                  input and output blended by --output-share)
  self-hosted        H = g x X x 720 + O
  payback            S / (A - H) months when A > H, else never (null)
  break-even volume  smallest N with N x p >= g(N) x X x 720 + O (none when C x p <= X x 720)
  sensitivity        volume and GPU price at 0.5x, 1x, 2x
"""


def register(sub) -> None:
    import argparse
    p = sub.add_parser("roi", help="would self-hosting a model pay off",
                       formatter_class=argparse.RawDescriptionHelpFormatter,
                       description="The cost of serving a model's observed (or given) monthly token volume through "
                                   "the API against self-hosting it.\n\n" + FORMULAS + "\n" + SOURCE_HELP + "\n"
                                   + EXIT_CODES)
    p.add_argument("--model", required=True, metavar="M", help="the model, as events name it")
    p.add_argument("--provider", metavar="P", help="the provider, when the model name alone is ambiguous")
    p.add_argument("--tokens-per-month", type=positive_float, metavar="N",
                   help="monthly billable tokens (default: observed over the last 30 days)")
    p.add_argument("--gpu-hour-usd", type=positive_float, required=True, metavar="X", help="USD per GPU-hour")
    p.add_argument("--tokens-per-second", type=positive_float, required=True, metavar="T",
                   help="tokens a second one GPU serves for this model")
    p.add_argument("--gpus", type=positive_int, default=1, metavar="G", help="minimum GPUs, e.g. 2 for redundancy (default 1)")
    p.add_argument("--utilization", type=ratio, default=0.6, metavar="U",
                   help="average share of the GPUs' throughput used, 0-1 (default 0.6)")
    p.add_argument("--ops-month-usd", type=non_negative_float, default=0.0, metavar="O",
                   help="operations: people, monitoring, storage, per month (default 0)")
    p.add_argument("--setup-usd", type=non_negative_float, default=0.0, metavar="S", help="one-off setup cost (default 0)")
    p.add_argument("--output-share", type=ratio, default=0.25, metavar="R",
                   help="share of output tokens when pricing from the table (default 0.25)")
    p.add_argument("--pricing.file", dest="pricing_file", metavar="FILE", help="pricing.yaml merged over the built-in table")
    p.add_argument("--no-source", action="store_true",
                   help="do not read usage at all: price --tokens-per-month from the price table")
    add_source_flags(p, budgets=False)
    p.set_defaults(func=run)


def run(args) -> int:
    from costmeter.analysis import roi
    import sys

    from costmeter.cli.analysis_flags import EXIT_SOURCE, EXIT_USAGE, fail
    from costmeter.cli.common import print_errors
    from costmeter.config.loader import ConfigError, ConfigErrors
    from costmeter.pricing import PricingTable
    if args.no_source and args.tokens_per_month is None:
        return fail("roi: --no-source needs --tokens-per-month", EXIT_USAGE)
    try:
        pricing = PricingTable.load(args.pricing_file)
    except (ConfigError, ConfigErrors) as e:
        print_errors(e)
        return EXIT_USAGE

    def compute(src):
        return roi.build(None if args.no_source else src, now(), pricing, args.model, args.gpu_hour_usd,
                         args.tokens_per_second, args.tokens_per_month, args.provider, args.gpus, args.utilization,
                         args.ops_month_usd, args.setup_usd, args.output_share)
    if args.no_source:
        from costmeter.analysis.sources import SourceError
        from costmeter.cli.analysis_flags import emit
        try:
            emit(args, compute(None), roi.render)
        except SourceError as e:
            return fail(str(e), EXIT_SOURCE)
        return 0
    code = run_analysis(args, compute, roi.render)
    if code == EXIT_SOURCE and args.tokens_per_month is not None:
        print("costmeter: hint: --no-source prices --tokens-per-month from the price table without reading usage",
              file=sys.stderr)
    return code
