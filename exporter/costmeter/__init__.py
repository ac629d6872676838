"""costmeter: cost observability for LLM-backed services.

The public SDK is re-exported here (see SPEC.md, "SDK")::

    from costmeter import track_cost, cost_tracker, should_deny, \
        should_throttle, BudgetExceededError
"""
from __future__ import annotations

__version__ = "0.1.0"
