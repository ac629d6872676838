"""The exporter's HTTP server against hostile clients: a connection cap and deadlines.

:class:`LimitedServer` serves at most ``max_connections`` connections at once, one thread
each. At the cap, a new connection evicts the one that has waited longest *for a request*
(never one mid-request), so a Prometheus scrape still gets in; with nothing to evict the
newcomer gets a 503 at once. Running out of descriptors makes room instead of spinning.

:class:`LimitedHandler` reads through a :class:`DeadlineReader`: the request line and
headers must arrive within ``HEADER_TIMEOUT`` of the connect (``IDLE_TIMEOUT`` on a
keep-alive connection), and :meth:`LimitedHandler.read_body` a body within
``BODY_TIMEOUT`` plus a second per ``BODY_RATE`` bytes, however slowly bytes trickle in.
Routing is in ``http.py``; the decision and its figures in docs/architecture.md.
"""
from __future__ import annotations

import errno
import io
import logging
import os
import resource
import socket
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

log = logging.getLogger("costmeter.server.http")

HEADER_TIMEOUT = 10.0      # seconds from connect to the end of the headers
IDLE_TIMEOUT = 60.0        # a keep-alive connection may wait this long for its next request
BODY_TIMEOUT = 30.0        # seconds for a body, plus one per BODY_RATE bytes
BODY_RATE = 256 * 1024
_408_BODY = b"request line and headers not received in time\n"
_TIMEOUT_408 = (b"HTTP/1.1 408 Request Timeout\r\nContent-Type: text/plain; charset=utf-8\r\nConnection: close\r\n"
                b"Content-Length: %d\r\n\r\n%s" % (len(_408_BODY), _408_BODY))


