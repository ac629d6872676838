"""The spool directory deleted (or made unusable) while the exporter is down: the SDK
recreates it, counts and reports what it could not keep, and never raises into the app."""
from __future__ import annotations

import logging
import os
import shutil

from costmeter.sdk.shipper import HttpSink, Shipper
from exporter_support import free_port


def _item(i):
    # (ts, provider, model, tenant, endpoint, tokens, cost, duration, error, cache_hit, saved, batch, pend)
    return (1_790_000_000.0 + i, "openai", "gpt-4o-mini", "t", "/x", (10, 0, 0, 0, 5, 0), 0.001,
            None, False, None, 0.0, False, None)


def _down_shipper(spool, drops):
    sink = HttpSink(f"http://127.0.0.1:{free_port()}", timeout=0.5)       # nobody listens there
    sh = Shipper(sink, spool_dir=str(spool), flush_interval=3600, batch_size=10,
                 on_drop=lambda reason, n: drops.append((reason, n)))
    return sh


def _spooled_events(spool) -> int:
    return sum(len(open(os.path.join(spool, f)).read().splitlines()) for f in os.listdir(spool)
               if f.endswith(".ndjson"))


def test_deleted_spool_directory_is_recreated_and_lost_events_are_counted(tmp_path, caplog):
    spool, drops = tmp_path / "spool", []
    sh = _down_shipper(spool, drops)
    try:
        for i in range(25):
            sh.put(_item(i))
        assert sh.flush(5) is False                    # exporter down: spooled
        assert _spooled_events(spool) == 25 and drops == []
        shutil.rmtree(spool)                          # a cache cleaner runs
        for i in range(25, 40):
            sh.put(_item(i))
        with caplog.at_level(logging.WARNING, logger="costmeter.sdk.shipper"):
            ok = sh.flush(5)                          # must not raise FileNotFoundError
        assert ok is False
        assert _spooled_events(spool) == 15            # the new batch is kept in the recreated directory
        assert drops == [("spool_deleted", 25)] and sh.stats["dropped"] == 25
        assert "vanished" in caplog.text and "25 spooled event(s) were deleted" in caplog.text
    finally:
        sh._closing = True
        sh.sink.close()


def test_an_unusable_spool_path_drops_with_a_count_and_never_raises(tmp_path, caplog):
    spool, drops = tmp_path / "spool", []
    sh = _down_shipper(spool, drops)
    try:
        shutil.rmtree(spool)
        spool.write_text("not a directory")           # cannot be recreated
        for i in range(12):
            sh.put(_item(i))
        with caplog.at_level(logging.ERROR, logger="costmeter.sdk.shipper"):
            assert sh.flush(5) is False
        assert sh.queued() == 0
        assert sum(n for r, n in drops if r == "spool_unwritable") == 12 and sh.stats["dropped"] == 12
        assert "cannot write to the spool directory" in caplog.text
        assert "spool" in (sh.last_error or "")
    finally:
        sh._closing = True
        sh.sink.close()


def test_a_spool_path_unusable_from_the_start_never_raises_into_the_app(tmp_path):
    spool, drops = tmp_path / "spool", []
    spool.write_text("a file, not a directory")
    sh = _down_shipper(spool, drops)                 # configure() must not raise either
    try:
        for i in range(3):
            sh.put(_item(i))
        assert sh.flush(5) is False
        assert drops == [("spool_unwritable", 3)]
    finally:
        sh._closing = True
        sh.sink.close()
