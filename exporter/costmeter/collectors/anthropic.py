"""Anthropic Admin API cost report: ``GET /v1/organizations/cost_report``.

Headers ``x-api-key: <admin key>`` and ``anthropic-version: 2023-06-01``.
Request: ``starting_at`` / ``ending_at`` (RFC 3339, UTC midnight),
``bucket_width=1d``, ``group_by[]=description`` (which breaks costs down by
model, cost type and token type), ``limit=31``, then ``page=<next_page>``
while ``has_more``. Answer::

    {"data": [{"starting_at": "2025-11-01T00:00:00Z", "ending_at": "2025-11-02T00:00:00Z",
               "results": [{"currency": "USD", "amount": "123.45", "model": "claude-sonnet-4-20250514",
                            "cost_type": "tokens", "token_type": "uncached_input_tokens",
                            "description": "...", "workspace_id": null, ...}]}],
     "has_more": false, "next_page": null}

``amount`` is a decimal string in **cents** (``"123.45"`` is $1.2345). The
service label is the model when there is one, else the cost type
(``web_search``, ``code_execution``, ...), else the description.
"""
from __future__ import annotations

from datetime import date, datetime, timezone
from decimal import Decimal, InvalidOperation
from typing import Callable

from costmeter.collectors.billing import Pull, PullError
from costmeter.collectors.billing_http import JsonGetter, api_key, day_results, field, pull_pages
from costmeter.config.billing import SourceConfig

__all__ = ["AnthropicCosts", "API_VERSION"]

PATH = "/v1/organizations/cost_report"
API_VERSION = "2023-06-01"


def _rfc3339(d: date) -> str:
    return f"{d.isoformat()}T00:00:00Z"


class AnthropicCosts:
    provider = "anthropic"

    def __init__(self, cfg: SourceConfig, sleep: Callable[[float], None]):
        self.cfg = cfg
        self.http = JsonGetter(cfg.name, cfg.key_origin, sleep)

    def pull(self, start: date, end: date) -> Pull:
        key = api_key(self.cfg)
        url = self.cfg.base_url + PATH
        headers = {"x-api-key": key, "anthropic-version": API_VERSION, "Accept": "application/json"}
        base = [("starting_at", _rfc3339(start)), ("ending_at", _rfc3339(end)), ("bucket_width", "1d"),
                ("group_by[]", "description"), ("limit", "31")]
        return pull_pages(self.http, url, PATH, base, headers, Pull(start, end), self._page)

    def _page(self, body: dict, out: Pull) -> None:
        def day_of(bucket: dict, where: str) -> date:
            raw = field(bucket, "starting_at", str, PATH, where)
            try:
                return datetime.fromisoformat(raw.replace("Z", "+00:00")).astimezone(timezone.utc).date()
            except ValueError:
                raise PullError(f"GET {PATH}: {where}.starting_at is not an RFC 3339 time: {raw!r}") from None

        for day, w, r in day_results(body, PATH, out, day_of):
            amount = r.get("amount")
            try:
                cents = Decimal(amount) if isinstance(amount, str) else None
            except InvalidOperation:
                cents = None
            if cents is None or not cents.is_finite():
                raise PullError(f"GET {PATH}: {w}.amount should be a decimal string of cents, got {amount!r}")
            currency = r.get("currency")
            if not isinstance(currency, str) or currency.upper() != "USD":
                raise PullError(f"GET {PATH}: {w}.currency is {currency!r}, costmeter reports USD")
            service = next((r[k] for k in ("model", "cost_type", "description")
                            if isinstance(r.get(k), str) and r[k]), "unspecified")
            out.add(day, self.provider, service, float(cents / 100))


