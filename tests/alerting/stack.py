"""Processes and test copies of the shipped configuration for the alerting e2e test.

Everything listens on 127.0.0.1 on free ports and lives in a temporary
directory; every process started here is stopped by ``Stack.close()``.
"""
from __future__ import annotations

import http.server
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field

import requests
import yaml

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
RULE_FILES = ("costmeter.rules.yml", "costmeter.alerts.yml")

# Environment variables that would change the exporter's budgets.
BUDGET_ENV = ("BUDGET_SOFT_THRESHOLD", "BUDGET_HARD_THRESHOLD", "GLOBAL_BUDGET_DAILY",
              "GLOBAL_BUDGET_MONTHLY", "TENANT_BUDGET_DAILY_DEFAULT", "TENANT_BUDGET_MONTHLY_DEFAULT")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def binary(*names: str) -> str:
    for n in names:
        path = shutil.which(n)
        if path:
            return path
    raise RuntimeError(f"none of {names} on PATH (tests/run.sh installs Debian's prometheus packages)")


def costmeter_cmd() -> list[str]:
    """The installed `costmeter` console script of this interpreter's environment."""
    script = os.path.join(os.path.dirname(sys.executable), "costmeter")
    return [script] if os.path.exists(script) else [sys.executable, "-m", "costmeter.cli"]


