"""An ingest worker process: ``python -m costmeter.server.parseworker``.

Reads requests on stdin and answers on stdout, each a frame of an 8-byte
little-endian length and a :mod:`marshal` payload (see ``parsepool.py``)::

    request:  (pickled PricingTable or None: the one it has is current, content_type, now, max_events, body)
    answer:   ("ok", events, rows, rejected, rollup, pairs) | ("body", status, message) | ("fail", text)

``rollup`` is ``costs.rollup_rows(rows)`` and ``pairs`` is ``idindex.hashes`` of the rows'
ids: work the exporter's own process would otherwise do under its GIL.

It exits when stdin closes (the exporter stopped or died). It holds no state
but the pricing table last sent, and writes nothing: the exporter records the
rows it returns, so a worker that dies loses nothing that was acknowledged.
"""
from __future__ import annotations

import marshal
import pickle
import signal
import struct
import sys
import traceback

from costmeter.server.batch import parse_body, parse_fast
from costmeter.server.costs import rollup_rows
from costmeter.server.decode import BodyError
from costmeter.server.idindex import hashes
from costmeter.server.ledger import ROW_ID

FRAME = struct.Struct("<Q")


def read_frame(f) -> bytes | None:
    head = f.read(FRAME.size)
    if len(head) < FRAME.size:
        return None
    (n,) = FRAME.unpack(head)
    data = f.read(n)
    return data if len(data) == n else None


def write_frame(f, payload: bytes) -> None:
    f.write(FRAME.pack(len(payload)))
    f.write(payload)
    f.flush()


def shared_labels(rows: list) -> list:
    """The rows with each distinct label value as one string object: marshal then writes it
    once (and the exporter builds it once), and the exporter's dict look-ups by label find
    its hash already computed."""
    seen: dict[str, str] = {}
    get = seen.setdefault
    return [r[:2] + (get(r[2], r[2]), get(r[3], r[3]), get(r[4], r[4]), get(r[5], r[5])) + r[6:]
            for r in rows]


def main() -> int:
    signal.signal(signal.SIGINT, signal.SIG_IGN)      # Ctrl-C stops the exporter, which closes stdin
    src, dst = sys.stdin.buffer, sys.stdout.buffer
    pricing = None
    while True:
        data = read_frame(src)
        if data is None:
            return 0
        try:
            table, content_type, now, max_events, body = marshal.loads(data)
            if table is not None:
                pricing = pickle.loads(table)
            parsed = parse_fast(body, content_type, now, pricing.cost, max_events)     # labels shared
            if parsed is None:
                parsed = parse_body(body, content_type, now, pricing.cost, max_events, fast=False)
                parsed = parsed._replace(rows=shared_labels(parsed.rows))
            rows = parsed.rows
            pairs = hashes([r[ROW_ID] for r in rows if r[ROW_ID] is not None])
            answer = ("ok", parsed.events, rows, parsed.rejected, rollup_rows(rows), pairs)
        except BodyError as e:
            answer = ("body", e.status, e.message)
        except Exception:        # a bug: the exporter parses this body itself and reports it
            answer = ("fail", traceback.format_exc(limit=5))
        write_frame(dst, marshal.dumps(answer))


if __name__ == "__main__":
    sys.exit(main())
