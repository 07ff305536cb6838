"""The gateway's one wall clock: timezone-aware UTC, so stored and compared times agree.

It lives on its own, below everything, because services, the store and the cluster's
health all stamp times; none of them should import another layer to read the clock.
"""

from __future__ import annotations

from datetime import UTC, datetime


def utcnow() -> datetime:
    """Now, in UTC, timezone-aware (naive and aware times cannot be compared)."""
    return datetime.now(UTC)
