"""The exporter process: HTTP, ingest, the durable ledger, the metric store, the exposition.

``exporter``    Exporter: wires ledger, store, budgets, pricing and collectors; ingest; reload
``http``        routing only (knows the exporter through a protocol, never imports it)
``decode``      POST /v1/events bodies (JSON array, object, NDJSON) into candidate events
``ledger``      SQLite (WAL) ledger of accepted events: durable, idempotent by id, snapshots
``store``       in-memory metric state fed by ledger rows; renders the data metrics
``exposition``  Prometheus text format 0.0.4, written directly
``cardinality`` at most N values per label, the rest folded into __overflow__
``webconfig``   TLS and basic auth from web-config.yml (exporter-toolkit format)
``billing``     billing pulls in the exporter: estimate-to-billed ratios, bill-fed budgets, metrics

May import config, pricing, budgets, collectors and events; never the SDK or the CLI.
"""