def default_max_connections() -> int:
    """Half the descriptor limit (the ledger, logs and Python need some), at most 512."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        soft = 4096
    return max(16, min(512, (soft - 64) // 2))


class DeadlineReader(io.RawIOBase):
    """A socket reader that gives up at a deadline, however slowly the bytes trickle in.

    A socket timeout alone bounds one recv(); a client sending a byte every few seconds
    would hold its connection (and thread) forever.
    """

    def __init__(self, sock: socket.socket, per_recv: float):
        self.sock, self.per_recv = sock, per_recv
        self.deadline: float | None = None
        self.what = "request"
        self.got = 0                # bytes received since the deadline was set
        self.timed_out = False

    def readable(self) -> bool:
        return True

    def readinto(self, buf) -> int:
        if self.deadline is not None:
            left = self.deadline - time.monotonic()
            if left <= 0:
                self.timed_out = True
                raise TimeoutError(f"{self.what} not received in time")
            self.sock.settimeout(min(left, self.per_recv))
        try:
            n = self.sock.recv_into(buf)
        except TimeoutError:
            self.timed_out = True
            raise TimeoutError(f"{self.what} not received in time") from None
        self.got += n
        return n


class LimitedServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128
    ssl_context = None
    max_connections = 512

    def __init__(self, *a, **kw):
        self._conns: dict[int, list] = {}      # fd -> [phase, since]; phase "wait" (for a request) or "busy"
        self._conns_lock = threading.Lock()
        self.evicted = self.refused = 0
        super().__init__(*a, **kw)

    # ---- the connection cap ------------------------------------------------------------
    def set_phase(self, fd: int, phase: str) -> None:
        with self._conns_lock:
            c = self._conns.get(fd)
            if c is not None:
                c[0], c[1] = phase, time.monotonic()

    def _evict_one(self) -> bool:
        """Close the connection that has waited longest for a request; False if none waits."""
        waiting = [(since, fd) for fd, (phase, since) in self._conns.items() if phase == "wait"]
        if not waiting:
            return False
        _, fd = min(waiting)
        self._conns[fd][0] = "evicted"
        try:       # wake its thread: the read returns EOF and the thread ends the connection
            s = socket.socket(fileno=os.dup(fd))
            try:
                s.shutdown(socket.SHUT_RDWR)
            finally:
                s.close()
        except OSError:
            pass
        self.evicted += 1
        return True

    def get_request(self):
        try:
            return super().get_request()
        except OSError as e:
            if e.errno in (errno.EMFILE, errno.ENFILE):   # out of descriptors: make room, do not spin
                with self._conns_lock:
                    self._evict_one()
                time.sleep(0.05)
            raise

    def verify_request(self, request, client_address) -> bool:
        with self._conns_lock:
            if len(self._conns) >= self.max_connections and not self._evict_one():
                self.refused += 1
                try:
                    if self.ssl_context is not None:     # no TLS handshake yet: nothing to say in plain text
                        return False
                    request.sendall(b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain\r\n"
                                    b"Retry-After: 1\r\nConnection: close\r\nContent-Length: 25\r\n\r\n"
                                    b"too many connections now\n")
                except OSError:
                    pass
                return False
            self._conns[request.fileno()] = ["wait", time.monotonic()]
        return True

    def _forget(self, fd: int) -> None:
        """Untrack a connection; always before its descriptor is closed, so that an
        eviction never shuts down a reused descriptor number."""
        if fd >= 0:
            with self._conns_lock:
                self._conns.pop(fd, None)

    def shutdown_request(self, request):
        self._forget(request.fileno())     # -1 once detached into a TLS socket (forgotten then)
        super().shutdown_request(request)

    def process_request(self, request, client_address):
        try:
            super().process_request(request, client_address)
        except RuntimeError:          # no thread to be had: answer nothing, free the slot
            self.shutdown_request(request)

    def connections(self) -> int:
        with self._conns_lock:
            return len(self._conns)

    def handle_error(self, request, client_address):
        e = sys.exc_info()[1]
        if isinstance(e, OSError):    # the client went away or was too slow
            log.debug("connection from %s ended: %s", client_address, e)
        else:
            log.exception("error while serving %s", client_address)

    def finish_request(self, request, client_address):
        # TLS handshakes happen here, in the connection's own thread, so one
        # slow or stalled client never holds up the accept loop.
        if self.ssl_context is not None:
            fd = request.fileno()
            request.settimeout(HEADER_TIMEOUT)
            try:
                request = self.ssl_context.wrap_socket(request, server_side=True)
            except (OSError, ValueError) as e:
                log.debug("TLS handshake with %s failed: %s", client_address, e)
                self._forget(fd)
                request.close()
                return
            try:
                super().finish_request(request, client_address)
            finally:
                self._forget(fd)
                request.close()      # the raw socket was detached into this TLS socket
            return
        super().finish_request(request, client_address)


class LimitedHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "costmeter"
    timeout = 60          # seconds a connection may sit idle or half-sent
    # Headers and body leave in one segment: a separate small write would wait
    # out the client's delayed ACK (~40 ms) under Nagle's algorithm.
    disable_nagle_algorithm = True
    wbufsize = 64 * 1024  # handle_one_request flushes after each response
    server: LimitedServer
    _served = 0

    def setup(self):
        super().setup()
        self.rfile.close()            # replaced by a reader with deadlines
        self._fd = self.connection.fileno()
        self._reader = DeadlineReader(self.connection, self.timeout)
        self.rfile = io.BufferedReader(self._reader, 64 * 1024)

    def handle_one_request(self):
        # waiting for a request (evictable at the cap) until its headers are in
        r = self._reader
        r.deadline = time.monotonic() + (HEADER_TIMEOUT if self._served == 0 else IDLE_TIMEOUT)
        r.what, r.got, r.timed_out = "request headers", 0, False
        self.server.set_phase(self._fd, "wait")
        self._served += 1
        super().handle_one_request()
        if r.timed_out and r.got and r.deadline is not None:
            # part of a request came, not all of its headers: say so before closing (an idle
            # keep-alive connection that sent nothing is closed without a word, as usual)
            self.close_connection = True
            try:
                self.connection.sendall(_TIMEOUT_408)
            except OSError:
                pass

    def parse_request(self) -> bool:
        ok = super().parse_request()
        if ok and self.command != "POST" and (self.headers.get("Transfer-Encoding") or
                                              (self.headers.get("Content-Length") or "0").strip() != "0"):
            self.close_connection = True     # a body we do not read must not be taken for the next request
        self.server.set_phase(self._fd, "busy")
        self._reader.deadline = None
        self.connection.settimeout(self.timeout)
        return ok

    def read_body(self, length: int) -> bytes:
        """All ``length`` bytes, within the body deadline; ValueError if the client stops short."""
        r = self._reader
        r.deadline, r.what = time.monotonic() + BODY_TIMEOUT + length / BODY_RATE, "request body"
        try:
            body = self.rfile.read(length)
        finally:
            r.deadline = None
            self.connection.settimeout(self.timeout)
        if len(body) < length:
            raise ValueError(f"the body ended after {len(body)} of its {length} bytes (Content-Length)")
        return body
