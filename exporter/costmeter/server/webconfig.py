"""TLS and basic auth for the exporter's HTTP server, from a ``web-config.yml``.

The file uses the Prometheus exporter-toolkit format
(https://github.com/prometheus/exporter-toolkit, ``docs/web-configuration.md``),
so one file can serve node_exporter, Prometheus and costmeter alike::

    tls_server_config:
      cert_file: server.crt          # paths are relative to this file's directory
      key_file: server.key
      client_auth_type: RequireAndVerifyClientCert
      client_ca_file: ca.crt
      min_version: TLS12
    http_server_config:
      headers:
        X-Content-Type-Options: nosniff
    basic_auth_users:
      alice: $2y$10$X0h1gDsPszWURQaxFh.zoubFi6DXncSjhoQNJgRrnGs7EsimhC7zG

Usage by the HTTP server::

    wc = load_web_config(path)            # raises ConfigError / ConfigErrors
    ctx = wc.ssl_context()                # None when TLS is off
    if ctx: server.socket = ctx.wrap_socket(server.socket, server_side=True)
    ... per request:
    if not wc.check_basic_auth(handler.headers.get("Authorization")):
        send 401 with "WWW-Authenticate: Basic"
    for k, v in wc.headers.items(): handler.send_header(k, v)

How each exporter-toolkit key is treated here:

=============================  ==============================================
``cert_file``/``key_file``     loaded; ``cert``/``key`` inline PEM also work
``client_ca_file``/``client_ca``  loaded (file or inline PEM)
``client_auth_type``           NoClientCert, VerifyClientCertIfGiven,
                               RequireAndVerifyClientCert. RequestClientCert
                               and RequireAnyClientCert are rejected: Python's
                               ssl module verifies every client certificate it
                               accepts, so they cannot be honoured.
``min_version``/``max_version``  TLS10, TLS11, TLS12, TLS13 (defaults TLS12,
                               TLS13). Whether TLS 1.0/1.1 handshakes succeed
                               also depends on the system OpenSSL policy.
``cipher_suites``              Go names mapped to OpenSSL names and applied to
                               TLS <= 1.2; TLS 1.3 suite names are accepted and,
                               as in Go, have no effect.
``prefer_server_cipher_suites``  applied (default true)
``curve_preferences``          names validated, then ignored with a warning:
                               Python's ssl module cannot set a curve list.
``http_server_config.http2``   accepted and ignored: the server speaks HTTP/1.1.
``http_server_config.headers`` the same five headers and allowed values as
                               exporter-toolkit; blank values are dropped.
``basic_auth_users``           bcrypt hashes ($2a$, $2b$, $2y$)
``client_allowed_sans``,       rejected with an error rather than silently not
``rate_limit``                 enforced: costmeter does not implement them.
=============================  ==============================================

The file is read once, by :func:`load_web_config`; call it again to pick up
new certificates or users.
"""
from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import logging
import os
import re
import secrets
import ssl
import struct
import tempfile
import threading
from typing import Any

import bcrypt

from costmeter.config import loader
from costmeter.config.loader import Doc, ErrorCollector

__all__ = ["WebConfig", "load_web_config"]

log = logging.getLogger(__name__)

_TOP_KEYS = ("tls_server_config", "http_server_config", "basic_auth_users", "rate_limit")
_TLS_KEYS = (
    "cert_file", "key_file", "cert", "key", "client_ca_file", "client_ca", "client_auth_type",
    "client_allowed_sans", "min_version", "max_version", "cipher_suites",
    "prefer_server_cipher_suites", "curve_preferences",
)
_HTTP_KEYS = ("http2", "headers")
_UNSUPPORTED = {
    ("rate_limit",): "is not supported by costmeter; put a reverse proxy in front to rate-limit",
    ("tls_server_config", "client_allowed_sans"):
        "is not supported by costmeter; use a dedicated client CA with RequireAndVerifyClientCert instead",
}

_TLS_VERSIONS = {
    "TLS10": ssl.TLSVersion.TLSv1,
    "TLS11": ssl.TLSVersion.TLSv1_1,
    "TLS12": ssl.TLSVersion.TLSv1_2,
    "TLS13": ssl.TLSVersion.TLSv1_3,
}

_CLIENT_AUTH = {
    "NoClientCert": ssl.CERT_NONE,
    "VerifyClientCertIfGiven": ssl.CERT_OPTIONAL,
    "RequireAndVerifyClientCert": ssl.CERT_REQUIRED,
}
_CLIENT_AUTH_UNSUPPORTED = ("RequestClientCert", "RequireAnyClientCert")

