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
from typing import Any, Callable

from costmeter.collectors.billing import Pull, PullError, day_start_ts, utc_day
from costmeter.collectors.billing_http import JsonGetter
from costmeter.config.billing import SecretUnavailable, SourceConfig

__all__ = ["OpenAICosts"]

PATH = "/v1/organization/costs"
MAX_PAGES = 1000


class OpenAICosts:
    provider = "openai"

    def __init__(self, cfg: SourceConfig, sleep: Callable[[float], None]):
        self.cfg = cfg
        self.http = JsonGetter(cfg.name, cfg.key_origin, sleep)

    def pull(self, start: date, end: date) -> Pull:
        try:
            key = self.cfg.api_key()
        except SecretUnavailable as e:
            raise PullError(str(e)) from None
        url = self.cfg.base_url + PATH
        headers = {"Authorization": f"Bearer {key}", "Accept": "application/json"}
        base = [("start_time", str(int(day_start_ts(start)))), ("end_time", str(int(day_start_ts(end)))),
                ("bucket_width", "1d"), ("group_by[]", "line_item"), ("group_by[]", "project_id"), ("limit", "31")]
        out = Pull(start, end)
        before = self.http.requests
        page, seen = None, set()
        for _ in range(MAX_PAGES):
            body = self.http.get(url, base + ([("page", page)] if page else []), headers)
            self._page(body, out)
            if not _field(body, "has_more", bool):
                break
            page = _field(body, "next_page", str)
            if page in seen:
                raise PullError(f"GET {PATH}: next_page {page!r} repeats: the pages loop")
            seen.add(page)
        else:
            raise PullError(f"GET {PATH}: more than {MAX_PAGES} pages")
        out.requests = self.http.requests - before
        return out

    def _page(self, body: dict, out: Pull) -> None:
        for i, bucket in enumerate(_field(body, "data", list)):
            where = f"data[{i}]"
            if not isinstance(bucket, dict):
                raise PullError(f"GET {PATH}: {where} is not an object")
            day = utc_day(_field(bucket, "start_time", int, where))
            if not out.start <= day < out.end:
                raise PullError(f"GET {PATH}: {where} is for {day}, outside the requested days")
            for j, r in enumerate(_field(bucket, "results", list, where)):
                w = f"{where}.results[{j}]"
                if not isinstance(r, dict):
                    raise PullError(f"GET {PATH}: {w} is not an object")
                amount = _field(r, "amount", dict, w)
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


def _field(obj: dict, key: str, kind: type, where: str = "") -> Any:
    v = obj.get(key)
    if not isinstance(v, kind) or (kind is int and isinstance(v, bool)):
        at = f"{where}.{key}" if where else key
        raise PullError(f"GET {PATH}: {at} should be {kind.__name__}, got {type(v).__name__}")
    return v
