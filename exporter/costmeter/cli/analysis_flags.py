"""Flags and exit codes shared by the analysis commands (report, anomalies, forecast, recommend, roi)."""
from __future__ import annotations

import argparse
import json
import sys
import time

from costmeter.cli.common import add_log_level

EXIT_OK = 0            # done
EXIT_USAGE = 2         # a bad flag (argparse's own code)
EXIT_SOURCE = 3        # the source (exporter, state directory, Prometheus) could not be read
EXIT_CHART = 4         # the chart could not be drawn (matplotlib missing, file not writable)

EXIT_CODES = ("Exit codes: 0 done; 2 a bad flag; 3 the source (exporter, state directory or "
              "Prometheus) could not be read; 4 the chart could not be drawn.")

SOURCE_HELP = ("Reads one source: --url (default $COSTMETER_URL, else http://localhost:9469), "
               "--storage.path (an exporter's state directory, no exporter running) or "
               "--prometheus (PromQL over Prometheus, Thanos or Mimir: a whole sharded fleet).")


def add_source_flags(p: argparse.ArgumentParser, budgets: bool = True) -> None:
    g = p.add_argument_group("source (one of)")
    m = g.add_mutually_exclusive_group()
    m.add_argument("--url", metavar="URL", help="an exporter's API (default $COSTMETER_URL, else http://localhost:9469)")
    m.add_argument("--storage.path", dest="storage_path", metavar="DIR",
                   help="an exporter's state directory, read directly (no exporter running)")
    m.add_argument("--prometheus", metavar="URL", help="PromQL against Prometheus, Thanos or Mimir")
    if budgets:
        g.add_argument("--budgets.file", dest="budgets_file", metavar="FILE",
                       help="budgets.yaml, for --storage.path (the exporter's and Prometheus' budgets are their own)")
    p.add_argument("--json", action="store_true", help="print JSON (the shape in SPEC.md) instead of a table")
    add_log_level(p)


def add_chart_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument("--chart", metavar="FILE.png", help="also draw a PNG chart (needs costmeter[charts])")


def positive_int(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if v < 1:
        raise argparse.ArgumentTypeError(f"{text} must be at least 1")
    return v


def positive_float(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not v > 0 or v == float("inf"):
        raise argparse.ArgumentTypeError(f"{text} must be a number above 0")
    return v


def non_negative_float(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not v >= 0 or v == float("inf"):
        raise argparse.ArgumentTypeError(f"{text} must be a number, 0 or more")
    return v


def ratio(text: str) -> float:
    v = positive_float(text)
    if v > 1:
        raise argparse.ArgumentTypeError(f"{text} is a ratio: above 0, at most 1 (0.6 for 60 %)")
    return v


def now() -> float:
    return time.time()      # looked up per call: freezegun moves it


def open_source(args):
    """The source named by the flags; raises SourceError."""
    from costmeter.analysis.sources import open_source as _open
    return _open(args.url, args.storage_path, args.prometheus, getattr(args, "budgets_file", None))


def fail(message: str, code: int) -> int:
    print(f"costmeter: {message}", file=sys.stderr)
    return code


def emit(args, result: dict, render) -> None:
    if args.json:
        json.dump(result, sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        sys.stdout.write(render(result))


def run_analysis(args, compute, render, chart=None, output=None, after=None) -> int:
    """Open the source, compute, print, draw: the common body of the analysis commands."""
    from costmeter.analysis.charts import ChartError
    from costmeter.analysis.sources import SourceError
    try:
        source = open_source(args)
        result = compute(source)
    except SourceError as e:
        return fail(str(e), EXIT_SOURCE)
    emit(args, output(result) if output else result, render)
    if after is not None:
        after(result)
    if chart is not None and getattr(args, "chart", None):
        try:
            chart(result, args.chart)
        except ChartError as e:
            return fail(str(e), EXIT_CHART)
        print(f"chart written to {args.chart}", file=sys.stderr)
    return EXIT_OK
