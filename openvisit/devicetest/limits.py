"""How many device-test results one link and one network may post: per-process counters.

The device-test link is the same for every patient of an EHR endpoint (it is printed in the
integration record), so its budget is generous (``devicetest_results_per_token_per_hour``);
one client address gets far fewer (``devicetest_results_per_address_per_hour``). Each is a
token bucket holding an hour's allowance and refilled evenly over the hour, so a burst is
allowed and the sustained rate is the setting. Counters live in the web process: with N
replicas behind a balancer the most a client can post is N times the setting, still bounded.
The table of keys is bounded too (full buckets are forgotten first), so addresses cannot be
used to grow it.
"""

from __future__ import annotations

import math
import time

from openvisit.errors import OpenVisitError
from openvisit.signalling.limits import TokenBucket

MAX_KEYS = 50_000
HOUR = 3600.0


class TooManyResults(OpenVisitError):
    status_code = 429
    code = "devicetest_too_many_results"

    def __init__(self, message: str, *, retry_after: int) -> None:
        super().__init__(message, permanent=False,
                         details={"retry_after_seconds": retry_after})
        self.retry_after = retry_after


class ResultLimiter:
    """Token buckets keyed by ``"token:<id>"`` and ``"address:<key>"``."""

    def __init__(self, *, per_token: int, per_address: int) -> None:
        self.per = {"token": per_token, "address": per_address}
        self._buckets: dict[str, TokenBucket] = {}

    def take(self, kind: str, key: str, *, now: float | None = None) -> int:
        """Spend one post of ``kind`` ("token" or "address"); 0 if allowed, else the seconds
        until one is (for ``Retry-After``)."""
        now = time.monotonic() if now is None else now
        limit = self.per[kind]
        name = f"{kind}:{key}"
        bucket = self._buckets.get(name)
        if bucket is None:
            self._forget(now)
            bucket = self._buckets[name] = TokenBucket(limit, limit / HOUR)
        if bucket.take(now):
            return 0
        return max(1, math.ceil((1.0 - bucket.tokens) / bucket.rate))

    def _forget(self, now: float) -> None:
        if len(self._buckets) < MAX_KEYS:
            return
        for name, bucket in list(self._buckets.items()):
            if bucket.tokens + (now - bucket.stamp) * bucket.rate >= bucket.burst:
                del self._buckets[name]
        while len(self._buckets) >= MAX_KEYS:  # all busy: drop the oldest entries
            del self._buckets[next(iter(self._buckets))]
