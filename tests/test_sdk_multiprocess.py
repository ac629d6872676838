"""Direct mode under prometheus_client multiprocess mode (PROMETHEUS_MULTIPROC_DIR): workers' metrics add up."""
from __future__ import annotations

import os
import subprocess
import sys

from exporter_support import REPO

SCRIPT = r"""
import multiprocessing as mp, sys
from prometheus_client import CollectorRegistry, multiprocess

def work(n):
    from costmeter import track_cost
    @track_cost(provider="anthropic", tenant="mp", endpoint="/w")
    def ask():
        return {"model": "claude-haiku-4-5", "usage": {"input_tokens": 100, "output_tokens": 20,
                "cache_read_input_tokens": 1000}}
    for _ in range(n):
        ask()

if __name__ == "__main__":
    ctx = mp.get_context("spawn")
    ps = [ctx.Process(target=work, args=(n,)) for n in (3, 4, 5)]
    for p in ps: p.start()
    for p in ps: p.join(); assert p.exitcode == 0
    reg = CollectorRegistry()
    multiprocess.MultiProcessCollector(reg)
    lbl = {"provider": "anthropic", "model": "claude-haiku-4-5", "tenant": "mp"}
    print(reg.get_sample_value("cost_provider_api_calls_total", lbl))
    print(reg.get_sample_value("cost_provider_tokens_total", dict(lbl, token_type="cached_input")))
    print(reg.get_sample_value("cost_request_cost_usd_sum", dict(lbl, endpoint="/w")))
"""


def test_metrics_from_several_worker_processes_add_up(tmp_path):
    d = tmp_path / "prom"
    d.mkdir()
    env = dict(os.environ, PROMETHEUS_MULTIPROC_DIR=str(d), PYTHONPATH=os.path.join(REPO, "exporter"))
    env.pop("COSTMETER_URL", None)
    script = tmp_path / "app.py"
    script.write_text(SCRIPT)
    out = subprocess.run([sys.executable, str(script)], env=env, capture_output=True, text=True, timeout=120,
                         cwd=str(tmp_path))
    assert out.returncode == 0, out.stderr
    calls, cached, usd = (float(x) for x in out.stdout.split())
    assert calls == 12
    assert cached == 12 * 1000
    # claude-haiku-4-5: 100 * 1.00 + 1000 * 0.10 + 20 * 5.00 = 300 per million per call
    assert abs(usd - 12 * 300e-6) < 1e-12
