"""Run the real `costmeter serve` process on a loopback port for integration tests."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time

import requests

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def costmeter_cmd() -> list[str]:
    return [sys.executable, "-m", "costmeter.cli"]


class ExporterProcess:
    """A `costmeter serve` child process. Use as a context manager."""

    def __init__(self, state_dir: str, *args: str, port: int | None = None, env: dict | None = None,
                 scheme: str = "http", storage_flag: bool = True, verify=True, cwd: str | None = None):
        self.state_dir, self.args, self.storage_flag = state_dir, list(args), storage_flag
        self.verify, self.cwd = verify, cwd
        self.port = port or free_port()
        self.env = dict(os.environ, **(env or {}))
        self.url = f"{scheme}://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None
        self.log_path = os.path.join(state_dir, f"exporter-{self.port}.log")

    def start(self, wait: bool = True) -> "ExporterProcess":
        os.makedirs(self.state_dir, exist_ok=True)
        self._log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            costmeter_cmd() + ["serve", f"--web.listen-address=127.0.0.1:{self.port}"]
            + ([f"--storage.path={self.state_dir}"] if self.storage_flag else []) + self.args,
            stdout=self._log, stderr=subprocess.STDOUT, env=self.env, cwd=self.cwd)
        if wait:
            self.wait_ready()
        return self

    def wait_ready(self, timeout: float = 20.0) -> None:
        """Wait until the exporter answers HTTP at all (401 counts: basic auth may be on)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"exporter exited with {self.proc.returncode}: {self.log()}")
            try:
                if requests.get(self.url + "/-/healthy", timeout=1, verify=self.verify).status_code in (200, 401):
                    return
            except requests.RequestException:
                pass
            time.sleep(0.05)
        raise RuntimeError(f"exporter not ready after {timeout}s: {self.log()}")

    def log(self) -> str:
        with open(self.log_path, "rb") as f:
            return f.read().decode(errors="replace")[-4000:]

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> int:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        if getattr(self, "_log", None):
            self._log.close()
        return self.proc.returncode if self.proc else 0

    def __enter__(self):
        return self.start() if self.proc is None else self

    def __exit__(self, *exc):
        self.stop()


def parse_metrics(text: str) -> dict[tuple, float]:
    """{(name, frozenset(labels.items())): value} from a text exposition."""
    from prometheus_client.parser import text_string_to_metric_families
    out = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def sample(metrics: dict, name: str, **labels) -> float | None:
    return metrics.get((name, frozenset(labels.items())))


def post_until_acked(s: requests.Session, exp: "ExporterProcess", batch, on_ack, errors: list,
                     stop: threading.Event | None = None, gate: threading.Event | None = None) -> requests.Session:
    """POST a batch (a list of events, or a body's bytes as JSON) until the exporter acknowledges it
    (200), through kills and restarts, counting each failed try in ``errors[0]``; each try waits for
    ``gate`` if given. Returns the session to go on with (a new one after a broken connection)."""
    kw = {"data": batch, "headers": {"Content-Type": "application/json"}} if isinstance(batch, bytes) else {"json": batch}
    while stop is None or not stop.is_set():
        if gate is not None:
            gate.wait()
        try:
            r = s.post(exp.url + "/v1/events", timeout=5, **kw)
            if r.status_code == 200:
                on_ack()
                return s
        except requests.RequestException:
            s = requests.Session()
        errors[0] += 1
        time.sleep(0.02)
    return s


def kill_mid_stream(exp: "ExporterProcess", acked: list, done: threading.Event, at: tuple[int, ...],
                    restart=None, timeout: float = 120.0) -> int:
    """While a client streams (until ``done``), SIGKILL ``exp`` each time ``len(acked)`` reaches
    the next count of ``at``, and start it again (``restart()``, else ``exp.start()``). Returns
    how many kills there were."""
    kills, deadline = 0, time.monotonic() + timeout
    while not done.is_set() and time.monotonic() < deadline:
        time.sleep(0.002)
        if kills < len(at) and len(acked) >= at[kills]:
            exp.kill()           # the client is sending continuously: this lands mid-stream
            kills += 1
            (restart or exp.start)()
    return kills
