"""The hand-written HTTP server against library ones (cheroot, uvicorn), same run, same machine.

Each server runs in its own process with the same trivial application, so only the
HTTP layer differs: POST /v1/events reads the whole body and answers a small JSON
document (no validation, no ledger), GET /metrics answers a fixed 20 KB text. Measured:

* requests/s of POST with a 1,000-event body (~250 KB), 2 keep-alive clients;
* requests/s of GET /metrics, 2 keep-alive clients;
* GET /metrics latency on a fresh connection while --stall sockets sit with half-sent
  headers (slowloris), and how long until it answers at all.

The exporter's real ingest path (validation + durable ledger) costs ~10-15 µs per event,
i.e. 10-15 ms per 1,000-event request; the HTTP layer's share is what this measures.

    .venv/bin/python bench/bench_http_servers.py      (pip install -e '.[bench]': cheroot, uvicorn)
"""
from __future__ import annotations

import argparse
import http.client
import json
import os
import socket
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
METRICS = b"# TYPE x counter\n" + b"".join(b'x{i="%d"} 1.0\n' % i for i in range(1200))
BODY = json.dumps([{"id": f"e{i}", "provider": "openai", "model": "gpt-4o-mini", "tenant": f"t{i % 50}",
                    "endpoint": "/v1/chat", "input_tokens": 600, "output_tokens": 300,
                    "duration_seconds": 0.5} for i in range(1000)]).encode()


def serve_own(port: int) -> None:
    from costmeter.server import http as h

    class App:
        class settings:
            bearer_tokens = ()
            max_body_bytes = 16 << 20
            max_events_per_request = 100_000
            listen_address = f"127.0.0.1:{port}"
        web = None
        budgets = None
        ready = True
        url = None
        http = None

        def render_metrics(self):
            return METRICS

        def count_rejected(self, reason, n=1):
            pass

    class Handler(h.Handler):
        def do_POST(self):
            length = self._body_length()
            if length is None:
                return
            self.read_body(length)
            self._send(200, b'{"accepted": 1000}\n', "application/json")

        def do_GET(self):
            self._send(200, METRICS, "text/plain")

    srv = h.Server(("127.0.0.1", port), Handler)
    srv.exporter = App()
    srv.max_connections = h.default_max_connections()
    srv.serve_forever()


def serve_cheroot(port: int) -> None:
    from cheroot import wsgi

    def app(environ, start_response):
        if environ["REQUEST_METHOD"] == "POST":
            environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
            body = b'{"accepted": 1000}\n'
            start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
            return [body]
        start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(METRICS)))])
        return [METRICS]
    wsgi.Server(("127.0.0.1", port), app).safe_start()     # defaults: 10 threads, 10 s socket timeout


def serve_uvicorn(port: int) -> None:
    import uvicorn

    async def app(scope, receive, send):
        if scope["type"] != "http":
            return
        if scope["method"] == "POST":
            more = True
            while more:
                msg = await receive()
                more = msg.get("more_body", False)
            body, ctype = b'{"accepted": 1000}\n', b"application/json"
        else:
            body, ctype = METRICS, b"text/plain"
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", ctype), (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="error", http="httptools")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rate(port: int, method: str, body: bytes | None, seconds: float = 3.0, clients: int = 2) -> float:
    stop = time.monotonic() + seconds
    counts = [0] * clients

    def run(i):
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        while time.monotonic() < stop:
            c.request(method, "/v1/events" if body else "/metrics", body,
                      {"Content-Type": "application/json"} if body else {})
            r = c.getresponse()
            r.read()
            assert r.status == 200, r.status
            counts[i] += 1
        c.close()
    ts = [threading.Thread(target=run, args=(i,)) for i in range(clients)]
    t0 = time.monotonic()
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    return sum(counts) / (time.monotonic() - t0)


def scrape(port: int, timeout: float) -> float | None:
    t0 = time.monotonic()
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
            s.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            data = b""
            while chunk := s.recv(65536):
                data += chunk
        return time.monotonic() - t0 if data.startswith(b"HTTP/1.1 200") else None
    except OSError:
        return None


def stalled(port: int, n: int, timeout: float) -> str:
    socks = []
    for _ in range(n):
        s = socket.create_connection(("127.0.0.1", port), timeout=5)
        s.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")          # headers never finished
        socks.append(s)
    time.sleep(0.5)
    try:
        t = scrape(port, timeout)
        return f"{t * 1e3:.1f} ms" if t is not None else f"no answer within {timeout:.0f} s"
    finally:
        for s in socks:
            s.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--serve", nargs=2, metavar=("KIND", "PORT"), help=argparse.SUPPRESS)
    ap.add_argument("--stall", type=int, default=50)
    args = ap.parse_args()
    if args.serve:
        {"own": serve_own, "cheroot": serve_cheroot, "uvicorn": serve_uvicorn}[args.serve[0]](int(args.serve[1]))
        return
    kinds = [("own", "hand-written (http.server + this issue's limits)"), ("cheroot", "cheroot WSGI"),
             ("uvicorn", "uvicorn + httptools (ASGI)")]
    for kind, name in kinds:
        try:
            __import__(kind if kind != "own" else "costmeter")
        except ImportError:
            print(f"{name}: not installed (pip install -e '.[bench]')")
            continue
        port = free_port()
        proc = subprocess.Popen([sys.executable, __file__, "--serve", kind, str(port)],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            for _ in range(100):
                if scrape(port, 1) is not None:
                    break
                time.sleep(0.1)
            post = rate(port, "POST", BODY)
            get = rate(port, "GET", None)
            slow = stalled(port, args.stall, 15.0)
            print(f"{name}: POST 1,000-event body {post:,.0f} req/s (= {post * 1000:,.0f} events/s of HTTP alone); "
                  f"GET /metrics {get:,.0f} req/s; a scrape with {args.stall} stalled sockets: {slow}")
        finally:
            proc.kill()
            proc.wait()


if __name__ == "__main__":
    main()
