"""FOCUS export files from two clouds (tests/fixtures/focus: an AWS CSV and an Azure gzip CSV, FOCUS 1.0
columns), Parquet through pyarrow, corrections, and files rewritten by the cloud's exporter."""
from __future__ import annotations

import os
import shutil
from datetime import datetime, timezone

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest

from costmeter.collectors.billing import BillingScheduler
from costmeter.collectors.focus import provider_name
from costmeter.config.billing import BillingConfig
from costmeter.config.loader import loads

FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures", "focus")
NOW = datetime(2026, 11, 20, 12, 0, tzinfo=timezone.utc).timestamp()

AWS = {("aws", "Amazon Elastic Compute Cloud"): 22.40,     # 12.40 x 2 - 2.00 credit - 0.40 correction
       ("aws", "Amazon Relational Database Service"): 3.10,
       ("aws", "Amazon ElastiCache"): 0.75, ("aws", "Elastic Load Balancing"): 0.54}   # October's $99 left out
AZURE = {("azure", "Virtual Machines"): 7.0,                # 8.064 - 1.064 correction
         ("azure", "Azure Database for PostgreSQL"): 4.20, ("azure", "Azure Cache for Redis"): 1.30,
         ("azure", "Load Balancer"): 0.60}


def scheduler(*paths: str) -> BillingScheduler:
    doc = loads("billing: {sources: [{name: exports, type: focus, paths: %s}]}" % list(paths))
    return BillingScheduler(BillingConfig.from_yaml(doc, ("billing",), doc.data["billing"]), clock=lambda: NOW)


def billed(s: BillingScheduler) -> dict:
    return {k: round(v, 6) for k, v in s.snapshot()[0]["billed"].items()}


def test_two_clouds_csv_and_gzip_csv_with_credits_and_corrections():
    s = scheduler(os.path.join(FIXTURES, "*.csv"), os.path.join(FIXTURES, "**", "*.csv.gz"))
    assert s.pull("exports")
    assert billed(s) == {**AWS, **AZURE}
    assert s.snapshot()[0]["up"] == 1.0


def test_parquet_reads_the_same(tmp_path):
    table = pacsv.read_csv(os.path.join(FIXTURES, "aws-focus-1.0-2026-11.csv"))
    assert pa.types.is_timestamp(table.schema.field("ChargePeriodStart").type)   # a real timestamp column
    pq.write_table(table, tmp_path / "part-0.parquet")
    s = scheduler(str(tmp_path / "*.parquet"))
    assert s.pull("exports")
    assert billed(s) == AWS


def test_a_rewritten_file_is_read_again_and_replaces_what_it_said(tmp_path):
    path = tmp_path / "exports" / "BILLING_PERIOD=2026-11" / "focus-00001.csv"
    path.parent.mkdir(parents=True)
    shutil.copy(os.path.join(FIXTURES, "aws-focus-1.0-2026-11.csv"), path)
    s = scheduler(str(tmp_path / "exports" / "**" / "*.csv"))
    assert s.pull("exports")
    assert billed(s) == AWS
    # The cloud rewrites the month-to-date export: RDS revised from 3.10 to 2.90, a new day of EC2.
    text = path.read_text().replace(",3.10,", ",2.90,", 1)
    text += text.splitlines()[2].replace("2026-11-03T00:00:00Z,2026-11-02T00:00:00Z",
                                         "2026-11-04T00:00:00Z,2026-11-03T00:00:00Z") + "\n"
    path.write_text(text)
    os.utime(path, ns=(os.stat(path).st_atime_ns, os.stat(path).st_mtime_ns + 10**9))
    assert s.pull("exports")
    want = dict(AWS)
    want[("aws", "Amazon Relational Database Service")] = 2.90
    want[("aws", "Amazon Elastic Compute Cloud")] = round(22.40 + 12.40, 6)
    assert billed(s) == want
    assert s.pull("exports")          # unchanged: the same, never added twice
    assert billed(s) == want
    # The cloud replaces the export by a file with another name: the old one is gone.
    path.rename(path.with_name("focus-00002.csv"))
    assert s.pull("exports")
    assert billed(s) == want


def _bad(tmp_path, text: str):
    good = tmp_path / "good.csv"
    shutil.copy(os.path.join(FIXTURES, "aws-focus-1.0-2026-11.csv"), good)
    s = scheduler(str(tmp_path / "*.csv"))
    assert s.pull("exports")
    (tmp_path / "later.csv").write_text(text)
    return s


@pytest.mark.parametrize("text,error", [
    ("ProviderName,ServiceName,ChargePeriodStart\nAWS,EC2,2026-11-02T00:00:00Z\n", "missing column(s) BilledCost"),
    ("BilledCost,ProviderName,ServiceName,ChargePeriodStart\n1.0,AWS,EC2,2026-11-02T00:00:00Z\n"
     "abc,AWS,EC2,2026-11-02T00:00:00Z\n", "later.csv:3: BilledCost 'abc' is not a number"),
    ("BilledCost,ProviderName,ServiceName,ChargePeriodStart\n1.0,AWS,EC2,yesterday\n", "later.csv:2:"),
    ("BilledCost,BillingCurrency,ProviderName,ServiceName,ChargePeriodStart\n1.0,EUR,AWS,EC2,2026-11-02\n",
     "BillingCurrency is 'EUR'"),
])
def test_a_bad_file_is_an_error_and_nothing_is_replaced(tmp_path, caplog, text, error):
    s = _bad(tmp_path, text)
    assert not s.pull("exports")
    assert billed(s) == AWS
    assert s.snapshot()[0]["up"] == 0.0
    assert error in caplog.text


def test_no_matching_file_is_an_error(tmp_path, caplog):
    s = scheduler(str(tmp_path / "*.csv"))
    assert not s.pull("exports")
    assert "no file matches" in caplog.text


def test_provider_names():
    assert [provider_name(n) for n in ("AWS", "Amazon Web Services", "Microsoft", "Google Cloud", "Oracle",
                                       "Alibaba Cloud")] == ["aws", "aws", "azure", "google", "oci", "alibaba_cloud"]
