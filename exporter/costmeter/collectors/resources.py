"""CPU and memory of the host and of chosen processes, turned into USD.

Configured by the ``resources`` section of ``exporter.yaml`` (see
:mod:`costmeter.config.resources` for its keys).

The exporter's collector turns a :class:`ResourceSampler` into::

    # HELP cost_cpu_usage_cores CPU cores in use, averaged over the last sampling interval (psutil).
    # TYPE cost_cpu_usage_cores gauge
    cost_cpu_usage_cores{target="host"} 0.734
    cost_cpu_usage_cores{target="api"} 0.212
    # HELP cost_memory_usage_bytes Resident memory (RSS; host: total - available) at the last sample (psutil).
    # TYPE cost_memory_usage_bytes gauge
    cost_memory_usage_bytes{target="api"} 3.1457e+08
    # HELP cost_infrastructure_usd_total CPU and memory cost at the configured hourly rates.
    # TYPE cost_infrastructure_usd_total counter
    cost_infrastructure_usd_total{resource="cpu",target="api"} 0.0427
    cost_infrastructure_usd_total{resource="memory",target="api"} 0.00213

Measurement
  * Process CPU: the increase of user + system CPU time (children not included)
    between two samples, divided by the wall time between them (the sampler's
    clock). The first :meth:`ResourceSampler.sample` is already accurate:
    the constructor takes the baseline.
  * Host CPU: per logical CPU, the busy share of the interval from
    ``psutil.cpu_times(percpu=True)`` (busy = everything but idle and iowait,
    exactly as ``psutil.cpu_percent`` counts), summed over CPUs: 2.0 means two
    CPUs' worth of busy time.
  * Memory: RSS for processes (summed over a target's processes); for the host,
    ``total - available`` of ``psutil.virtual_memory()``.
  * USD: between two samples, ``cores * hours * cpu_core_hour_usd`` and
    ``GiB * hours * memory_gib_hour_usd`` where GiB is the mean of the two
    memory readings (trapezoid rule).

Processes that come and go
  * A ``pid_file`` is re-read and a ``match`` regex re-evaluated on every sample,
    so restarts are followed. A process that is new since the previous sample
    has all of its CPU time counted if it started after that sample, else it is
    only baselined (its CPU before our first look is unknown).
  * A target with no live process (vanished pid, missing or garbled pid file,
    nothing matching) reports 0 cores and 0 bytes and keeps its series, so its
    cost counter never disappears; it is logged at debug level, never raised.
    CPU a process used between its last sample and its exit is not counted.
  * ``match`` is a regex searched in the space-joined command line; kernel
    threads (empty command line) and the exporter itself never match. A process
    matching two targets counts in both.

Defaults for the rates: Google Compute Engine N2 predefined machine types,
us-central1, on-demand, Linux, as listed on
https://cloud.google.com/compute/vm-instance-pricing : $0.031611 per vCPU-hour
and $0.004237 per GiB-hour (Google's "GB" there is 2**30 bytes). Check: an
n2-standard-2 (2 vCPU, 8 GiB) is 2 x 0.031611 + 8 x 0.004237 = $0.0971/hour,
its listed price. A vCPU is one hyperthread, the same unit as one of psutil's
logical CPUs. Set your own rates for your provider, region and discounts.
"""
from __future__ import annotations

import logging
import math
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable

import psutil

from costmeter.config.resources import (DEFAULT_CPU_CORE_HOUR_USD, DEFAULT_MEMORY_GIB_HOUR_USD, GIB,
                                        HOST_TARGET, RESOURCES, SELF_TARGET, ProcessTarget, ResourcesConfig)

__all__ = [
    "DEFAULT_CPU_CORE_HOUR_USD", "DEFAULT_MEMORY_GIB_HOUR_USD", "HOST_TARGET", "SELF_TARGET",
    "ProcessTarget", "ResourcesConfig", "ResourceSampler",
]

log = logging.getLogger(__name__)


# ---- sampling ----------------------------------------------------------------

@dataclass
class _Tracked:
    proc: psutil.Process
    cpu: float          # user + system seconds at the last read


# Process start times are whole clock ticks (1/100 s) after boot, rounded down.
_START_TOLERANCE = 0.02


def _uptime(boot_time: float) -> float:
    """Seconds since boot on the clock process start times use. psutil's
    create_time() is boot_time() + start ticks, and boot_time() is whole seconds,
    so comparing create_time() with time.time() can be off by up to a second;
    comparing offsets from boot is exact to a tick."""
    if hasattr(time, "CLOCK_BOOTTIME"):
        return time.clock_gettime(time.CLOCK_BOOTTIME)
    return time.time() - boot_time


