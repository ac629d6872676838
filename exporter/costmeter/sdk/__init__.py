"""The instrumentation SDK that app code imports (re-exported by :mod:`costmeter`).

``decorator``    track_cost: the decorator, its context-manager form, stream wrappers
``usage``        token usage read from provider responses by duck typing
``recorder``     CostTracker: prices a call and sends it where the app is configured to
``shipper``      background delivery: batch, send, spool to disk, replay
``enforcement``  should_deny / should_throttle, reserve then settle
``context``      per-request tenant and endpoint

May import every lower layer (config, pricing, budgets, server for the embedded
exporter); nothing imports the SDK but the CLI and :mod:`costmeter` itself.
Importing it registers no metric and starts no thread.
"""
