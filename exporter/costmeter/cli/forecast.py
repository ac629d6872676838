"""``costmeter forecast``: where each budget ends its period."""
from __future__ import annotations

from costmeter.cli.analysis_flags import EXIT_CODES, SOURCE_HELP, add_chart_flag, add_source_flags, now, run_analysis


def register(sub) -> None:
    p = sub.add_parser("forecast", help="where each budget ends its period",
                       description="For each budget: spend so far, the daily burn rate, the projected spend at "
                                   "the end of the period with a 95 % interval, the projected exhaustion date and "
                                   "the status. projected = spend + burn rate x time left; the interval is "
                                   "1.96 x s x sqrt(n + n^2/k), s the std of the spend of the period's k whole days "
                                   "(hours for periods of 2 days or less), n the days (hours) left. " + SOURCE_HELP + " " + EXIT_CODES)
    p.add_argument("--budget", metavar="NAME", help="only this budget (e.g. global, tenant:acme)")
    add_chart_flag(p)
    add_source_flags(p)
    p.set_defaults(func=run)


def run(args) -> int:
    from costmeter.analysis import charts, forecast
    return run_analysis(args, lambda src: forecast.build(src, now(), args.budget), forecast.render,
                        charts.forecast_chart, output=forecast.strip_series)
