"""``costmeter report``: global spend today, this month and over N days, per tenant with budget status, top models."""
from __future__ import annotations

from costmeter.cli.analysis_flags import (EXIT_CODES, SOURCE_HELP, add_chart_flag, add_source_flags, now,
                                          positive_int, run_analysis)


def register(sub) -> None:
    p = sub.add_parser("report", help="the cost report",
                       description="Global spend today, this calendar month and over the last N days (UTC), "
                                   "one row per tenant with its budget status (the worst over its budgets), and "
                                   "the top models. Schedulable from cron: "
                                   "`0 8 * * * costmeter report >> daily_cost_reports.txt`. "
                                   + SOURCE_HELP + " " + EXIT_CODES)
    p.add_argument("--days", type=positive_int, default=30, metavar="N", help="the period in days, today included (default 30)")
    p.add_argument("--tenant", metavar="T", help="only this tenant's rows and models")
    add_chart_flag(p)
    add_source_flags(p)
    p.set_defaults(func=run)


def run(args) -> int:
    from costmeter.analysis import charts, report
    return run_analysis(args, lambda src: report.build(src, now(), args.days, args.tenant), report.render,
                        charts.report_chart)
