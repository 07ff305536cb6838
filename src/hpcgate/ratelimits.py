"""Rate limits: requests per minute of an API key, counted in this gateway's memory.

Each key's requests are counted in a moving window of 60 s (the ``limits`` library's
moving-window strategy on its in-memory storage): a key may make ``per_minute`` requests in
any 60 s, and the next is refused until the oldest of them is a minute old. The counts live
in this process only: two gateways on one database each allow a key its full rate, and a
restarted gateway starts counting afresh.

What a limit says to a client goes in the fields of the IETF draft "RateLimit header fields
for HTTP" (draft-ietf-httpapi-ratelimit-headers-11, the current one): ``RateLimit-Policy``
names the policy and its quota (``q``) and window (``w``, seconds) or quota unit (``qu``),
and ``RateLimit`` what is left of it (``r``) and in how many seconds it is whole again
(``t``). A refusal adds ``Retry-After``.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

from limits import RateLimitItemPerMinute
from limits.storage import MemoryStorage
from limits.strategies import MovingWindowRateLimiter

from hpcgate.model.errors import RateLimited
from hpcgate.model.principal import Principal

PER_MINUTE = "per-minute"
CONCURRENT = "concurrent"


@dataclass(frozen=True, slots=True)
class Quota:
    """Where a caller stands against one policy: ``limit`` in all, ``remaining`` of it, and
    ``reset`` seconds until it is whole again (None: a count of things running, not of time).
    """

    policy: str
    limit: int
    remaining: int
    reset: int | None = None

    def headers(self) -> dict[str, str]:
        """The draft's two fields for this policy."""
        if self.reset is None:
            policy = f'"{self.policy}";q={self.limit};qu="concurrent-requests"'
            return {"RateLimit-Policy": policy, "RateLimit": f'"{self.policy}";r={self.remaining}'}
        return {
            "RateLimit-Policy": f'"{self.policy}";q={self.limit};w=60',
            "RateLimit": f'"{self.policy}";r={self.remaining};t={self.reset}',
        }

    def refused(self, detail: str, retry_after: float) -> RateLimited:
        return RateLimited(detail, retry_after=retry_after, headers=self.headers())


class RateLimits:
    """Admits a key's requests within its requests per minute (a full token: always)."""

    def __init__(self) -> None:
        self._limiter = MovingWindowRateLimiter(MemoryStorage())

    def admit(self, who: Principal) -> Quota | None:
        """Count one request of ``who``; its quota after it (None: no limit), or
        :class:`RateLimited` (counted as nothing) when the minute's requests are spent."""
        allowed = who.restriction.per_minute if who.restriction is not None else None
        if allowed is None:
            return None
        item = RateLimitItemPerMinute(allowed)
        taken = self._limiter.hit(item, who.token_id)
        stats = self._limiter.get_window_stats(item, who.token_id)
        reset = max(0, math.ceil(stats.reset_time - time.time()))
        quota = Quota(PER_MINUTE, allowed, stats.remaining, reset)
        if not taken:
            detail = f"this API key may make {allowed} requests a minute: retry in {reset} s"
            raise quota.refused(detail, max(reset, 1))
        return quota
