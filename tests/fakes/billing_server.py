"""A loopback stand-in for the OpenAI Costs API and the Anthropic cost report.

    with FakeBillingServer(openai_key="sk-admin-test", anthropic_key="sk-ant-admin-test") as srv:
        srv.openai_costs[date(2026, 11, 3)] = [openai_result(1.25, "gpt-4o-2024-08-06, input", "proj_a")]
        srv.anthropic_costs[date(2026, 11, 3)] = [anthropic_result("123.45", "claude-sonnet-4-20250514")]

Routes, in the vendors' documented shapes:

    GET /v1/organization/costs          Bearer admin key; start_time / end_time (Unix seconds),
                                        bucket_width=1d, group_by[], limit, page
    GET /v1/organizations/cost_report   x-api-key admin key and anthropic-version; starting_at /
                                        ending_at (RFC 3339), bucket_width=1d, group_by[], limit, page

One bucket per day in the requested range (empty days have no results, as
the vendors answer), ``page_size`` buckets a page (default: the request's
``limit``), ``next_page`` an opaque token while ``has_more``. A wrong key
gets 401 in the vendor's error shape. ``srv.fail_next(status, n, headers)``
makes the next n requests fail; ``srv.delay`` holds every answer back; ``srv.raw_next(body)`` answers the next
request with that body as is. Every request is recorded in ``srv.requests``
as (path, query params as a list of pairs, headers). Only 127.0.0.1 is bound.
"""
from __future__ import annotations

import json
import threading
import time
from datetime import date, datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qsl, urlsplit

OPENAI_PATH = "/v1/organization/costs"
ANTHROPIC_PATH = "/v1/organizations/cost_report"


def openai_result(usd: float, line_item: str | None, project_id: str | None = "proj_default") -> dict:
    return {"object": "organization.costs.result", "amount": {"value": usd, "currency": "usd"},
            "line_item": line_item, "project_id": project_id}


def anthropic_result(cents: str, model: str | None, cost_type: str = "tokens", token_type: str | None = "output_tokens",
                     description: str | None = None) -> dict:
    return {"currency": "USD", "amount": cents, "workspace_id": None, "description": description,
            "cost_type": cost_type, "model": model, "service_tier": "standard" if model else None,
            "token_type": token_type, "context_window": "0-200k" if model else None}


def _ts(d: date) -> int:
    return int(datetime(d.year, d.month, d.day, tzinfo=timezone.utc).timestamp())


class FakeBillingServer:
    def __init__(self, openai_key: str = "sk-admin-test", anthropic_key: str = "sk-ant-admin-test"):
        self.openai_key, self.anthropic_key = openai_key, anthropic_key
        self.openai_costs: dict[date, list[dict]] = {}
        self.anthropic_costs: dict[date, list[dict]] = {}
        self.page_size: int | None = None
        self.delay = 0.0                 # seconds to wait before answering
        self.requests: list[tuple[str, list[tuple[str, str]], dict]] = []
        self._fail: list[tuple[int, dict]] = []
        self._raw: list[bytes] = []
        self._lock = threading.Lock()
        srv = self

        class Handler(_Handler):
            state = srv

        self.httpd = _Server(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self._thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    def fail_next(self, status: int, n: int = 1, headers: dict | None = None) -> None:
        with self._lock:
            self._fail += [(status, headers or {})] * n

    def raw_next(self, body: bytes) -> None:
        with self._lock:
            self._raw.append(body)

    def __enter__(self) -> "FakeBillingServer":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    # -- answers -------------------------------------------------------------------

    def _pages(self, days: list[date], costs: dict, limit: int, page: str | None):
        size = self.page_size or limit
        offset = int(page.removeprefix("page_")) if page else 0
        chunk = days[offset:offset + size]
        more = offset + size < len(days)
        return chunk, more, (f"page_{offset + size}" if more else None)

    def openai(self, q: dict) -> dict:
        start = datetime.fromtimestamp(int(q["start_time"][0]), timezone.utc).date()
        end = datetime.fromtimestamp(int(q["end_time"][0]), timezone.utc).date()
        days = [start + timedelta(days=i) for i in range((end - start).days)]
        chunk, more, nxt = self._pages(days, self.openai_costs, int(q.get("limit", ["7"])[0]), q.get("page", [None])[0])
        data = [{"object": "bucket", "start_time": _ts(d), "end_time": _ts(d + timedelta(days=1)),
                 "results": list(self.openai_costs.get(d, []))} for d in chunk]
        return {"object": "page", "data": data, "has_more": more, "next_page": nxt}

    def anthropic(self, q: dict) -> dict:
        start = datetime.fromisoformat(q["starting_at"][0].replace("Z", "+00:00")).date()
        end = datetime.fromisoformat(q["ending_at"][0].replace("Z", "+00:00")).date()
        days = [start + timedelta(days=i) for i in range((end - start).days)]
        chunk, more, nxt = self._pages(days, self.anthropic_costs, int(q.get("limit", ["7"])[0]),
                                       q.get("page", [None])[0])
        data = [{"starting_at": f"{d}T00:00:00Z", "ending_at": f"{d + timedelta(days=1)}T00:00:00Z",
                 "results": list(self.anthropic_costs.get(d, []))} for d in chunk]
        return {"data": data, "has_more": more, "next_page": nxt}


class _Server(ThreadingHTTPServer):
    def handle_error(self, request, client_address) -> None:
        import sys
        if not isinstance(sys.exc_info()[1], (BrokenPipeError, ConnectionResetError)):   # a client that timed out
            super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    state: FakeBillingServer

    def log_message(self, *args) -> None:
        pass

    def _send(self, status: int, body: bytes, headers: dict | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        srv = self.state
        u = urlsplit(self.path)
        pairs = parse_qsl(u.query, keep_blank_values=True)
        q: dict[str, list[str]] = {}
        for k, v in pairs:
            q.setdefault(k, []).append(v)
        with srv._lock:
            srv.requests.append((u.path, pairs, dict(self.headers)))
            fail = srv._fail.pop(0) if srv._fail else None
            raw = srv._raw.pop(0) if srv._raw and fail is None else None
        if srv.delay:
            time.sleep(srv.delay)
        if fail is not None:
            status, headers = fail
            return self._send(status, json.dumps({"error": {"type": "error", "message": f"HTTP {status}"}}).encode(),
                              headers)
        if u.path == OPENAI_PATH:
            if self.headers.get("Authorization") != f"Bearer {srv.openai_key}":
                return self._send(401, json.dumps({"error": {"message": "Incorrect API key provided",
                                                             "type": "invalid_request_error"}}).encode())
            body = raw if raw is not None else json.dumps(srv.openai(q)).encode()
            return self._send(200, body)
        if u.path == ANTHROPIC_PATH:
            if self.headers.get("x-api-key") != srv.anthropic_key:
                return self._send(401, json.dumps({"type": "error", "error": {
                    "type": "authentication_error", "message": "invalid x-api-key"}}).encode())
            if self.headers.get("anthropic-version") != "2023-06-01":
                return self._send(400, json.dumps({"type": "error", "error": {
                    "type": "invalid_request_error", "message": "anthropic-version header is required"}}).encode())
            body = raw if raw is not None else json.dumps(srv.anthropic(q)).encode()
            return self._send(200, body)
        self._send(404, b'{"error": "not found"}')
