"""GET a vendor's JSON with the billing sources' error policy.

  * 401 / 403: :class:`AuthError` at once, naming where the key came from.
  * 429: wait what ``Retry-After`` says (seconds or an HTTP date; at most
    ``MAX_RETRY_AFTER``), then try again.
  * 5xx, timeouts and connection errors: retry with exponential backoff and
    full jitter, ``ATTEMPTS`` tries in all, then :class:`PullError` (the
    scheduler tries again at the next interval).
  * Any other status, or a body that is not a JSON object: :class:`PullError`.
"""
from __future__ import annotations

import email.utils
import random
import time
from datetime import date
from typing import Any, Callable, Iterator
from urllib.parse import urlsplit

import requests

from costmeter.collectors.billing import AuthError, Pull, PullError
from costmeter.config.billing import SecretUnavailable, SourceConfig

__all__ = ["JsonGetter", "ATTEMPTS"]

ATTEMPTS = 4
BACKOFF_BASE = 1.0          # seconds; doubles each retry
BACKOFF_CAP = 30.0
MAX_RETRY_AFTER = 600.0
TIMEOUT = (10.0, 60.0)      # connect, read


def _retry_after(value: str | None, now: float) -> float | None:
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - now)


class JsonGetter:
    """One source's HTTP session. ``sleep`` is the scheduler's (it stops early on shutdown)."""

    def __init__(self, source: str, key_origin: str, sleep: Callable[[float], None]):
        self.source, self.key_origin, self.sleep = source, key_origin, sleep
        self.session = requests.Session()
        self.requests = 0

    def get(self, url: str, params: list[tuple[str, str]], headers: dict[str, str]) -> dict:
        what = f"GET {urlsplit(url).path}"
        last = ""
        for attempt in range(ATTEMPTS):
            wait = None
            try:
                self.requests += 1
                r = self.session.get(url, params=params, headers=headers, timeout=TIMEOUT)
            except requests.Timeout:
                last = f"{what} timed out"
            except requests.RequestException as e:
                last = f"{what} failed: {type(e).__name__}"
            else:
                if r.status_code in (401, 403):
                    raise AuthError(f"{what} answered HTTP {r.status_code}: the vendor refused the admin key "
                                    f"from {self.key_origin} (it must be an organization admin key)")
                if r.status_code == 429:
                    wait = _retry_after(r.headers.get("Retry-After"), time.time())
                    last = f"{what} answered HTTP 429 (rate limited)"
                    if wait is not None and wait > MAX_RETRY_AFTER:
                        raise PullError(f"{last}; Retry-After {wait:.0f}s is longer than "
                                        f"{MAX_RETRY_AFTER:.0f}s: trying again at the next interval")
                elif r.status_code >= 500:
                    last = f"{what} answered HTTP {r.status_code}"
                elif r.status_code != 200:
                    raise PullError(f"{what} answered HTTP {r.status_code}: {_brief(r.text)}")
                else:
                    try:
                        body = r.json()
                    except ValueError:
                        raise PullError(f"{what}: the answer is not JSON: {_brief(r.text)}") from None
                    if not isinstance(body, dict):
                        raise PullError(f"{what}: expected a JSON object, got {type(body).__name__}")
                    return body
            if attempt + 1 == ATTEMPTS:
                break
            if wait is None:
                wait = random.uniform(0, min(BACKOFF_CAP, BACKOFF_BASE * 2 ** attempt))
            self.sleep(wait)
        raise PullError(f"{last}; gave up after {ATTEMPTS} attempts until the next interval")


def _brief(text: str, n: int = 200) -> str:
    text = " ".join((text or "").split())
    return text[:n] + ("..." if len(text) > n else "")


MAX_PAGES = 1000


def field(obj: dict, key: str, kind: type, path: str, where: str = "") -> Any:
    """``obj[key]`` if it is a ``kind`` (a bool is not an int), else a PullError naming where."""
    v = obj.get(key)
    if not isinstance(v, kind) or (kind is int and isinstance(v, bool)):
        at = f"{where}.{key}" if where else key
        raise PullError(f"GET {path}: {at} should be {kind.__name__}, got {type(v).__name__}")
    return v


def pages(http: JsonGetter, url: str, path: str, params: list, headers: dict) -> Iterator[dict]:
    """Every page of an admin API that pages with ``has_more`` / ``next_page`` / ``page``
    (OpenAI's Costs API and Anthropic's cost report): each body in turn. A ``next_page``
    seen before, or more than MAX_PAGES pages, is an error rather than a loop."""
    page, seen = None, set()
    for _ in range(MAX_PAGES):
        body = http.get(url, params + ([("page", page)] if page else []), headers)
        yield body
        if not field(body, "has_more", bool, path):
            return
        page = field(body, "next_page", str, path)
        if page in seen:
            raise PullError(f"GET {path}: next_page {page!r} repeats: the pages loop")
        seen.add(page)
    raise PullError(f"GET {path}: more than {MAX_PAGES} pages")


def day_results(body: dict, path: str, out: Pull,
                day_of: Callable[[dict, str], date]) -> Iterator[tuple[date, str, dict]]:
    """``(day, where, result)`` for each result object of each daily bucket of a page shaped
    ``{"data": [{..., "results": [...]}]}`` (OpenAI's Costs API and Anthropic's cost report);
    ``day_of(bucket, where)`` reads a bucket's day. A day outside the pull is an error."""
    for i, bucket in enumerate(field(body, "data", list, path)):
        where = f"data[{i}]"
        if not isinstance(bucket, dict):
            raise PullError(f"GET {path}: {where} is not an object")
        day = day_of(bucket, where)
        if not out.start <= day < out.end:
            raise PullError(f"GET {path}: {where} is for {day}, outside the requested days")
        for j, r in enumerate(field(bucket, "results", list, path, where)):
            w = f"{where}.results[{j}]"
            if not isinstance(r, dict):
                raise PullError(f"GET {path}: {w} is not an object")
            yield day, w, r


def api_key(cfg: SourceConfig) -> str:
    """The source's admin key; a key that cannot be read is a PullError for that source."""
    try:
        return cfg.api_key()
    except SecretUnavailable as e:
        raise PullError(str(e)) from None


def pull_pages(http: JsonGetter, url: str, path: str, params: list, headers: dict, out: Pull,
               on_page: Callable[[dict, Pull], None]) -> Pull:
    """Read every page into ``out`` with ``on_page`` and count the requests it took."""
    before = http.requests
    for body in pages(http, url, path, params, headers):
        on_page(body, out)
    out.requests = http.requests - before
    return out
