"""Ingest worker processes: decode, validate and price large bodies off the GIL.

Why: in one CPython process every event's decoding, validation and pricing
(about 4 us) holds the GIL that the ledger's commit, the metric updates and
the HTTP threads need too, so ingest stopped near one busy core whatever the
machine had (docs/architecture.md, "Ingest workers"). A worker process runs
``batch.parse_body`` on a body and sends back plain row tuples (marshal); the
exporter's process then only deduplicates, commits and applies them.

* Bodies of ``MIN_BODY_BYTES`` or more go to a worker; smaller ones (the
  SDK's batches of 10) are parsed in the exporter: a round trip to a worker
  costs more than parsing them.
* Workers start on the first large body, in the background: that body and
  any until a worker is up are parsed in the exporter, as they would be with
  no workers at all. A worker that dies or fails is replaced; its body is
  parsed in the exporter. Nothing is acknowledged before the exporter's own
  commit, so a worker can never lose an acknowledged event.
* The pricing table goes to a worker with its first body and again after a
  reload (the pool's generation number, against the one each worker was sent,
  says whether a worker has the current table).
"""
from __future__ import annotations

import logging
import marshal
import os
import pickle
import subprocess
import sys
import threading
import time
from collections import deque

from costmeter.server.batch import Parsed, TooManyEvents
from costmeter.server.decode import BodyError
from costmeter.server.parseworker import read_frame, write_frame

log = logging.getLogger("costmeter.server.parsepool")

MIN_BODY_BYTES = 32 * 1024        # about 130 events; smaller bodies are parsed in the exporter
RESTART_PAUSE = 1.0               # seconds between two starts of a worker that keeps dying


def default_workers() -> int:
    """One worker per CPU the exporter may use, less the one its own process needs; at most 4."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cpus = os.cpu_count() or 1
    return max(0, min(4, cpus - 1))


class _Worker:
    __slots__ = ("proc", "gen")

    def __init__(self, proc: subprocess.Popen):
        self.proc, self.gen = proc, 0


class ParsePool:
    """``size`` worker processes; :meth:`parse` returns None when the caller must parse itself."""

    def __init__(self, size: int, pricing):
        self.size = size
        self._pricing = pickle.dumps(pricing, protocol=pickle.HIGHEST_PROTOCOL)
        self._gen = 1
        self._lock = threading.Lock()
        self._ready = threading.Condition(self._lock)
        self._idle: deque[_Worker] = deque()
        self._alive = 0                # workers started and not yet found dead
        self._starting = False
        self._last_start = -RESTART_PAUSE
        self._closed = False

    @property
    def alive(self) -> int:
        """Workers running now."""
        return self._alive

    def set_pricing(self, pricing) -> None:
        """A reloaded pricing table: each worker gets it with its next body."""
        blob = pickle.dumps(pricing, protocol=pickle.HIGHEST_PROTOCOL)
        with self._lock:
            self._pricing, self._gen = blob, self._gen + 1

    def parse(self, body: bytes, content_type: str | None, now: float, max_events: int) -> Parsed | None:
        if self.size <= 0 or len(body) < MIN_BODY_BYTES:
            return None
        w = self._take()
        if w is None:
            return None
        ok = False
        try:
            with self._lock:
                gen, table = self._gen, self._pricing
            write_frame(w.proc.stdin, marshal.dumps(
                (table if w.gen != gen else None, content_type, now, max_events, body)))
            w.gen = gen
            data = read_frame(w.proc.stdout)
            if data is None:
                raise EOFError("the worker closed its output")
            answer = marshal.loads(data)
            ok = True
        except (OSError, EOFError, ValueError) as e:
            log.warning("ingest worker %s failed (%s); the exporter parses this body and starts another",
                        w.proc.pid, e)
            self._drop(w)
            return None
        finally:
            if ok:
                self._give_back(w)
        kind = answer[0]
        if kind == "ok":
            return Parsed(*answer[1:])
        if kind == "body":
            raise (TooManyEvents if answer[1] == 413 else BodyError)(answer[1], answer[2])
        log.error("ingest worker %s failed on a body; the exporter parses it itself:\n%s", w.proc.pid, answer[1])
        return None

    # ---- workers -------------------------------------------------------------------------
    def _take(self) -> _Worker | None:
        with self._lock:
            if self._closed:
                return None
            if self._alive < self.size:
                self._start_one_locked()
            while not self._idle:
                if self._alive == 0 or self._closed:
                    return None            # none up yet (or all dead): parse in the exporter
                self._ready.wait()
            return self._idle.popleft()

    def _give_back(self, w: _Worker) -> None:
        with self._lock:
            if self._closed:
                _stop(w)
                return
            self._idle.append(w)
            self._ready.notify()

    def _drop(self, w: _Worker) -> None:
        _stop(w)
        with self._lock:
            self._alive -= 1
            self._ready.notify_all()
            if not self._closed:
                self._start_one_locked()         # a replacement, whether or not bodies keep coming

    def _start_one_locked(self) -> None:
        """Start a worker in the background (one at a time; a worker that keeps dying is
        restarted at most once every RESTART_PAUSE seconds)."""
        if self._starting:
            return
        wait = max(0.0, self._last_start + RESTART_PAUSE - time.monotonic())
        self._starting = True
        threading.Thread(target=self._start_one, args=(wait,), name="costmeter-parse-start", daemon=True).start()

    def _start_one(self, wait: float) -> None:
        if wait:
            time.sleep(wait)
        with self._lock:
            self._last_start = time.monotonic()
            if self._closed:
                self._starting = False
                return
        try:
            proc = subprocess.Popen(
                [sys.executable, "-m", "costmeter.server.parseworker"],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=_worker_env(), close_fds=True)
        except OSError as e:
            log.error("cannot start an ingest worker (%s); bodies are parsed in the exporter", e)
            with self._lock:
                self._starting = False
            return
        log.info("ingest worker %s started", proc.pid)
        with self._lock:
            self._starting = False
            if self._closed:
                _stop(_Worker(proc))
                return
            self._alive += 1
            self._idle.append(_Worker(proc))
            self._ready.notify()
            if self._alive < self.size:
                self._start_one_locked()

    def close(self) -> None:
        with self._lock:
            self._closed = True
            idle, self._idle = list(self._idle), deque()
            self._ready.notify_all()
        for w in idle:
            _stop(w)


def _worker_env() -> dict:
    """The exporter's environment, with its import path: the worker imports costmeter the same way."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
    return env


def _stop(w: _Worker) -> None:
    try:
        w.proc.stdin.close()          # the worker exits on end of input
    except OSError:
        pass
    try:
        w.proc.wait(timeout=2)
    except subprocess.TimeoutExpired:
        w.proc.kill()
        w.proc.wait()
    try:
        w.proc.stdout.close()
    except OSError:
        pass
