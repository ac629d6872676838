"""The exporter: ledger, metric store, budgets and resources wired together.

:class:`Exporter` does no routing (``http.py`` does, knowing it only as a protocol); it loads and
validates every config file in its constructor (so a bad config never
starts half a service), restores state in :meth:`start`, and turns decoded
events into durable ledger rows in :meth:`ingest`.
"""
from __future__ import annotations

import logging
import sqlite3
import threading
import time
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, GCCollector, PlatformCollector, ProcessCollector, generate_latest

from costmeter import __version__
from costmeter.budgets.book import BudgetBook
from costmeter.budgets.config import load_budgets
from costmeter.server.cardinality import CardinalityGuard
from costmeter.server.exposition import gauge_family, label_str, labelled_family
from costmeter.budgets.governance import GovernanceLog
from costmeter.server.batch import REJECT_REASONS, Parsed, parse_body, parse_events
from costmeter.server.parsepool import ParsePool, default_workers
from costmeter.server.ledger import (ROW_COST, ROW_ENDPOINT, ROW_MODEL, ROW_PROVIDER, ROW_TENANT, ROW_TS,
                     Ledger, LedgerError)
from costmeter.pricing import PricingTable
from costmeter.collectors.resources import ResourceSampler
from costmeter.config.billing import BillingConfig, unknown_sources
from costmeter.config.loader import ConfigErrors
from costmeter.server.billing import BillingLink
from costmeter.config.settings import Settings, load_settings
from costmeter.server.http import serve
from costmeter.server import costs, integrity
from costmeter.server.store import Store

log = logging.getLogger("costmeter")

SNAPSHOT = "exporter"
# Counters that leave no ledger row (duplicates, rejections, infrastructure USD, billing API
# cost) as last served: saved durably before a scrape's answer leaves, so a crash never
# takes them back.
SERVED = "served"            # written by Ledger.save_served


@dataclass
class IngestResult:
    accepted: int = 0
    duplicates: int = 0
    rejected: list[dict] = field(default_factory=list)
    events: int = 0            # in the request, valid or not

    def to_dict(self) -> dict:
        return {"accepted": self.accepted, "duplicates": self.duplicates, "rejected": self.rejected}


def _check_billing_refs(budget_config, billing) -> None:
    errors = unknown_sources(budget_config.billing_refs, budget_config.file, billing)
    if errors:
        raise ConfigErrors(errors) if len(errors) > 1 else errors[0]


