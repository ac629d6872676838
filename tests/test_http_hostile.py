"""Hostile HTTP clients: loose framing, huge numbers, huge rejections, slow and idle
connections past the cap, anonymous reloads. Bad input gets a 4xx, never a 5xx or a
connection closed without an answer, and nothing of a broken request is recorded."""
from __future__ import annotations

import json
import socket
import threading
import time

import pytest
import requests

from costmeter.server import connections, http as http_mod
from costmeter.server.exporter import Exporter
from exporter_support import parse_metrics, sample

EVENT = {"provider": "openai", "model": "gpt-4o-mini", "tenant": "t", "cost_usd": 0.01}


@pytest.fixture
def exp(tmp_path):
    e = Exporter.embedded(state_dir=str(tmp_path / "state"))
    yield e
    e.stop()


def raw(exp, data: bytes, shut_write: bool = False, timeout: float = 10.0) -> bytes:
    """Send bytes on a fresh connection; return everything the server answers until it closes."""
    host, port = exp.http.server_address[:2]
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(data)
        if shut_write:
            s.shutdown(socket.SHUT_WR)
        out = b""
        while True:
            try:
                chunk = s.recv(65536)
            except socket.timeout:
                break
            if not chunk:
                break
            out += chunk
        return out


def status(resp: bytes) -> int:
    return int(resp.split(b" ", 2)[1]) if resp.startswith(b"HTTP/1.1 ") else 0


def accepted(exp) -> float:
    m = parse_metrics(requests.get(exp.url + "/metrics").text)
    return sample(m, "costmeter_ingest_events_total")


def ndjson(n: int) -> bytes:
    return b"".join(json.dumps(dict(EVENT, id=f"e{i}")).encode() + b"\n" for i in range(n))


