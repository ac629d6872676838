"""server/sqlrows.py: many rows per INSERT give what executemany gives, row for row."""
from __future__ import annotations

import random
import sqlite3

import pytest

from costmeter.server.sqlrows import MultiRowInsert

UPSERT_TAIL = "ON CONFLICT(k) DO UPDATE SET n = n + excluded.n, x = x + excluded.x"


def tables() -> tuple[sqlite3.Connection, sqlite3.Connection]:
    dbs = sqlite3.connect(":memory:"), sqlite3.connect(":memory:")
    for db in dbs:
        db.execute("CREATE TABLE t(seq INTEGER PRIMARY KEY, a TEXT, b REAL, c INTEGER)")
        db.execute("CREATE TABLE u(k TEXT PRIMARY KEY, n INTEGER NOT NULL, x REAL NOT NULL)")
    return dbs


@pytest.mark.parametrize("n", [0, 1, 3, 511, 512, 1000, 2049])
def test_rows_go_in_in_order_as_with_executemany(n):
    rnd = random.Random(n)
    rows = [(f"r{i}", rnd.choice([None, rnd.random()]), rnd.randrange(-5, 10 ** 12)) for i in range(n)]
    multi, each = tables()
    MultiRowInsert("INSERT INTO t(a, b, c)", 3).run(multi, rows)
    each.executemany("INSERT INTO t(a, b, c) VALUES (?, ?, ?)", rows)
    assert multi.execute("SELECT * FROM t ORDER BY seq").fetchall() == \
        each.execute("SELECT * FROM t ORDER BY seq").fetchall()
    assert [r[1:] for r in multi.execute("SELECT * FROM t ORDER BY seq")] == rows


def test_an_upsert_meets_earlier_rows_of_its_own_statement_as_rows_in_the_table():
    rnd = random.Random(3)
    rows = [(f"k{rnd.randrange(40)}", rnd.randrange(100), rnd.random()) for _ in range(900)]
    multi, each = tables()
    up = MultiRowInsert("INSERT INTO u(k, n, x)", 3, UPSERT_TAIL)
    up.run(multi, rows[:600])
    up.run(multi, rows[600:])
    each.executemany(f"INSERT INTO u(k, n, x) VALUES (?, ?, ?) {UPSERT_TAIL}", rows)
    assert multi.execute("SELECT * FROM u ORDER BY k").fetchall() == each.execute("SELECT * FROM u ORDER BY k").fetchall()
    assert multi.execute("SELECT sum(n) FROM u").fetchone()[0] == sum(r[1] for r in rows)


def test_rows_of_the_wrong_width_are_refused():
    multi, _ = tables()
    with pytest.raises(ValueError, match="must have 3 values"):
        MultiRowInsert("INSERT INTO t(a, b, c)", 3).run(multi, [("a", 1.0, 1), ("b", 2.0), ("c", 3.0, 3)])
    assert multi.execute("SELECT count(*) FROM t").fetchone()[0] == 0
