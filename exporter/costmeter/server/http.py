"""HTTP routing for the exporter. It only routes: the work is in :class:`~costmeter.server.exporter.Exporter`,
which this module knows only through the :class:`App` protocol (so the exporter imports
the HTTP module, never the other way round).

    GET  /                     landing page: links and a table of budgets
    GET  /metrics              Prometheus text exposition (gzip if accepted)
    GET  /-/healthy, /-/ready  liveness and readiness
    POST /v1/events            JSON array or NDJSON of usage events
    GET  /v1/budgets[/{name}]  budget status as JSON
    GET  /v1/costs             grouped spend from the ledger (server/costs.py)
    POST /-/reload             re-read budgets, pricing and web config (as SIGHUP does)

Auth: when web-config.yml sets ``basic_auth_users`` every endpoint needs
basic auth, except ``POST /v1/events`` when bearer tokens are configured
(one request cannot carry both; the write API then takes the token alone).
Missing token: 401; a wrong one: 403.
"""
from __future__ import annotations

import gzip
import hmac
import html
import json
import logging
import socket
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Protocol
from urllib.parse import unquote, urlsplit

from costmeter.server.exposition import CONTENT_TYPE
from costmeter.server.decode import BodyError, decode
from costmeter.server.costs import answer as costs_answer
from costmeter.config.settings import parse_listen_address
from costmeter.config.loader import ConfigError, ConfigErrors

log = logging.getLogger("costmeter.server.http")


class App(Protocol):
    """What the HTTP layer needs from the exporter."""
    settings: Any          # costmeter.config.settings.Settings
    web: Any               # costmeter.server.webconfig.WebConfig | None
    budgets: Any           # costmeter.budgets.book.BudgetBook
    ready: bool
    url: str | None
    http: Any

    def render_metrics(self) -> bytes: ...
    def ingest(self, objs: list) -> Any: ...
    def count_rejected(self, reason: str, n: int = 1) -> None: ...
    def reload(self) -> None: ...


class Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128
    exporter: App
    ssl_context = None

    def finish_request(self, request, client_address):
        # TLS handshakes happen here, in the connection's own thread, so one
        # slow or stalled client never holds up the accept loop.
        if self.ssl_context is not None:
            request.settimeout(Handler.timeout)
            try:
                request = self.ssl_context.wrap_socket(request, server_side=True)
            except (OSError, ValueError) as e:
                log.debug("TLS handshake with %s failed: %s", client_address, e)
                request.close()
                return
            try:
                super().finish_request(request, client_address)
            finally:
                request.close()      # the raw socket was detached into this TLS socket
            return
        super().finish_request(request, client_address)


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "costmeter"
    timeout = 60          # seconds a connection may sit idle or half-sent
    # Headers and body leave in one segment: a separate small write would wait
    # out the client's delayed ACK (~40 ms) under Nagle's algorithm.
    disable_nagle_algorithm = True
    wbufsize = 64 * 1024  # handle_one_request flushes after each response
    server: Server

    def log_message(self, fmt, *args):  # access log at debug; errors go through log.warning
        log.debug("%s %s", self.address_string(), fmt % args)

    # ---- responses -----------------------------------------------------------
    def _send(self, status: int, body: bytes, content_type: str, extra: dict | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        web = self.server.exporter.web
        for k, v in ({} if web is None else web.headers).items():
            self.send_header(k, v)
        for k, v in (extra or {}).items():
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _json(self, status: int, obj, extra: dict | None = None, compact: bool = False) -> None:
        # indent makes json use its pure-Python encoder: compact for long lists (many budgets)
        text = json.dumps(obj, separators=(",", ":")) if compact else json.dumps(obj, indent=1)
        self._send(status, text.encode() + b"\n", "application/json", extra)

    def _text(self, status: int, text: str, extra: dict | None = None) -> None:
        self._send(status, text.encode(), "text/plain; charset=utf-8", extra)

    def _error(self, status: int, message: str, extra: dict | None = None) -> None:
        self._json(status, {"error": message}, extra)

    # ---- auth --------------------------------------------------------------------
    def _basic_ok(self) -> bool:
        web = self.server.exporter.web
        if web is None or not web.basic_auth_enabled or web.check_basic_auth(self.headers.get("Authorization")):
            return True
        self._drain()
        self._error(401, "basic auth required", {"WWW-Authenticate": 'Basic realm="costmeter"'})
        return False

    def _bearer_ok(self) -> bool:
        tokens = self.server.exporter.settings.bearer_tokens
        auth = self.headers.get("Authorization") or ""
        scheme, _, token = auth.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            self._drain()
            self._error(401, "missing bearer token: send Authorization: Bearer <token>",
                        {"WWW-Authenticate": 'Bearer realm="costmeter"'})
            return False
        token = token.strip().encode()
        if not any(hmac.compare_digest(token, t.encode()) for t in tokens):
            self._drain()
            self._error(403, "bearer token not accepted")
            return False
        return True

    def _drain(self) -> None:
        """Read a small unread body so the connection stays usable; close on a large one."""
        n = int(self.headers.get("Content-Length") or 0)
        if 0 < n <= 1 << 20:
            self.rfile.read(n)
        elif n:
            self.close_connection = True

    # ---- routes -----------------------------------------------------------------
    def do_GET(self):
        path = urlsplit(self.path).path
        exp = self.server.exporter
        if not self._basic_ok():
            return
        if path == "/-/healthy":
            return self._text(200, "Healthy\n")
        if path == "/metrics":
            body = exp.render_metrics()
            extra = {}
            if "gzip" in (self.headers.get("Accept-Encoding") or ""):
                body, extra = gzip.compress(body, compresslevel=1), {"Content-Encoding": "gzip"}
            return self._send(200, body, CONTENT_TYPE, extra)
        if path == "/-/ready":
            return self._text(200, "Ready\n") if exp.ready else self._text(503, "Not ready\n")
        if path == "/v1/budgets":
            budgets = exp.budgets.status_dicts()
            return self._json(200, {"budgets": budgets}, compact=len(budgets) > 1000)
        if path.startswith("/v1/budgets/"):
            name = unquote(path[len("/v1/budgets/"):])
            periods = exp.budgets.get(name)     # tenant:<t> of an unseen tenant: its defaults
            if not periods:
                return self._error(404, f"no budget named {name!r}; GET /v1/budgets lists them")
            return self._json(200, {"name": name, "periods": [b.to_dict() for b in periods]})
        if path == "/v1/costs":
            return self._json(*costs_answer(exp, urlsplit(self.path).query))
        if path == "/":
            return self._send(200, landing_page(exp).encode(), "text/html; charset=utf-8")
        if path == "/v1/events":
            return self._error(405, "use POST for /v1/events", {"Allow": "POST"})
        return self._error(404, f"not found: {path}")

    do_HEAD = do_GET

    def do_POST(self):
        path = urlsplit(self.path).path
        exp = self.server.exporter
        if path == "/-/reload":
            if not self._basic_ok():     # drains the body itself when it refuses
                return
            self._drain()
            try:
                exp.reload()
            except (ConfigError, ConfigErrors) as e:
                return self._error(400, f"reload failed, previous configuration kept: {e}")
            return self._text(200, "Reloaded\n")
        if path != "/v1/events":
            self._drain()
            return self._error(405 if path in ("/metrics", "/", "/v1/budgets") else 404,
                               f"POST is only accepted on /v1/events and /-/reload, not {path}")
        if exp.settings.bearer_tokens:
            if not self._bearer_ok():
                return
        elif not self._basic_ok():
            return
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            self.close_connection = True
            return self._error(411, "send the body with a Content-Length, not chunked")
        try:
            length = int(self.headers.get("Content-Length") or 0)
            if length < 0:
                raise ValueError
        except ValueError:
            self.close_connection = True
            return self._error(400, "Content-Length is not a whole number of bytes")
        if length > exp.settings.max_body_bytes:
            self.close_connection = True
            return self._error(413, f"body of {length} bytes is larger than the limit of "
                                    f"{exp.settings.max_body_bytes} bytes; send smaller batches")
        body = self.rfile.read(length) if length else b""
        try:
            objs = decode(body, self.headers.get("Content-Type"))
        except BodyError as e:
            exp.count_rejected("malformed")
            return self._error(e.status, e.message)
        if len(objs) > exp.settings.max_events_per_request:
            return self._error(413, f"{len(objs)} events in one request; the limit is "
                                    f"{exp.settings.max_events_per_request}")
        try:
            result = exp.ingest(objs)
        except Exception as e:  # the ledger failed: nothing in this batch was acknowledged
            log.exception("ingest failed")
            return self._error(503, f"events not recorded, retry later: {e}", {"Retry-After": "1"})
        body = result.to_dict()
        if result.rejected:
            first = result.rejected[0]
            ident = f' (id "{first["id"]}")' if first["id"] else ""
            where = f'{first["field"]}: ' if first["field"] else ""
            body["error"] = (f'{len(result.rejected)} of {len(objs)} events rejected; first: event '
                             f'{first["index"]}{ident}: {where}{first["error"]}')
            return self._json(422, body)
        return self._json(200, body)


def serve(exporter: App) -> Server:
    host, port = parse_listen_address(exporter.settings.listen_address)
    Server.address_family = socket.AF_INET6 if ":" in host else socket.AF_INET
    srv = Server((host, port), Handler)
    srv.exporter = exporter
    if exporter.web is not None and exporter.web.tls_enabled:
        srv.ssl_context = exporter.web.ssl_context()
    log.info("listening on %s", exporter.url if exporter.http else f"{host}:{srv.server_address[1]}")
    return srv


def landing_page(exp: App) -> str:
    rows = "".join(
        f"<tr><td>{html.escape(b.name)}</td><td>{b.period}</td><td>${b.spend_usd:,.2f}</td>"
        f"<td>${b.limit_usd:,.2f}</td><td>{b.utilization_ratio:.0%}</td><td class={b.status}>{b.status}</td></tr>"
        for b in exp.budgets.statuses())
    table = (f"<table><tr><th>budget</th><th>period</th><th>spend</th><th>limit</th><th>used</th>"
             f"<th>status</th></tr>{rows}</table>" if rows else
             "<p>No budgets configured. Pass <code>--budgets.file</code> or set GLOBAL_BUDGET_DAILY.</p>")
    from costmeter import __version__
    return f"""<!doctype html><html><head><meta charset="utf-8"><title>costmeter</title>
<style>body{{font-family:sans-serif;margin:2em}}td,th{{padding:.2em .8em;text-align:left}}
.warning{{color:#b58900}}.critical{{color:#cb4b16}}.exceeded{{color:#dc322f;font-weight:bold}}</style></head>
<body><h1>costmeter {__version__}</h1>
<p><a href="/metrics">Metrics</a> · <a href="/v1/budgets">Budgets (JSON)</a> ·
<a href="/-/healthy">Health</a> · <a href="/-/ready">Readiness</a></p>
<p>Send usage events with <code>POST /v1/events</code> (JSON array or NDJSON).</p>
<h2>Budgets</h2>{table}</body></html>"""
