"""OpenAI Costs API: ``GET /v1/organization/costs`` with an organization admin key.

Request: ``start_time`` / ``end_time`` (Unix seconds, end exclusive),
``bucket_width=1d``, ``group_by[]=line_item`` and ``group_by[]=project_id``,
``limit=31``, then ``page=<next_page>`` while ``has_more``. Answer::

    {"object": "page", "has_more": false, "next_page": null,
     "data": [{"object": "bucket", "start_time": 1730419200, "end_time": 1730505600,
               "results": [{"object": "organization.costs.result",
                            "amount": {"value": 0.06, "currency": "usd"},
                            "line_item": "gpt-4o-2024-08-06, input", "project_id": "proj_abc"}]}]}

Each result becomes ``cost_billed_usd{provider="openai", service=<line_item>}``
for the bucket's UTC day (projects are summed).
"""
from __future__ import annotations

import math
from datetime import date
from typing import Callable

from costmeter.collectors.billing import Pull, PullError, day_start_ts, utc_day
from costmeter.collectors.billing_http import JsonGetter, api_key, day_results, field, pull_pages
from costmeter.config.billing import SourceConfig

__all__ = ["OpenAICosts"]

PATH = "/v1/organization/costs"


class OpenAICosts:
    provider = "openai"

    def __init__(self, cfg: SourceConfig, sleep: Callable[[float], None]):
        self.cfg = cfg
        self.http = JsonGetter(cfg.name, cfg.key_origin, sleep)

    def pull(self, start: date, end: date) -> Pull:
        key = api_key(self.cfg)
        url = self.cfg.base_url + PATH
        headers = {"Authorization": f"Bearer {key}", "Accept": "application/json"}
        base = [("start_time", str(int(day_start_ts(start)))), ("end_time", str(int(day_start_ts(end)))),
                ("bucket_width", "1d"), ("group_by[]", "line_item"), ("group_by[]", "project_id"), ("limit", "31")]
        return pull_pages(self.http, url, PATH, base, headers, Pull(start, end), self._page)

    def _page(self, body: dict, out: Pull) -> None:
        def day_of(bucket: dict, where: str) -> date:
            return utc_day(field(bucket, "start_time", int, PATH, where))

        for day, w, r in day_results(body, PATH, out, day_of):
            amount = field(r, "amount", dict, PATH, w)
            value = amount.get("value")
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise PullError(f"GET {PATH}: {w}.amount.value is not a number: {value!r}")
            currency = amount.get("currency")
            if not isinstance(currency, str) or currency.lower() != "usd":
                raise PullError(f"GET {PATH}: {w}.amount.currency is {currency!r}, costmeter reports USD")
            item = r.get("line_item")
            if item is not None and not isinstance(item, str):
                raise PullError(f"GET {PATH}: {w}.line_item is not a string")
            out.add(day, self.provider, item or "unspecified", float(value))


