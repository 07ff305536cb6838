"""Retention of ended invocations: a chore of the gateway's housekeeping
(:mod:`hpcgate.housekeeping`) forgets those past their age and those beyond each function's
count (see :class:`~hpcgate.config.FunctionsConfig`).

An unended invocation is never forgotten. Each function is pruned on its own and a round
that fails is logged and tried again at the next: one bad function or row never stops
the loop.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from hpcgate.clock import utcnow
from hpcgate.store.functions import InvocationStore

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Retention:
    """How long and how many ended invocations are kept, and how often that is seen to."""

    days: float
    per_function: int
    interval: float


class Pruner:
    """Forgets ended invocations past :class:`Retention`, a round at a time (:meth:`prune`)."""

    def __init__(
        self,
        store: InvocationStore,
        retention: Retention,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self._store = store
        self._retention = retention
        self._clock = clock

    async def prune(self) -> int:
        """One round: how many invocations were forgotten."""
        cutoff = self._clock() - timedelta(days=self._retention.days)
        forgotten = await self._store.forget_ended_before(cutoff)
        keep = self._retention.per_function
        for function_pk in await self._store.crowded(keep):
            try:
                forgotten += await self._store.forget_all_but(function_pk, keep)
            except Exception:  # one function's failure leaves the others' rounds alone
                log.exception("forgetting invocations of function %s failed", function_pk)
        return forgotten
