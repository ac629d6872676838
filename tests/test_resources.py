"""resources: real processes measured with psutil, USD integration with a fake
clock, state across restarts, and config validation with line and key."""
from __future__ import annotations

import collections
import json
import math
import subprocess
import sys
import textwrap
import time
import uuid

import psutil
import pytest

from costmeter.config import loader
from costmeter.collectors.resources import (DEFAULT_CPU_CORE_HOUR_USD, DEFAULT_MEMORY_GIB_HOUR_USD, ProcessTarget,
                                 ResourcesConfig, ResourceSampler)
from costmeter.config.loader import ConfigError, ConfigErrors

MiB = 1 << 20
GiB = 1 << 30

# Burns one core; answers each line on stdin with its own CPU seconds so far (the
# ground truth the sampler is compared with: on a shared 2-core machine the busy
# loop may get well under one core, and the sampler must say so).
BUSY = ("import sys,time,threading\n"
        "def answer():\n"
        "    for _ in sys.stdin: print(time.process_time(), flush=True)\n"
        "threading.Thread(target=answer, daemon=True).start()\n"
        "print('ready',flush=True)\nend=time.time()+float(sys.argv[1])\nwhile time.time()<end: pass\n")
IDLE = "import sys,time\nprint('ready',flush=True)\ntime.sleep(float(sys.argv[1]))\n"
# b'x' * n writes every byte, so the pages are really resident (a bytearray(n) might not be)
ALLOC = ("import sys,time\nmb=int(sys.argv[2])\nb=b'x'*(mb<<20)\nprint('ready',flush=True)\n"
         "time.sleep(float(sys.argv[1]))\n")


@pytest.fixture
def spawn():
    procs: list[subprocess.Popen] = []

    def start(code: str, *args: str) -> subprocess.Popen:
        p = subprocess.Popen([sys.executable, "-c", code, *args], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             text=True)
        procs.append(p)
        assert p.stdout.readline().strip() == "ready"
        return p

    yield start
    for p in procs:
        p.kill()
        p.wait()


def cpu_seconds(busy: subprocess.Popen) -> float:
    busy.stdin.write("\n")
    busy.stdin.flush()
    return float(busy.stdout.readline())


def assert_close_to_truth(measured: float, truth: float) -> None:
    assert truth >= 0.2, f"the busy process hardly ran ({truth:.2f} cores); the machine is too loaded to judge"
    assert abs(measured - truth) <= 0.1 + 0.1 * truth, f"measured {measured:.3f} cores, the process used {truth:.3f}"
    assert measured <= 1.1, f"one thread cannot use {measured:.3f} cores"


def by_target(sampler: ResourceSampler) -> dict[str, tuple[float, float]]:
    return {t: (c, m) for t, c, m in sampler.gauges()}


def procs_config(*targets: ProcessTarget, host: bool = False) -> ResourcesConfig:
    return ResourcesConfig(host=host, self_process=False, processes=list(targets))


# ---- real measurements ------------------------------------------------------

def test_busy_process_measures_about_one_core_and_idle_near_zero(spawn):
    busy = spawn(BUSY, "6")
    idle = spawn(IDLE, "30")
    s = ResourceSampler(procs_config(ProcessTarget("busy", pid=busy.pid), ProcessTarget("idle", pid=idle.pid),
                                     host=True))
    c0, w0 = cpu_seconds(busy), time.monotonic()
    time.sleep(1.5)
    s.sample()  # the first sample is already a real rate: the constructor primed
    c1, w1 = cpu_seconds(busy), time.monotonic()
    g = by_target(s)
    # roughly one core on an idle machine; on a shared one, whatever the loop really got
    assert_close_to_truth(g["busy"][0], (c1 - c0) / (w1 - w0))
    assert g["idle"][0] < 0.05, g
    assert g["busy"][0] - 0.1 <= g["host"][0] <= psutil.cpu_count() + 0.05, g
    assert [t for t, _, _ in s.gauges()] == ["host", "busy", "idle"]


