"""The scenario of ``costmeter demo``: realistic LLM traffic made through the real SDK.

``traffic``  tenants, routes, the daily rhythm, the spike, the over-budget tenant, and
             responses in the vendors' own usage shapes
``runner``   backfill (past timestamps) and live calls through ``track_cost``, shipped mode

Sits beside the CLI's lower layers: may import config, pricing, budgets, server and sdk;
only the CLI imports it. Importing it starts nothing.
"""
