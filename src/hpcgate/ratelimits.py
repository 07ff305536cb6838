"""Rate limits counted in this gateway's memory: an API key's requests per minute, a
user's requests per minute and streams held at once (``[rate_limits]``), and a
function's calls per minute per caller.

A key's and a function's requests are counted in a moving window of 60 s (the ``limits``
library's moving-window strategy on its in-memory storage): ``per_minute`` requests in any
60 s, and the next is refused until the oldest of them is a minute old. A user's requests,
on every route and with a limit that may be far higher, are counted by a sliding-window
counter of this module's (:class:`_Window`: two counts, whatever the limit, and a few
operations per request, where the library's costs tens of microseconds): its window turns
at each whole minute, the previous minute's count weighing as much as that minute still
overlaps the last 60 s (``window_seconds`` makes that window shorter or longer: every
"minute" of this paragraph is then that many seconds). The counts live in this process
only: two gateways on one database each allow their full rate, and a restarted gateway
starts counting afresh. A user's window unused for two windows is dropped by the
gateway's housekeeping (:meth:`RateLimits.stale_windows`), so the counts kept are those of
recent users only; the library's expire by themselves.

What a limit says to a client goes in the fields of the IETF draft "RateLimit header fields
for HTTP" (draft-ietf-httpapi-ratelimit-headers-11, the current one): ``RateLimit-Policy``
names each policy and its quota (``q``) and window (``w``, seconds) or quota unit (``qu``),
and ``RateLimit`` what is left of it (``r``) and in how many seconds it is whole again
(``t``); several policies are a list in each field. A refusal adds ``Retry-After`` and
names only the policy that refused.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

from limits import RateLimitItemPerMinute
from limits.storage import MemoryStorage
from limits.strategies import MovingWindowRateLimiter

from hpcgate.config import Allowance, RateLimitsConfig
from hpcgate.model.errors import RateLimited
from hpcgate.model.principal import Principal

PER_MINUTE = "per-minute"  # an API key's
CONCURRENT = "concurrent"  # an API key's unended invocations
USER_PER_MINUTE = "user-per-minute"
USER_STREAMS = "user-streams"
FUNCTION_PER_MINUTE = "function-per-minute"
FUNCTION_CONCURRENT = "function-concurrent"
#: When a client refused for a count of things running is told to retry, in seconds.
RETRY_SECONDS = 5


@dataclass(frozen=True, slots=True)
class Quota:
    """Where a caller stands against one policy: ``limit`` in all, ``remaining`` of it, and
    ``reset`` seconds until it is whole again (None: a count of things running, not of time)
    in a window of ``window`` seconds.
    """

    policy: str
    limit: int
    remaining: int
    reset: int | None = None
    window: int = 60

    def policy_item(self) -> str:
        if self.reset is None:
            return f'"{self.policy}";q={self.limit};qu="concurrent-requests"'
        return f'"{self.policy}";q={self.limit};w={self.window}'

    def left_item(self) -> str:
        if self.reset is None:
            return f'"{self.policy}";r={self.remaining}'
        return f'"{self.policy}";r={self.remaining};t={self.reset}'

    def headers(self) -> dict[str, str]:
        """The draft's two fields for this policy."""
        return fields([self])

    def refused(self, detail: str, retry_after: float) -> RateLimited:
        return RateLimited(detail, retry_after=retry_after, headers=self.headers())


def fields(quotas: Iterable[Quota]) -> dict[str, str]:
    """The draft's two fields for these policies (a list in each)."""
    listed = list(quotas)
    return {
        "RateLimit-Policy": ", ".join(q.policy_item() for q in listed),
        "RateLimit": ", ".join(q.left_item() for q in listed),
    }


def _counted(
    limiter: MovingWindowRateLimiter, policy: str, allowed: int, key: str
) -> tuple[bool, Quota]:
    """One request hit on ``key``'s window of ``allowed`` a minute; whether it was taken."""
    item = RateLimitItemPerMinute(allowed)
    taken = limiter.hit(item, key)
    stats = limiter.get_window_stats(item, key)
    reset = max(0, math.ceil(stats.reset_time - time.time()))
    return taken, Quota(policy, allowed, stats.remaining, reset)


class _Window:
    """One user's requests: this minute's and the previous minute's (a "minute" is
    ``length`` seconds: the ``window_seconds`` of ``[rate_limits]``)."""

    __slots__ = ("current", "length", "minute", "previous")

    def __init__(self, minute: int, length: int = 60) -> None:
        self.minute, self.current, self.previous = minute, 0, 0
        self.length = length

    def hit(self, allowed: int, now: float, take: bool = True) -> tuple[bool, Quota]:
        """Count one request if the weighted count leaves room for it (``take``: else only
        say whether there is room); whether there was."""
        length = float(self.length)
        minute, into = divmod(now, length)
        if minute != self.minute:
            recent = minute - self.minute == 1
            self.previous, self.current = (self.current if recent else 0), 0
            self.minute = int(minute)
        weighted = math.floor(self.previous * (length - into) / length) + self.current
        reset = max(1, math.ceil(length - into))
        if weighted + 1 > allowed:
            return False, Quota(USER_PER_MINUTE, allowed, 0, reset, self.length)
        self.current += take
        left = allowed - weighted - 1
        return True, Quota(USER_PER_MINUTE, allowed, left, reset, self.length)


