"""Budgets: what is allowed to be spent, per period, and what has been.

``config``      budgets.yaml and the environment overrides, validated into BudgetConfig
``periods``     where a daily/weekly/monthly/quarterly/annual period starts and ends
``book``        BudgetBook: spend per budget and period, status, forecast, enforcement
``governance``  the append-only JSON-lines log of budget decisions
``stored``      the book's share of a snapshot: sums changed since the last one, as rows

Imports :mod:`costmeter.config` and :mod:`costmeter.events` only.
"""
