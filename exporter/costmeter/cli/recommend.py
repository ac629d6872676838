"""``costmeter recommend``: model downgrades, caching and batch pricing, with monthly savings and a priority score."""
from __future__ import annotations

from costmeter.cli.analysis_flags import (EXIT_CODES, SOURCE_HELP, add_source_flags, non_negative_float, now,
                                          positive_int, ratio, run_analysis)


def register(sub) -> None:
    p = sub.add_parser("recommend", help="what to change to spend less, with the savings",
                       description="From the last N days of usage and the price table: model downgrades within a "
                                   "provider (one step down the model's line in the quality tiers file), response "
                                   "caching where the hit ratio is below 60 % and spend is high, and batch pricing "
                                   "where the provider offers it; each with estimated savings per 30-day month and "
                                   "a priority score 0-100 = 50 x min(savings/$100, 1) + 30 x confidence + "
                                   "difficulty (easy 20, medium 12, hard 5). " + SOURCE_HELP + " " + EXIT_CODES)
    p.add_argument("--days", type=positive_int, default=30, metavar="N", help="usage window in days (default 30)")
    p.add_argument("--pricing.file", dest="pricing_file", metavar="FILE",
                   help="pricing.yaml merged over the built-in price table")
    p.add_argument("--tiers.file", dest="tiers_file", metavar="FILE",
                   help="quality tiers (default: the built-in analysis/tiers.yaml)")
    p.add_argument("--min-savings", type=non_negative_float, default=1.0, metavar="USD",
                   help="leave out recommendations saving less a month (default 1)")
    p.add_argument("--min-spend", type=non_negative_float, default=10.0, metavar="USD",
                   help="caching is suggested for models spending at least this a month (default 10)")
    p.add_argument("--batch-share", type=ratio, default=0.25, metavar="R",
                   help="share of non-batch traffic assumed able to wait for the batch API (default 0.25)")
    add_source_flags(p)
    p.set_defaults(func=run)


def run(args) -> int:
    from costmeter.analysis import recommend
    from costmeter.cli.common import print_errors
    from costmeter.config.loader import ConfigError, ConfigErrors
    from costmeter.pricing import PricingTable
    try:
        pricing = PricingTable.load(args.pricing_file)
    except (ConfigError, ConfigErrors) as e:
        print_errors(e)
        return 2

    def compute(src):
        tiers = recommend.load_tiers(args.tiers_file)
        return recommend.build(src, now(), pricing, args.days, tiers, args.min_savings, args.min_spend,
                               args.batch_share)
    return run_analysis(args, compute, recommend.render)
