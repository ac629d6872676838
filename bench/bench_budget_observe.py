"""BudgetBook.observe cost per event (on the ingest hot path), 30 named budgets plus tenant defaults."""
from __future__ import annotations

import time
import timeit

from costmeter.budgets.book import BudgetBook
from costmeter.budgets.config import loads_budgets

text = "global: {daily: 100, monthly: 1000}\ntenant_defaults: {daily: 5, monthly: 50}\nbudgets:\n" + "".join(
    f"  - {{name: b{i}, selector: {{provider: p{i % 5}, tenant: t{i % 3}}}, period: daily, limit_usd: 10}}\n"
    for i in range(30))
book = BudgetBook(loads_budgets(text, env={}))
now = time.time()
book.observe("p0", "m", "t0", "e", 0.001, now)
n = 200_000
per_call = min(timeit.repeat(lambda: book.observe("p0", "m", "t0", "e", 0.001, now), number=n, repeat=5)) / n
print(f"BudgetBook.observe: {per_call * 1e6:.2f} µs/call "
      f"({len(book.matching('p0', 'm', 't0', 'e'))} matching of {len(book.statuses())} budget instances)")
