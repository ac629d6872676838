"""costmeter: cost observability for LLM-backed services.

The public SDK is re-exported here (README.md, "Instrumenting an app")::

    from costmeter import track_cost, cost_tracker, should_deny, \\
        should_throttle, BudgetExceededError

    costmeter.configure(url="http://127.0.0.1:9469")   # shipped (or set COSTMETER_URL)
    costmeter.embed(state_dir="/var/lib/myapp/costmeter")  # or: exporter in this process
    # neither: metrics in the app's own prometheus_client registry

Importing costmeter registers no metric and starts no thread; that happens at
the first tracked call or at ``configure``/``embed``.
"""
from __future__ import annotations

__version__ = "0.1.0"

from costmeter.sdk.context import current_endpoint, current_tenant, request_context, set_endpoint, set_tenant
from costmeter.sdk.enforcement import BudgetExceededError
from costmeter.sdk.decorator import TrackedBlock, mark_cache_hit, mark_cache_miss, track_cost
from costmeter.sdk.recorder import CostTracker, cost_tracker
from costmeter.sdk.usage import StreamUsage, extract as extract_usage, tokens_from_usage


def configure(**kwargs) -> CostTracker:
    """Direct (app registry) or shipped mode; see :meth:`CostTracker.configure`."""
    return cost_tracker.configure(**kwargs)


def embed(**kwargs):
    """Start the exporter in this process and send calls to it; see :meth:`CostTracker.embed`."""
    return cost_tracker.embed(**kwargs)


def flush(timeout: float = 10.0) -> bool:
    """Deliver queued events now; True when nothing is left queued or spooled."""
    return cost_tracker.flush(timeout)


def shutdown(timeout: float = 10.0) -> None:
    """Flush, stop the shipper (and an embedded exporter)."""
    cost_tracker.shutdown(timeout)


def _enforcer():
    if not cost_tracker._ready:
        cost_tracker._ensure()
    return cost_tracker.enforcer


def should_deny(tenant: str, provider: str | None = None, model: str | None = None, endpoint: str | None = None,
                extra_usd: float = 0.0, *, fail_closed: bool | None = None) -> tuple[bool, str]:
    """(True, reason) when a budget of ``tenant`` is spent, counting calls in flight; (False, "") otherwise."""
    e = _enforcer()
    if e is None:
        return False, ""
    return e.should_deny(tenant, provider, model, endpoint, extra_usd, fail_closed=fail_closed)


def should_throttle(tenant: str, provider: str | None = None, model: str | None = None,
                    endpoint: str | None = None, *, fail_closed: bool | None = None) -> tuple[bool, str]:
    """(True, reason) when a budget of ``tenant`` is at or over its warning (soft) threshold."""
    e = _enforcer()
    if e is None:
        return False, ""
    return e.should_throttle(tenant, provider, model, endpoint, fail_closed=fail_closed)


__all__ = [
    "track_cost", "cost_tracker", "should_deny", "should_throttle", "BudgetExceededError",
    "configure", "embed", "flush", "shutdown", "mark_cache_hit", "mark_cache_miss",
    "request_context", "set_tenant", "set_endpoint", "current_tenant", "current_endpoint",
    "CostTracker", "TrackedBlock", "StreamUsage", "extract_usage", "tokens_from_usage", "__version__",
]
