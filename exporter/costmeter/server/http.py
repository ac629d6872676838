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

Auth (docs/exporter.md, "Who needs which credential"): nothing is open that shows spend
once any credential is configured. With ``basic_auth_users`` in web-config.yml every
endpoint needs basic auth, as in exporter-toolkit. Bearer tokens (``ingest.bearer_tokens``)
are required by ``POST /v1/events`` and accepted by every read of spend (``/metrics``,
``/v1/budgets``, ``/v1/costs``, ``/``), which need one when tokens are configured and
basic auth is not; ``/-/healthy`` and ``/-/ready`` then stay open for probes.
Missing token: 401; a wrong one: 403. ``POST /-/reload`` is an admin action: it takes
basic auth when that is configured, else a bearer token when tokens are configured.

Hostile clients: the connection cap and the header and body deadlines are in
``connections.py`` (docs/architecture.md, "HTTP server: decision"). Bodies are framed as
RFC 9112 says: Content-Length only (chunked gets 411), one value, all of it, or nothing is
recorded; a 422 lists the first 100 rejected events and counts them all.
"""
from __future__ import annotations

import gzip
import hmac
import html
import json
import logging
import re
import socket
from http import HTTPStatus
from typing import Any, Protocol
from urllib.parse import unquote, urlsplit

import orjson

from costmeter.server.connections import LimitedHandler, LimitedServer, default_max_connections
from costmeter.server.exposition import CONTENT_TYPE
from costmeter.server.batch import TooManyEvents
from costmeter.server.decode import BodyError
from costmeter.server.costs import answer as costs_answer
from costmeter.config.settings import parse_listen_address
from costmeter.config.loader import ConfigError, ConfigErrors

log = logging.getLogger("costmeter.server.http")

MAX_REJECTED_LISTED = 100  # a 422 lists the first rejected events and counts them all
_DIGITS = re.compile(r"[0-9]{1,18}")


class App(Protocol):
    """What the HTTP layer needs from the exporter."""
    settings: Any          # costmeter.config.settings.Settings
    web: Any               # costmeter.server.webconfig.WebConfig | None
    budgets: Any           # costmeter.budgets.book.BudgetBook
    ready: bool
    url: str | None
    http: Any

    def render_metrics(self) -> bytes: ...
    def ingest_body(self, body: bytes, content_type: str | None) -> Any: ...
    def count_rejected(self, reason: str, n: int = 1) -> None: ...
    def reload(self) -> None: ...


class Server(LimitedServer):
    exporter: App


class Handler(LimitedHandler):
    server: Server

    def handle_one_request(self):
        self._answered = False
        try:
            super().handle_one_request()
        except OSError:
            raise                     # the connection itself failed: nobody to answer
        except Exception as e:       # a bug: say so rather than drop the connection unanswered
            log.exception("error while answering %s %s", self.command, self.path)
            self.close_connection = True
            if not self._answered:
                self._error(500, f"internal error ({type(e).__name__}); the exporter log has the details")

    def log_message(self, fmt, *args):  # access log at debug; errors go through log.warning
        log.debug("%s %s", self.address_string(), fmt % args)

    # ---- responses -----------------------------------------------------------
    def _send(self, status: int, body: bytes, content_type: str, extra: dict | None = None) -> None:
        self._answered = True
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        web = self.server.exporter.web
        for k, v in ({} if web is None else web.headers).items():
            self.send_header(k, v)
        for k, v in (extra or {}).items():
            self.send_header(k, v)
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _json(self, status: int, obj, extra: dict | None = None, compact: bool = False) -> None:
        # Small answers indented for people; long lists (many budgets) compact through orjson:
        # 20k budgets in 15 ms instead of 150 ms with json (non-finite floats become null).
        body = orjson.dumps(obj) if compact else json.dumps(obj, indent=1).encode()
        self._send(status, body + b"\n", "application/json", extra)

    def _text(self, status: int, text: str, extra: dict | None = None) -> None:
        self._send(status, text.encode(), "text/plain; charset=utf-8", extra)

    def _error(self, status: int, message: str, extra: dict | None = None) -> None:
        self._json(status, {"error": message}, extra)

    def send_error(self, code, message=None, explain=None):
        """http.server's own errors (a bad request line, headers too long, a method we do not
        serve) answered like ours: JSON, not an HTML page; a method we do not serve is 405
        with Allow (http.server says 501), since bad input never gets a 5xx."""
        extra = None
        if code == 501 and self.command and not hasattr(self, "do_" + self.command):
            code, extra = 405, {"Allow": "GET, HEAD, POST"}
            message = f"method {self.command[:20]!r} is not served here: use GET, HEAD or POST"
        self.close_connection = True
        if self.request_version == "HTTP/0.9":     # a request line too broken to have a version
            self.request_version = "HTTP/1.1"       # still gets a status line and headers
        try:
            phrase = HTTPStatus(code).phrase
        except ValueError:
            phrase = "error"
        self._error(int(code), message or explain or phrase, extra)

    # ---- auth --------------------------------------------------------------------
    def _basic_ok(self) -> bool:
        web = self.server.exporter.web
        if web is None or not web.basic_auth_enabled or web.check_basic_auth(self.headers.get("Authorization")):
            return True
        self._drain()
        self._error(401, "basic auth required", {"WWW-Authenticate": 'Basic realm="costmeter"'})
        return False

    def _read_ok(self) -> bool:
        """Reads of spend: basic auth or a bearer token, whichever is configured (either when
        both are); open only when no credentials are configured at all."""
        tokens = self.server.exporter.settings.bearer_tokens
        if tokens and (self.headers.get("Authorization") or "")[:7].lower() == "bearer ":
            return self._bearer_ok()
        web = self.server.exporter.web
        if web is not None and web.basic_auth_enabled:
            return self._basic_ok()
        return self._bearer_ok() if tokens else True

    def _admin_ok(self) -> bool:
        """Reload and other admin actions: basic auth if configured, else a bearer token if
        tokens are configured; open only when no credentials are configured at all."""
        web = self.server.exporter.web
        if web is not None and web.basic_auth_enabled:
            return self._basic_ok()
        if self.server.exporter.settings.bearer_tokens:
            return self._bearer_ok()
        return True

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
        cl = self.headers.get_all("Content-Length") or []
        if self.headers.get("Transfer-Encoding") or len(cl) > 1 or (cl and not _DIGITS.fullmatch(cl[0].strip())):
            self.close_connection = True
            return
        n = int(cl[0]) if cl else 0
        if 0 < n <= 1 << 20:
            try:
                self.read_body(n)
            except (OSError, ValueError):
                self.close_connection = True
        elif n:
            self.close_connection = True

    def _body_length(self) -> int | None:
        """The body's length framed as RFC 9112 section 6 says, or None after a 4xx answer."""
        te = self.headers.get_all("Transfer-Encoding") or []
        cl = self.headers.get_all("Content-Length") or []
        if te:
            self.close_connection = True
            codings = [c.strip().lower() for v in te for c in v.split(",") if c.strip()]
            if codings and codings[-1] == "chunked":
                self._error(411, "send the body with a Content-Length, not chunked")
            else:
                self._error(400, f"Transfer-Encoding {', '.join(codings)!r} does not end in chunked, "
                                 "so the body's end is unknown; send a Content-Length")
            return None
        if len(cl) > 1:
            self.close_connection = True
            self._error(400, f"{len(cl)} Content-Length headers: send exactly one")
            return None
        value = cl[0].strip() if cl else "0"
        if not _DIGITS.fullmatch(value):
            self.close_connection = True
            self._error(400, f"Content-Length {value[:40]!r} is not a whole number of bytes")
            return None
        return int(value)

    # ---- routes -----------------------------------------------------------------
    def do_GET(self):
        path = urlsplit(self.path).path
        exp = self.server.exporter
        if not (self._basic_ok() if path in ("/-/healthy", "/-/ready") else self._read_ok()):
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
            if not self._admin_ok():     # drains the body itself when it refuses
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
        length = self._body_length()
        if length is None:
            return
        if length > exp.settings.max_body_bytes:
            self.close_connection = True
            return self._error(413, f"body of {length} bytes is larger than the limit of "
                                    f"{exp.settings.max_body_bytes} bytes; send smaller batches")
        try:
            body = self.read_body(length) if length else b""
        except (ValueError, TimeoutError) as e:     # nothing of a partial body is recorded
            self.close_connection = True
            exp.count_rejected("malformed")
            try:
                return self._error(400, f"incomplete body, nothing recorded: {e}")
            except OSError:
                return
        try:
            result = exp.ingest_body(body, self.headers.get("Content-Type"))
        except TooManyEvents as e:
            return self._error(e.status, e.message)
        except BodyError as e:
            exp.count_rejected("malformed")
            return self._error(e.status, e.message)
        except Exception as e:  # the ledger failed: nothing in this batch was acknowledged
            log.exception("ingest failed")
            return self._error(503, f"events not recorded, retry later: {e}", {"Retry-After": "1"})
        body = result.to_dict()
        if result.rejected:
            body["rejected_count"] = len(result.rejected)
            if len(result.rejected) > MAX_REJECTED_LISTED:
                body["rejected"] = result.rejected[:MAX_REJECTED_LISTED]     # the count says how many more
            first = result.rejected[0]
            ident = f' (id "{first["id"]}")' if first["id"] else ""
            where = f'{first["field"]}: ' if first["field"] else ""
            body["error"] = (f'{len(result.rejected)} of {result.events} events rejected; first: event '
                             f'{first["index"]}{ident}: {where}{first["error"]}')
            return self._json(422, body)
        return self._json(200, body)


def serve(exporter: App) -> Server:
    host, port = parse_listen_address(exporter.settings.listen_address)
    Server.address_family = socket.AF_INET6 if ":" in host else socket.AF_INET
    srv = Server((host, port), Handler)
    srv.exporter = exporter
    srv.max_connections = exporter.settings.max_connections or default_max_connections()
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
