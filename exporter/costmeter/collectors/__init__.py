"""Pull sources: what the exporter samples or fetches on its own schedule.

``resources``   CPU and memory of the host and chosen processes (psutil), turned into USD
``billing``     (with one module per vendor) what cloud and LLM vendors actually billed

A collector knows nothing about HTTP or the ledger: it is given its config, runs on the
exporter's background threads and hands back values for the scrape. Imports
:mod:`costmeter.config` (and :mod:`costmeter.pricing` where a price is needed) only.
"""
