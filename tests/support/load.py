"""Steady streamed load on a service, for the fault tests: N threads, each sending one
streamed request through the proxy after another, each answer checked whole."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import httpx

#: The error of an answer that ended as if whole (a 200 with its last chunk) but lacks
#: chunks: a failure the caller could not see.
SHORT = "an answer cut short that ended as if whole"
#: Chunks of each streamed request, and the seconds between them (the test backend's
#: ``/stream``): each request is in flight for about CHUNKS * DELAY seconds.
CHUNKS = 5
DELAY = 0.1


@dataclass(frozen=True, slots=True)
class Outcome:
    """One request: when it started and ended, the backend's pid, and what went wrong."""

    started: float
    ended: float
    pid: int | None
    error: str | None


@dataclass
class Load:
    """The outcomes so far, in the order the requests ended."""

    outcomes: list[Outcome] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)

    def failed(self) -> list[Outcome]:
        return [o for o in self.outcomes if o.error is not None]

    def unseen(self) -> list[Outcome]:
        """The failures that the caller could not have told from a success."""
        return [o for o in self.failed() if (o.error or "").startswith(SHORT)]

    def served_by(self, pid: int) -> list[Outcome]:
        return [o for o in self.outcomes if o.pid == pid]

    def wait_for(self, count: int, timeout: float = 30) -> None:
        """Until ``count`` requests have ended."""
        deadline = time.monotonic() + timeout
        while len(self.outcomes) < count:
            assert time.monotonic() < deadline, f"only {len(self.outcomes)} requests ended"
            time.sleep(0.05)


def _one(client: httpx.Client, url: str) -> Outcome:
    """One streamed request, failed unless every chunk came, in order, from one backend."""
    started = time.monotonic()
    lines: list[str] = []
    try:
        params = {"n": CHUNKS, "delay": DELAY}
        with client.stream("GET", url, params=params) as answer:
            if answer.status_code != 200:
                error = f"{answer.status_code}: {answer.read()[:300]!r}"
                return Outcome(started, time.monotonic(), None, error)
            lines = list(answer.iter_lines())
    except httpx.HTTPError as exc:
        return Outcome(started, time.monotonic(), None, f"{type(exc).__name__}: {exc}")
    return _checked(started, lines)


def _checked(started: float, lines: list[str]) -> Outcome:
    words = [line.split() for line in lines]
    pids = {w[3] for w in words if len(w) > 3}
    whole = [w[:2] for w in words] == [["chunk", str(i)] for i in range(CHUNKS)]
    if not whole or len(pids) != 1:
        return Outcome(started, time.monotonic(), None, f"{SHORT}: {lines}")
    return Outcome(started, time.monotonic(), int(pids.pop()), None)


def _worker(base_url: str, token: str, url: str, load: Load, pause: float) -> None:
    headers = {"Authorization": f"Bearer {token}"}
    with httpx.Client(base_url=base_url, headers=headers, timeout=60) as client:
        while not load.stop.wait(pause):
            load.outcomes.append(_one(client, url))


@contextmanager
def streamed_load(
    base_url: str, token: str, url: str, streams: int, pause: float = 0.0
) -> Iterator[Load]:
    """``streams`` requests at once to ``url``, one after another on each (``pause``
    seconds apart), until the block ends (the requests running then finish and count)."""
    load = Load()
    workers = [
        threading.Thread(target=_worker, args=(base_url, token, url, load, pause), daemon=True)
        for _ in range(streams)
    ]
    for worker in workers:
        worker.start()
    try:
        yield load
    finally:
        load.stop.set()
        for worker in workers:
            worker.join(timeout=120)