class RateLimits:
    """Admits requests within the limits of their key, their user and the function they
    call (a user with no ``[rate_limits]``: always)."""

    def __init__(self, config: RateLimitsConfig | None = None) -> None:
        config = config or RateLimitsConfig()
        # plain dicts, read on every request (a pydantic model's private attributes are slow)
        self._users = {name: config.of(name) for name in config.users}
        self._default = config.defaults
        self._length = config.window_seconds  # of a user's requests-per-minute window
        self._moving = MovingWindowRateLimiter(MemoryStorage())
        self._windows: dict[str, _Window] = {}
        self._streams: Counter[str] = Counter()  # streams each user holds now

    def stale_windows(self, now: float | None = None) -> list[str]:
        """The users whose window turned more than once since their last request: their
        counts weigh nothing any more (:meth:`forget_stale` drops them)."""
        minute = (time.time() if now is None else now) // self._length
        return [user for user, window in list(self._windows.items()) if window.minute < minute - 1]

    def forget_stale(self, users: Iterable[str], now: float | None = None) -> int:
        """Drop those of ``users``' windows that are still stale (a request since renews
        one); how many. A dropped window is made afresh by its user's next request."""
        minute = (time.time() if now is None else now) // self._length
        dropped = 0
        for user in users:
            window = self._windows.get(user)
            if window is not None and window.minute < minute - 1:
                del self._windows[user]
                dropped += 1
        return dropped

    def allowance(self, user: str) -> Allowance:
        """What ``user`` may do (its override in ``[rate_limits.users]``, else the defaults)."""
        return self._users.get(user, self._default)

    def admit(self, who: Principal) -> list[Quota]:
        """Count one request of ``who``; the quotas it counted against (empty: no limit),
        or :class:`RateLimited` when a minute's requests are spent. A request refused by
        its key's limit does not count for its user, nor one its user's refuses for its key."""
        quotas = []
        per_user = self.allowance(who.user).requests_per_minute
        window, now = None, 0.0
        if per_user is not None:
            now = time.time()
            window = self._windows.get(who.user)
            if window is None:
                length = self._length
                window = self._windows[who.user] = _Window(int(now // length), length)
            room, quota = window.hit(per_user, now, take=False)
            if not room:
                detail = f"user {who.user!r} may make {per_user} requests {_per(window.length)}"
                raise _late(quota, detail)
        if who.restriction is not None and (allowed := who.restriction.per_minute) is not None:
            taken, quota = _counted(self._moving, PER_MINUTE, allowed, who.token_id)
            if not taken:
                raise _late(quota, f"this API key may make {allowed} requests a minute")
            quotas.append(quota)
        if window is not None and per_user is not None:
            quotas.append(window.hit(per_user, now)[1])
        return quotas

    def admit_call(self, caller: str, function: str, allowed: int) -> Quota:
        """Count one call of ``caller`` (a user or a key) to ``function`` (its id), which
        allows each caller ``allowed`` a minute."""
        taken, quota = _counted(self._moving, FUNCTION_PER_MINUTE, allowed, f"{function}/{caller}")
        if not taken:
            raise _late(quota, f"this function takes {allowed} calls a minute from each caller")
        return quota

    def open_stream(self, user: str) -> Quota | None:
        """Take one of ``user``'s streams (None: it has no limit); :meth:`close_stream` gives
        it back. RateLimited when it holds all it may."""
        allowed = self.allowance(user).concurrent_streams
        if allowed is None:
            return None
        held = self._streams[user]
        if held >= allowed:
            quota = Quota(USER_STREAMS, allowed, 0)
            detail = f"user {user!r} may hold {allowed} streams at once: it holds {held}"
            raise quota.refused(detail, RETRY_SECONDS)
        self._streams[user] = held + 1
        return Quota(USER_STREAMS, allowed, allowed - held - 1)

    def close_stream(self, user: str) -> None:
        self._streams[user] -= 1
        if self._streams[user] <= 0:
            del self._streams[user]

    def streams(self, user: str) -> int:
        """How many streams ``user`` holds now."""
        return self._streams[user]


#: Windows dropped at once by :func:`prune_windows` before requests are served again.
PRUNE_BATCH = 1000


async def prune_windows(
    limits: RateLimits, batch: int = PRUNE_BATCH, now: float | None = None
) -> int:
    """One round of the housekeeping: drop the stale windows, ``batch`` at a time; how many."""
    stale = limits.stale_windows(now)
    dropped = 0
    for start in range(0, len(stale), batch):
        dropped += limits.forget_stale(stale[start : start + batch], now)
        await asyncio.sleep(0)
    return dropped


def _per(seconds: int) -> str:
    """How a window of ``seconds`` reads after "N requests"."""
    return "a minute" if seconds == 60 else f"in {seconds} s"


def _late(quota: Quota, detail: str) -> RateLimited:
    """The refusal of a spent window: retry when it is whole again."""
    reset = quota.reset or 0
    return quota.refused(f"{detail}: retry in {reset} s", max(reset, 1))
