"""AWS Cost Explorer ``GetCostAndUsage`` through boto3 (``pip install costmeter[aws]``).

Daily granularity, grouped by the ``SERVICE`` dimension, the configured metric
(``UnblendedCost`` by default). boto3 has no paginator for this call, so
``NextPageToken`` is followed by hand. Cost Explorer bills $0.01 for every
request; each one (retries included) is added to
``costmeter_billing_api_cost_usd_total``. Credentials come from the usual AWS
chain (environment, shared files, instance or task role). botocore's own
retries are off so that every request is counted; throttling and server
errors are retried here with backoff and jitter.
"""
from __future__ import annotations

import math
import random
from datetime import date
from typing import Any, Callable

from costmeter.collectors.billing import AuthError, Pull, PullError

__all__ = ["CostExplorer", "REQUEST_USD"]

REQUEST_USD = 0.01
ATTEMPTS = 4
MAX_PAGES = 1000
_AUTH = {"AccessDeniedException", "UnrecognizedClientException", "InvalidClientTokenId",
         "ExpiredTokenException", "AuthFailure", "SignatureDoesNotMatch"}
_RETRY = {"ThrottlingException", "LimitExceededException", "RequestLimitExceeded", "ServiceUnavailableException",
          "InternalServerError", "InternalFailure"}


class _Failed(PullError):
    api_cost_usd = 0.0


class CostExplorer:
    provider = "aws"

    def __init__(self, cfg: Any, sleep: Callable[[float], None]):
        self.cfg = cfg
        self.sleep = sleep
        self._client = None

    def _ce(self):
        if self._client is None:
            try:
                import boto3.session
                from botocore.config import Config
            except ImportError:
                raise PullError("boto3 is not installed: pip install 'costmeter[aws]'") from None
            # An own session: boto3's default one is shared with the host program and caches credentials.
            self._client = boto3.session.Session().client(
                "ce", region_name=self.cfg.region or "us-east-1", endpoint_url=self.cfg.endpoint_url,
                config=Config(retries={"total_max_attempts": 1}, connect_timeout=10, read_timeout=60))
        return self._client

    def pull(self, start: date, end: date) -> Pull:
        out = Pull(start, end)
        args = {"TimePeriod": {"Start": start.isoformat(), "End": end.isoformat()}, "Granularity": "DAILY",
                "Metrics": [self.cfg.metric], "GroupBy": [{"Type": "DIMENSION", "Key": "SERVICE"}]}
        token, seen = None, set()
        try:
            for _ in range(MAX_PAGES):
                page = self._call(dict(args, NextPageToken=token) if token else args, out)
                self._page(page, out)
                token = page.get("NextPageToken")
                if not token:
                    break
                if not isinstance(token, str) or token in seen:
                    raise PullError(f"GetCostAndUsage: NextPageToken {token!r} repeats or is not a string")
                seen.add(token)
            else:
                raise PullError(f"GetCostAndUsage: more than {MAX_PAGES} pages")
        except PullError as e:
            err = _Failed(str(e)) if not isinstance(e, AuthError) else e
            err.api_cost_usd = out.api_cost_usd
            raise err from None
        return out

    def _call(self, kwargs: dict, out: Pull) -> dict:
        from botocore.exceptions import (BotoCoreError, ClientError, ConnectionError as BotoConnectionError,
                                         NoCredentialsError, PartialCredentialsError)
        ce = self._ce()
        last = ""
        for attempt in range(ATTEMPTS):
            out.requests += 1
            out.api_cost_usd += REQUEST_USD
            try:
                return ce.get_cost_and_usage(**kwargs)
            except (NoCredentialsError, PartialCredentialsError) as e:
                raise AuthError(f"GetCostAndUsage: no usable AWS credentials in the usual chain "
                                f"(AWS_ACCESS_KEY_ID / AWS_PROFILE / instance role): {type(e).__name__}") from None
            except ClientError as e:
                code = e.response.get("Error", {}).get("Code", "")
                status = e.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
                msg = e.response.get("Error", {}).get("Message", "")
                if code in _AUTH or status in (401, 403):
                    raise AuthError(f"GetCostAndUsage refused the AWS credentials ({code or status}): {msg}; "
                                    "they need ce:GetCostAndUsage") from None
                if code not in _RETRY and not status >= 500:
                    raise PullError(f"GetCostAndUsage failed: {code}: {msg}") from None
                last = f"GetCostAndUsage: {code or status}"
            except (BotoConnectionError, BotoCoreError) as e:
                last = f"GetCostAndUsage: {type(e).__name__}"
            if attempt + 1 < ATTEMPTS:
                self.sleep(random.uniform(0, min(30.0, 2.0 ** attempt)))
        raise PullError(f"{last}; gave up after {ATTEMPTS} attempts until the next interval")

    def _page(self, page: Any, out: Pull) -> None:
        metric = self.cfg.metric
        rbt = page.get("ResultsByTime") if isinstance(page, dict) else None
        if not isinstance(rbt, list):
            raise PullError("GetCostAndUsage: the answer has no ResultsByTime list")
        for i, r in enumerate(rbt):
            try:
                day = date.fromisoformat(r["TimePeriod"]["Start"][:10])
                groups = r.get("Groups") or []
                for g in groups:
                    service = g["Keys"][0]
                    m = g["Metrics"][metric]
                    amount = float(m["Amount"])
                    if m.get("Unit", "USD") != "USD":
                        raise PullError(f"GetCostAndUsage: ResultsByTime[{i}] is in {m.get('Unit')!r}, "
                                        "costmeter reports USD")
                    if not math.isfinite(amount) or not isinstance(service, str) or not service:
                        raise ValueError("bad amount or service")
                    out.add(day, self.provider, service, amount)
            except PullError:
                raise
            except (KeyError, IndexError, TypeError, ValueError) as e:
                raise PullError(f"GetCostAndUsage: ResultsByTime[{i}] is malformed ({type(e).__name__}: {e})") \
                    from None
