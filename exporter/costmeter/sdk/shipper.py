"""Background delivery of usage events: batch, send, spool to disk, replay.

The tracked call only appends a tuple to a bounded in-memory queue
(:meth:`Shipper.put`, no lock, no I/O). One daemon thread per process drains
the queue every ``flush_interval`` seconds (sooner when a batch is full),
turns tuples into ingest events (README.md, "Ingest API"), gives each a unique
``id`` exactly once, and hands batches to a sink:

* :class:`HttpSink` POSTs JSON to ``<url>/v1/events`` (shipped mode);
* :class:`ExporterSink` calls ``Exporter.ingest`` in-process (embedded mode).

What the sink says decides what happens to a batch:

=================================  ===============================================
200, or 422 (some rejected)        done; rejected events are logged and counted,
                                   never retried (the accepted ones are durable)
connection error, timeout, 5xx,    written to the spool directory as NDJSON, with
408, 429, 401, 403                 their ids; replayed oldest first once the
                                   exporter answers again (same ids, so the
                                   exporter counts each event once)
413                                split in halves and sent again
400, other 4xx                     dropped, counted, logged (a bug, not an outage)
=================================  ===============================================

While the exporter is down, new batches go straight to the spool (with
exponential back-off between attempts, ``max_backoff`` at most). The spool is
bounded by ``spool_max_bytes``; the queue by ``queue_size``. What cannot be
kept is counted (``stats["dropped"]``, ``costmeter_sdk_dropped_events_total``)
and logged. At interpreter exit the queue is flushed (or spooled).

Spool files are claimed by renaming before a replay, so several processes can
share a spool directory; a claim left by a dead process is taken back.
"""
from __future__ import annotations

import collections
import itertools
import json
import logging
import os
import secrets
import threading
import time
import weakref
from typing import Callable

from costmeter.events import TOKEN_FIELDS

log = logging.getLogger("costmeter.sdk.shipper")

OK, RETRY, SPLIT, DROP = "ok", "retry", "split", "drop"


def default_spool_dir() -> str:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "costmeter", "spool")


# ---- sinks ---------------------------------------------------------------------------

class HttpSink:
    """POST /v1/events on a costmeter exporter."""

    def __init__(self, url: str, token: str | None = None, timeout: float = 5.0):
        import requests
        self.url = url.rstrip("/") + "/v1/events"
        self.timeout = timeout
        self._requests = requests
        self._session = requests.Session()
        self._session.trust_env = False          # never route loopback traffic through a proxy
        self._headers = {"Content-Type": "application/json"}
        if token:
            self._headers["Authorization"] = f"Bearer {token}"

    def send(self, objs: list[dict]) -> tuple[str, object]:
        body = json.dumps(objs, separators=(",", ":")).encode()
        try:
            r = self._session.post(self.url, data=body, headers=self._headers, timeout=self.timeout)
        except self._requests.RequestException as e:
            self._session.close()
            return RETRY, f"{type(e).__name__}: {e}"
        code = r.status_code
        if code == 200:
            return OK, []
        if code == 422:
            try:
                return OK, r.json().get("rejected", [])
            except ValueError:
                return OK, [{"error": r.text[:200]}]
        if code == 413:
            return SPLIT, "HTTP 413"
        if code >= 500 or code in (401, 403, 408, 429):
            hint = " (check COSTMETER_TOKEN)" if code in (401, 403) else ""
            return RETRY, f"HTTP {code}{hint}: {r.text[:200]}"
        return DROP, f"HTTP {code}: {r.text[:200]}"

    def close(self) -> None:
        self._session.close()


class ExporterSink:
    """Exporter.ingest in this process (embedded mode)."""

    def __init__(self, exporter):
        self.exporter = exporter

    def send(self, objs: list[dict]) -> tuple[str, object]:
        try:
            res = self.exporter.ingest(objs)
        except Exception as e:  # noqa: BLE001 - a failing store is an outage: keep the events
            return RETRY, f"{type(e).__name__}: {e}"
        return OK, list(getattr(res, "rejected", []) or [])

    def close(self) -> None:
        pass


# ---- spool ---------------------------------------------------------------------------