# Go crypto/tls names (tls.CipherSuites()) -> OpenSSL names. TLS 1.3 suites map to
# None: Go does not let them be configured either.
_CIPHERS: dict[str, str | None] = {
    "TLS_RSA_WITH_AES_128_CBC_SHA": "AES128-SHA",
    "TLS_RSA_WITH_AES_256_CBC_SHA": "AES256-SHA",
    "TLS_RSA_WITH_AES_128_GCM_SHA256": "AES128-GCM-SHA256",
    "TLS_RSA_WITH_AES_256_GCM_SHA384": "AES256-GCM-SHA384",
    "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA": "ECDHE-ECDSA-AES128-SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA": "ECDHE-ECDSA-AES256-SHA",
    "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA": "ECDHE-RSA-AES128-SHA",
    "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA": "ECDHE-RSA-AES256-SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256": "ECDHE-ECDSA-AES128-GCM-SHA256",
    "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256": "ECDHE-RSA-AES128-GCM-SHA256",
    "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384": "ECDHE-ECDSA-AES256-GCM-SHA384",
    "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384": "ECDHE-RSA-AES256-GCM-SHA384",
    "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256": "ECDHE-ECDSA-CHACHA20-POLY1305",
    "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256": "ECDHE-RSA-CHACHA20-POLY1305",
    "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305": "ECDHE-ECDSA-CHACHA20-POLY1305",
    "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305": "ECDHE-RSA-CHACHA20-POLY1305",
    "TLS_AES_128_GCM_SHA256": None,
    "TLS_AES_256_GCM_SHA384": None,
    "TLS_CHACHA20_POLY1305_SHA256": None,
}
_CURVES = ("CurveP256", "CurveP384", "CurveP521", "X25519", "X25519MLKEM768")

# exporter-toolkit allows exactly these response headers; an empty list means any value.
_HEADERS: dict[str, tuple[str, ...]] = {
    "Strict-Transport-Security": (),
    "X-Content-Type-Options": ("nosniff",),
    "X-Frame-Options": ("deny", "sameorigin"),
    "X-XSS-Protection": (),
    "Content-Security-Policy": (),
}

_BCRYPT_RE = re.compile(r"^\$2[aby]\$(\d\d)\$[./A-Za-z0-9]{53}$")
_CACHE_SIZE = 100


