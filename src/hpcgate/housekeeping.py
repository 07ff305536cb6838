"""The gateway's housekeeping: one loop that runs each chore (forgetting ended invocations,
old consent requests, unused rate-limit windows) every so often.

A chore is one bounded round (it does a backlog in later rounds) and says how much it
did. A round that fails is logged and tried again at the chore's next turn: one chore's
failure never stops the loop or the other chores. A ``shared`` chore works on the
database all gateways share, so it runs only on the gateway that leads (``leads``); the
others (this process's memory) run on every gateway.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Chore:
    """``run`` (one round: how many things it forgot) every ``every`` seconds."""

    name: str
    run: Callable[[], Awaitable[int]]
    every: float
    shared: bool = True


def always() -> bool:
    return True


class Housekeeping:
    """Runs its chores in turn; :meth:`start` starts the loop, :meth:`stop` ends it."""

    def __init__(self, chores: Sequence[Chore], leads: Callable[[], bool] = always) -> None:
        self.chores = list(chores)
        self._leads = leads
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        due = [0.0] * len(self.chores)
        while True:
            for index, chore in enumerate(self.chores):
                if due[index] <= time.monotonic():
                    await self.do(chore)
                    due[index] = time.monotonic() + chore.every
            await asyncio.sleep(max(0.0, min(due, default=60.0) - time.monotonic()))

    async def do(self, chore: Chore) -> int:
        """One round of ``chore`` (none on a gateway that does not lead, if it is shared);
        how much it did, 0 if it failed (logged)."""
        if chore.shared and not self._leads():
            return 0
        try:
            done = await chore.run()
        except Exception:  # the database away for a while: the next round tries again
            log.exception("housekeeping: %s failed", chore.name)
            return 0
        if done:
            log.info("housekeeping: %s: %d", chore.name, done)
        return done