class Spool:
    """NDJSON files of events awaiting delivery, oldest first, bounded in bytes."""

    SUFFIX = ".ndjson"

    def __init__(self, directory: str | None, max_bytes: int):
        self.dir = directory or default_spool_dir()
        self.max_bytes = max_bytes
        os.makedirs(self.dir, exist_ok=True)
        self._n = itertools.count()
        self._reclaim()
        self.bytes = sum(os.path.getsize(os.path.join(self.dir, f)) for f in self._names(claimed=True))

    def _names(self, claimed: bool = False) -> list[str]:
        try:
            names = os.listdir(self.dir)
        except FileNotFoundError:
            return []
        return sorted(n for n in names if n.endswith(self.SUFFIX) or (claimed and ".ndjson.claimed-" in n))

    def _reclaim(self) -> None:
        for n in os.listdir(self.dir):
            if ".ndjson.claimed-" in n:
                pid = n.rsplit("-", 1)[-1]
                if not pid.isdigit() or int(pid) == os.getpid() or not _alive(int(pid)):
                    try:
                        os.rename(os.path.join(self.dir, n), os.path.join(self.dir, n.split(".claimed-")[0]))
                    except OSError:
                        pass

    def pending(self) -> list[str]:
        return self._names()

    def write(self, objs: list[dict]) -> int:
        """Write as many of ``objs`` as fit (in order); returns how many were written."""
        lines = [(json.dumps(o, separators=(",", ":")) + "\n").encode() for o in objs]
        room = self.max_bytes - self.bytes
        n = 0
        for line in lines:
            if len(line) > room:
                break
            room -= len(line)
            n += 1
        if n == 0:
            return 0
        data = b"".join(lines[:n])
        name = f"{time.time_ns():020d}-{os.getpid()}-{next(self._n):06d}{self.SUFFIX}"
        tmp = os.path.join(self.dir, "." + name + ".tmp")
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, os.path.join(self.dir, name))
        self.bytes += len(data)
        return n

    def claim(self, name: str) -> str | None:
        src = os.path.join(self.dir, name)
        dst = f"{src}.claimed-{os.getpid()}"
        try:
            os.rename(src, dst)
        except OSError:
            return None          # another process took it
        return dst

    @staticmethod
    def read(path: str) -> list[dict]:
        out = []
        with open(path, "rb") as f:
            for line in f:
                line = line.strip()
                if line:
                    try:
                        out.append(json.loads(line))
                    except ValueError:
                        log.error("costmeter: unreadable line in spool file %s dropped", path)
        return out

    def remove(self, path: str) -> None:
        try:
            size = os.path.getsize(path)
            os.remove(path)
            self.bytes = max(0, self.bytes - size)
        except OSError:
            pass

    def unclaim(self, path: str) -> None:
        try:
            os.rename(path, path.split(".claimed-")[0])
        except OSError:
            pass


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


# ---- the shipper -----------------------------------------------------------------------

