"""The analysis commands' command line: bad flags, unreadable sources, charts, help text."""
from __future__ import annotations

import builtins
import os
import subprocess
import sys

import pytest
from freezegun import freeze_time

from analysis_support import BUDGET_ENV, Seeder
from costmeter.cli.main import main

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(autouse=True)
def _no_budget_env(monkeypatch):
    for k in BUDGET_ENV + ("COSTMETER_URL",):
        monkeypatch.delenv(k, raising=False)


@pytest.fixture
def ledger(tmp_path):
    s = Seeder(str(tmp_path / "state"))
    s.daily("acme", "openai", "gpt-4o", "2026-11-01", [2.0 + (d % 3) for d in range(30)])
    s.daily("beta", "anthropic", "claude-sonnet-4-5", "2026-11-01", [1.0] * 29 + [9.0])
    s.close()
    budgets = tmp_path / "budgets.yaml"
    budgets.write_text("global: {daily: 12.0, monthly: 120.0}\ntenants: {acme: {daily: 3.5}}\n")
    return str(tmp_path / "state"), str(budgets)


@pytest.mark.parametrize("argv, message", [
    (["report", "--days", "0"], "argument --days: 0 must be at least 1"),
    (["report", "--days", "week"], "argument --days: 'week' is not a whole number"),
    (["anomalies", "--sigma", "-1"], "argument --sigma: -1 must be a number above 0"),
    (["anomalies", "--floor", "lots"], "argument --floor: 'lots' is not a number"),
    (["report", "--url", "http://x", "--storage.path", "/tmp"], "not allowed with argument"),
    (["roi", "--gpu-hour-usd", "2", "--tokens-per-second", "100"], "the following arguments are required: --model"),
    (["roi", "--model", "m", "--gpu-hour-usd", "2", "--tokens-per-second", "100", "--utilization", "1.5"],
     "argument --utilization: 1.5 is a ratio"),
    (["recommend", "--batch-share", "0"], "argument --batch-share: 0 must be a number above 0"),
    (["forecast", "--colour", "red"], "unrecognized arguments: --colour"),
])
def test_bad_flags_exit_2_with_a_message(argv, message, capsys):
    with pytest.raises(SystemExit) as e:
        main(argv)
    assert e.value.code == 2
    assert message in capsys.readouterr().err


def test_a_bad_flag_in_a_real_process_has_no_traceback():
    p = subprocess.run([sys.executable, "-m", "costmeter.cli", "anomalies", "--days", "-2"], capture_output=True,
                       text=True, timeout=60)
    assert p.returncode == 2 and "argument --days: -2 must be at least 1" in p.stderr
    assert "Traceback" not in p.stderr


def test_unreadable_sources_exit_3(tmp_path, capsys):
    assert main(["report", "--storage.path", str(tmp_path / "nowhere")]) == 3
    assert f"no ledger at {tmp_path / 'nowhere'}/ledger.db" in capsys.readouterr().err
    assert main(["report", "--url", "http://127.0.0.1:9"]) == 3         # port 9: nothing listens
    assert "cannot reach the exporter at http://127.0.0.1:9" in capsys.readouterr().err
    assert main(["forecast", "--prometheus", "http://127.0.0.1:9"]) == 3
    assert "cannot reach Prometheus at http://127.0.0.1:9" in capsys.readouterr().err


def test_bad_budgets_file_with_storage_path(ledger, tmp_path, capsys):
    state, _ = ledger
    bad = tmp_path / "bad.yaml"
    bad.write_text("global: {daily: -3}\n")
    assert main(["report", "--storage.path", state, "--budgets.file", str(bad)]) == 3
    err = capsys.readouterr().err
    assert "bad.yaml:1" in err and "daily" in err


def test_roi_help_states_the_formulas(capsys):
    with pytest.raises(SystemExit):
        main(["roi", "--help"])
    out = capsys.readouterr().out
    for text in ("C = T x U x 2,592,000", "g = max(G, ceil(N / C))", "H = g x X x 720 + O",
                 "S / (A - H) months", "0.5x, 1x, 2x", "Exit codes: 0 done"):
        assert text in out


@freeze_time("2026-11-30T12:00:00Z")
def test_charts_are_drawn(ledger, tmp_path, capsys):
    state, budgets = ledger
    rpng, fpng = tmp_path / "report.png", tmp_path / "forecast.png"
    assert main(["report", "--storage.path", state, "--budgets.file", budgets, "--chart", str(rpng)]) == 0
    assert main(["forecast", "--storage.path", state, "--budgets.file", budgets, "--chart", str(fpng)]) == 0
    err = capsys.readouterr().err
    assert f"chart written to {rpng}" in err and f"chart written to {fpng}" in err
    for png in (rpng, fpng):
        data = png.read_bytes()
        assert data[:8] == PNG_MAGIC and len(data) > 20_000       # a drawn chart, not an empty canvas
    # a directory that does not exist: a message and exit code 4
    assert main(["report", "--storage.path", state, "--chart", str(tmp_path / "no" / "r.png")]) == 4
    assert "cannot write the chart to" in capsys.readouterr().err


def test_chart_without_matplotlib_says_how_to_get_it(ledger, tmp_path, capsys, monkeypatch):
    state, budgets = ledger
    real_import = builtins.__import__

    def no_matplotlib(name, *args, **kw):
        if name == "matplotlib" or name.startswith("matplotlib."):
            raise ImportError("No module named 'matplotlib'")
        return real_import(name, *args, **kw)
    monkeypatch.setattr(builtins, "__import__", no_matplotlib)
    assert main(["report", "--storage.path", state, "--chart", str(tmp_path / "r.png")]) == 4
    err = capsys.readouterr().err
    assert "--chart needs matplotlib: pip install 'costmeter[charts]'" in err
    assert not os.path.exists(tmp_path / "r.png")


def test_analysis_modules_do_not_import_matplotlib_up_front():
    code = ("import sys, costmeter.cli.main, costmeter.analysis.report, costmeter.analysis.charts, "
            "costmeter.analysis.forecast; print('matplotlib' in sys.modules)")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert p.stdout.strip() == "False", p.stderr


@pytest.mark.parametrize("command", ["report", "anomalies", "forecast", "recommend", "roi"])
def test_help_reads_cleanly(command, capsys):
    with pytest.raises(SystemExit) as e:
        main([command, "--help"])
    out = capsys.readouterr().out
    assert e.value.code == 0 and "%%" not in out
    assert "--url" in out and "--storage.path" in out and "--prometheus" in out
