"""In-memory state of the exporter's data metrics, fed by ledger rows.

Every accepted event is applied once, in ledger order, by :meth:`Store.apply`
(live at ingest, or replayed at start-up), so the counters are a pure
function of the ledger and survive restarts. Per (provider, model, tenant,
endpoint) the store keeps a :class:`_Route`: direct references to the value
cells of every series that such an event touches, so applying an event is a
handful of list increments. Cardinality folding happens once, when a route is
made.

Sample of what it renders::

    # HELP cost_provider_api_calls_total Calls made to a provider, from ingested usage events.
    # TYPE cost_provider_api_calls_total counter
    cost_provider_api_calls_total{provider="openai",model="gpt-4o-mini",tenant="acme"} 12.0
    # TYPE cost_request_cost_usd histogram
    cost_request_cost_usd_bucket{provider="openai",model="gpt-4o-mini",endpoint="/v1/chat",tenant="acme",le="0.001"} 12.0
"""
from __future__ import annotations

from bisect import bisect_left
from costmeter.server.cardinality import OVERFLOW, CardinalityGuard
from costmeter.events import TOKEN_TYPES
from costmeter.server.exposition import fmt, header, label_str
from costmeter.server.ledger import ROW_CACHE_HIT, ROW_COST, ROW_DURATION, ROW_ERROR, ROW_SAVED, ROW_TOKENS

# USD per request: from a cached embedding (~$1e-6) to a long reasoning call (~$10).
COST_BUCKETS = (0.00001, 0.0001, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
# Seconds per LLM call: a cache hit (~10 ms) to a long generation (minutes).
DURATION_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)


class CounterFamily:
    kind = "counter"

    def __init__(self, name: str, help_text: str, labelnames: tuple[str, ...]):
        self.name, self.help, self.labelnames = name, help_text, labelnames
        self.cells: dict[tuple[str, ...], list[float]] = {}
        self.prefix: dict[tuple[str, ...], str] = {}
        self.key_of: dict[int, tuple[str, ...]] = {}      # id(cell) -> its label values

    def cell(self, values: tuple[str, ...]) -> list[float]:
        c = self.cells.get(values)
        if c is None:
            # prefix first: a concurrent view() that sees the cell finds its prefix
            self.prefix[values] = f"{self.name}{{{label_str(self.labelnames, values)}}} "
            c = self.cells[values] = [0.0]
            self.key_of[id(c)] = values
        return c

    def view(self) -> list:
        """(prefix, cell) pairs, taken without the ingest lock: ``list(dict.items())`` runs in
        C under the GIL, so it never sees the dict change size; cells are read live later."""
        prefix, items = self.prefix, list(self.cells.items())
        return [(prefix[k], c) for k, c in items]

    def render_view(self, view: list, out: list[str]) -> None:
        out.append(header(self.name, self.kind, self.help))
        out.append("".join([f"{p}{c[0]!r}\n" for p, c in view]))

    def render(self, out: list[str]) -> None:
        self.render_view(self.view(), out)

    def state(self) -> list:
        return [[list(k), c[0]] for k, c in self.cells.items()]

    def restore(self, rows: list) -> None:
        for k, v in rows:
            self.cell(tuple(k))[0] = float(v)

    def __len__(self) -> int:
        return len(self.cells)


class HistogramFamily:
    """Bucket counts are kept per bucket (not cumulative) and summed at scrape time."""
    kind = "histogram"

    def __init__(self, name: str, help_text: str, labelnames: tuple[str, ...], buckets: tuple[float, ...]):
        self.name, self.help, self.labelnames = name, help_text, labelnames
        self.bounds = tuple(buckets)
        self.les = tuple(fmt(b) for b in self.bounds) + ("+Inf",)
        # cell layout: [count in bucket 0 .. count in +Inf bucket, sum]
        self.cells: dict[tuple[str, ...], list[float]] = {}
        self.prefix: dict[tuple[str, ...], tuple[list[str], str, str]] = {}
        self.key_of: dict[int, tuple[str, ...]] = {}      # id(cell) -> its label values

    def cell(self, values: tuple[str, ...]) -> list[float]:
        c = self.cells.get(values)
        if c is None:
            ls = label_str(self.labelnames, values)
            sep = "," if ls else ""
            self.prefix[values] = (     # prefix first: a concurrent view() finds it
                [f'{self.name}_bucket{{{ls}{sep}le="{le}"}} ' for le in self.les],
                f"{self.name}_sum{{{ls}}} ", f"{self.name}_count{{{ls}}} ")
            c = self.cells[values] = [0] * (len(self.bounds) + 1) + [0.0]
            self.key_of[id(c)] = values
        return c

    def observe(self, cell: list[float], v: float) -> None:
        cell[bisect_left(self.bounds, v)] += 1
        cell[-1] += v

    def view(self) -> list:
        prefix, items = self.prefix, list(self.cells.items())     # see CounterFamily.view
        return [(prefix[k], c) for k, c in items]

    def render(self, out: list[str]) -> None:
        self.render_view(self.view(), out)

    def render_view(self, view: list, out: list[str]) -> None:
        """Counts are read while ingest may add to them: each value only grows, and the
        buckets are read first, so no sample ever goes backwards."""
        out.append(header(self.name, self.kind, self.help))
        lines = []
        n = len(self.bounds) + 1
        for (buckets, sum_p, count_p), c in view:
            acc = 0
            for i in range(n):
                acc += c[i]
                lines.append(f"{buckets[i]}{acc}.0\n")
            lines.append(f"{sum_p}{c[-1]!r}\n{count_p}{acc}.0\n")
        out.append("".join(lines))

    def state(self) -> list:
        # copies: the snapshot is serialised outside the lock while ingest goes on
        return [[list(k), list(c)] for k, c in self.cells.items()]

    def restore(self, rows: list) -> None:
        for k, v in rows:
            c = self.cell(tuple(k))
            c[:] = [int(x) for x in v[:-1]] + [float(v[-1])]

    def __len__(self) -> int:
        return len(self.cells) * (len(self.bounds) + 3)


