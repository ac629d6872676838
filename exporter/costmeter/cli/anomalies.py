"""``costmeter anomalies``: each tenant's and model's daily spend against its own baseline."""
from __future__ import annotations

import os
import sys

from costmeter.cli.analysis_flags import (EXIT_CODES, SOURCE_HELP, add_source_flags, non_negative_float, now,
                                          positive_float, positive_int, run_analysis)


def register(sub) -> None:
    p = sub.add_parser("anomalies", help="spend that is abnormal against its own baseline",
                       description="Each tenant's and each model's daily spend (UTC days) against the mean and "
                                   "standard deviation of the N days before it: a day is anomalous above mean + "
                                   "S x std and above a dollar floor, so a tiny tenant does not page (severity "
                                   "critical above 2 x S). The std is at least 5 % of the mean. Steady growth is "
                                   "not an anomaly. Each anomaly found is appended once to the governance log. "
                                   + SOURCE_HELP + " " + EXIT_CODES)
    p.add_argument("--days", type=positive_int, default=14, metavar="N", help="baseline days before each day (default 14)")
    p.add_argument("--sigma", type=positive_float, default=3.0, metavar="S", help="standard deviations (default 3)")
    p.add_argument("--floor", type=non_negative_float, default=1.0, metavar="USD",
                   help="a day below this spend is never an anomaly (default 1)")
    p.add_argument("--check-days", type=positive_int, default=7, metavar="D",
                   help="how many recent days to check, today included (default 7)")
    p.add_argument("--governance.log", dest="governance_log", metavar="FILE",
                   help="where anomalies are appended (default: governance.jsonl in --storage.path, else in "
                        "the default state directory); 'none' to not record")
    add_source_flags(p)
    p.set_defaults(func=run)


def _log_path(args) -> str | None:
    if args.governance_log:
        return None if args.governance_log == "none" else args.governance_log
    from costmeter.config.settings import default_state_dir
    return os.path.join(args.storage_path or default_state_dir(), "governance.jsonl")


def run(args) -> int:
    from costmeter.analysis import anomalies

    def after(res):
        path = _log_path(args)
        if path and res["anomalies"]:
            try:
                n = anomalies.record(res, path)
            except OSError as e:
                print(f"costmeter: warning: anomalies not recorded in {path}: {e}", file=sys.stderr)
            else:
                print(f"{n} new anomalies appended to {path}", file=sys.stderr)

    return run_analysis(args, lambda src: anomalies.build(src, now(), args.days, args.sigma, args.floor,
                                                          args.check_days),
                        anomalies.render, after=after)
