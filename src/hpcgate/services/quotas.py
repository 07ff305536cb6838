"""LLM tokens per day (``[rate_limits] llm_tokens_per_day``): a user whose ``/v1`` answers
today (UTC) reported that many prompt and completion tokens is refused (429) until the day
turns; an answer already running is never cut (its tokens count when it ends, and may take
the day past the quota).

The count is kept in this process: read once per user and day from the usage the store
holds (so a restarted gateway, or another one on the same database, starts from what was
recorded), then added to as this gateway's answers end. What other gateways count after
that first read is not seen here until the next day: each gateway holds its own count.
"""

from __future__ import annotations

import math
from datetime import date, datetime, timedelta

from hpcgate.clock import utcnow
from hpcgate.model.principal import Principal
from hpcgate.model.usage import Tokens
from hpcgate.ratelimits import Quota, RateLimits
from hpcgate.store.usage import UsageFilter, UsageStore

TOKENS_PER_DAY = "llm-tokens-per-day"
DAY_SECONDS = 86400
#: Rows one user's day can hold: one per service, model and hour.
READ_MAX = 100_000


def _midnight(moment: datetime) -> datetime:
    return moment.replace(hour=0, minute=0, second=0, microsecond=0)


class TokenQuota:
    """Each user's tokens of the day against its ``llm_tokens_per_day``."""

    def __init__(self, limits: RateLimits, store: UsageStore) -> None:
        self._limits = limits
        self._store = store
        self._day: date | None = None
        self._used: dict[str, int] = {}  # the users with a quota, once read

    async def admit(self, who: Principal) -> Quota | None:
        """Where ``who`` stands (None: no quota); RateLimited when its day is spent."""
        allowed = self._limits.allowance(who.user).llm_tokens_per_day
        if allowed is None:
            return None
        now = utcnow()
        used = await self._used_today(who.user, now)
        turn = _midnight(now) + timedelta(days=1)
        reset = max(1, math.ceil((turn - now).total_seconds()))
        quota = Quota(TOKENS_PER_DAY, allowed, max(0, allowed - used), reset, DAY_SECONDS)
        if used >= allowed:
            detail = (
                f"user {who.user!r} has used {used} of its {allowed} LLM tokens today (UTC):"
                f" retry in {reset} s, when the day turns"
            )
            raise quota.refused(detail, reset)
        return quota

    def spend(self, user: str, tokens: Tokens) -> None:
        """Count an ended answer's tokens (for a user whose day has been read)."""
        self._turn(utcnow())
        if user in self._used:
            self._used[user] += tokens.prompt + tokens.completion

    def _turn(self, now: datetime) -> None:
        if self._day != now.date():
            self._day, self._used = now.date(), {}

    async def _used_today(self, user: str, now: datetime) -> int:
        self._turn(now)
        if user not in self._used:
            sums = await self._store.sums(UsageFilter(user=user, since=_midnight(now)), READ_MAX)
            recorded = sum(s.prompt_tokens + s.completion_tokens for s in sums)
            self._turn(utcnow())
            self._used.setdefault(user, recorded)  # another request may have read it first
        return self._used[user]