def test_self_target_is_the_exporter_process():
    c0, w0 = time.process_time(), time.monotonic()
    s = ResourceSampler(ResourcesConfig(host=False, self_process=True))
    end = time.monotonic() + 0.8
    while time.monotonic() < end:
        pass
    s.sample()
    c1, w1 = time.process_time(), time.monotonic()
    (target, cores, mem), = s.gauges()
    assert target == "costmeter"
    assert_close_to_truth(cores, (c1 - c0) / (w1 - w0))
    assert abs(mem - psutil.Process().memory_info().rss) < 64 * MiB


def test_memory_is_rss(spawn):
    big = spawn(ALLOC, "30", "200")
    small = spawn(IDLE, "30")
    s = ResourceSampler(procs_config(ProcessTarget("big", pid=big.pid), ProcessTarget("small", pid=small.pid)))
    s.sample()
    g = by_target(s)
    assert g["big"][1] >= 200 * MiB, g
    assert 0 < g["small"][1] < 100 * MiB, g


def _config(tmp_path, body: str) -> ResourcesConfig:
    path = tmp_path / "exporter.yaml"
    path.write_text(textwrap.dedent(body).lstrip("\n"))
    doc = loader.load(str(path))
    return ResourcesConfig.from_yaml(doc, ("resources",), doc.data.get("resources"))


def test_pid_file_is_relative_to_the_config_and_reread(tmp_path, spawn, monkeypatch):
    big = spawn(ALLOC, "30", "200")
    small = spawn(IDLE, "30")
    (tmp_path / "run").mkdir()
    pidfile = tmp_path / "run" / "worker.pid"
    pidfile.write_text(f"{big.pid}\n")
    monkeypatch.chdir("/")
    cfg = _config(tmp_path, """
        resources:
          host: false
          self: false
          processes:
            - {target: worker, pid_file: run/worker.pid}
        """)
    assert cfg.processes[0].pid_file == str(pidfile)
    s = ResourceSampler(cfg)
    s.sample()
    assert by_target(s)["worker"][1] >= 200 * MiB
    pidfile.write_text(f"{small.pid}\n")  # the worker restarted
    s.sample()
    assert 0 < by_target(s)["worker"][1] < 100 * MiB
    for content in ("not a pid\n", ""):
        pidfile.write_text(content)
        s.sample()
        assert by_target(s)["worker"] == (0.0, 0.0)
    pidfile.unlink()
    s.sample()
    assert by_target(s)["worker"] == (0.0, 0.0)


def test_match_sums_every_matching_process_and_follows_new_ones(spawn):
    marker = f"costmeter-test-{uuid.uuid4().hex}"
    spawn(ALLOC, "30", "120", marker)
    spawn(ALLOC, "30", "120", marker)
    spawn(ALLOC, "30", "120", "someone-else")
    cfg = procs_config(ProcessTarget("celery", match=__import__("re").compile(marker + "$")))
    s = ResourceSampler(cfg)
    s.sample()
    cores, mem = by_target(s)["celery"]
    assert 240 * MiB <= mem < 360 * MiB, mem  # two of them, not three
    # a process that starts between samples is counted, CPU included (all of it:
    # it was born inside the interval)
    w0 = time.monotonic()
    busy = spawn(BUSY, "5", marker)
    time.sleep(1.0)
    s.sample()
    c1, w1 = cpu_seconds(busy), time.monotonic()
    cores, mem = by_target(s)["celery"]
    assert_close_to_truth(cores, c1 / (w1 - w0))
    assert mem >= 250 * MiB


