"""Command-line basics: help with no command, the state directory default in --help, and
one rule for which files `serve` and `check` read when no flag names them."""
from __future__ import annotations

import os
import shutil
import subprocess

import requests

from exporter_support import ExporterProcess, costmeter_cmd
from costmeter.cli.main import main

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run(*args, cwd=None, env=None):
    return subprocess.run(costmeter_cmd() + list(args), capture_output=True, text=True, timeout=60,
                          cwd=cwd, env=dict(os.environ, **(env or {})))


def test_no_command_prints_help(capsys):
    assert main([]) == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: costmeter")
    for command in ("serve", "check"):
        assert command in out
    res = run()
    assert res.returncode == 0 and "usage: costmeter" in res.stdout and not res.stderr


def test_serve_help_names_every_state_dir_default():
    res = run("serve", "--help")
    assert res.returncode == 0
    text = " ".join(res.stdout.split())
    for place in ("$COSTMETER_STATE_DIR", "$XDG_STATE_HOME/costmeter", "~/.local/state/costmeter"):
        assert place in text, place


def _bad_config_dir(tmp_path):
    """A working directory whose ./config/ holds a broken exporter.yaml and budgets.yaml."""
    cwd = tmp_path / "project"
    (cwd / "config").mkdir(parents=True)
    (cwd / "config" / "exporter.yaml").write_text("web:\n  listen_adress: oops\n")
    (cwd / "config" / "budgets.yaml").write_text("global:\n  daily: -1\n")
    return cwd


def test_check_with_no_flags_reads_what_serve_with_no_flags_reads(tmp_path):
    cwd = _bad_config_dir(tmp_path)
    # check: the built-in defaults, not ./config/
    res = run("check", cwd=cwd, env={"GLOBAL_BUDGET_DAILY": "7"})
    assert res.returncode == 0, res.stderr
    assert res.stdout.splitlines() == ["ok: built-in exporter settings", "ok: budgets from the environment",
                                       "ok: built-in pricing table"]
    # serve: starts from the same cwd with the same defaults (the broken files are not read)
    with ExporterProcess(str(tmp_path / "state"), env={"GLOBAL_BUDGET_DAILY": "7"}, cwd=str(cwd)) as p:
        budgets = requests.get(p.url + "/v1/budgets", timeout=10).json()["budgets"]
        assert [(b["name"], b["period"], b["limit_usd"]) for b in budgets] == [("global", "daily", 7.0)]
    # both read the files once named, and both refuse them the same way
    res = run("check", "--config.file=config/exporter.yaml", cwd=cwd)
    assert res.returncode == 1 and "config/exporter.yaml:2: web.listen_adress: unknown key" in res.stderr
    serve = run("serve", "--config.file=config/exporter.yaml", f"--storage.path={tmp_path / 's2'}", cwd=cwd)
    assert serve.returncode == 1 and "config/exporter.yaml:2: web.listen_adress: unknown key" in serve.stderr
    res = run("check", "--budgets.file=config/budgets.yaml", cwd=cwd)
    assert res.returncode == 1 and "config/budgets.yaml:2: global.daily: must be a limit in USD greater than 0" in res.stderr


def test_check_runs_promtool_and_amtool_beside_the_config_file(tmp_path):
    if not (shutil.which("promtool") and shutil.which("amtool")):
        raise AssertionError("promtool and amtool are installed by tests/run.sh")
    res = run("check", "--config.file=config/exporter.yaml", cwd=REPO)
    assert res.returncode == 0, res.stderr
    assert "ok: config/prometheus.yml (promtool)" in res.stdout.splitlines()
    d = tmp_path / "c"
    d.mkdir()
    (d / "exporter.yaml").write_text("{}\n")
    (d / "prometheus.yml").write_text("scrape_configs: [{job_name: x, static_configs: [{targets: [1]}], bogus: 1}]\n")
    res = run("check", f"--config.file={d / 'exporter.yaml'}")
    assert res.returncode == 1 and "prometheus.yml: promtool check config failed" in res.stderr