def test_a_body_shorter_than_its_content_length_is_400_and_nothing_is_recorded(exp):
    body = ndjson(10)
    part = body[: body.index(b"\n", len(body) * 6 // 10) + 1]          # 6 whole lines of 10
    head = (f"POST /v1/events HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-ndjson\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode()
    resp = raw(exp, head + part, shut_write=True)
    assert status(resp) == 400 and b"incomplete body" in resp and b"nothing recorded" in resp
    assert accepted(exp) == 0


@pytest.mark.parametrize("headers,code,words", [
    ("Transfer-Encoding: gzip, chunked\r\n", 411, b"not chunked"),
    ("Transfer-Encoding: chunked\r\nContent-Length: 5\r\n", 411, b"not chunked"),
    ("Transfer-Encoding: gzip\r\n", 400, b"does not end in chunked"),
    ("Content-Length: 5\r\nContent-Length: 6\r\n", 400, b"2 Content-Length headers"),
    ("Content-Length: 5, 5\r\n", 400, b"not a whole number"),
    ("Content-Length: +5\r\n", 400, b"not a whole number"),
    ("Content-Length: 99999999999999999999999\r\n", 400, b"not a whole number"),
])
def test_ambiguous_framing_gets_400_or_411_and_the_connection_closes(exp, headers, code, words):
    body = b'{"provider":"a"}'
    resp = raw(exp, f"POST /v1/events HTTP/1.1\r\nHost: x\r\n{headers}\r\n".encode() + body)
    assert status(resp) == code and words in resp and b"Connection: close" in resp
    assert accepted(exp) == 0


@pytest.mark.parametrize("ctype", ["application/json", "application/x-ndjson"])
@pytest.mark.parametrize("field", ["input_tokens", "cost_usd", "timestamp", "mystery"])
def test_a_5000_digit_integer_gets_422_naming_event_and_field(exp, ctype, field):
    big = "9" * 5000
    text = json.dumps(dict(EVENT, id="big")).replace('"id"', f'"{field}": {big}, "id"', 1)
    good = json.dumps(dict(EVENT, id="ok"))
    body = f"[{good}, {text}]" if ctype == "application/json" else f"{good}\n{text}\n"
    r = requests.post(exp.url + "/v1/events", data=body, headers={"Content-Type": ctype}, timeout=10)
    assert r.status_code == 422, r.text
    rej = r.json()["rejected"]
    assert [(x["index"], x["id"], x["field"]) for x in rej] == [(1, "big", field)]
    assert r.json()["accepted"] == 1


def test_a_huge_rejection_is_answered_with_the_first_hundred_and_a_count(exp):
    body = b"[" + b",".join([b"1"] * 100_000) + b"]"                   # 200 KB of non-objects
    r = requests.post(exp.url + "/v1/events", data=body, headers={"Content-Type": "application/json"})
    assert r.status_code == 422
    out = r.json()
    assert len(out["rejected"]) == 100 and out["rejected_count"] == 100_000
    assert out["rejected"][0]["index"] == 0 and "100000 of 100000 events rejected" in out["error"]
    assert len(r.content) < 50_000


def test_reload_needs_a_bearer_token_when_tokens_are_configured(exp):
    exp.settings.bearer_tokens = ("s3cret",)
    assert requests.post(exp.url + "/-/reload").status_code == 401
    assert requests.post(exp.url + "/-/reload", headers={"Authorization": "Bearer wrong"}).status_code == 403
    assert requests.post(exp.url + "/-/reload", headers={"Authorization": "Bearer s3cret"}).status_code == 200


def test_headers_that_trickle_in_are_cut_off_at_the_header_deadline(exp, monkeypatch):
    monkeypatch.setattr(connections, "HEADER_TIMEOUT", 1.0)
    port = exp.http.server_address[1]
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        t0 = time.monotonic()
        closed = False
        for ch in b"GET /metrics HTTP/1.1\r\nHost: slow\r\n":               # a byte every 0.2 s
            try:
                s.sendall(bytes([ch]))
            except OSError:
                closed = True
                break
            time.sleep(0.2)
            s.setblocking(False)
            try:
                if s.recv(1) in (b"", b"H"):        # closed, or the 408 that comes before
                    closed = True
                    break
            except BlockingIOError:
                pass
            finally:
                s.setblocking(True)
        assert closed and time.monotonic() - t0 < 4, "a trickling client kept its connection"


def test_a_request_cut_off_at_the_header_deadline_is_answered_408(exp, monkeypatch):
    monkeypatch.setattr(connections, "HEADER_TIMEOUT", 0.5)
    t0 = time.monotonic()
    resp = raw(exp, b"POST /v1/events HTTP/1.1\r\nHost: x\r\n")        # the headers never end
    assert status(resp) == 408 and b"not received in time" in resp
    assert time.monotonic() - t0 < 5
    assert raw(exp, b"", timeout=3) == b"", "a connection that sent nothing is closed without an answer"


@pytest.mark.parametrize("method", ["PUT", "DELETE", "PATCH", "OPTIONS", "TRACE", "BREW"])
def test_a_method_not_served_is_405_with_allow_not_a_5xx(exp, method):
    resp = raw(exp, f"{method} /v1/events HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n[]".encode())
    head, _, body = resp.partition(b"\r\n\r\n")
    assert status(resp) == 405, resp
    assert b"Allow: GET, HEAD, POST" in head
    assert method.encode() in json.loads(body)["error"].encode()
    assert accepted(exp) == 0


def test_a_broken_request_line_gets_a_400_with_a_status_line(exp):
    resp = raw(exp, b"this is not http\r\n\r\n")
    assert status(resp) == 400 and b"application/json" in resp


def test_a_stalled_body_is_cut_off_with_400_at_the_body_deadline(exp, monkeypatch):
    monkeypatch.setattr(connections, "BODY_TIMEOUT", 1.0)
    t0 = time.monotonic()
    port = exp.http.server_address[1]
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(b"POST /v1/events HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n[{\"provider\":")
        resp = s.recv(65536)
    assert status(resp) == 400 and b"not received in time" in resp
    assert time.monotonic() - t0 < 5
    assert accepted(exp) == 0


def test_metrics_stays_reachable_when_idle_sockets_fill_the_connection_cap(exp):
    exp.http.max_connections = 20
    port = exp.http.server_address[1]
    socks = []
    try:
        for _ in range(60):                               # three times the cap, all stalled mid-headers
            s = socket.create_connection(("127.0.0.1", port), timeout=5)
            s.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")
            socks.append(s)
        time.sleep(0.5)
        assert exp.http.connections() <= 20
        threads = threading.active_count()
        times = []
        for _ in range(5):
            t0 = time.monotonic()
            r = requests.get(exp.url + "/metrics", timeout=5)
            times.append(time.monotonic() - t0)
            assert r.status_code == 200
        assert max(times) < 2
        assert exp.http.evicted >= 40 and threading.active_count() <= threads + 2
        m = parse_metrics(requests.get(exp.url + "/metrics").text)
        assert sample(m, "costmeter_http_max_connections") == 20
        assert sample(m, "costmeter_http_connections_evicted_total") >= 40
        assert 1 <= sample(m, "costmeter_http_connections") <= 20
        # a request in progress is never evicted: a POST with its body pending keeps going
        s = socket.create_connection(("127.0.0.1", port), timeout=5)
        body = json.dumps([dict(EVENT, id="slow")]).encode()
        s.sendall(f"POST /v1/events HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body)}\r\n\r\n".encode())
        time.sleep(0.3)
        for _ in range(30):                               # more newcomers evict the idle ones only
            socks.append(socket.create_connection(("127.0.0.1", port), timeout=5))
        time.sleep(0.3)
        s.sendall(body)
        assert status(s.recv(65536)) == 200
        s.close()
    finally:
        for s in socks:
            s.close()


def test_the_sdk_counts_every_rejected_event_past_the_listed_hundred(exp):
    from costmeter.sdk.shipper import HttpSink
    sink = HttpSink(exp.url)
    try:
        status_, rejected = sink.send([dict(EVENT, id=f"bad{i}", input_tokens=-1) for i in range(150)])
    finally:
        sink.close()
    assert status_ == "ok" and len(rejected) == 150


def test_an_unexpected_error_is_answered_not_dropped(exp, monkeypatch):
    def broken():
        raise KeyError("bug")
    monkeypatch.setattr(exp, "render_metrics", broken)
    r = requests.get(exp.url + "/metrics", timeout=5)
    assert r.status_code == 500 and "KeyError" in r.json()["error"]
    monkeypatch.undo()
    assert requests.get(exp.url + "/-/healthy", timeout=5).status_code == 200


def test_max_connections_comes_from_exporter_yaml(tmp_path):
    cfg = tmp_path / "exporter.yaml"
    cfg.write_text("web: {max_connections: 7}\n")
    e = Exporter.embedded(state_dir=str(tmp_path / "state"), config_file=str(cfg))
    try:
        assert e.http.max_connections == 7
    finally:
        e.stop()
    assert http_mod.default_max_connections() <= 512


def test_a_get_with_a_body_closes_so_the_body_is_never_read_as_a_request(exp):
    smuggled = b"GET /-/reload HTTP/1.1\r\nHost: x\r\n\r\n"
    resp = raw(exp, b"GET /-/healthy HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                    + b"%x\r\n" % len(smuggled) + smuggled + b"\r\n0\r\n\r\n")
    assert resp.count(b"HTTP/1.1 ") == 1 and status(resp) == 200 and b"Connection: close" in resp


def test_with_a_small_fd_limit_idle_sockets_never_lock_out_a_scrape(tmp_path):
    """The real exporter with 128 descriptors: 300 stalled sockets, and /metrics still answers,
    without the accept loop spinning."""
    import resource
    import subprocess
    import psutil
    from exporter_support import costmeter_cmd, free_port
    port = free_port()
    log = open(tmp_path / "log", "wb")
    proc = subprocess.Popen(costmeter_cmd() + ["serve", f"--web.listen-address=127.0.0.1:{port}",
                                               f"--storage.path={tmp_path / 'state'}"],
                            stdout=log, stderr=subprocess.STDOUT,
                            preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (128, 128)))
    socks = []
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 20
        while True:
            try:
                if requests.get(url + "/-/healthy", timeout=1).status_code == 200:
                    break
            except requests.RequestException:
                pass
            assert time.monotonic() < deadline and proc.poll() is None, open(tmp_path / "log").read()
            time.sleep(0.05)
        for _ in range(300):
            try:
                s = socket.create_connection(("127.0.0.1", port), timeout=2)
                s.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")
                socks.append(s)
            except OSError:
                pass
        time.sleep(0.5)
        p = psutil.Process(proc.pid)
        p.cpu_percent(None)
        for _ in range(5):
            assert requests.get(url + "/metrics", timeout=5).status_code == 200
        time.sleep(0.5)
        assert p.cpu_percent(None) < 50, "the accept loop spins"
        assert p.num_fds() < 128
    finally:
        for s in socks:
            s.close()
        proc.terminate()
        proc.wait(20)
        log.close()


def test_at_the_cap_with_every_connection_mid_request_a_newcomer_gets_503_at_once(exp):
    exp.http.max_connections = 2
    port = exp.http.server_address[1]
    busy = []
    try:
        for _ in range(2):                     # headers in, body pending: mid-request, never evicted
            s = socket.create_connection(("127.0.0.1", port), timeout=5)
            s.sendall(b"POST /v1/events HTTP/1.1\r\nHost: x\r\nContent-Length: 50\r\n\r\n")
            busy.append(s)
        time.sleep(0.3)
        t0 = time.monotonic()
        resp = raw(exp, b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        assert status(resp) == 503 and b"Retry-After" in resp and time.monotonic() - t0 < 2
        assert exp.http.refused == 1
    finally:
        for s in busy:
            s.close()
    deadline = time.monotonic() + 5
    while exp.http.connections() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert requests.get(exp.url + "/metrics", timeout=5).status_code == 200     # slots free again
