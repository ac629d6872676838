"""Hostile config files: a NUL byte, a recursive alias, an alias bomb, absurd nesting.

Each gives ``file:line: problem`` from `check`, `serve`, POST /-/reload and SIGHUP;
a reload keeps the previous configuration and the SIGHUP handler survives.
"""
from __future__ import annotations

import signal
import time

import pytest
import requests

from costmeter.cli.main import main
from costmeter.config.loader import ConfigError, loads
from exporter_support import ExporterProcess

BOMB = "a: &a [1,1,1,1,1,1,1,1,1]\n" + "".join(
    f"{c}: &{c} [{','.join(['*' + p] * 9)}]\n" for p, c in zip("abcdefgh", "bcdefghi"))

HOSTILE = {
    "nul": ("global:\n  daily: 1\x00\n", 2, "a NUL byte is not allowed"),
    "recursive_list": ("global: &x [*x]\n", 1, "recursive alias"),
    "recursive_map": ("global: &x\n  daily: *x\n", 2, "recursive alias"),
    "bomb": (BOMB, 5, "alias bomb"),
    "deep": ("global: " + "[" * 1100 + "]" * 1100 + "\n", 1, "nested too deeply"),
    # one mapping per line: line 100 holds a key inside 100 mappings (101 levels)
    "deep_block": ("".join(" " * i + f"k{i}:\n" for i in range(150)), 100, "nested too deeply"),
}


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_loader_names_file_line_and_problem(name):
    text, line, words = HOSTILE[name]
    t0 = time.monotonic()
    with pytest.raises(ConfigError) as e:
        loads(text, "budgets.yaml")
    assert time.monotonic() - t0 < 2
    assert e.value.file == "budgets.yaml" and e.value.line == line and words in str(e.value)
    assert str(e.value).startswith(f"budgets.yaml:{line}: ")


def test_a_file_that_is_not_utf8_is_named_with_its_line(tmp_path):
    from costmeter.config.loader import load
    f = tmp_path / "budgets.yaml"
    f.write_bytes(b"global:\n  daily: 10\n  # caf\xe9\n")
    with pytest.raises(ConfigError) as e:
        load(str(f))
    assert str(e.value).startswith(f"{f}:3: not UTF-8 at byte 27")


def test_aliases_that_expand_a_little_still_work():
    doc = loads("base: &b {daily: 10}\nx: *b\ny: {<<: *b, monthly: 5}\n")
    assert doc.data == {"base": {"daily": 10}, "x": {"daily": 10}, "y": {"daily": 10, "monthly": 5}}


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_check_reports_hostile_budgets_file(tmp_path, capsys, name):
    f = tmp_path / "budgets.yaml"
    f.write_text(HOSTILE[name][0])
    assert main(["check", f"--budgets.file={f}"]) != 0
    err = capsys.readouterr().err
    assert f"{f}:{HOSTILE[name][1]}: " in err and HOSTILE[name][2] in err and "Traceback" not in err


def _write(path, text: str) -> None:
    """Replace a file at once, so a reload running meanwhile never reads it half-written."""
    tmp = path.with_suffix(".tmp")
    tmp.write_text(text)
    tmp.replace(path)


def test_reload_and_sighup_on_hostile_files_keep_the_old_config(tmp_path):
    budgets = tmp_path / "budgets.yaml"
    _write(budgets, "global: {daily: 10.0}\n")
    with ExporterProcess(str(tmp_path / "state"), f"--budgets.file={budgets}") as p:
        for name, (text, line, words) in sorted(HOSTILE.items()):
            _write(budgets, text)
            r = requests.post(p.url + "/-/reload", timeout=10)
            assert r.status_code == 400, (name, r.text)
            assert f"{budgets}:{line}: " in r.json()["error"] and words in r.json()["error"]
            g = requests.get(p.url + "/v1/budgets/global").json()
            assert g["periods"][0]["limit_usd"] == 10.0, (name, g)
            p.proc.send_signal(signal.SIGHUP)
            said = f"previous configuration kept: {budgets}:{line}: "     # logged as file:line: problem
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and not any(said in ln and words in ln for ln in p.log().splitlines()):
                time.sleep(0.05)
            assert any(said in ln and words in ln for ln in p.log().splitlines()), (name, p.log())
        # the SIGHUP reload thread survived every bad file: a good file is still picked up
        _write(budgets, "global: {daily: 30.0}\n")
        p.proc.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if requests.get(p.url + "/v1/budgets/global").json()["periods"][0]["limit_usd"] == 30.0:
                break
            time.sleep(0.05)
        assert requests.get(p.url + "/v1/budgets/global").json()["periods"][0]["limit_usd"] == 30.0
        assert p.proc.poll() is None
        log = p.log()
    assert "Traceback" not in log


