"""web-config.yml: real TLS handshakes against a loopback server, basic auth,
the bcrypt cache, and every validation error with its file, line and key."""
from __future__ import annotations

import base64
import os
import shutil
import socket
import ssl
import subprocess
import textwrap
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import bcrypt
import pytest
import requests

from costmeter.server import webconfig
from costmeter.server.webconfig import WebConfig, load_web_config
from costmeter.config.loader import ConfigError, ConfigErrors


# ---- certificates (made once per module with the openssl CLI) ---------------

def _openssl(*args: str, cwd: str) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def _signed(cwd: str, name: str, cn: str, ext: str, ca: str = "ca") -> None:
    _openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key", "-out", f"{name}.csr",
             "-subj", f"/CN={cn}", cwd=cwd)
    with open(os.path.join(cwd, f"{name}.ext"), "w") as f:
        f.write(ext + "\nsubjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid\n")
    _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca}.crt", "-CAkey", f"{ca}.key",
             "-CAcreateserial", "-out", f"{name}.crt", "-days", "2", "-extfile", f"{name}.ext", cwd=cwd)


def _ca(cwd: str, name: str) -> None:
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key", "-out", f"{name}.crt",
             "-days", "2", "-subj", f"/CN=costmeter test {name}",
             "-addext", "basicConstraints=critical,CA:TRUE",
             "-addext", "keyUsage=critical,keyCertSign,cRLSign", cwd=cwd)


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    d = str(tmp_path_factory.mktemp("certs"))
    _ca(d, "ca")
    _ca(d, "otherca")
    _signed(d, "server", "localhost",
            "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth")
    _signed(d, "client", "scraper", "extendedKeyUsage=clientAuth")
    _signed(d, "rogue", "rogue", "extendedKeyUsage=clientAuth", ca="otherca")
    return d


@pytest.fixture
def confdir(tmp_path, certs, monkeypatch):
    """A directory holding certs/ and the web-config; the cwd is elsewhere so that
    relative paths only work if they are resolved against the config's directory."""
    d = tmp_path / "etc"
    shutil.copytree(certs, d / "certs")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    return d


def write(confdir, text: str) -> str:
    p = confdir / "web-config.yml"
    p.write_text(textwrap.dedent(text).lstrip("\n"))
    return str(p)


TLS = """
tls_server_config:
  cert_file: certs/server.crt
  key_file: certs/server.key
"""


# ---- a tiny server that uses the WebConfig like the exporter will ----------

class _Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        wc: WebConfig = self.server.wc  # type: ignore[attr-defined]
        if not wc.check_basic_auth(self.headers.get("Authorization")):
            self.send_response(401)
            for k, v in wc.headers.items():  # like exporter-toolkit: headers on every response
                self.send_header(k, v)
            self.send_header("WWW-Authenticate", "Basic")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        body = b"ok\n"
        self.send_response(200)
        for k, v in wc.headers.items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def serve():
    servers = []

    def start(wc: WebConfig) -> str:
        srv = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        srv.wc = wc  # type: ignore[attr-defined]
        ctx = wc.ssl_context()
        if ctx is not None:
            srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
        threading.Thread(target=srv.serve_forever, daemon=True).start()
        servers.append(srv)
        scheme = "https" if ctx else "http"
        return f"{scheme}://127.0.0.1:{srv.server_address[1]}/"

    yield start
    for srv in servers:
        srv.shutdown()
        srv.server_close()


def _handshake(url: str, client_ctx: ssl.SSLContext) -> ssl.SSLSocket:
    port = int(url.rsplit(":", 1)[1].strip("/"))
    raw = socket.create_connection(("127.0.0.1", port), timeout=5)
    return client_ctx.wrap_socket(raw, server_hostname="localhost")


def _client_ctx(certs: str) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=os.path.join(certs, "ca.crt"))


# ---- TLS -------------------------------------------------------------------

def test_no_file_content_means_plain_http_and_no_auth(confdir, serve):
    wc = load_web_config(write(confdir, "# nothing configured\n"))
    assert (wc.tls_enabled, wc.basic_auth_enabled, wc.headers, wc.ssl_context()) == (False, False, {}, None)
    assert wc.check_basic_auth(None) is True
    assert requests.get(serve(wc), timeout=5).status_code == 200
    assert WebConfig().check_basic_auth("Basic garbage") is True