def _cpu_busy_total(t: Any) -> tuple[float, float]:
    total = sum(t)
    # On Linux guest time is already included in user and nice.
    total -= getattr(t, "guest", 0.0) + getattr(t, "guest_nice", 0.0)
    idle = t.idle + getattr(t, "iowait", 0.0)
    return total - idle, total


class ResourceSampler:
    """Samples the configured targets and integrates their cost.

    ``sample()`` is meant for one background thread; ``gauges()``,
    ``usd_totals()`` and ``state()`` may be called from any thread. Before the
    first ``sample()``, gauges show memory from the baseline and 0 cores.
    """

    def __init__(self, config: ResourcesConfig, clock: Callable[[], float] = time.monotonic):
        self._cfg = config
        self._clock = clock
        self._targets = config.targets()
        self._sample_lock = threading.Lock()   # one sample() at a time
        self._lock = threading.Lock()          # guards what readers see
        self._self = psutil.Process()
        self._tracked: dict[str, dict[int, _Tracked]] = {t: {} for t in self._targets}
        self._host_prev: list[tuple[float, float]] | None = None
        self._gauges: dict[str, tuple[float, float]] = {t: (0.0, 0.0) for t in self._targets}
        self._accum: dict[tuple[str, str], float] = {(t, r): 0.0 for t in self._targets for r in RESOURCES}
        self._base: dict[tuple[str, str], float] = {}
        self._last_t: float | None = None
        self._boot_time = psutil.boot_time()
        self._last_uptime: float = _uptime(self._boot_time)
        with self._sample_lock:
            self._read(first=True)

    # -- public API --

    def sample(self) -> None:
        """Measure every target and add the cost since the previous sample."""
        with self._sample_lock:
            self._read(first=False)

    def gauges(self) -> list[tuple[str, float, float]]:
        """``(target, cpu_cores, memory_bytes)`` for every configured target."""
        with self._lock:
            return [(t, *self._gauges[t]) for t in self._targets]

    def usd_totals(self) -> dict[tuple[str, str], float]:
        """``(target, "cpu" | "memory") -> USD`` since the first run (restored
        state included); never decreases."""
        with self._lock:
            return {k: self._base.get(k, 0.0) + v for k, v in self._accum.items()}

    def state(self) -> dict:
        """JSON-serialisable totals, including targets no longer configured (so
        they resume if the target comes back)."""
        with self._lock:
            totals: dict[str, dict[str, float]] = {}
            for (t, r), v in self._base.items():
                totals.setdefault(t, {})[r] = v
            for (t, r), v in self._accum.items():
                totals.setdefault(t, {})[r] = self._base.get((t, r), 0.0) + v
            return {"version": 1, "usd_total": totals}

    def restore(self, state: dict) -> None:
        """Continue from totals saved by :meth:`state`. Idempotent, and never
        lowers a total: restoring an older state after a newer one is a no-op.
        Malformed entries are logged and skipped."""
        totals = state.get("usd_total") if isinstance(state, dict) else None
        if not isinstance(totals, dict):
            log.warning("resources: ignoring saved state without a usd_total mapping")
            return
        with self._lock:
            for target, by_res in totals.items():
                if not isinstance(target, str) or not isinstance(by_res, dict):
                    log.warning("resources: ignoring saved state entry %r", target)
                    continue
                for res, v in by_res.items():
                    if res not in RESOURCES or isinstance(v, bool) or not isinstance(v, (int, float)) \
                            or not math.isfinite(v) or v < 0:
                        log.warning("resources: ignoring saved total %r/%r = %r", target, res, v)
                        continue
                    k = (target, res)
                    self._base[k] = max(self._base.get(k, 0.0), float(v))

    # -- measurement --

    def _read(self, first: bool) -> None:
        now = self._clock()
        uptime = _uptime(self._boot_time)
        dt = None if first or self._last_t is None else now - self._last_t
        readings: dict[str, tuple[float, float]] = {}
        matched = self._match_pids() if any(p.match for p in self._cfg.processes) else {}
        for target in self._targets:
            try:
                if target == HOST_TARGET and self._cfg.host:
                    readings[target] = self._read_host()
                    continue
                if target == SELF_TARGET and self._cfg.self_process:
                    pids = {self._self.pid}
                else:
                    pids = self._resolve(next(p for p in self._cfg.processes if p.target == target), matched)
                readings[target] = self._read_procs(target, pids, dt)
            except (psutil.Error, OSError, ValueError) as e:
                log.debug("resources: cannot sample target %s: %s", target, e)
                self._tracked[target] = {}
                readings[target] = (0.0, 0.0)
        with self._lock:
            if dt is not None and dt > 0:
                hours = dt / 3600.0
                for t, (cores, mem) in readings.items():
                    prev_mem = self._gauges[t][1]
                    self._accum[(t, "cpu")] += cores * hours * self._cfg.cpu_core_hour_usd
                    self._accum[(t, "memory")] += (prev_mem + mem) / 2 / GIB * hours * self._cfg.memory_gib_hour_usd
            elif dt is not None:
                log.debug("resources: clock did not advance (%r s); nothing integrated", dt)
            for t, (cores, mem) in readings.items():
                self._gauges[t] = (0.0 if first else cores, mem)
        self._last_t = now
        self._last_uptime = uptime

    def _read_host(self) -> tuple[float, float]:
        now = [_cpu_busy_total(t) for t in psutil.cpu_times(percpu=True)]
        prev, self._host_prev = self._host_prev, now
        cores = 0.0
        if prev is not None and len(prev) == len(now):
            for (b0, t0), (b1, t1) in zip(prev, now):
                if t1 > t0:
                    cores += min(1.0, max(0.0, (b1 - b0) / (t1 - t0)))
        elif prev is not None:  # CPUs were hot-plugged: use the aggregate share
            db = sum(b for b, _ in now) - sum(b for b, _ in prev)
            dt = sum(t for _, t in now) - sum(t for _, t in prev)
            cores = max(0.0, db / dt) * len(now) if dt > 0 else 0.0
        vm = psutil.virtual_memory()
        return cores, float(vm.total - vm.available)

    def _resolve(self, spec: ProcessTarget, matched: dict[str, set[int]]) -> set[int]:
        if spec.pid is not None:
            return {spec.pid}
        if spec.pid_file is not None:
            try:
                with open(spec.pid_file) as f:
                    text = f.read(64).strip()
            except OSError as e:
                log.debug("resources: target %s: cannot read pid_file %s: %s", spec.target, spec.pid_file, e.strerror)
                return set()
            try:
                pid = int(text.split()[0])
            except (ValueError, IndexError):
                log.debug("resources: target %s: pid_file %s does not hold a pid: %r", spec.target, spec.pid_file, text)
                return set()
            return {pid} if pid > 0 else set()
        return matched.get(spec.target, set())

    def _match_pids(self) -> dict[str, set[int]]:
        specs = [p for p in self._cfg.processes if p.match is not None]
        out: dict[str, set[int]] = {p.target: set() for p in specs}
        me = self._self.pid
        for proc in psutil.process_iter(["cmdline"]):
            cmdline = proc.info.get("cmdline")
            if not cmdline or proc.pid == me:
                continue
            line = " ".join(cmdline)
            for spec in specs:
                if spec.match.search(line):
                    out[spec.target].add(proc.pid)
        return out

    def _read_procs(self, target: str, pids: set[int], dt: float | None) -> tuple[float, float]:
        old = self._tracked[target]
        new: dict[int, _Tracked] = {}
        cpu_delta = 0.0
        mem = 0.0
        for pid in pids:
            tr = old.get(pid)
            try:
                if tr is not None and not tr.proc.is_running():  # pid reused by another process
                    tr = None
                proc = tr.proc if tr is not None else psutil.Process(pid)
                with proc.oneshot():
                    ct = proc.cpu_times()
                    rss = proc.memory_info().rss
                    cpu = ct.user + ct.system
                    if tr is not None:
                        cpu_delta += max(0.0, cpu - tr.cpu)
                    elif dt is not None and \
                            proc.create_time() - self._boot_time >= self._last_uptime - _START_TOLERANCE:
                        cpu_delta += cpu  # born after the previous sample: all its CPU is in this interval
            except (psutil.NoSuchProcess, psutil.ZombieProcess, psutil.AccessDenied) as e:
                log.debug("resources: target %s: pid %d is gone or unreadable: %s", target, pid, e)
                continue
            new[pid] = _Tracked(proc, cpu)
            mem += rss
        self._tracked[target] = new
        if not new:
            log.debug("resources: target %s has no live process; reporting 0", target)
        cores = cpu_delta / dt if dt else 0.0
        return cores, mem
