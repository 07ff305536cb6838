"""The range of every integer the gateway takes in, from a client or from a scheduler.

Storage and the operating system hold integers of fixed width: SQL ``INTEGER`` columns
(job keys, event ids, exit codes, time limits) are 32 bits on PostgreSQL, ``BIGINT`` and a
file offset (``off_t``) are 64 bits, a uid or gid is 32 bits unsigned. Python's integers are
not, so a value out of these ranges is stopped where it enters: a client's by the API's
validation (a 422 that changes nothing, and the bounds are in the OpenAPI document), a
scheduler's by :func:`reported`, which makes it unknown (None) and says so once.
"""

from __future__ import annotations

import functools
import logging
import re
from datetime import UTC, datetime
from typing import Annotated

from pydantic import BeforeValidator, Field

log = logging.getLogger(__name__)

INT32_MAX = 2**31 - 1
INT32_MIN = -(2**31)
INT64_MAX = 2**63 - 1
#: Job keys, event ids and list cursors are SQL INTEGER keys.
KEY_MAX = INT32_MAX
#: Seconds: a time limit is stored in an SQL INTEGER column (about 68 years), in whole
#: minutes below 2^31 seconds because Slurm counts minutes and wraps beyond that.
SECONDS_MAX = INT32_MAX // 60 * 60
#: Counts of nodes, tasks, CPUs and GPUs (Slurm keeps them in 32 bits).
COUNT_MAX = INT32_MAX
#: Bytes and byte offsets: what a file offset (off_t) and a BIGINT take, as the gateway reports
#: them (a sparse file may claim any size up to this).
BYTES_MAX = INT64_MAX
#: Bytes and byte offsets a client sends: 2^53 - 1 (8 PiB), the largest integer a JSON number
#: holds exactly (a JSON Schema maximum of 2^63 - 1 reads back as 2^63 in a double).
BYTES_ASKED_MAX = 2**53 - 1
#: A uid or gid: 32 bits unsigned, of which the last value means "no change" to chown.
ID_MAX = 2**32 - 2
#: An array task's index (Slurm's MaxArraySize is at most 4000001).
ARRAY_INDEX_MAX = 4_000_000
#: Replicas of one service at once (each is a job holding a node's resources).
REPLICAS_MAX = 64
#: A TCP port.
PORT_MAX = 65535
#: Requests per minute a rate limit allows (a moving window keeps a time per request).
PER_MINUTE_MAX = 10_000
#: Unended invocations a rate limit allows at once (what one worker accepts, queued).
CONCURRENT_MAX = 10_000
#: How long a detached invocation runs on with no client reading it: a day.
GRACE_MAX = 24 * 3600
#: A token's lifetime in seconds: a hundred years, so its expiry is a date any store takes.
LIFETIME_MAX = 100 * 366 * 24 * 3600


def not_boolean(value: object) -> object:
    """JSON's true and false are not numbers, though pydantic's lax mode reads them as 1 and
    0. (Strict mode is no answer: it also refuses 1.0, which JSON Schema counts an integer.)"""
    if isinstance(value, bool):
        raise ValueError("a number is expected, not true or false")
    return value


#: An integer a client sends: a JSON number, never true or false (and the same, or none).
Number = Annotated[int, BeforeValidator(not_boolean)]
MaybeNumber = Annotated[int | None, BeforeValidator(not_boolean)]

_ISO_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")


def iso_only(value: object) -> object:
    """A time a client sends as text is an ISO 8601 date-time, as the schema says, though
    pydantic would also read a number (``0.5``) as seconds since 1970."""
    if isinstance(value, str) and _ISO_DATE.match(value) is None:
        raise ValueError("an ISO 8601 date-time is expected, e.g. 2026-12-03T17:00:00Z")
    return value


def reported(
    value: int | None, low: int, high: int, what: str, job: str | None = None
) -> int | None:
    """``value`` if it is a whole number in ``[low, high]``, else None (unknown), logged
    once per value: a number a scheduler reports never reaches a store or a client unbounded.
    """
    if value is None:
        return None
    if type(value) is int and low <= value <= high:
        return value
    _warn_once(what if job is None else f"the {what} of job {job}", value)
    return None


def reported_epoch(seconds: float | None, what: str) -> datetime | None:
    """The time ``seconds`` after the epoch, or None (unknown) where no date is."""
    if seconds is None:
        return None
    try:
        return datetime.fromtimestamp(seconds, UTC)
    except (OverflowError, OSError, ValueError):
        _warn_once(what, seconds)
        return None


def reported_local(local: datetime, what: str) -> datetime | None:
    """A scheduler's zone-less local time in UTC, or None (unknown) when the shift to UTC
    leaves the calendar (a date at its very beginning or end)."""
    try:
        return local.astimezone(UTC)
    except (OverflowError, ValueError):
        _warn_once(what, local.year)
        return None


def clamped(value: int, low: int, high: int) -> int:
    """``value`` moved into ``[low, high]``: for counts that must stay a number."""
    return min(max(value, low), high)


def _clamp_count(value: object) -> object:
    return clamped(value, 0, INT64_MAX) if type(value) is int else value


#: A number a scheduler reports for the status routes (CPUs, memory, limits): never negative,
#: and moved into the 64-bit range where it is not.
Reported = Annotated[Annotated[int, Field(ge=0, le=INT64_MAX)], BeforeValidator(_clamp_count)]


@functools.lru_cache(maxsize=256)
def _warn_once(what: str, value: object) -> None:
    log.warning("%s %r is out of range: read as unknown", what, value)