def wait_for(predicate, timeout: float, what: str, interval: float = 0.2):
    """Poll ``predicate`` until it returns something truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    last_exc = None
    while time.monotonic() < deadline:
        try:
            result = predicate()
            if result:
                return result
        except (requests.RequestException, ValueError, KeyError) as exc:
            last_exc = exc
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}"
                         + (f" (last error: {last_exc})" if last_exc else ""))


# ---- Slack stand-in ------------------------------------------------------------------

@dataclass
class SlackMessage:
    path: str
    content_type: str
    body: dict
    received: float

    @property
    def attachments(self) -> list[dict]:
        return self.body.get("attachments") or []

    @property
    def title(self) -> str:
        return " ".join(a.get("title", "") for a in self.attachments)

    @property
    def text(self) -> str:
        return "\n".join(a.get("text", "") for a in self.attachments)


class FakeSlack:
    """An HTTP server that accepts Slack incoming-webhook POSTs like hooks.slack.com does."""

    def __init__(self):
        self.messages: list[SlackMessage] = []
        self.lock = threading.Lock()
        self.path = "/services/T0000TEST/B0000TEST/costmeter-e2e"
        slack = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                try:
                    body = json.loads(raw)
                except ValueError:
                    body = {"_unparsable": raw.decode(errors="replace")}
                with slack.lock:
                    slack.messages.append(SlackMessage(self.path, self.headers.get("Content-Type", ""),
                                                       body, time.monotonic()))
                self.send_response(200)
                self.send_header("Content-Type", "text/plain")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}{self.path}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def snapshot(self) -> list[SlackMessage]:
        with self.lock:
            return list(self.messages)

    def close(self):
        self.server.shutdown()
        self.server.server_close()


# ---- Processes -----------------------------------------------------------------------

@dataclass
class Proc:
    name: str
    popen: subprocess.Popen
    log_path: str
    url: str

    def log(self) -> str:
        with open(self.log_path, "rb") as f:
            return f.read().decode(errors="replace")[-3000:]

    def check_alive(self):
        if self.popen.poll() is not None:
            raise AssertionError(f"{self.name} exited with {self.popen.returncode}:\n{self.log()}")


@dataclass
class Stack:
    tmp: str
    procs: list[Proc] = field(default_factory=list)

    def spawn(self, name: str, cmd: list[str], url: str, env: dict | None = None) -> Proc:
        log_path = os.path.join(self.tmp, f"{name}.log")
        with open(log_path, "wb") as log:
            popen = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=self.tmp)
        proc = Proc(name, popen, log_path, url)
        self.procs.append(proc)
        return proc

    def wait_ready(self, proc: Proc, path: str, timeout: float = 30.0):
        def ready():
            proc.check_alive()
            return requests.get(proc.url + path, timeout=1).status_code == 200
        wait_for(ready, timeout, f"{proc.name} at {proc.url}{path}")

    # -- costmeter exporter --
    def exporter(self, name: str, budgets_yaml: str) -> Proc:
        port = free_port()
        d = os.path.join(self.tmp, name)
        os.makedirs(d)
        budgets = os.path.join(d, "budgets.yaml")
        with open(budgets, "w") as f:
            f.write(budgets_yaml)
        env = {k: v for k, v in os.environ.items() if k not in BUDGET_ENV}
        env["COSTMETER_STATE_DIR"] = os.path.join(d, "state")
        proc = self.spawn(name, costmeter_cmd() + [
            "serve", f"--web.listen-address=127.0.0.1:{port}",
            f"--storage.path={os.path.join(d, 'state')}", f"--budgets.file={budgets}"],
            f"http://127.0.0.1:{port}", env)
        self.wait_ready(proc, "/-/ready")
        return proc

    # -- Alertmanager, from a test copy of config/alertmanager.yml --
    def alertmanager(self, webhook_url: str) -> Proc:
        with open(os.path.join(REPO, "config", "alertmanager.yml")) as f:
            cfg = yaml.safe_load(f)
        url_file = os.path.join(self.tmp, "slack-webhook-url")
        with open(url_file, "w") as f:
            f.write(webhook_url)
        os.chmod(url_file, 0o600)
        cfg["global"]["slack_api_url_file"] = url_file
        cfg["templates"] = [os.path.join(REPO, "config", t) for t in cfg["templates"]]
        # Short timers so the test sees notifications within seconds; repeats
        # stay long so every message in the test is a state change.
        def shorten(route):
            route.update(group_wait="1s", group_interval="2s", repeat_interval="1h")
            for r in route.get("routes", []):
                shorten(r)
        shorten(cfg["route"])
        path = os.path.join(self.tmp, "alertmanager.yml")
        with open(path, "w") as f:
            yaml.safe_dump(cfg, f, sort_keys=False)
        port = free_port()
        proc = self.spawn("alertmanager", [
            binary("prometheus-alertmanager", "alertmanager"),
            f"--config.file={path}", f"--storage.path={os.path.join(self.tmp, 'am-data')}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--cluster.listen-address=",            # no HA gossip port
            "--log.level=debug"], f"http://127.0.0.1:{port}")
        self.wait_ready(proc, "/-/ready")
        return proc

    # -- Prometheus, from test copies of config/prometheus.yml and alert_rules/ --
    def prometheus(self, targets: dict[str, str], alertmanager_url: str) -> Proc:
        rules_dir = os.path.join(self.tmp, "alert_rules")
        os.makedirs(rules_dir)
        for name in RULE_FILES:
            with open(os.path.join(REPO, "alert_rules", name)) as f:
                rules = yaml.safe_load(f)
            for group in rules["groups"]:
                group.pop("interval", None)
                for rule in group["rules"]:
                    # The real for: durations (minutes) are tested on both sides
                    # by promtool; here one evaluation of pending is enough.
                    if "alert" in rule and "for" in rule:
                        rule["for"] = "1s"
            with open(os.path.join(rules_dir, name), "w") as f:
                yaml.safe_dump(rules, f, sort_keys=False)
        with open(os.path.join(REPO, "config", "prometheus.yml")) as f:
            cfg = yaml.safe_load(f)
        cfg["global"].update(scrape_interval="1s", evaluation_interval="1s")
        cfg["rule_files"] = [os.path.join(rules_dir, os.path.basename(p)) for p in cfg["rule_files"]]
        cfg["alerting"]["alertmanagers"] = [
            {"static_configs": [{"targets": [alertmanager_url.split("://", 1)[1]]}]}]
        cfg["scrape_configs"] = [
            {"job_name": job, "static_configs": [{"targets": [url.split("://", 1)[1]]}]}
            for job, url in targets.items()]
        path = os.path.join(self.tmp, "prometheus.yml")
        with open(path, "w") as f:
            yaml.safe_dump(cfg, f, sort_keys=False)
        port = free_port()
        proc = self.spawn("prometheus", [
            binary("prometheus"), f"--config.file={path}",
            f"--storage.tsdb.path={os.path.join(self.tmp, 'prom-data')}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--rules.alert.resend-delay=1s"], f"http://127.0.0.1:{port}")
        self.wait_ready(proc, "/-/ready")
        return proc

    def close(self):
        for proc in reversed(self.procs):
            if proc.popen.poll() is None:
                proc.popen.terminate()
        for proc in reversed(self.procs):
            try:
                proc.popen.wait(10)
            except subprocess.TimeoutExpired:
                proc.popen.kill()
                proc.popen.wait(5)


def prom_query(prom: Proc, expr: str) -> list[dict]:
    r = requests.get(prom.url + "/api/v1/query", params={"query": expr}, timeout=5)
    r.raise_for_status()
    return r.json()["data"]["result"]


def am_alerts(am: Proc, **matchers: str) -> list[dict]:
    flt = [f'{k}="{v}"' for k, v in matchers.items()]
    r = requests.get(am.url + "/api/v2/alerts", params={"filter": flt}, timeout=5)
    r.raise_for_status()
    return r.json()
