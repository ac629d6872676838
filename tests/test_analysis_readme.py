"""README's analysis examples are real: re-running docs/examples/analysis_example.py prints every line shown."""
from __future__ import annotations

import os
import subprocess
import sys

from analysis_support import BUDGET_ENV

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_readme_shows_what_the_commands_print(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in BUDGET_ENV}
    p = subprocess.run([sys.executable, os.path.join(REPO, "docs", "examples", "analysis_example.py"), str(tmp_path)],
                       capture_output=True, text=True, timeout=120, env=env)
    assert p.returncode == 0, p.stderr
    readme = open(os.path.join(REPO, "README.md"), encoding="utf-8").read()
    shown = [ln for ln in p.stdout.splitlines() if ln and not ln.startswith("$ costmeter")]
    assert len(shown) > 60
    missing = [ln for ln in shown if "    " + ln not in readme]
    assert not missing, "README.md is out of date (run docs/examples/analysis_example.py):\n" + "\n".join(missing[:10])
    for png in ("report.png", "forecast.png"):
        assert os.path.getsize(tmp_path / png) > 20_000
