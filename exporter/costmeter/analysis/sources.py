"""Where the analysis commands read spend from: one interface, three sources.

* :class:`UrlSource` -- an exporter's ``GET /v1/costs`` and ``GET /v1/budgets``;
* :class:`StorageSource` -- an exporter's state directory, read directly with the
  same code the exporter serves ``/v1/costs`` with (no exporter running);
* :class:`~costmeter.analysis.promsource.PrometheusSource` -- PromQL over
  Prometheus, Thanos or Mimir (every exporter of a sharded fleet).

``costs(start, end, group_by, **filters)`` returns the rows of ``GET /v1/costs``;
``budgets(now)`` the list of ``GET /v1/budgets``. Times are Unix seconds.
"""
from __future__ import annotations

import os
import re
from typing import Protocol, Sequence

import requests

from costmeter.config.loader import ConfigError, ConfigErrors


class SourceError(RuntimeError):
    """The source could not be read; the message says which and why."""


def why(e: requests.RequestException) -> str:
    """The short reason of a failed request: 'Connection refused', 'timed out', ..."""
    m = re.search(r"\[Errno -?\d+\] ([^'\")]+)", str(e))
    if m:
        return m.group(1).strip()
    if isinstance(e, requests.Timeout):
        return "timed out"
    return f"{e.__class__.__name__}: {e}"


class Source(Protocol):
    name: str

    def costs(self, start: float, end: float, group_by: Sequence[str] = (), **filters: str) -> list[dict]: ...
    def budgets(self, now: float) -> list[dict]: ...


class UrlSource:
    def __init__(self, url: str, timeout: float = 60.0):
        self.url = url.rstrip("/")
        self.name = self.url
        self.timeout = timeout

    def _get(self, path: str, params: dict | None = None) -> dict:
        token = os.environ.get("COSTMETER_TOKEN")       # the SDK's variable: an exporter with bearer tokens
        headers = {"Authorization": f"Bearer {token}"} if token else None
        try:
            r = requests.get(self.url + path, params=params, timeout=self.timeout, headers=headers)
        except requests.RequestException as e:
            raise SourceError(f"cannot reach the exporter at {self.url}: {why(e)}") from None
        if r.status_code != 200:
            try:
                msg = r.json().get("error", r.text)
            except ValueError:
                msg = r.text.strip()[:200]
            hint = (" (set COSTMETER_TOKEN to one of its bearer tokens, or give basic auth credentials in "
                    "the URL: https://user:password@host:9469)") if r.status_code in (401, 403) else ""
            raise SourceError(f"{self.url}{path}: HTTP {r.status_code}: {msg}{hint}")
        try:
            return r.json()
        except ValueError:
            raise SourceError(f"{self.url}{path}: the answer is not JSON (is this a costmeter exporter?)") from None

    def costs(self, start, end, group_by=(), **filters):
        params = {"start": repr(float(start)), "end": repr(float(end)), **filters}
        if group_by:
            params["group_by"] = ",".join(group_by)
        return self._get("/v1/costs", params)["rows"]

    def budgets(self, now):
        return self._get("/v1/budgets")["budgets"]


class StorageSource:
    """A state directory (``--storage.path``); budgets come from ``budgets_file`` and the environment."""

    def __init__(self, state_dir: str, budgets_file: str | None = None):
        from costmeter.server.costs import CostsDB
        path = os.path.join(state_dir, "ledger.db")
        if not os.path.isfile(path):
            raise SourceError(f"no ledger at {path}: --storage.path takes an exporter's state directory")
        self.name = state_dir
        self.state_dir = state_dir
        self.budgets_file = budgets_file
        writable = os.access(path, os.W_OK) and os.access(state_dir, os.W_OK)
        self.db = CostsDB(path, writable=writable)
        self._config = None

    def costs(self, start, end, group_by=(), **filters):
        from costmeter.server.costs import CostQuery
        import sqlite3
        try:
            return self.db.query(CostQuery(float(start), float(end), tuple(group_by), dict(filters)))["rows"]
        except sqlite3.DatabaseError as e:
            raise SourceError(f"{self.db.path}: cannot read the ledger: {e}") from None

    def budgets(self, now):
        from costmeter.budgets.book import BudgetBook
        from costmeter.budgets.config import load_budgets
        if self._config is None:
            try:
                self._config = load_budgets(self.budgets_file)
            except (ConfigError, ConfigErrors) as e:
                raise SourceError(str(e)) from None
        book = BudgetBook(self._config, None, clock=lambda: now)

        def sums(s, e):
            return [(r["provider"], r["model"], r["tenant"], r["endpoint"], r["cost_usd"])
                    for r in self.costs(s, e, ("provider", "model", "tenant", "endpoint"))]
        book.restore(sums)
        return [b.to_dict() for b in book.statuses(now)]


def open_source(url: str | None = None, storage_path: str | None = None, prometheus: str | None = None,
                budgets_file: str | None = None) -> Source:
    if storage_path:
        return StorageSource(storage_path, budgets_file)
    if prometheus:
        from costmeter.analysis.promsource import PrometheusSource
        return PrometheusSource(prometheus)
    return UrlSource(url or os.environ.get("COSTMETER_URL") or "http://localhost:9469")