def test_match_never_matches_the_exporter_itself():
    # In a child whose command line is unique (a fresh token), so a second identical test run
    # on the same machine cannot be what the pattern finds.
    code = textwrap.dedent("""
        import re, sys, psutil
        from costmeter.collectors.resources import ResourceSampler
        from costmeter.config.resources import ProcessTarget, ResourcesConfig
        me = " ".join(psutil.Process().cmdline())
        target = ProcessTarget("me", match=re.compile("^" + re.escape(me) + "$"))
        assert target.match.search(me)                  # the pattern does match this process...
        s = ResourceSampler(ResourcesConfig(host=False, self_process=False, processes=[target]))
        s.sample()
        print([(t, c, m) for t, c, m in s.gauges()])    # ...but the sampler never counts itself
    """)
    out = subprocess.run([sys.executable, "-c", code, uuid.uuid4().hex], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[('me', 0.0, 0.0)]"


def test_vanished_process_reports_zero_and_does_not_raise(spawn):
    p = spawn(BUSY, "30")
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()  # reaped: this pid names no process
    s = ResourceSampler(procs_config(ProcessTarget("api", pid=p.pid), ProcessTarget("never", pid=gone.pid)))
    time.sleep(0.3)
    s.sample()
    assert by_target(s)["api"][0] > 0.1
    assert by_target(s)["never"] == (0.0, 0.0)
    p.kill()
    p.wait()
    before = s.usd_totals()
    s.sample()
    s.sample()
    assert by_target(s)["api"] == (0.0, 0.0)
    after = s.usd_totals()
    assert after[("api", "cpu")] == before[("api", "cpu")]
    assert set(after) == {("api", "cpu"), ("api", "memory"), ("never", "cpu"), ("never", "memory")}


# ---- USD integration with a fake clock and fake psutil readings -------------

T = collections.namedtuple("scputimes", "user nice system idle iowait irq softirq steal guest guest_nice")
VM = collections.namedtuple("svmem", "total available")


def cpu(user=0.0, idle=0.0, iowait=0.0, guest=0.0, system=0.0) -> T:
    return T(user, 0.0, system, idle, iowait, 0.0, 0.0, 0.0, guest, 0.0)


class FakeHost:
    def __init__(self, monkeypatch):
        self.now = 0.0
        self.cpus = [cpu(user=100, idle=100), cpu(user=100, idle=100)]
        self.used = 4 * GiB
        monkeypatch.setattr(psutil, "cpu_times", lambda percpu=False: list(self.cpus))
        monkeypatch.setattr(psutil, "virtual_memory", lambda: VM(16 * GiB, 16 * GiB - self.used))

    def clock(self) -> float:
        return self.now


def host_sampler(fake: FakeHost, cpu_rate=0.04, mem_rate=0.005) -> ResourceSampler:
    cfg = ResourcesConfig(host=True, self_process=False, cpu_core_hour_usd=cpu_rate, memory_gib_hour_usd=mem_rate)
    return ResourceSampler(cfg, clock=fake.clock)


def test_usd_is_integrated_between_samples(monkeypatch):
    fake = FakeHost(monkeypatch)
    s = host_sampler(fake)                     # t=0: baseline, 4 GiB used
    assert s.usd_totals() == {("host", "cpu"): 0.0, ("host", "memory"): 0.0}
    assert s.gauges() == [("host", 0.0, 4 * GiB)]

    # 30 minutes: cpu0 fully busy; cpu1 half busy, with guest time (already inside
    # user) and iowait (counted as idle) that must not be double counted
    fake.now = 1800.0
    fake.cpus = [cpu(user=1900, idle=100),
                 cpu(user=1000, guest=300, idle=700, iowait=300)]
    fake.used = 2 * GiB
    s.sample()
    assert s.gauges() == [("host", pytest.approx(1.5), 2 * GiB)]
    totals = s.usd_totals()
    assert totals[("host", "cpu")] == pytest.approx(1.5 * 0.5 * 0.04)       # 0.03
    assert totals[("host", "memory")] == pytest.approx(3 * 0.5 * 0.005)     # mean of 4 and 2 GiB: 0.0075

    s.sample()                                  # clock did not move: nothing added
    assert s.usd_totals()[("host", "memory")] == pytest.approx(0.0075)

    fake.now = 5400.0                           # one idle hour at 2 GiB
    fake.cpus = [cpu(user=1900, idle=3700), cpu(user=1000, guest=300, idle=4300, iowait=300)]
    s.sample()
    totals = s.usd_totals()
    assert s.gauges()[0][1] == 0.0
    assert totals[("host", "cpu")] == pytest.approx(0.03)
    assert totals[("host", "memory")] == pytest.approx(0.0075 + 2 * 1 * 0.005)


def test_state_and_restore_keep_totals_monotonic(monkeypatch):
    fake = FakeHost(monkeypatch)
    a = host_sampler(fake)
    fake.now, fake.cpus = 3600.0, [cpu(user=3700, idle=100), cpu(user=100, idle=3700)]
    a.sample()
    old_state = json.loads(json.dumps(a.state()))
    fake.now, fake.cpus = 7200.0, [cpu(user=7300, idle=100), cpu(user=100, idle=7300)]
    a.sample()
    saved = json.loads(json.dumps(a.state()))  # what the exporter writes to disk
    assert saved["usd_total"]["host"]["cpu"] == pytest.approx(2 * 0.04)

    # "restart": a new sampler resumes from the saved totals
    fake.now = 0.0
    b = host_sampler(fake)
    b.restore(saved)
    assert b.usd_totals() == pytest.approx(a.usd_totals())
    b.restore(saved)                            # idempotent
    b.restore(old_state)                        # an older state never lowers a total
    assert b.usd_totals() == pytest.approx(a.usd_totals())
    fake.now, fake.cpus = 3600.0, [cpu(user=10900, idle=100), cpu(user=100, idle=10900)]
    b.sample()
    assert b.usd_totals()[("host", "cpu")] == pytest.approx(3 * 0.04)
    assert all(b.usd_totals()[k] >= v for k, v in a.usd_totals().items())


def test_restore_keeps_unconfigured_targets_in_state_only_and_skips_garbage(monkeypatch):
    fake = FakeHost(monkeypatch)
    s = host_sampler(fake)
    s.restore({"version": 1, "usd_total": {
        "retired": {"cpu": 1.25, "memory": 0.5},
        "host": {"cpu": -1.0, "memory": float("nan"), "disk": 3.0},
        7: {"cpu": 1.0},
        "weird": "not a mapping",
    }})
    s.restore({"nonsense": True})
    s.restore("not even a dict")  # type: ignore[arg-type]
    assert s.usd_totals() == {("host", "cpu"): 0.0, ("host", "memory"): 0.0}
    st = s.state()
    assert st["usd_total"]["retired"] == {"cpu": 1.25, "memory": 0.5}
    assert not any(math.isnan(v) for by in st["usd_total"].values() for v in by.values())


# ---- configuration -------------------------------------------------------------

def test_defaults_when_section_is_absent():
    doc = loader.loads("listen: ':9184'\n", "exporter.yaml")
    cfg = ResourcesConfig.from_yaml(doc, ("resources",), None)
    assert cfg == ResourcesConfig()
    assert (cfg.interval_seconds, cfg.host, cfg.self_process) == (15.0, True, True)
    assert (cfg.cpu_core_hour_usd, cfg.memory_gib_hour_usd) == (DEFAULT_CPU_CORE_HOUR_USD, DEFAULT_MEMORY_GIB_HOUR_USD)
    # the documented check of the defaults: an n2-standard-2 (2 vCPU, 8 GiB) lists at $0.0971/hour
    assert round(2 * DEFAULT_CPU_CORE_HOUR_USD + 8 * DEFAULT_MEMORY_GIB_HOUR_USD, 4) == 0.0971
    assert cfg.targets() == ["host", "costmeter"]


def test_full_section_parses(tmp_path):
    cfg = _config(tmp_path, """
        resources:
          interval_seconds: 5
          host: false
          self: true
          cpu_core_hour_usd: 0.05
          memory_gib_hour_usd: 0
          processes:
            - {target: api, pid: 1234}
            - {target: worker, pid_file: /run/worker.pid}
            - {target: celery, match: "celery.*worker"}
            - {target: host, pid: 1}
        """)
    assert (cfg.interval_seconds, cfg.host, cfg.self_process, cfg.cpu_core_hour_usd, cfg.memory_gib_hour_usd) == \
        (5.0, False, True, 0.05, 0.0)
    assert cfg.processes[0] == ProcessTarget("api", pid=1234)
    assert cfg.processes[1] == ProcessTarget("worker", pid_file="/run/worker.pid")
    assert cfg.processes[2].match.pattern == "celery.*worker"
    assert cfg.targets() == ["costmeter", "api", "worker", "celery", "host"]  # "host" is free when host: false


PREFIX = "listen: ':9184'\nresources:\n"
INVALID = [
    ("unknown key", "  intervall_seconds: 5\n", 3, "resources.intervall_seconds", "unknown key"),
    ("interval not positive", "  interval_seconds: 0\n", 3, "resources.interval_seconds", "greater than 0"),
    ("interval not a number", "  interval_seconds: 15s\n", 3, "resources.interval_seconds", "must be a number"),
    ("host not bool", "  host: 'yes'\n", 3, "resources.host", "true or false"),
    ("self not bool", "  self: 1\n", 3, "resources.self", "true or false"),
    ("negative rate", "  cpu_core_hour_usd: -0.1\n", 3, "resources.cpu_core_hour_usd", ">= 0"),
    ("processes not a list", "  processes: {api: 1}\n", 3, "resources.processes", "must be a list"),
    ("entry without target", "  processes:\n    - {pid: 12}\n", 4, "resources.processes[0]", "target is required"),
    ("two selectors", "  processes:\n    - target: api\n      pid: 12\n      match: api\n", 4,
     "resources.processes[0]", "exactly one of pid, pid_file, match (got pid, match)"),
    ("no selector", "  processes:\n    - target: api\n", 4, "resources.processes[0]", "exactly one of"),
    ("pid not an integer", "  processes:\n    - {target: api, pid: twelve}\n", 4, "resources.processes[0].pid",
     "positive integer"),
    ("pid zero", "  processes:\n    - target: api\n      pid: 0\n", 5, "resources.processes[0].pid", "positive integer"),
    ("bad regex", "  processes:\n    - {target: a, pid: 1}\n    - target: celery\n      match: 'celery(('\n", 6,
     "resources.processes[1].match", "invalid regular expression"),
    ("unknown entry key", "  processes:\n    - target: api\n      pid: 1\n      user: www\n", 6,
     "resources.processes[0].user", "unknown key"),
    ("duplicate target", "  processes:\n    - {target: api, pid: 1}\n    - {target: api, pid: 2}\n", 5,
     "resources.processes[1].target", "used by another entry"),
    ("reserved host", "  processes:\n    - {target: host, pid: 1}\n", 4, "resources.processes[0].target",
     "reserved for `host: true`"),
    ("reserved costmeter", "  processes:\n    - {target: costmeter, pid: 1}\n", 4,
     "resources.processes[0].target", "reserved for `self: true`"),
    ("bad target label", "  processes:\n    - {target: 'my api', pid: 1}\n", 4, "resources.processes[0].target",
     "1-64 characters"),
]


@pytest.mark.parametrize("body,line,key,fragment", [c[1:] for c in INVALID], ids=[c[0] for c in INVALID])
def test_validation_errors_name_line_and_key(body, line, key, fragment):
    doc = loader.loads(PREFIX + body, "/etc/costmeter/exporter.yaml")
    with pytest.raises((ConfigError, ConfigErrors)) as info:
        ResourcesConfig.from_yaml(doc, ("resources",), doc.data["resources"])
    errors = info.value.errors if isinstance(info.value, ConfigErrors) else [info.value]
    assert len(errors) == 1, [e.render() for e in errors]
    e = errors[0]
    assert (e.file, e.line, e.key) == ("/etc/costmeter/exporter.yaml", line, key), e.render()
    assert fragment in e.message, e.render()


def test_several_errors_are_reported_together():
    doc = loader.loads(PREFIX + "  host: maybe\n  memory_gib_hour_usd: cheap\n  processes:\n    - {target: x}\n",
                         "exporter.yaml")
    with pytest.raises(ConfigErrors) as info:
        ResourcesConfig.from_yaml(doc, ("resources",), doc.data["resources"])
    assert [(e.line, e.key) for e in info.value.errors] == [
        (3, "resources.host"), (4, "resources.memory_gib_hour_usd"), (6, "resources.processes[0]")]


def test_section_must_be_a_mapping():
    doc = loader.loads("resources: [1, 2]\n", "exporter.yaml")
    with pytest.raises(ConfigError) as info:
        ResourcesConfig.from_yaml(doc, ("resources",), doc.data["resources"])
    assert (info.value.line, info.value.key) == (1, "resources")