def test_https_with_relative_cert_paths(confdir, certs, serve):
    wc = load_web_config(write(confdir, TLS))
    assert wc.tls_enabled and isinstance(wc.ssl_context(), ssl.SSLContext)
    url = serve(wc)
    r = requests.get(url, verify=os.path.join(certs, "ca.crt"), timeout=5)
    assert (r.status_code, r.text) == (200, "ok\n")
    # a client that trusts a different CA refuses the server
    with pytest.raises(requests.exceptions.SSLError):
        requests.get(url, verify=os.path.join(certs, "otherca.crt"), timeout=5)
    # plain HTTP to the TLS port gets no HTTP answer
    with pytest.raises(requests.exceptions.ConnectionError):
        requests.get(url.replace("https", "http"), timeout=5)


def test_min_version_tls13_refuses_tls12_clients(confdir, certs, serve):
    url = serve(load_web_config(write(confdir, TLS + "  min_version: TLS13\n")))
    ctx12 = _client_ctx(certs)
    ctx12.maximum_version = ssl.TLSVersion.TLSv1_2
    with pytest.raises(ssl.SSLError):
        _handshake(url, ctx12)
    with _handshake(url, _client_ctx(certs)) as s:
        assert s.version() == "TLSv1.3"


def test_default_versions_allow_tls12_and_tls13(confdir, certs, serve):
    url = serve(load_web_config(write(confdir, TLS)))
    ctx12 = _client_ctx(certs)
    ctx12.maximum_version = ssl.TLSVersion.TLSv1_2
    with _handshake(url, ctx12) as s:
        assert s.version() == "TLSv1.2"
    with _handshake(url, _client_ctx(certs)) as s:
        assert s.version() == "TLSv1.3"


def test_cipher_suites_are_applied_for_tls12(confdir, certs, serve):
    url = serve(load_web_config(write(confdir, TLS + textwrap.indent(textwrap.dedent("""
        max_version: TLS12
        cipher_suites:
          - TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384
          - TLS_AES_128_GCM_SHA256
        prefer_server_cipher_suites: true
        """), "  "))))
    with _handshake(url, _client_ctx(certs)) as s:  # the client offers everything
        assert s.version() == "TLSv1.2"
        assert s.cipher()[0] == "ECDHE-RSA-AES256-GCM-SHA384"
    only128 = _client_ctx(certs)
    only128.set_ciphers("ECDHE-RSA-AES128-GCM-SHA256")
    with pytest.raises(ssl.SSLError):
        _handshake(url, only128)


def test_client_certificates_required_and_verified(confdir, certs, serve):
    url = serve(load_web_config(write(confdir, TLS + textwrap.indent(textwrap.dedent("""
        client_auth_type: RequireAndVerifyClientCert
        client_ca_file: certs/ca.crt
        """), "  "))))
    ca = os.path.join(certs, "ca.crt")
    good = (os.path.join(certs, "client.crt"), os.path.join(certs, "client.key"))
    rogue = (os.path.join(certs, "rogue.crt"), os.path.join(certs, "rogue.key"))
    assert requests.get(url, verify=ca, cert=good, timeout=5).status_code == 200
    for cert in (None, rogue):
        with pytest.raises((requests.exceptions.SSLError, requests.exceptions.ConnectionError)):
            requests.get(url, verify=ca, cert=cert, timeout=5)


def test_inline_cert_and_key(confdir, certs, serve):
    cert = open(os.path.join(certs, "server.crt")).read()
    key = open(os.path.join(certs, "server.key")).read()
    text = "tls_server_config:\n  cert: |\n" + textwrap.indent(cert, "    ") + "  key: |\n" + textwrap.indent(key, "    ")
    url = serve(load_web_config(write(confdir, text)))
    assert requests.get(url, verify=os.path.join(certs, "ca.crt"), timeout=5).status_code == 200


def test_headers_are_returned(confdir, certs, serve):
    wc = load_web_config(write(confdir, TLS + """
http_server_config:
  http2: false
  headers:
    X-Frame-Options: deny
    X-Content-Type-Options: nosniff
    Strict-Transport-Security: max-age=31536000
    Content-Security-Policy: ""
"""))
    assert wc.headers == {"X-Frame-Options": "deny", "X-Content-Type-Options": "nosniff",
                          "Strict-Transport-Security": "max-age=31536000"}
    r = requests.get(serve(wc), verify=os.path.join(certs, "ca.crt"), timeout=5)
    assert r.headers["X-Frame-Options"] == "deny"
    assert r.headers["Strict-Transport-Security"] == "max-age=31536000"
    assert "Content-Security-Policy" not in r.headers