class _Route:
    __slots__ = ("calls", "errors", "tokens", "unpriced", "cost", "duration", "hits", "lookups", "savings")


class Store:
    def __init__(self, guard: CardinalityGuard | None = None):
        self.guard = guard or CardinalityGuard()
        pmt = ("provider", "model", "tenant")
        self.cost = HistogramFamily(
            "cost_request_cost_usd",
            "USD cost of each request, from ingested usage events (cost_usd as sent, else priced from tokens "
            "with the pricing table); _sum is spend.",
            ("provider", "model", "endpoint", "tenant"), COST_BUCKETS)
        self.calls = CounterFamily("cost_provider_api_calls_total", "Calls made to a provider, from ingested usage events.", pmt)
        self.errors = CounterFamily("cost_provider_api_errors_total", "Calls to a provider that failed.", pmt)
        self.tokens = CounterFamily(
            "cost_provider_tokens_total",
            "Tokens by type; token types are disjoint (input excludes cached_input and cache writes, output "
            "excludes reasoning), so their sum is the billable token count.", pmt + ("token_type",))
        self.duration = HistogramFamily("cost_request_duration_seconds", "Latency of instrumented calls.",
                                        ("provider", "model", "endpoint"), DURATION_BUCKETS)
        self.hits = CounterFamily("cost_cache_hits_total", "Response-cache hits: calls answered without the provider.", pmt)
        self.lookups = CounterFamily("cost_cache_lookups_total", "Response-cache lookups (events that carry cache_hit).", pmt)
        self.savings = CounterFamily("cost_cache_savings_usd_total", "USD the response cache avoided (saved_cost_usd of cache hits).", pmt)
        self.unpriced = CounterFamily("costmeter_unpriced_calls_total",
                                      "Calls whose model has no price in the pricing table; their cost is unknown, not $0.",
                                      ("provider", "model"))
        self._cost_bounds, self._duration_bounds = self.cost.bounds, self.duration.bounds
        self.families = (self.cost, self.calls, self.errors, self.tokens, self.duration,
                         self.hits, self.lookups, self.savings, self.unpriced)
        self.routes: dict[tuple[str, str, str, str], _Route] = {}
        # Snapshots write only what changed: the routes applied since the last delta()
        # (every cell when _all, e.g. after a restore from an older whole-state snapshot).
        self._dirty: set[_Route] = set()
        self._all = True

    # ---- hot path -----------------------------------------------------------
    def _route(self, key: tuple[str, str, str, str]) -> _Route:
        g = self.guard
        provider, model, tenant, endpoint = key
        cacheable = all(g.admits(lbl, v) for lbl, v in zip(("provider", "model", "tenant", "endpoint"), key))
        p, m, t, e = (g.fold("provider", provider), g.fold("model", model),
                      g.fold("tenant", tenant), g.fold("endpoint", endpoint))
        r = _Route()
        pmt = (p, m, t)
        r.calls, r.errors = self.calls.cell(pmt), self.errors.cell(pmt)
        r.tokens = tuple(self.tokens.cell(pmt + (tt,)) for tt in TOKEN_TYPES)
        r.unpriced = None      # made on first unpriced call, so priced models add no series
        r.cost = self.cost.cell((p, m, e, t))
        r.duration = None
        r.hits = r.lookups = r.savings = None
        if cacheable:           # a folded key is not cached: the map stays bounded
            self.routes[key] = r
        return r

    def apply(self, row: tuple) -> None:
        """Apply one ledger row (ledger.COLUMNS order)."""
        self.apply_rows((row,))

    def apply_rows(self, rows) -> None:
        """Apply ledger rows (ledger.COLUMNS order), in order: the ingest and replay hot path."""
        routes, dirty, route = self.routes, self._dirty, self._route
        cost_bounds, duration_bounds = self._cost_bounds, self._duration_bounds
        for row in rows:
            key = row[2:6]
            r = routes.get(key) or route(key)
            dirty.add(r)
            hit = row[ROW_CACHE_HIT]
            if hit is not None:
                if r.lookups is None:
                    names = self._folded(key)
                    r.lookups, r.hits, r.savings = (self.lookups.cell(names), self.hits.cell(names),
                                                    self.savings.cell(names))
                r.lookups[0] += 1
                if hit:
                    r.hits[0] += 1
                    r.savings[0] += row[ROW_SAVED]
            if not hit:
                r.calls[0] += 1
                if row[ROW_ERROR]:
                    r.errors[0] += 1
                for cell, n in zip(r.tokens, row[ROW_TOKENS]):
                    if n:
                        cell[0] += n
            cost = row[ROW_COST]
            if cost is None:
                if r.unpriced is None:
                    r.unpriced = self.unpriced.cell(self._folded(key)[:2])
                r.unpriced[0] += 1
            else:
                c = r.cost
                c[bisect_left(cost_bounds, cost)] += 1
                c[-1] += cost
            d = row[ROW_DURATION]
            if d is not None:
                if r.duration is None:
                    p, m, _, e = self._folded(key, endpoint=True)
                    r.duration = self.duration.cell((p, m, e))
                c = r.duration
                c[bisect_left(duration_bounds, d)] += 1
                c[-1] += d

    def _folded(self, key, endpoint: bool = False):
        """Folded label values of a key whose values were already admitted or folded."""
        g = self.guard
        out = tuple(v if v in g.admitted.get(lbl, (v,)) else OVERFLOW
                    for lbl, v in zip(("provider", "model", "tenant", "endpoint"), key))
        return out if endpoint else out[:3]

    # ---- scrape -------------------------------------------------------------
    def render(self, out: list[str]) -> None:
        for f in self.families:
            f.render(out)

    def view(self) -> list:
        """A list of every cell, taken while ingest goes on (see CounterFamily.view)."""
        return [(f, f.view()) for f in self.families]

    @staticmethod
    def render_view(view: list, out: list[str]) -> None:
        for f, v in view:
            f.render_view(v, out)

    def series_count(self) -> int:
        return sum(len(f) for f in self.families)

    # ---- persistence --------------------------------------------------------
    def state(self) -> dict:
        return {"families": {f.name: f.state() for f in self.families}, "guard": self.guard.state()}

    def delta(self) -> list[tuple[str, tuple, list]]:
        """``(family, label values, cell values)`` of every cell changed since the last call
        (all of them the first time, or after ``restore``): the snapshot's share of the store,
        proportional to what changed. Call under the ingest lock."""
        dirty, self._dirty = self._dirty, set()
        if self._all:
            self._all = False
            return [(f.name, k, list(c)) for f in self.families for k, c in f.cells.items()]
        out: dict[int, tuple] = {}
        for r in dirty:
            for fam, c in ((self.calls, r.calls), (self.errors, r.errors), (self.cost, r.cost),
                           (self.duration, r.duration), (self.unpriced, r.unpriced), (self.hits, r.hits),
                           (self.lookups, r.lookups), (self.savings, r.savings)):
                if c is not None:
                    out[id(c)] = (fam.name, fam.key_of[id(c)], list(c))
            for c in r.tokens:
                out[id(c)] = (self.tokens.name, self.tokens.key_of[id(c)], list(c))
        return list(out.values())

    def restore_cells(self, guard: dict, cells) -> None:
        """Restore from the cells written by ``delta`` (rows ``(family, labels, values)``)."""
        self.guard.restore(guard)
        fams = {f.name: f for f in self.families}
        rows: dict[str, list] = {}
        for name, labels, values in cells:
            if name in fams:
                v = values if isinstance(fams[name], HistogramFamily) else values[0]
                rows.setdefault(name, []).append([labels, v])
        for name, r in rows.items():
            fams[name].restore(r)
        self.routes.clear()
        self._dirty, self._all = set(), False

    def restore(self, state: dict) -> None:
        self.guard.restore(state.get("guard", {}))
        fams = state.get("families", {})
        for f in self.families:
            f.restore(fams.get(f.name, []))
        self.routes.clear()
        self._dirty, self._all = set(), True      # the next snapshot writes every cell