class Shipper:
    """Batches queued calls into events and delivers them through a sink (see module doc)."""

    def __init__(self, sink, *, spool_dir: str | None = None, batch_size: int = 500, queue_size: int = 100_000,
                 flush_interval: float = 0.5, spool_max_bytes: int = 256 * 1024 * 1024, max_backoff: float = 10.0,
                 on_drop: Callable[[str, int], None] | None = None,
                 on_delivered: Callable[[list], None] | None = None):
        self.sink = sink
        self.batch_size = batch_size
        self.queue_size = queue_size
        self.flush_interval = flush_interval
        self.max_backoff = max_backoff
        self.on_drop = on_drop
        self.on_delivered = on_delivered
        self.spool = Spool(spool_dir, spool_max_bytes)
        self.stats = {"sent": 0, "rejected": 0, "dropped": 0, "spooled": 0, "replayed": 0, "send_failures": 0}
        self.last_error: str | None = None
        self._stats_lock = threading.Lock()
        self._drop_logged = 0.0
        self._init_process_state()
        _SHIPPERS.add(self)

    def _init_process_state(self) -> None:
        self._q: collections.deque = collections.deque()
        self._wake = threading.Event()
        self._pump_lock = threading.Lock()
        self._prefix = secrets.token_hex(8)
        self._seq = itertools.count(1)
        self._pends: dict[str, object] = {}
        self._down_until = 0.0
        self._backoff = 0.0
        self._closing = False
        self._thread = threading.Thread(target=self._run, name="costmeter-shipper", daemon=True)
        self._thread.start()

    # -- the caller's side (hot path) ------------------------------------------------------

    def put(self, item: tuple) -> None:
        q = self._q
        if len(q) >= self.queue_size:
            self._drop("queue_full", 1)
            return
        q.append(item)
        if len(q) >= self.batch_size:
            self._wake.set()

    # -- background ---------------------------------------------------------------------------

    def _run(self) -> None:
        while not self._closing:
            self._wake.wait(self.flush_interval)
            self._wake.clear()
            if self._closing:
                break
            try:
                with self._pump_lock:
                    self._pump(force=False)
            except Exception:  # noqa: BLE001 - the shipper thread must survive anything
                log.exception("costmeter: shipper pass failed")

    def _event(self, it: tuple) -> dict:
        ts, provider, model, tenant, endpoint, tokens, cost, duration, error, cache_hit, saved, batch, pend = it
        eid = f"{self._prefix}-{next(self._seq)}"
        o = {"id": eid, "timestamp": ts, "provider": provider, "model": model, "tenant": tenant, "endpoint": endpoint}
        for name, n in zip(TOKEN_FIELDS, tokens):
            if n:
                o[name] = n
        if cost is not None:
            o["cost_usd"] = cost
        if duration is not None:
            o["duration_seconds"] = duration
        if error:
            o["error"] = True
        if cache_hit is not None:
            o["cache_hit"] = bool(cache_hit)
            if saved:
                o["saved_cost_usd"] = saved
        if batch:
            o["batch"] = True
        if pend is not None:
            self._pends[eid] = pend
        return o

    def _pump(self, force: bool) -> None:
        down = not force and time.monotonic() < self._down_until
        if not down and self.spool.pending():
            down = not self._replay()
        q = self._q
        while q:
            batch = []
            n = min(len(q), self.batch_size)
            for _ in range(n):
                batch.append(self._event(q.popleft()))
            if down:
                self._to_spool(batch)
                continue
            left = self._deliver(batch)
            if left:
                self._to_spool(left)
                down = True

    def _replay(self) -> bool:
        """Send spooled files oldest first; False as soon as one cannot be delivered."""
        for name in self.spool.pending():
            path = self.spool.claim(name)
            if path is None:
                continue
            objs = self.spool.read(path)
            left = self._deliver(objs) if objs else []
            if not left:
                self.spool.remove(path)
                with self._stats_lock:
                    self.stats["replayed"] += len(objs)
                continue
            if len(left) < len(objs):
                self.spool.remove(path)           # frees its bytes: the remainder fits again
                self._to_spool(left)
            else:
                self.spool.unclaim(path)
            return False
        return True

    def _deliver(self, objs: list[dict]) -> list[dict]:
        """Send a batch; returns the events that must be retried later (spooled)."""
        status, info = self.sink.send(objs)
        if status == OK:
            self._up()
            rejected = info or []
            if rejected:
                with self._stats_lock:
                    self.stats["rejected"] += len(rejected)
                log.error("costmeter: exporter rejected %d of %d events (not retried): %s",
                          len(rejected), len(objs), json.dumps(rejected[:5]))
                if self.on_drop is not None:
                    self.on_drop("rejected", len(rejected))
            with self._stats_lock:
                self.stats["sent"] += len(objs) - len(rejected)
            self._settle(objs)
            return []
        if status == SPLIT and len(objs) > 1:
            mid = len(objs) // 2
            return self._deliver(objs[:mid]) + self._deliver(objs[mid:])
        if status == DROP or status == SPLIT:
            log.error("costmeter: exporter refused a batch of %d events, dropped: %s", len(objs), info)
            self._settle(objs)
            self._drop("refused", len(objs), log_it=False)
            return []
        self._down(str(info))
        return objs

    def _settle(self, objs: list[dict]) -> None:
        if not self._pends:
            return
        done = [p for p in (self._pends.pop(o.get("id"), None) for o in objs) if p is not None]
        if done and self.on_delivered is not None:
            try:
                self.on_delivered(done)
            except Exception:  # noqa: BLE001
                log.exception("costmeter: settling budget reservations failed")

    def _to_spool(self, objs: list[dict]) -> None:
        n = self.spool.write(objs)
        if n:
            with self._stats_lock:
                self.stats["spooled"] += n
        if n < len(objs):
            self._settle(objs[n:])
            self._drop("spool_full", len(objs) - n)

    def _up(self) -> None:
        if self._backoff:
            log.warning("costmeter: exporter reachable again; replaying the spool")
        self._backoff = 0.0
        self._down_until = 0.0
        self.last_error = None

    def _down(self, why: str) -> None:
        with self._stats_lock:
            self.stats["send_failures"] += 1
        if not self._backoff:
            log.warning("costmeter: exporter unreachable (%s); spooling events to %s", why, self.spool.dir)
        self._backoff = min(self.max_backoff, max(self.flush_interval, self._backoff * 2 or self.flush_interval))
        self._down_until = time.monotonic() + self._backoff
        self.last_error = why

    def _drop(self, reason: str, n: int, log_it: bool = True) -> None:
        with self._stats_lock:
            self.stats["dropped"] += n
            now = time.monotonic()
            say = log_it and now - self._drop_logged > 10.0
            if say:
                self._drop_logged = now
        if say:
            log.error("costmeter: dropped %d usage event(s): %s (total dropped: %d)", n, reason, self.stats["dropped"])
        if self.on_drop is not None:
            self.on_drop(reason, n)

    # -- control ---------------------------------------------------------------------------

    def queued(self) -> int:
        return len(self._q)

    def flush(self, timeout: float = 10.0) -> bool:
        """Deliver (or spool) everything queued now, and replay the spool. True if nothing is left."""
        if not self._pump_lock.acquire(timeout=timeout):
            return False
        try:
            self._pump(force=True)
        finally:
            self._pump_lock.release()
        return not self._q and not self.spool.pending()

    def close(self, timeout: float = 10.0) -> None:
        self._closing = True
        self._wake.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout)
        try:
            if self._pump_lock.acquire(timeout=timeout):
                try:
                    self._pump(force=True)
                finally:
                    self._pump_lock.release()
        finally:
            _SHIPPERS.discard(self)
            self.sink.close()

    def _after_fork(self) -> None:
        # the child has no shipper thread and must not reuse the parent's ids or queue
        self._init_process_state()


_SHIPPERS: "weakref.WeakSet[Shipper]" = weakref.WeakSet()


def _after_fork_in_child() -> None:
    for s in list(_SHIPPERS):
        if not s._closing:
            s._after_fork()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