@pytest.mark.parametrize("name", ["recursive_map", "deep_block"])
def test_serve_refuses_a_hostile_file_with_file_and_line(tmp_path, name):
    import subprocess
    from exporter_support import costmeter_cmd
    text, line, words = HOSTILE[name]
    f = tmp_path / "budgets.yaml"
    f.write_text(text)
    r = subprocess.run(costmeter_cmd() + ["serve", f"--budgets.file={f}", "--web.listen-address=127.0.0.1:0",
                                          f"--storage.path={tmp_path / 'state'}"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 1 and f"{f}:{line}: " in r.stderr and words in r.stderr
    assert "Traceback" not in r.stderr


def _wait_for_reader(fifo: str, proc, timeout: float = 30.0) -> int:
    """Open a FIFO for writing once the exporter has opened it for reading."""
    import errno
    import os
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, "exporter exited"
        try:
            return os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
        except OSError as e:
            if e.errno != errno.ENXIO:
                raise
        time.sleep(0.02)
    raise AssertionError("the exporter never opened the budgets file")


def test_sighup_during_start_up_is_held_until_ready(tmp_path):
    """The budgets file is a FIFO, so start-up blocks reading it: a SIGHUP lands mid-start."""
    import os
    fifo = tmp_path / "budgets.yaml"
    os.mkfifo(fifo)
    p = ExporterProcess(str(tmp_path / "state"), f"--budgets.file={fifo}").start(wait=False)
    try:
        fd = _wait_for_reader(str(fifo), p.proc)
        p.proc.send_signal(signal.SIGHUP)          # start-up is blocked in the read
        time.sleep(0.3)
        assert p.proc.poll() is None, p.log()
        os.write(fd, b"global: {daily: 10.0}\n")
        os.close(fd)
        p.wait_ready()                               # the first read is over
        fd = _wait_for_reader(str(fifo), p.proc)     # the held reload reads the file again
        os.write(fd, b"global: {daily: 20.0}\n")
        os.close(fd)
        deadline = time.monotonic() + 10
        limit = None
        while time.monotonic() < deadline and limit != 20.0:
            limit = requests.get(p.url + "/v1/budgets/global").json()["periods"][0]["limit_usd"]
            time.sleep(0.05)
        assert limit == 20.0
        assert "SIGHUP during start-up" in p.log()
    finally:
        p.stop()


def _signal_thread(pid: int, tid: int, sig: int) -> None:
    """tgkill(2): deliver a signal to one thread of another process."""
    import ctypes
    import os
    import platform
    nr = {"x86_64": 234, "aarch64": 131, "arm64": 131}[platform.machine()]
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.syscall(nr, pid, tid, sig) != 0:
        raise OSError(ctypes.get_errno(), os.strerror(ctypes.get_errno()))


def test_sighup_delivered_to_a_worker_thread_still_reloads_promptly(tmp_path):
    """The kernel may hand a process signal to any thread; Python runs the handler in the
    main thread only, which must therefore not sleep in an untimed wait."""
    import os
    budgets = tmp_path / "budgets.yaml"
    _write(budgets, "global: {daily: 10.0}\n")
    with ExporterProcess(str(tmp_path / "state"), f"--budgets.file={budgets}") as p:
        pid = p.proc.pid
        workers = sorted(int(t) for t in os.listdir(f"/proc/{pid}/task") if int(t) != pid)
        assert workers
        for n, limit in enumerate((20.0, 30.0)):
            _write(budgets, f"global: {{daily: {limit}}}\n")
            _signal_thread(pid, workers[n % len(workers)], signal.SIGHUP)
            deadline = time.monotonic() + 3
            got = None
            while time.monotonic() < deadline and got != limit:
                got = requests.get(p.url + "/v1/budgets/global").json()["periods"][0]["limit_usd"]
                time.sleep(0.05)
            assert got == limit, "a SIGHUP delivered to a worker thread was not acted on"
