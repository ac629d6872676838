"""Per-request tenant and endpoint, set once by request middleware.

``track_cost`` reads these when its own ``tenant=`` / ``endpoint=`` arguments
are not given, so a web app sets them in one place::

    from costmeter import request_context

    @app.middleware("http")
    async def costmeter_context(request, call_next):
        with request_context(tenant=request.headers.get("x-tenant"), endpoint=request.url.path):
            return await call_next(request)

Context variables follow asyncio tasks and ``contextvars.copy_context()``;
threads started by the app do not inherit them (pass ``tenant=`` explicitly there).
"""
from __future__ import annotations

from contextlib import contextmanager
from contextvars import ContextVar
from typing import Iterator

current_tenant: ContextVar[str | None] = ContextVar("costmeter_tenant", default=None)
current_endpoint: ContextVar[str | None] = ContextVar("costmeter_endpoint", default=None)


def set_tenant(tenant: str | None):
    """Set the tenant for the rest of this context; returns a token for ``current_tenant.reset``."""
    return current_tenant.set(tenant)


def set_endpoint(endpoint: str | None):
    """Set the endpoint for the rest of this context; returns a token for ``current_endpoint.reset``."""
    return current_endpoint.set(endpoint)


@contextmanager
def request_context(tenant: str | None = None, endpoint: str | None = None) -> Iterator[None]:
    """Attribute every tracked call inside the block to ``tenant`` and ``endpoint``.

    A value left as None keeps whatever an outer context set.
    """
    t = current_tenant.set(tenant) if tenant is not None else None
    e = current_endpoint.set(endpoint) if endpoint is not None else None
    try:
        yield
    finally:
        if e is not None:
            current_endpoint.reset(e)
        if t is not None:
            current_tenant.reset(t)
