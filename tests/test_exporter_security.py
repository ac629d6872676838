"""TLS and basic auth (exporter-toolkit web-config.yml) on the real exporter process."""
from __future__ import annotations

import base64
import subprocess

import bcrypt
import pytest
import requests

from exporter_support import ExporterProcess, costmeter_cmd


@pytest.fixture(scope="module")
def tls_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("tls")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "server.key",
                    "-out", "server.crt", "-days", "2", "-subj", "/CN=localhost",
                    "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"],
                   cwd=d, check=True, capture_output=True)
    pw_hash = bcrypt.hashpw(b"scrape-me", bcrypt.gensalt(rounds=4)).decode()
    (d / "web-config.yml").write_text(
        "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n"
        f"basic_auth_users:\n  prometheus: {pw_hash}\n")
    return d


def test_tls_and_basic_auth_on_every_endpoint(tls_dir, tmp_path):
    ca = str(tls_dir / "server.crt")
    with ExporterProcess(str(tmp_path / "state"), f"--web.config.file={tls_dir / 'web-config.yml'}",
                         scheme="https", verify=ca, env={"GLOBAL_BUDGET_DAILY": "5"}) as p:
        auth = ("prometheus", "scrape-me")
        for path in ("/", "/metrics", "/-/healthy", "/-/ready", "/v1/budgets", "/v1/budgets/global"):
            assert requests.get(p.url + path, verify=ca).status_code == 401, path
            assert requests.get(p.url + path, verify=ca, auth=("prometheus", "wrong")).status_code == 401, path
            assert requests.get(p.url + path, verify=ca, auth=auth).status_code == 200, path
        r = requests.post(p.url + "/v1/events", json=[{"provider": "openai", "cost_usd": 1.0}], verify=ca)
        assert r.status_code == 401 and r.headers["WWW-Authenticate"].startswith("Basic")
        r = requests.post(p.url + "/v1/events", json=[{"provider": "openai", "cost_usd": 1.0}], verify=ca, auth=auth)
        assert r.status_code == 200 and r.json()["accepted"] == 1
        with pytest.raises(requests.exceptions.ConnectionError):
            requests.get(p.url.replace("https", "http") + "/metrics", auth=auth, timeout=5)


def test_bearer_token_from_environment_with_basic_auth_elsewhere(tls_dir, tmp_path):
    ca = str(tls_dir / "server.crt")
    with ExporterProcess(str(tmp_path / "state"), f"--web.config.file={tls_dir / 'web-config.yml'}",
                         scheme="https", verify=ca, env={"COSTMETER_INGEST_TOKENS": "tok-a, tok-b"}) as p:
        ev = [{"provider": "openai", "cost_usd": 1.0}]
        assert requests.post(p.url + "/v1/events", json=ev, verify=ca).status_code == 401
        assert requests.post(p.url + "/v1/events", json=ev, verify=ca,
                             headers={"Authorization": "Bearer nope"}).status_code == 403
        basic = "Basic " + base64.b64encode(b"prometheus:scrape-me").decode()
        assert requests.post(p.url + "/v1/events", json=ev, verify=ca,
                             headers={"Authorization": basic}).status_code == 401
        ok = requests.post(p.url + "/v1/events", json=ev, verify=ca, headers={"Authorization": "Bearer tok-b"})
        assert ok.status_code == 200
        assert requests.get(p.url + "/metrics", verify=ca).status_code == 401


def test_bad_web_config_stops_startup(tmp_path):
    wc = tmp_path / "web-config.yml"
    wc.write_text("tls_server_config:\n  cert_file: missing.crt\n")
    res = subprocess.run(costmeter_cmd() + ["serve",
                          f"--web.config.file={wc}", f"--storage.path={tmp_path / 's'}",
                          "--web.listen-address=127.0.0.1:0"], capture_output=True, text=True, timeout=60)
    assert res.returncode == 1
    assert str(wc) in res.stderr and "tls_server_config" in res.stderr