class Exporter:
    def __init__(self, settings: Settings | None = None):
        self.settings = s = settings or load_settings()
        # Load and validate everything before touching the state directory.
        self.pricing = PricingTable.load(s.pricing_file)
        workers = default_workers() if s.ingest_workers is None else s.ingest_workers
        self.parse_pool = ParsePool(workers, self.pricing) if workers else None
        self.budget_config = load_budgets(s.budgets_file)
        _check_billing_refs(self.budget_config, s.billing)
        self.web = None
        if s.web_config_file:
            from costmeter.server.webconfig import load_web_config
            self.web = load_web_config(s.web_config_file)
        self.ledger: Ledger | None = None
        self.store = Store(CardinalityGuard(s.cardinality))
        self.governance: GovernanceLog | None = None
        self.budgets: BudgetBook | None = None
        self.resources = ResourceSampler(s.resources)
        self.billing = BillingLink(s.billing or BillingConfig(), lambda: self.ledger.sums if self.ledger else None,
                                   lambda: self.budgets)
        self.health = {"accepted": 0.0, "duplicates": 0.0, "rejected": {r: 0.0 for r in REJECT_REASONS}}
        self.applied_seq = 0
        self.snapshot_seq = -1
        self._saved: tuple | None = None      # (health, resources, billing) of the last snapshot written
        self.ready = False
        self.reload_ok, self.reload_time = True, time.time()
        self._unpriced_logged: set[tuple[str, str]] = set()
        self._expose_lock = threading.Lock()
        self._exposed: dict | None = None
        self._http_base = {"evicted": 0.0, "refused": 0.0}   # HTTP counters of earlier runs
        self.damage: str | None = None   # what the full integrity check found after ready
        self._full_check_after_ready = False
        self._stop = threading.Event()
        self._reload_lock = threading.Lock()
        self._snapshot_lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self.http = None
        self._process = CollectorRegistry(auto_describe=True)
        for collector in (ProcessCollector, PlatformCollector, GCCollector):
            collector(registry=self._process)

    # ---- life cycle -----------------------------------------------------------
    def start(self, serve_http: bool = True) -> "Exporter":
        if serve_http:          # bind first: a port in use fails before any state is touched
            self.http = serve(self)
        try:
            try:
                self._restore()
                self._check_before_ready()
            except sqlite3.DatabaseError as e:     # a damaged page met by the restore itself:
                if self.ledger is None:
                    raise
                if self.ledger.fast is not None:
                    self.ledger.check_fast()       # name the file the fast check found damaged,
                raise self.ledger.damaged(e) from None      # else ledger.db
        except BaseException:
            if self.http is not None:
                self.http.server_close()
                self.http = None
            raise
        self.resources.sample()
        self._spawn(self._housekeeping, "costmeter-housekeeping")
        self.billing.scheduler.start()
        if self.http is not None:
            self._spawn(self.http.serve_forever, "costmeter-http")
        self.ready = True
        if self._full_check_after_ready:     # after ready is set: damage found turns it off
            self._spawn(self._check_in_background, "costmeter-integrity-wait")
        return self

    def _restore(self) -> None:
        s = self.settings
        self.ledger = Ledger(s.state_dir, start_empty=s.start_empty)
        self.ledger.start_integrity_check()
        self.governance = GovernanceLog(s.governance_path)
        self.budgets = BudgetBook(self.budget_config, self.governance)
        t0 = time.monotonic()
        seq, state = self.ledger.load_snapshot(SNAPSHOT)
        if state:
            if "store" in state:          # whole-state snapshot of an older costmeter
                self.store.restore(state["store"])
            else:
                self.store.restore_cells(state.get("guard", {}), self.ledger.load_cells())
            self.health.update(state.get("health", {}))
            self.resources.restore(state.get("resources", {}))
            self.billing.scheduler.restore(state.get("billing", {}))
        # Budgets: the spend saved with the snapshot (as of ``seq``); only a period the
        # snapshot lacks (new budget period or timezone, older snapshot) reads the ledger.
        upto = seq
        saved = (state or {}).get("budgets")
        rows = self.ledger.load_budget_sums() if saved and saved.get("sums") else None
        rollup = costs.for_ledger(self.ledger.path)      # GET /v1/costs' hourly rollup: O(hours x label sets)
        rollup.write_lock = self.ledger.lock             # its catch-up takes turns with ingest commits
        self.ledger.rollup = rollup                      # and each commit folds its own events when caught up
        self.budgets.load_state(saved, lambda start, end: rollup.budget_sums(start, end, max_seq=upto), rows)
        self._restore_exposed()
        replayed = 0
        observe, chunk = self.budgets.observe, []
        for seq, row in self.ledger.replay(seq):
            chunk.append(row)
            if row[ROW_COST] is not None:
                observe(row[ROW_PROVIDER], row[ROW_MODEL], row[ROW_TENANT], row[ROW_ENDPOINT], row[ROW_COST], row[ROW_TS])
            if len(chunk) == 10_000:
                self.store.apply_rows(chunk)
                replayed += len(chunk)
                chunk = []
        self.store.apply_rows(chunk)
        replayed += len(chunk)
        self.applied_seq = seq
        # accepted events are in the ledger, so this counter is exact after a crash;
        # duplicates and rejections since the last snapshot are not (they leave no row)
        self.health["accepted"] += replayed
        self.billing.push_budgets()
        log.info("restored state: snapshot plus %d replayed events in %.2fs", replayed, time.monotonic() - t0)

    def _check_before_ready(self) -> None:
        """The fast integrity check always; the full one too as ``storage.integrity_check`` says
        (start: always; auto: when the ledger is small, so it began beside the restore);
        otherwise the full check runs after ready (docs/exporter.md, "Integrity at start")."""
        mode, led = self.settings.integrity_check, self.ledger
        led.check_fast()
        log.info("ledger fast integrity check passed in %.2fs", led.fast.seconds)
        if mode == "start" or (mode == "auto" and led.full is not None):
            t0 = time.monotonic()
            led.check_full()
            log.info("ledger full integrity check passed in %.2fs (waited %.2fs after the restore)",
                     led.full.seconds, time.monotonic() - t0)
        else:
            self._full_check_after_ready = True

    def _check_in_background(self) -> None:
        """The full integrity check after ready. Damage found: not ready any more, and every
        write refused with the file named, until an operator acts."""
        try:
            self.ledger.check_full()
        except LedgerError as e:
            if self._stop.is_set():
                return
            self.damage = str(e)
            self.ready = False
            log.error("%s", e)
        else:
            if not self.ledger.full.cancelled:
                log.info("ledger full integrity check passed in the background in %.2fs", self.ledger.full.seconds)

    def _restore_exposed(self) -> None:
        """Raise counters without ledger rows to what a scrape last saw (never lower them)."""
        _, seen = self.ledger.load_snapshot(SERVED)
        if not seen:
            return
        h = self.health
        h["duplicates"] = max(h["duplicates"], float(seen.get("duplicates", 0.0)))
        for reason, v in seen.get("rejected", {}).items():
            if reason in h["rejected"]:
                h["rejected"][reason] = max(h["rejected"][reason], float(v))
        self.resources.restore(seen.get("resources", {}))
        for k, v in seen.get("http", {}).items():
            if k in self._http_base:
                self._http_base[k] = float(v)
        billing = self.billing.scheduler.state()          # as restored from the snapshot ...
        for name, usd in seen.get("billing_api_cost_usd", {}).items():
            if name in billing:                            # ... with its one counter raised to what was served
                billing[name]["api_cost_usd"] = max(float(billing[name].get("api_cost_usd", 0.0)), float(usd))
        self.billing.scheduler.restore(billing)

    def _save_served(self) -> None:
        """Durably save the counters without ledger rows, read *after* a scrape rendered them:
        they only rise, so what is saved is at least what the scrape serves."""
        with self._expose_lock:       # not the ingest lock: each number is read whole, and only grows
            seen = {"duplicates": self.health["duplicates"], "rejected": dict(self.health["rejected"])}
            seen["resources"] = self.resources.state()
            seen["billing_api_cost_usd"] = {name: st["api_cost_usd"]
                                            for name, st in self.billing.scheduler.state().items()}
            seen["http"] = self._http_counters()
            if seen != self._exposed:
                self.ledger.save_served(seen)
                self._exposed = seen

    def _http_counters(self) -> dict[str, float]:
        srv = self.http
        return {k: base + (getattr(srv, k, 0) if srv is not None else 0) for k, base in self._http_base.items()}

    def _spawn(self, target, name: str) -> None:
        t = threading.Thread(target=target, name=name, daemon=True)
        t.start()
        self._threads.append(t)

    def stop(self) -> None:
        self._stop.set()
        if self.ledger is not None:
            self.ledger.cancel_checks()      # a full check after ready must not hold up the stop
        self.billing.scheduler.stop()
        if self.http is not None:
            self.http.shutdown()
            self.http.server_close()
        for t in self._threads:
            t.join(timeout=10)
        if self.parse_pool is not None:
            self.parse_pool.close()
        if self.ledger is not None:
            self.snapshot()
            self.ledger.close()
        self.ready = False

    @property
    def url(self) -> str | None:
        if self.http is None:
            return None
        host, port = self.http.server_address[:2]
        scheme = "https" if self.web is not None and self.web.tls_enabled else "http"
        host = "127.0.0.1" if host in ("0.0.0.0", "") else host
        return f"{scheme}://{host}:{port}"

    @classmethod
    def embedded(cls, *, state_dir: str | None = None, listen_address: str | None = "127.0.0.1:0",
                 budgets_file: str | None = None, pricing_file: str | None = None,
                 config_file: str | None = None) -> "Exporter":
        """Start an exporter inside this process (listening unless listen_address is None)."""
        settings = load_settings(config_file, {
            "state_dir": state_dir, "budgets_file": budgets_file, "pricing_file": pricing_file,
            "listen_address": listen_address})
        return cls(settings).start(serve_http=listen_address is not None)

    def reload(self) -> None:
        """Re-read budgets.yaml, pricing.yaml and web-config.yml (SIGHUP, POST /-/reload).

        All files are validated first; on any error nothing changes and the
        ConfigError is raised (and costmeter_config_last_reload_successful is 0).
        """
        s = self.settings
        try:
            pricing = PricingTable.load(s.pricing_file)
            budget_config = load_budgets(s.budgets_file)
            _check_billing_refs(budget_config, s.billing)
            web = None
            if s.web_config_file:
                from costmeter.server.webconfig import load_web_config
                web = load_web_config(s.web_config_file)
        except Exception:
            self.reload_ok = False
            raise
        with self._reload_lock:
            # Budgets: copy their sums and start a journal under the ingest lock (a few ms),
            # rebuild off it; a period new to this configuration reads the ledger as of
            # ``seq`` while ingest goes on (the journal has every event after it), through
            # the hourly rollup of GET /v1/costs (whole hours) and the raw rows at the edges.
            with self.ledger.lock:
                rc = self.budgets.begin_reconfigure(budget_config)
                seq = self.applied_seq
            rollup = costs.for_ledger(self.ledger.path)
            self.budgets.finish_reconfigure(rc, lambda start, end: rollup.budget_sums(start, end, max_seq=seq))
            self.pricing, self.budget_config = pricing, budget_config
            if self.parse_pool is not None:
                self.parse_pool.set_pricing(pricing)
            self.billing.push_budgets()
            if web is not None:
                self.web = web
                if self.http is not None:    # new connections follow the file: TLS on, changed or off
                    self.http.ssl_context = web.ssl_context() if web.tls_enabled else None
            self._unpriced_logged.clear()
        self.reload_ok, self.reload_time = True, time.time()
        log.info("configuration reloaded")

    # ---- ingest ----------------------------------------------------------------
    def ingest(self, objs: list, now: float | None = None) -> IngestResult:
        """Validate, price and durably record decoded events; returns what happened to each."""
        now = time.time() if now is None else now
        return self.record(parse_events(objs, now, self.pricing.cost))

    def ingest_body(self, body: bytes, content_type: str | None) -> IngestResult:
        """``POST /v1/events``: decode, validate, price and record a body. Large bodies are
        parsed by an ingest worker process when there are any (parsepool.py). Raises
        decode.BodyError (with the HTTP status) when the body as a whole is unusable."""
        now = time.time()
        limit = self.settings.max_events_per_request
        parsed = self.parse_pool.parse(body, content_type, now, limit) if self.parse_pool else None
        if parsed is None:
            parsed = parse_body(body, content_type, now, self.pricing.cost, limit)
        return self.record(parsed)

    def record(self, parsed: Parsed) -> IngestResult:
        """Durably record the valid rows of ``parsed`` and count its rejections."""
        if self.damage is not None:
            raise LedgerError(self.damage)
        result = IngestResult(events=parsed.events)
        rows = parsed.rows
        if parsed.rejected:
            result.rejected = [{"index": i, "id": eid, "field": f, "error": m, "reason": r}
                               for i, eid, f, m, r in parsed.rejected]
        for row in rows:
            if row[ROW_COST] is None:
                self._log_unpriced(row[ROW_PROVIDER], row[ROW_MODEL])
        if rows:
            def applied(keep: list[int], last: int) -> None:
                # runs under the ledger lock, right after the (group) commit holding these rows
                kept = rows if len(keep) == len(rows) else [rows[i] for i in keep]
                self.store.apply_rows(kept)
                self.budgets.observe_many((r[ROW_PROVIDER:ROW_ENDPOINT + 1], r[ROW_COST], r[ROW_TS])
                                          for r in kept if r[ROW_COST] is not None)
                self.applied_seq = last
                self.health["accepted"] += len(keep)
                self.health["duplicates"] += len(rows) - len(keep)

            keep, _ = self.ledger.append(rows, applied, parsed.rollup, parsed.pairs)
            result.accepted, result.duplicates = len(keep), len(rows) - len(keep)
        if result.rejected:
            with self.ledger.lock:
                for r in result.rejected:
                    self.health["rejected"][r.pop("reason")] += 1
        return result

    def count_rejected(self, reason: str, n: int = 1) -> None:
        with self.ledger.lock:
            self.health["rejected"][reason] += n

    def _log_unpriced(self, provider: str, model: str) -> None:
        key = (provider, model)
        if key not in self._unpriced_logged and len(self._unpriced_logged) < 10_000:
            self._unpriced_logged.add(key)
            log.warning("no price for provider=%s model=%s: its calls are counted in "
                        "costmeter_unpriced_calls_total and not priced (add it to pricing.yaml)", provider, model)

    # ---- background work -----------------------------------------------------------
    def _housekeeping(self) -> None:
        s = self.settings
        interval = getattr(s.resources, "interval_seconds", 15.0)
        next_sample = next_snapshot = time.monotonic()
        next_prune = time.monotonic() + 60
        while not self._stop.wait(1.0):
            now = time.monotonic()
            try:
                self.budgets.tick()      # rolls and queued threshold crossings only: cheap, no ledger
                costs.for_ledger(self.ledger.path).catch_up(limit=costs.CHUNK)   # GET /v1/costs rollup
                if now >= next_sample:
                    self.resources.sample()
                    next_sample = now + interval
                if now >= next_snapshot:
                    self.snapshot()
                    next_snapshot = now + s.snapshot_interval_seconds
                if now >= next_prune:
                    self.prune()
                    next_prune = now + 3600
            except Exception:          # housekeeping must never die; the next round retries
                log.exception("housekeeping failed")

    def prune(self, now: float | None = None) -> int:
        """Drop raw events received more than retention_days ago (their ids with them)."""
        days = self.settings.retention_days
        # only rows already folded into the snapshot and into the GET /v1/costs rollup
        keep_after = min(self.snapshot_seq, costs.for_ledger(self.ledger.path).mark())
        n = self.ledger.prune((time.time() if now is None else now) - days * 86400, keep_after)
        if n:
            log.info("pruned %d events received more than %g days ago", n, days)
        return n

    def snapshot(self) -> None:
        """Persist metric state as of ledger sequence ``applied_seq`` (no-op if unchanged).

        One at a time: each writes what changed since the one before (metric cells, budget
        sums), so two saved out of order would leave rows newer than the sequence number."""
        with self._snapshot_lock:
            self._snapshot()

    def _snapshot(self) -> None:
        resources = self.resources.state()
        with self.ledger.lock:
            seq = self.applied_seq
            health = {"accepted": self.health["accepted"], "duplicates": self.health["duplicates"],
                      "rejected": dict(self.health["rejected"])}
            billing = self.billing.scheduler.state()
            if seq == self.snapshot_seq and (health, resources, billing) == self._saved:
                return                  # an idle exporter writes nothing
            cells = self.store.delta()      # only the cells changed since the last snapshot
            sums = self.budgets.snapshot_delta()    # only the budget sums changed since then
            guard = self.store.guard.copy()         # its state() sorts: outside the lock
        try:
            state = {"guard": guard.state(), "health": health, "resources": resources,
                     "billing": billing, "budgets": sums.state()}
            self.ledger.save_snapshot(SNAPSHOT, seq, state, cells, sums)
        except BaseException:
            self.store._all = True            # not saved: the next snapshot writes every cell ...
            self.budgets.snapshot_failed()    # ... and the whole budget book
            raise
        self.snapshot_seq, self._saved = seq, (health, resources, billing)

    # ---- scrape ----------------------------------------------------------------------
    def render_metrics(self) -> bytes:
        out: list[str] = []
        # Without the ingest lock: a scrape never waits for a commit nor holds up ingest.
        # Each number is read whole (dict copies run in C under the GIL); counters only grow.
        view = self.store.view()
        health = {"accepted": self.health["accepted"], "duplicates": self.health["duplicates"],
                  "rejected": dict(self.health["rejected"])}
        overflow = dict(self.store.guard.overflow)
        self.store.render_view(view, out)
        out.append(self._budget_families())
        out.append(self._resource_families())
        out.append(self.billing.render())
        out.append(gauge_family("costmeter_build_info", "costmeter version; always 1.", ("version",),
                                [((__version__,), 1.0)]))
        out.append(gauge_family("costmeter_ingest_events_total", "Usage events accepted and durably recorded.",
                                (), [((), health["accepted"])], "counter"))
        out.append(gauge_family("costmeter_ingest_duplicate_events_total",
                                "Events whose id was already recorded (retries); counted once.",
                                (), [((), health["duplicates"])], "counter"))
        out.append(gauge_family("costmeter_ingest_rejected_events_total", "Events rejected as invalid, by reason.",
                                ("reason",), [((r,), v) for r, v in sorted(health["rejected"].items())], "counter"))
        out.append(gauge_family("costmeter_config_last_reload_successful",
                                "1 if the last configuration reload succeeded (start-up counts as one).",
                                (), [((), 1.0 if self.reload_ok else 0.0)]))
        out.append(gauge_family("costmeter_config_last_reload_success_timestamp_seconds",
                                "When the configuration was last loaded successfully.", (), [((), self.reload_time)]))
        out.append(gauge_family("costmeter_series_overflow_total",
                                "Events whose label value was folded into __overflow__ by the cardinality guard.",
                                ("label",), [((k,), float(v)) for k, v in sorted(overflow.items())], "counter"))
        out.append(self._http_families())
        pool = self.parse_pool
        out.append(gauge_family("costmeter_ingest_workers",
                                "Ingest worker processes running (they parse large POST /v1/events bodies; "
                                "they start on the first one).", (), [((), float(pool.alive if pool else 0))]))
        if self.ledger is not None:
            out.append(integrity.families({"fast": self.ledger.fast, "full": self.ledger.full}, self.damage is None))
        body = "".join(out).encode() + generate_latest(self._process)
        self._save_served()           # before the body leaves: a crash never takes a served value back
        return body

    def _http_families(self) -> str:
        srv = self.http
        if srv is None:
            return ""
        counters = self._http_counters()
        return "".join((
            gauge_family("costmeter_http_connections", "HTTP connections open now.", (), [((), float(srv.connections()))]),
            gauge_family("costmeter_http_max_connections", "HTTP connections served at once at most (web.max_connections).",
                         (), [((), float(srv.max_connections))]),
            gauge_family("costmeter_http_connections_evicted_total",
                         "Idle HTTP connections closed to make room for a new one at the connection cap.",
                         (), [((), counters["evicted"])], "counter"),
            gauge_family("costmeter_http_connections_refused_total",
                         "HTTP connections answered 503 at the cap because every connection was mid-request.",
                         (), [((), counters["refused"])], "counter"),
        ))

    def _budget_families(self) -> str:
        # Budgets made from tenant_defaults are as many as tenants: export only
        # those whose tenant the cardinality guard admits (all stay enforced and
        # listed by /v1/budgets).
        admitted = self.store.guard.admitted.get("tenant")
        declared = {(b.name, b.period) for b in self.budget_config.budgets}
        # (name, period, selector, limit, spend, forecast, start, end, thresholds)
        sts = [g for g in self.budgets.gauges()
               if admitted is None or (g[0], g[1]) in declared or g[2].get("tenant") in admitted]
        bp = ("budget", "period")
        labels = [label_str(bp, (g[0], g[1])) for g in sts]     # escaped once for the seven families

        def fam(name, help_text, value):
            return labelled_family(name, help_text, [(lb, float(value(g))) for lb, g in zip(labels, sts)])

        thresholds = [(f'{lb},level="{level}"', float(g[8][level]))
                      for lb, g in zip(labels, sts) for level in ("warning", "critical", "exceeded")]
        return "".join((
            fam("cost_budget_limit_usd", "The budget's limit for the current period, from budgets.yaml.",
                lambda g: g[3]),
            fam("cost_budget_spend_usd", "Spend so far in the current period (this exporter's share).",
                lambda g: g[4]),
            fam("cost_budget_utilization_ratio", "Spend divided by limit for the current period (1 = 100 %).",
                lambda g: g[4] / g[3]),
            fam("cost_budget_forecast_usd", "Projected spend at the end of the current period at the current burn rate.",
                lambda g: g[5]),
            labelled_family("cost_budget_threshold_ratio", "The budget's alert thresholds as ratios of its limit.",
                            thresholds),
            fam("cost_budget_period_start_timestamp_seconds", "When the current budget period started.",
                lambda g: g[6]),
            fam("cost_budget_period_end_timestamp_seconds", "When the current budget period ends.", lambda g: g[7]),
        ))

    def _resource_families(self) -> str:
        gauges = self.resources.gauges()
        usd = self.resources.usd_totals()
        return "".join((
            gauge_family("cost_cpu_usage_cores", "CPU cores in use, sampled with psutil.", ("target",),
                         [((t,), c) for t, c, _ in gauges]),
            gauge_family("cost_memory_usage_bytes", "Resident memory (host: total minus available), sampled with psutil.",
                         ("target",), [((t,), m) for t, _, m in gauges]),
            gauge_family("cost_infrastructure_usd_total",
                         "CPU and memory turned into USD with the configured hourly rates.", ("target", "resource"),
                         [(k, v) for k, v in sorted(usd.items())], "counter"),
        ))