class WebConfig:
    """A validated web-config.yml. ``WebConfig()`` is the no-TLS, no-auth default."""

    def __init__(self, *, ssl_context: ssl.SSLContext | None = None,
                 users: dict[str, str] | None = None, headers: dict[str, str] | None = None,
                 file: str | None = None):
        self.file = file
        self._ssl_context = ssl_context
        self.tls_enabled: bool = ssl_context is not None
        self._users: dict[bytes, bytes] = {
            u.encode("utf-8"): h.encode("ascii") for u, h in (users or {}).items()}
        self.basic_auth_enabled: bool = bool(self._users)
        self.headers: dict[str, str] = dict(headers or {})
        # Unknown users are checked against this decoy hash, at the highest cost in the
        # file, so that "no such user" takes as long as "wrong password".
        self._decoy_hash = b""
        if self._users:
            cost = max(int(h[4:6]) for h in self._users.values())
            self._decoy_hash = bcrypt.hashpw(secrets.token_hex(16).encode(), bcrypt.gensalt(cost))
        # Cache of successful verifications, keyed by an HMAC (with a per-process random
        # key) of user, hash and password: the plaintext is never stored.
        self._cache_key = secrets.token_bytes(32)
        self._cache: dict[bytes, None] = {}
        self._cache_lock = threading.Lock()
        # One bcrypt at a time, like exporter-toolkit: bounds the CPU an attacker can burn.
        self._bcrypt_lock = threading.Lock()

    def ssl_context(self) -> ssl.SSLContext | None:
        """The server-side context (same object on every call), or None if TLS is off."""
        return self._ssl_context

    def check_basic_auth(self, authorization: str | None) -> bool:
        """True if basic auth is off, or the raw ``Authorization`` header value holds a
        configured user and the password matching its bcrypt hash."""
        if not self.basic_auth_enabled:
            return True
        creds = _parse_basic(authorization)
        if creds is None:
            return False
        user, password = creds
        hashed = self._users.get(user)
        known = hashed is not None
        if hashed is None:
            hashed = self._decoy_hash
        key = hmac.new(self._cache_key, _framed(user, hashed, password), hashlib.sha256).digest()
        with self._cache_lock:
            if key in self._cache:
                return True
        with self._bcrypt_lock:
            try:
                ok = bcrypt.checkpw(password, hashed)
            except ValueError:  # longer than 72 bytes: bcrypt would only look at a prefix
                ok = False
        ok = ok and known
        if ok:
            with self._cache_lock:
                if len(self._cache) >= _CACHE_SIZE:
                    for old in list(self._cache)[: max(1, _CACHE_SIZE // 10)]:
                        del self._cache[old]
                self._cache[key] = None
        return ok


def _framed(*parts: bytes) -> bytes:
    return b"".join(struct.pack(">I", len(p)) + p for p in parts)


def _parse_basic(authorization: str | None) -> tuple[bytes, bytes] | None:
    if not authorization:
        return None
    scheme, _, param = authorization.strip().partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        raw = base64.b64decode(param.strip(), validate=True)
    except (binascii.Error, ValueError):
        return None
    user, sep, password = raw.partition(b":")
    if not sep:
        return None
    return user, password


# ---- loading ---------------------------------------------------------------

def load_web_config(path: str) -> WebConfig:
    """Read and validate a web-config.yml; relative paths in it are taken from its
    directory. Raises :class:`ConfigError` for one problem, :class:`ConfigErrors` for
    several, each naming file, line and key."""
    doc = loader.load(path)
    return _build(doc, os.path.dirname(os.path.abspath(path)))


def _build(doc: Doc, base_dir: str) -> WebConfig:
    errs = ErrorCollector()
    top = loader.expect_mapping(doc, (), doc.data, _TOP_KEYS)
    for path, message in _UNSUPPORTED.items():
        node: Any = top
        for part in path[:-1]:
            node = node.get(part) if isinstance(node, dict) else None
        if isinstance(node, dict) and path[-1] in node:
            errs.errors.append(doc.error(path, message))
    ctx = errs.run(_tls, doc, top.get("tls_server_config"), base_dir)
    headers = errs.run(_http, doc, top.get("http_server_config")) or {}
    users = errs.run(_users, doc, top.get("basic_auth_users")) or {}
    errs.raise_if_any()
    return WebConfig(ssl_context=ctx, users=users, headers=headers, file=doc.file)


def _users(doc: Doc, value: Any) -> dict[str, str]:
    path = ("basic_auth_users",)
    users = loader.expect_mapping(doc, path, value)
    errs = ErrorCollector()
    out: dict[str, str] = {}
    for user, hashed in users.items():
        p = path + (user,)
        if not isinstance(user, str) or not user:
            errs.errors.append(doc.error(p, "user name must be a non-empty string"))
            continue
        if ":" in user:
            errs.errors.append(doc.error(p, "user name cannot contain ':' (basic auth splits on it)"))
            continue
        m = _BCRYPT_RE.match(hashed) if isinstance(hashed, str) else None
        if not m:
            shown = hashed if not isinstance(hashed, str) else (hashed[:7] + "..." if len(hashed) > 7 else hashed)
            errs.errors.append(doc.error(p, f"not a bcrypt hash (expected $2y$<cost>$ and 53 characters, "
                                            f"as made by `htpasswd -nBC 10 \"\" | tr -d ':\\n'`), got {shown!r}"))
            continue
        if not 4 <= int(m.group(1)) <= 31:
            errs.errors.append(doc.error(p, f"bcrypt cost must be between 04 and 31, got {m.group(1)}"))
            continue
        out[user] = hashed
    errs.raise_if_any()
    return out


def _http(doc: Doc, value: Any) -> dict[str, str]:
    path = ("http_server_config",)
    http = loader.expect_mapping(doc, path, value, _HTTP_KEYS)
    if "http2" in http and not isinstance(http["http2"], bool):
        raise doc.error(path + ("http2",), f"must be true or false, got {http['http2']!r}")
    hpath = path + ("headers",)
    headers = loader.expect_mapping(doc, hpath, http.get("headers"))
    errs = ErrorCollector()
    out: dict[str, str] = {}
    for name, v in headers.items():
        p = hpath + (name,)
        if name not in _HEADERS:
            errs.errors.append(doc.error(p, f"this header cannot be configured (allowed: {', '.join(sorted(_HEADERS))})"))
            continue
        if v is None or v == "":
            continue
        if not isinstance(v, str):
            errs.errors.append(doc.error(p, f"must be a string, got {v!r}"))
            continue
        if _HEADERS[name] and v not in _HEADERS[name]:
            errs.errors.append(doc.error(p, f"must be one of {', '.join(_HEADERS[name])}, got {v!r}"))
            continue
        out[name] = v
    errs.raise_if_any()
    return out


def _read_pem(doc: Doc, path: tuple, base_dir: str, value: Any, marker: str) -> str:
    """Resolve a *_file key, read it, and check it holds the PEM block ``marker``."""
    name = loader.expect_str(doc, path, value)
    full = name if os.path.isabs(name) else os.path.join(base_dir, name)
    try:
        with open(full, "rb") as f:
            data = f.read()
    except OSError as e:
        raise doc.error(path, f"cannot read {full}: {e.strerror}") from None
    text = data.decode("ascii", errors="replace")
    if marker not in text:
        raise doc.error(path, f"{full} does not contain a PEM {marker.strip('-').strip()} block")
    return full


def _tls(doc: Doc, value: Any, base_dir: str) -> ssl.SSLContext | None:
    path = ("tls_server_config",)
    tls = loader.expect_mapping(doc, path, value, _TLS_KEYS)
    if not tls:
        return None
    errs = ErrorCollector()

    def k(name: str) -> tuple:
        return path + (name,)

    for a, b in (("cert_file", "cert"), ("key_file", "key"), ("client_ca_file", "client_ca")):
        if a in tls and b in tls:
            errs.errors.append(doc.error(k(b), f"give either {a} or {b}, not both"))
    has_cert = "cert_file" in tls or "cert" in tls
    has_key = "key_file" in tls or "key" in tls
    if not has_cert:
        errs.errors.append(doc.error(path, "cert_file is required when tls_server_config is set"))
    if has_cert and not has_key:
        which = "cert_file" if "cert_file" in tls else "cert"
        errs.errors.append(doc.error(k(which), f"key_file is required when {which} is given"))

    versions = {}
    for name, default in (("min_version", "TLS12"), ("max_version", "TLS13")):
        v = tls.get(name, default)
        if v not in _TLS_VERSIONS:
            errs.errors.append(doc.error(k(name), f"unknown TLS version {v!r} (allowed: {', '.join(_TLS_VERSIONS)})"))
        else:
            versions[name] = _TLS_VERSIONS[v]
    if len(versions) == 2 and versions["min_version"] > versions["max_version"]:
        errs.errors.append(doc.error(k("min_version"), f"{tls.get('min_version')} is above max_version "
                                                       f"{tls.get('max_version', 'TLS13')}"))

    auth = tls.get("client_auth_type", "NoClientCert")
    verify_mode = ssl.CERT_NONE
    if auth in _CLIENT_AUTH_UNSUPPORTED:
        errs.errors.append(doc.error(k("client_auth_type"), f"{auth} is not supported: Python's ssl module verifies "
                                     "every client certificate it accepts; use VerifyClientCertIfGiven or "
                                     "RequireAndVerifyClientCert with client_ca_file"))
    elif auth not in _CLIENT_AUTH:
        errs.errors.append(doc.error(k("client_auth_type"), f"unknown client_auth_type {auth!r} (allowed: "
                                     f"{', '.join(_CLIENT_AUTH)})"))
    else:
        verify_mode = _CLIENT_AUTH[auth]
    has_ca = "client_ca_file" in tls or "client_ca" in tls
    if has_ca and auth == "NoClientCert":
        which = "client_ca_file" if "client_ca_file" in tls else "client_ca"
        errs.errors.append(doc.error(k(which), "client CA given but client_auth_type is NoClientCert; "
                                               "set client_auth_type: RequireAndVerifyClientCert"))
    if verify_mode != ssl.CERT_NONE and not has_ca:
        errs.errors.append(doc.error(k("client_auth_type"), f"{auth} needs client_ca_file"))

    openssl_ciphers: list[str] = []
    if "cipher_suites" in tls:
        cs = tls["cipher_suites"]
        if not isinstance(cs, list):
            errs.errors.append(doc.error(k("cipher_suites"), "must be a list of cipher suite names"))
        else:
            for i, c in enumerate(cs):
                if c not in _CIPHERS:
                    errs.errors.append(doc.error(k("cipher_suites") + (i,), f"unknown or insecure cipher suite {c!r}"))
                elif _CIPHERS[c]:
                    openssl_ciphers.append(_CIPHERS[c])
    if "curve_preferences" in tls:
        cp = tls["curve_preferences"]
        if not isinstance(cp, list):
            errs.errors.append(doc.error(k("curve_preferences"), "must be a list of curve names"))
        else:
            for i, c in enumerate(cp):
                if c not in _CURVES:
                    errs.errors.append(doc.error(k("curve_preferences") + (i,),
                                                 f"unknown curve {c!r} (allowed: {', '.join(_CURVES)})"))
    prefer = tls.get("prefer_server_cipher_suites", True)
    if not isinstance(prefer, bool):
        errs.errors.append(doc.error(k("prefer_server_cipher_suites"), f"must be true or false, got {prefer!r}"))

    cert_file = key_file = ca_file = None
    if "cert_file" in tls:
        cert_file = errs.run(_read_pem, doc, k("cert_file"), base_dir, tls["cert_file"], "-----BEGIN CERTIFICATE-----")
    if "key_file" in tls:
        key_file = errs.run(_read_pem, doc, k("key_file"), base_dir, tls["key_file"], "PRIVATE KEY-----")
    if "client_ca_file" in tls:
        ca_file = errs.run(_read_pem, doc, k("client_ca_file"), base_dir, tls["client_ca_file"],
                           "-----BEGIN CERTIFICATE-----")
    for name, marker in (("cert", "-----BEGIN CERTIFICATE-----"), ("key", "PRIVATE KEY-----"),
                         ("client_ca", "-----BEGIN CERTIFICATE-----")):
        if name in tls and (not isinstance(tls[name], str) or marker not in tls[name]):
            errs.errors.append(doc.error(k(name), f"must be inline PEM text containing {marker.strip('-')}"))
    errs.raise_if_any()

    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        ctx.minimum_version = versions["min_version"]
        ctx.maximum_version = versions["max_version"]
    except ValueError as e:
        raise doc.error(k("min_version"), f"this OpenSSL cannot use it: {e}") from None
    if prefer:
        ctx.options |= ssl.OP_CIPHER_SERVER_PREFERENCE
    else:
        ctx.options &= ~ssl.OP_CIPHER_SERVER_PREFERENCE
    if openssl_ciphers:
        try:
            ctx.set_ciphers(":".join(openssl_ciphers))
        except ssl.SSLError as e:
            raise doc.error(k("cipher_suites"), f"none of these cipher suites is usable with this OpenSSL: {e}") from None
    if "curve_preferences" in tls:
        log.warning("%s: tls_server_config.curve_preferences is ignored; OpenSSL's default curves are used",
                    doc.file)

    with tempfile.TemporaryDirectory(prefix="costmeter-tls-") as tmp:
        if "cert" in tls:
            cert_file = os.path.join(tmp, "cert.pem")
            _write_private(cert_file, tls["cert"])
        if "key" in tls:
            key_file = os.path.join(tmp, "key.pem")
            _write_private(key_file, tls["key"])
        try:
            ctx.load_cert_chain(cert_file, key_file, password=_no_passphrase)
        except _EncryptedKey:
            which = "key_file" if "key_file" in tls else "key"
            shown = os.path.join(base_dir, tls["key_file"]) if "key_file" in tls else "the inline key"
            raise doc.error(k(which), f"{shown}: the private key is encrypted with a passphrase, and costmeter "
                                      "does not ask for one; decrypt it (for example: openssl pkey -in "
                                      "KEY -out KEY.plain) and point key_file at the result") from None
        except ssl.SSLError as e:
            which = "key_file" if "key_file" in tls else "key"
            if "KEY_VALUES_MISMATCH" in str(e) or "key values mismatch" in str(e):
                raise doc.error(k(which), "private key does not match the certificate") from None
            raise doc.error(k("cert_file" if "cert_file" in tls else "cert"),
                            f"cannot load certificate and key: {e.reason or e}") from None
    ctx.verify_mode = verify_mode
    if has_ca:
        try:
            if ca_file:
                ctx.load_verify_locations(cafile=ca_file)
            else:
                ctx.load_verify_locations(cadata=tls["client_ca"])
        except ssl.SSLError as e:
            raise doc.error(k("client_ca_file" if ca_file else "client_ca"),
                            f"cannot load CA certificates: {e.reason or e}") from None
    return ctx


class _EncryptedKey(Exception):
    pass


def _no_passphrase() -> bytes:
    """OpenSSL asks for a passphrase: never prompt (there may be a TTY), say why instead."""
    raise _EncryptedKey()


def _write_private(path: str, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
