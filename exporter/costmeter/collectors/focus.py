"""FinOps FOCUS (1.0 to 1.2) cost export files: CSV, gzip CSV and Parquet (with pyarrow).

Every file matched by the source's ``paths`` globs (``**`` recurses) is read
at each pull; ``BilledCost`` is summed by ``ProviderName``, ``ServiceName``
and the UTC day of ``ChargePeriodStart``. The pull covers the requested
days, so a file the cloud's exporter rewrote (month-to-date exports are
overwritten daily) replaces what the old version said. Corrections need no
special case: negative rows and ``ChargeClass=Correction`` rows carry the
``ChargePeriodStart`` of the charge they correct and are summed into it.

A file's parsed totals are cached by (size, mtime) so unchanged files are not
parsed again. Files ending ``.parquet`` need pyarrow (``pip install
costmeter[focus]``); ``.csv.gz`` / ``.gz`` are gzip CSV; anything else is CSV.

``ProviderName`` is mapped to costmeter's provider names: AWS / Amazon Web
Services -> aws, Microsoft -> azure, Google Cloud -> google, Oracle -> oci;
any other name is lower-cased with non-alphanumerics turned into ``_``.
A row whose ``BillingCurrency`` is not USD is an error.
"""
from __future__ import annotations

import csv
import glob
import gzip
import io
import math
import os
import re
from datetime import date, datetime, timezone
from decimal import Decimal
from typing import Any, Iterable

from costmeter.collectors.billing import Pull, PullError

__all__ = ["FocusFiles", "provider_name"]

REQUIRED = ("BilledCost", "ChargePeriodStart", "ServiceName")
PROVIDER_COLUMNS = ("ProviderName", "ServiceProviderName")
_PROVIDERS = {
    "aws": "aws", "amazon web services": "aws", "amazon": "aws",
    "microsoft": "azure", "microsoft azure": "azure", "azure": "azure",
    "google cloud": "google", "google": "google", "google cloud platform": "google", "gcp": "google",
    "oracle": "oci", "oracle cloud infrastructure": "oci", "oci": "oci",
}

Totals = dict[tuple[date, str, str], float]


def provider_name(name: str) -> str:
    key = " ".join(name.lower().split())
    return _PROVIDERS.get(key) or re.sub(r"[^a-z0-9]+", "_", key).strip("_") or "unknown"


def _day(value: Any) -> date:
    if isinstance(value, datetime):
        return (value.astimezone(timezone.utc) if value.tzinfo else value).date()
    if isinstance(value, date):
        return value
    if isinstance(value, str) and len(value) >= 10:
        return date.fromisoformat(value.strip()[:10])
    raise ValueError(f"ChargePeriodStart {value!r} is not a date-time")


def _cost(value: Any) -> float:
    if isinstance(value, (int, float, Decimal)) and not isinstance(value, bool):
        v = float(value)
    elif isinstance(value, str):
        try:
            v = float(value)
        except ValueError:
            raise ValueError(f"BilledCost {value!r} is not a number") from None
    else:
        raise ValueError(f"BilledCost {value!r} is not a number")
    if not math.isfinite(v):
        raise ValueError(f"BilledCost {value!r} is not finite")
    return v


class FocusFiles:
    def __init__(self, cfg: Any):
        self.cfg = cfg
        self._cache: dict[str, tuple[tuple[int, int], Totals]] = {}

    def files(self) -> list[str]:
        found: set[str] = set()
        for pattern in self.cfg.paths:
            found.update(p for p in glob.glob(pattern, recursive=True) if os.path.isfile(p))
        return sorted(found)

    def pull(self, start: date, end: date) -> Pull:
        files = self.files()
        if not files:
            raise PullError(f"no file matches {', '.join(self.cfg.paths)}")
        totals: Totals = {}
        cache = {}
        for path in files:
            try:
                st = os.stat(path)
            except OSError as e:
                raise PullError(f"{path}: {e.strerror}") from None
            stamp = (st.st_size, st.st_mtime_ns)
            hit = self._cache.get(path)
            parsed = hit[1] if hit is not None and hit[0] == stamp else self._parse(path)
            cache[path] = (stamp, parsed)
            for k, v in parsed.items():
                totals[k] = totals.get(k, 0.0) + v
        out = Pull(start, end)
        for (day, provider, service), usd in totals.items():
            if start <= day < end:
                out.add(day, provider, service, usd)
        self._cache = cache          # only after every file was read: a failed pull changes nothing
        out.requests = len(files)
        return out

    def _parse(self, path: str) -> Totals:
        try:
            if path.endswith(".parquet"):
                rows = self._parquet(path)
            else:
                rows = self._csv(path)
            return _sum(path, rows)
        except PullError:
            raise
        except (OSError, EOFError, UnicodeDecodeError, csv.Error, gzip.BadGzipFile) as e:
            raise PullError(f"{path}: cannot read: {type(e).__name__}: {e}") from None

    @staticmethod
    def _csv(path: str) -> Iterable[tuple[int, dict]]:
        with open(path, "rb") as raw:
            data = raw.read()
        if path.endswith(".gz") or data[:2] == b"\x1f\x8b":
            data = gzip.decompress(data)
        text = data.decode("utf-8-sig")
        reader = csv.DictReader(io.StringIO(text, newline=""))
        _check_columns(path, reader.fieldnames or [])
        return ((reader.line_num, row) for row in reader)

    @staticmethod
    def _parquet(path: str) -> Iterable[tuple[int, dict]]:
        try:
            import pyarrow.parquet as pq
        except ImportError:
            raise PullError(f"{path}: reading Parquet needs pyarrow: pip install 'costmeter[focus]'") from None
        try:
            table = pq.read_table(path)
        except Exception as e:       # pyarrow raises its own ArrowInvalid and OSError subclasses
            raise PullError(f"{path}: not a readable Parquet file: {e}") from None
        _check_columns(path, table.column_names)
        keep = [c for c in REQUIRED + PROVIDER_COLUMNS + ("BillingCurrency",) if c in table.column_names]
        return ((i + 1, row) for i, row in enumerate(table.select(keep).to_pylist()))


def _check_columns(path: str, names: list[str]) -> None:
    missing = [c for c in REQUIRED if c not in names]
    if not any(c in names for c in PROVIDER_COLUMNS):
        missing.append("ProviderName")
    if missing:
        raise PullError(f"{path}: not a FOCUS export: missing column(s) {', '.join(missing)}")


def _sum(path: str, rows: Iterable[tuple[int, dict]]) -> Totals:
    out: Totals = {}
    days: dict[Any, date] = {}          # an export repeats a few dozen distinct values per column
    providers: dict[str, str] = {}
    for line, row in rows:
        try:
            currency = row.get("BillingCurrency")
            if currency and currency != "USD" and str(currency).upper() != "USD":
                raise ValueError(f"BillingCurrency is {currency!r}, costmeter reports USD")
            provider = row.get("ProviderName") or row.get("ServiceProviderName")
            if not isinstance(provider, str):
                raise ValueError("ProviderName is empty")
            if provider not in providers:
                providers[provider] = provider_name(provider)
            start = row.get("ChargePeriodStart")
            day = days.get(start)
            if day is None:
                day = days[start] = _day(start)
            k = (day, providers[provider], str(row.get("ServiceName") or "unspecified"))
            out[k] = out.get(k, 0.0) + _cost(row.get("BilledCost"))
        except ValueError as e:
            raise PullError(f"{path}:{line}: {e}") from None
    return out
