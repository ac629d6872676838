"""TLS from web-config.yml: an encrypted key is named, never prompted for; a reload does
what the file says, including turning TLS off."""
from __future__ import annotations

import subprocess

import pytest
import requests

from costmeter.config.loader import ConfigError
from costmeter.server.webconfig import load_web_config
from exporter_support import ExporterProcess


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory):
    d = tmp_path_factory.mktemp("tls")
    for name, extra in (("plain", ["-nodes"]), ("enc", ["-passout", "pass:secret"])):
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", *extra, "-keyout", f"{name}.key",
                        "-out", f"{name}.crt", "-days", "2", "-subj", "/CN=localhost",
                        "-addext", "subjectAltName=IP:127.0.0.1"], cwd=d, check=True, capture_output=True)
    return d


def test_an_encrypted_key_is_a_config_error_naming_the_file(tls_files):
    wc = tls_files / "enc-web.yml"
    wc.write_text("tls_server_config:\n  cert_file: enc.crt\n  key_file: enc.key\n")
    with pytest.raises(ConfigError) as e:
        load_web_config(str(wc))
    msg = str(e.value)
    assert msg.startswith(f"{wc}:3: tls_server_config.key_file: ")
    assert f"{tls_files / 'enc.key'}" in msg and "encrypted with a passphrase" in msg


def test_serve_with_an_encrypted_key_exits_naming_it_and_never_prompts(tls_files, tmp_path):
    from exporter_support import costmeter_cmd
    wc = tls_files / "enc-web.yml"
    wc.write_text("tls_server_config:\n  cert_file: enc.crt\n  key_file: enc.key\n")
    r = subprocess.run(costmeter_cmd() + ["serve", f"--web.config.file={wc}", "--web.listen-address=127.0.0.1:0",
                                          f"--storage.path={tmp_path}"],
                       capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL)
    assert r.returncode == 1 and "encrypted with a passphrase" in r.stderr and "Errno" not in r.stderr


def test_reload_to_a_config_without_tls_serves_plain_http(tls_files, tmp_path):
    wc = tmp_path / "web.yml"
    wc.write_text(f"tls_server_config:\n  cert_file: {tls_files / 'plain.crt'}\n  key_file: {tls_files / 'plain.key'}\n")
    ca = str(tls_files / "plain.crt")
    with ExporterProcess(str(tmp_path / "state"), f"--web.config.file={wc}", scheme="https", verify=ca) as p:
        https = p.url
        http = https.replace("https://", "http://")
        assert requests.get(https + "/-/healthy", verify=ca).status_code == 200
        wc.write_text(f"tls_server_config:\n  cert_file: {tls_files / 'enc.crt'}\n  key_file: {tls_files / 'enc.key'}\n")
        r = requests.post(https + "/-/reload", verify=ca)                # a bad key: refused, TLS kept
        assert r.status_code == 400 and "encrypted with a passphrase" in r.json()["error"]
        assert requests.get(https + "/-/healthy", verify=ca).status_code == 200
        wc.write_text("http_server_config:\n  headers:\n    X-Frame-Options: deny\n")   # no TLS any more
        assert requests.post(https + "/-/reload", verify=ca).status_code == 200
        r = requests.get(http + "/-/healthy", timeout=5)
        assert r.status_code == 200 and r.headers["X-Frame-Options"] == "deny"
