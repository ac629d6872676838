"""Pull sources: what the exporter samples or fetches on its own schedule.

``resources``     CPU and memory of the host and chosen processes (psutil), turned into USD
``billing``       what cloud and LLM vendors actually billed: the scheduler and per-source state
``billing_http``  GET a vendor's JSON with the retry policy (401/403, 429 Retry-After, 5xx backoff)
``openai``        OpenAI Costs API            ``anthropic``  Anthropic Admin API cost report
``aws``           AWS Cost Explorer (boto3)   ``focus``      FinOps FOCUS export files

A collector knows nothing about HTTP or the ledger: it is given its config, runs on the
exporter's background threads and hands back values for the scrape. Imports
:mod:`costmeter.config` (and :mod:`costmeter.pricing` where a price is needed) only.
"""
