"""The analysis commands' logic: report, anomalies, forecast, recommend, roi, and their charts.

Each module takes a :class:`~costmeter.analysis.sources.Source` (one exporter's
API, a state directory read directly, or PromQL over a whole fleet) and a
``now``, and returns the JSON shape of SPEC.md ("Command line") plus a
text rendering; ``cli/`` only parses flags. May import pricing, budgets and
server (to read the ledger); never cli.
"""