# ---- basic auth ------------------------------------------------------------

def _hash(pw: str, cost: int = 4) -> str:
    return bcrypt.hashpw(pw.encode(), bcrypt.gensalt(cost)).decode()


def _basic(user: str, pw: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{pw}".encode()).decode()


def _auth_config(confdir, users: dict[str, str], tls: bool = True) -> WebConfig:
    body = "basic_auth_users:\n" + "".join(f"  {u}: {h}\n" for u, h in users.items())
    return load_web_config(write(confdir, (TLS if tls else "") + body))


def test_basic_auth_over_tls(confdir, certs, serve):
    wc = _auth_config(confdir, {"alice": _hash("s3cret"), "bob": _hash("hunter2")})
    assert wc.basic_auth_enabled
    url = serve(wc)
    ca = os.path.join(certs, "ca.crt")
    assert requests.get(url, verify=ca, auth=("alice", "s3cret"), timeout=5).status_code == 200
    assert requests.get(url, verify=ca, auth=("bob", "hunter2"), timeout=5).status_code == 200
    for auth in (("alice", "wrong"), ("alice", "hunter2"), ("mallory", "s3cret"), None):
        r = requests.get(url, verify=ca, auth=auth, timeout=5)
        assert r.status_code == 401, auth
        assert r.headers["WWW-Authenticate"] == "Basic"


def test_authorization_header_parsing(confdir):
    wc = _auth_config(confdir, {"alice": _hash("pa:ss"), "zoë": _hash("pw")}, tls=False)
    assert wc.check_basic_auth(_basic("alice", "pa:ss"))          # splits on the first colon only
    assert wc.check_basic_auth("basic " + _basic("alice", "pa:ss")[6:])  # scheme is case-insensitive
    assert wc.check_basic_auth(_basic("zoë", "pw"))               # UTF-8 user names
    assert not wc.check_basic_auth(None)
    assert not wc.check_basic_auth("")
    assert not wc.check_basic_auth("Bearer abc")
    assert not wc.check_basic_auth("Basic !!!not-base64!!!")
    assert not wc.check_basic_auth("Basic " + base64.b64encode(b"alice").decode())  # no colon
    assert not wc.check_basic_auth(_basic("alice", "pa"))
    assert not wc.check_basic_auth(_basic("alice", "x" * 100))    # > 72 bytes is refused, not truncated


def test_accepts_htpasswd_2y_hashes(confdir):
    h = _hash("pw").replace("$2b$", "$2y$", 1)
    wc = _auth_config(confdir, {"alice": h}, tls=False)
    assert wc.check_basic_auth(_basic("alice", "pw"))
    assert not wc.check_basic_auth(_basic("alice", "pW"))


@pytest.fixture
def checkpw_calls(monkeypatch):
    calls: list[bytes] = []
    real = bcrypt.checkpw

    def counting(password, hashed):
        calls.append(hashed)
        return real(password, hashed)

    monkeypatch.setattr(webconfig.bcrypt, "checkpw", counting)
    return calls


def test_successful_verifications_are_cached(confdir, checkpw_calls):
    wc = _auth_config(confdir, {"alice": _hash("s3cret"), "bob": _hash("other")}, tls=False)
    assert wc.check_basic_auth(_basic("alice", "s3cret"))
    assert len(checkpw_calls) == 1
    for _ in range(5):
        assert wc.check_basic_auth(_basic("alice", "s3cret"))
    assert len(checkpw_calls) == 1, "a cached success must not run bcrypt again"
    # failures are not cached: each one costs a full bcrypt
    assert not wc.check_basic_auth(_basic("alice", "wrong"))
    assert not wc.check_basic_auth(_basic("alice", "wrong"))
    assert len(checkpw_calls) == 3
    # alice's cached password does not open bob's account
    assert not wc.check_basic_auth(_basic("bob", "s3cret"))
    assert len(checkpw_calls) == 4
    # the cache holds keyed digests, never the password
    assert wc._cache and all(isinstance(k, bytes) and len(k) == 32 and b"s3cret" not in k for k in wc._cache)


def test_unknown_user_costs_a_bcrypt_of_the_same_cost(confdir, checkpw_calls):
    wc = _auth_config(confdir, {"alice": _hash("s3cret", cost=6)}, tls=False)
    assert not wc.check_basic_auth(_basic("mallory", "s3cret"))
    assert not wc.check_basic_auth(_basic("mallory", "s3cret"))  # never cached
    assert len(checkpw_calls) == 2
    decoy = checkpw_calls[0]
    assert decoy.startswith(b"$2b$06$") and len(decoy) == 60
    # even if someone guessed the decoy's password, an unknown user is refused
    assert not wc.check_basic_auth(_basic("mallory", "x"))


def test_cache_is_bounded(confdir):
    users = {f"u{i}": _hash(f"p{i}") for i in range(webconfig._CACHE_SIZE + 20)}
    wc = _auth_config(confdir, users, tls=False)
    for i in range(len(users)):
        assert wc.check_basic_auth(_basic(f"u{i}", f"p{i}"))
    assert 0 < len(wc._cache) <= webconfig._CACHE_SIZE


# ---- validation: every error names file, line and key -------------------------

INVALID = [
    ("unknown top-level key", "tls_server_confg:\n  cert_file: x\n", 1, "tls_server_confg", "unknown key"),
    ("unknown tls key", TLS + "  cert_fil: certs/server.crt\n", 4, "tls_server_config.cert_fil", "unknown key"),
    ("missing key_file", "tls_server_config:\n  cert_file: certs/server.crt\n", 2,
     "tls_server_config.cert_file", "key_file is required"),
    ("missing cert_file", "tls_server_config:\n  key_file: certs/server.key\n", 1,
     "tls_server_config", "cert_file is required"),
    ("unreadable cert", "tls_server_config:\n  cert_file: certs/nope.crt\n  key_file: certs/server.key\n", 2,
     "tls_server_config.cert_file", "cannot read"),
    ("cert file is a key", "tls_server_config:\n  cert_file: certs/server.key\n  key_file: certs/server.key\n", 2,
     "tls_server_config.cert_file", "does not contain a PEM BEGIN CERTIFICATE"),
    ("key does not match cert", "tls_server_config:\n  cert_file: certs/server.crt\n  key_file: certs/client.key\n", 3,
     "tls_server_config.key_file", "does not match"),
    ("bad min_version", TLS + "  min_version: TLS14\n", 4, "tls_server_config.min_version", "unknown TLS version 'TLS14'"),
    ("bad max_version", TLS + "  max_version: tls1.3\n", 4, "tls_server_config.max_version", "unknown TLS version"),
    ("min above max", TLS + "  max_version: TLS12\n  min_version: TLS13\n", 5, "tls_server_config.min_version",
     "above max_version"),
    ("unknown client_auth_type", TLS + "  client_auth_type: Always\n", 4, "tls_server_config.client_auth_type",
     "unknown client_auth_type"),
    ("unsupported client_auth_type", TLS + "  client_auth_type: RequireAnyClientCert\n", 4,
     "tls_server_config.client_auth_type", "not supported"),
    ("verify without CA", TLS + "  client_auth_type: RequireAndVerifyClientCert\n", 4,
     "tls_server_config.client_auth_type", "needs client_ca_file"),
    ("CA without client auth", TLS + "  client_ca_file: certs/ca.crt\n", 4, "tls_server_config.client_ca_file",
     "NoClientCert"),
    ("unknown cipher", TLS + "  cipher_suites:\n    - TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256\n    - RC4\n", 6,
     "tls_server_config.cipher_suites[1]", "unknown or insecure cipher suite 'RC4'"),
    ("unknown curve", TLS + "  curve_preferences: [CurveP256, P-256]\n", 4,
     "tls_server_config.curve_preferences[1]", "unknown curve"),
    ("client_allowed_sans", TLS + "  client_allowed_sans: [a.example]\n", 4,
     "tls_server_config.client_allowed_sans", "not supported"),
    ("rate_limit", "rate_limit:\n  interval: 1s\n  burst: 5\n", 1, "rate_limit", "not supported"),
    ("header not allowed", "http_server_config:\n  headers:\n    X-Powered-By: costmeter\n", 3,
     "http_server_config.headers.X-Powered-By", "cannot be configured"),
    ("bad header value", "http_server_config:\n  headers:\n    X-Frame-Options: allow\n", 3,
     "http_server_config.headers.X-Frame-Options", "must be one of deny, sameorigin"),
    ("http2 not bool", "http_server_config:\n  http2: yes please\n", 2, "http_server_config.http2", "true or false"),
    ("plaintext password", "basic_auth_users:\n  alice: $2y$10$aaaa\n  bob: hunter2\n", 3,
     "basic_auth_users.bob", "not a bcrypt hash"),
    ("user with colon", "basic_auth_users:\n  'a:b': $2y$10$X0h1gDsPszWURQaxFh.zoubFi6DXncSjhoQNJgRrnGs7EsimhC7zG\n",
     2, "basic_auth_users.a:b", "cannot contain ':'"),
    ("bcrypt cost out of range",
     "basic_auth_users:\n  alice: $2y$03$X0h1gDsPszWURQaxFh.zoubFi6DXncSjhoQNJgRrnGs7EsimhC7zG\n", 2,
     "basic_auth_users.alice", "cost must be between"),
]


@pytest.mark.parametrize("text,line,key,fragment", [c[1:] for c in INVALID], ids=[c[0] for c in INVALID])
def test_validation_errors_name_file_line_and_key(confdir, text, line, key, fragment):
    path = write(confdir, text)
    with pytest.raises((ConfigError, ConfigErrors)) as info:
        load_web_config(path)
    errors = info.value.errors if isinstance(info.value, ConfigErrors) else [info.value]
    match = [e for e in errors if e.key == key]
    assert match, f"no error for key {key!r}; got: {[e.render() for e in errors]}"
    e = match[0]
    assert (e.file, e.line) == (path, line), e.render()
    assert fragment in e.message, e.render()
    assert e.render().startswith(f"{path}:{line}: {key}: ")


def test_several_problems_are_reported_together(confdir):
    path = write(confdir, """
tls_server_config:
  cert_file: certs/server.crt
  key_file: certs/server.key
  min_version: TLS9
basic_auth_users:
  alice: plain
""")
    with pytest.raises(ConfigErrors) as info:
        load_web_config(path)
    assert sorted((e.line, e.key) for e in info.value.errors) == [
        (4, "tls_server_config.min_version"), (6, "basic_auth_users.alice")]


def test_missing_file_is_a_config_error(tmp_path):
    path = str(tmp_path / "absent.yml")
    with pytest.raises(ConfigError) as info:
        load_web_config(path)
    assert info.value.file == path and "cannot read" in info.value.message


# ---- the shipped example ---------------------------------------------------------

EXAMPLE = os.path.join(os.path.dirname(__file__), "..", "config", "web-config.yml")


def test_shipped_example_is_inert_and_its_auth_and_headers_blocks_are_valid(tmp_path):
    wc = load_web_config(EXAMPLE)
    assert (wc.tls_enabled, wc.basic_auth_enabled, wc.headers) == (False, False, {})
    # uncomment everything from http_server_config on, one "# " level
    lines = open(EXAMPLE).read().splitlines()
    start = lines.index("# http_server_config:")
    text = "\n".join(lines[:start] + [ln[2:] if ln.startswith("# ") else ln for ln in lines[start:]]) + "\n"
    p = tmp_path / "web-config.yml"
    p.write_text(text)
    wc = load_web_config(str(p))
    assert wc.headers == {"X-Content-Type-Options": "nosniff", "X-Frame-Options": "deny"}
    assert wc.basic_auth_enabled and not wc.check_basic_auth(_basic("prometheus", "guess"))


def test_shipped_example_tls_block_is_valid(tmp_path, certs, serve):
    lines = open(EXAMPLE).read().splitlines()
    start = lines.index("# tls_server_config:")
    text = "\n".join(lines[:start] + [ln[2:] if ln.startswith("# ") else ln for ln in lines[start:]]) + "\n"
    (tmp_path / "tls").mkdir()
    shutil.copy(os.path.join(certs, "server.crt"), tmp_path / "tls" / "costmeter.crt")
    shutil.copy(os.path.join(certs, "server.key"), tmp_path / "tls" / "costmeter.key")
    p = tmp_path / "web-config.yml"
    p.write_text(text)
    wc = load_web_config(str(p))
    assert wc.tls_enabled and wc.basic_auth_enabled
    r = requests.get(serve(wc), verify=os.path.join(certs, "ca.crt"), timeout=5)
    assert r.status_code == 401 and r.headers["X-Frame-Options"] == "deny"
