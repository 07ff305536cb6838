"""Batch jobs as :mod:`concurrent.futures` futures: :class:`Executor`.

::

    with hpcgate.Client() as hpc, hpcgate.Executor(hpc, "cluster") as run:
        future = run.submit("#!/bin/bash\\nhostname\\n")   # a JobFuture: Future[Job]
        jobs = list(run.map(specs))                         # finished jobs, in order
        for done in concurrent.futures.as_completed([future, ...]): ...

The executor's one background thread sends the submits (each with an Idempotency-Key of
its own, so a resent submit never makes two jobs) and watches every job in flight with one
listing of the live jobs per poll interval, however many there are; a job missing from
the listing has ended, and one read of it gets its final record. Trouble reaching the
gateway (no connection, 429, 5xx) is waited out with a growing pause. Once submits have
kept failing for ``give_up_after`` seconds, the futures waiting to be sent fail with the
last error; once polls have, the futures in flight do.
"""

from __future__ import annotations

import concurrent.futures
import logging
import threading
import time
import uuid
from collections import deque
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Final, Literal, TypeAlias

from hpcgate.client._clients import Client
from hpcgate.client._errors import ClientError, GatewayUnreachable, JobFailed, RateLimited
from hpcgate.model.errors import (
    Conflict,
    HpcgateError,
    IdempotencyInProgress,
    NotFound,
    NotImplementedByScheduler,
)
from hpcgate.model.jobs import Job, JobSpec, JobState

log = logging.getLogger("hpcgate.client")

Spec: TypeAlias = JobSpec | Mapping[str, Any] | str
LIVE = [state for state in JobState if not state.terminal]
POLL: Final = "poll"
MAX_PAUSE = 60.0  # the longest wait between tries while the gateway is in trouble


@dataclass
class Trouble:
    """Passing errors of one kind of request, in a row: since when, and how many."""

    since: float | None = None
    count: int = 0

    def note(self, now: float) -> float:
        """One more; how long the trouble has lasted."""
        if self.since is None:
            self.since = now
        self.count += 1
        return now - self.since

    def clear(self) -> None:
        self.since = None
        self.count = 0


class JobFuture(concurrent.futures.Future[Job]):
    """The future of one job. Its result is the finished :class:`Job` (state COMPLETED);
    a job that ended otherwise raises :class:`JobFailed`.

    ``job`` is the job's last record seen: None until the gateway has accepted the submit,
    then updated at each poll. :meth:`cancel` also cancels the job on the gateway, whether
    it is pending or running there; it returns False when the job had already ended or the
    gateway could not be asked.
    """

    def __init__(self, executor: Executor, spec: JobSpec) -> None:
        super().__init__()
        self.spec = spec
        self.job: Job | None = None
        self.idempotency_key = uuid.uuid4().hex
        self._executor = executor
        self._cancel_requested = False  # before the job existed: its sender cancels it
        self._cancelling = threading.RLock()

    def cancel(self) -> bool:
        return self._executor._cancel(self)

    def _cancel_here(self) -> bool:
        """Mark the future cancelled and wake ``wait()``/``as_completed()``; no request."""
        with self._cancelling:
            if self.cancelled():
                return True
            if not super().cancel():
                return False
            self.set_running_or_notify_cancel()  # CANCELLED: tells the waiters
            return True


class Executor(concurrent.futures.Executor):
    """Runs batch jobs on one system of the gateway as futures.

    :meth:`submit` takes a job, not a function: a :class:`JobSpec`, a mapping of its fields
    or a script's text, and returns a :class:`JobFuture`. :meth:`map` takes an iterable of
    them and yields the finished jobs in order. ``concurrent.futures.wait`` and
    ``as_completed`` work on the futures as on any others.

    ``poll`` is the seconds between two looks at the jobs in flight; ``max_in_flight``
    bounds the jobs submitted and not yet ended (the others wait here, in order; None: no
    bound); ``give_up_after`` is how long, in seconds, trouble reaching the gateway is
    waited out before the pending futures fail with it. The client must stay open while
    the executor runs; :meth:`shutdown` (or leaving a ``with`` block) ends it.
    """

    def __init__(
        self,
        client: Client,
        system: str,
        *,
        poll: float = 2.0,
        max_in_flight: int | None = None,
        give_up_after: float = 300.0,
    ) -> None:
        if poll <= 0:
            raise ValueError("poll must be a positive number of seconds")
        if max_in_flight is not None and max_in_flight < 1:
            raise ValueError("max_in_flight must be at least 1 (or None: no bound)")
        self.client = client
        self.system = system
        self.poll = poll
        self.max_in_flight = max_in_flight
        self.give_up_after = give_up_after
        self._lock = threading.Condition()
        self._queue: deque[JobFuture] = deque()  # not yet sent
        self._sending: JobFuture | None = None
        self._in_flight: dict[str, JobFuture] = {}  # job id -> future; whoever pops settles
        self._next_poll = 0.0
        self._resume_at = 0.0  # while in trouble: no request before this
        self._sending_trouble = Trouble()
        self._polling_trouble = Trouble()
        self._shutdown = False
        self._thread: threading.Thread | None = None

    def submit(self, spec: Spec, /) -> JobFuture:  # type: ignore[override]
        """Submit one job; the future resolves when it has ended.

        Overrides ``submit(fn, *args)`` with a job in place of a function, as Globus
        Compute's executor does. A malformed spec raises here (pydantic's
        ``ValidationError``); what the gateway refuses becomes the future's exception.
        """
        future = JobFuture(self, as_spec(spec))
        with self._lock:
            if self._shutdown:
                raise RuntimeError("cannot submit to an executor that was shut down")
            self._queue.append(future)
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name=f"hpcgate-executor-{self.system}", daemon=True
                )
                self._thread.start()
            self._lock.notify_all()
        return future

    def map(  # type: ignore[override]
        self, specs: Iterable[Spec], *, timeout: float | None = None
    ) -> Iterator[Job]:
        """Submit every spec now; yield the finished jobs in the order of ``specs``.

        As the standard ``map``: a job that did not complete raises its :class:`JobFailed`
        when its turn comes; ``TimeoutError`` if a result is not there ``timeout`` seconds
        after this call; on either, or when the iterator is dropped early, the jobs not yet
        ended are cancelled.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        valid = [as_spec(spec) for spec in specs]  # a bad one: nothing is submitted
        futures = [self.submit(spec) for spec in valid]
        return _results(futures, deadline)

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """No more submits. ``cancel_futures``: cancel every future not yet done, and its
        job on the gateway. ``wait``: return once every remaining job has ended."""
        with self._lock:
            self._shutdown = True
            pending = [*self._queue, *self._in_flight.values()]
            if self._sending is not None:
                pending.append(self._sending)
            self._lock.notify_all()
        if cancel_futures:
            for future in pending:
                future.cancel()
        if wait and self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join()

    # The background thread ------------------------------------------------------------

    def _run(self) -> None:
        try:
            while (step := self._next_step()) is not None:
                if isinstance(step, JobFuture):
                    self._send(step)
                else:
                    self._poll_once()
        except Exception as error:  # a bug: fail the futures rather than leave them hanging
            log.exception("the executor of %s stopped", self.system)
            self._fail_all(error)

    def _next_step(self) -> JobFuture | Literal["poll"] | None:
        """What to do next: poll, send a future's job, or stop (None); waits until then."""
        with self._lock:
            self._sending = None
            while True:
                now = time.monotonic()
                if now >= self._resume_at:
                    if self._in_flight and now >= self._next_poll:
                        return POLL
                    self._sending = self._next_to_send()
                    if self._sending is not None:
                        return self._sending
                if self._shutdown and not self._queue and not self._in_flight:
                    return None
                self._lock.wait(self._sleep_time(now))

    def _next_to_send(self) -> JobFuture | None:
        while self._queue:
            if self.max_in_flight is not None and len(self._in_flight) >= self.max_in_flight:
                return None
            future = self._queue.popleft()
            if not (future.done() or future._cancel_requested):
                return future
        return None

    def _sleep_time(self, now: float) -> float | None:
        if self._in_flight:
            wake: float | None = max(self._next_poll, self._resume_at)
        else:
            wake = self._resume_at if self._queue else None
        return None if wake is None else max(0.0, wake - now)

    def _send(self, future: JobFuture) -> None:
        try:
            job = self.client.submit(
                self.system, spec=future.spec, idempotency_key=future.idempotency_key
            )
        except Exception as error:
            if self._retry_later(error, self._sending_trouble):
                with self._lock:
                    self._queue.appendleft(future)  # sent again later, with the same key
                return
            _settle(future, error)
            if transient(error):  # given up: those waiting would wait as long again
                self._fail_queued(error)
            return
        with self._lock:
            self._sending_trouble.clear()
            future.job = job
            cancelled = future._cancel_requested or future.done()
            if not cancelled:
                if not self._in_flight:
                    self._next_poll = time.monotonic() + self.poll
                self._in_flight[job.id] = future
        if cancelled:  # cancelled while its submit was on the way
            self._cancel_job(job.id)

    def _poll_once(self) -> None:
        with self._lock:
            watched = dict(self._in_flight)
            self._next_poll = time.monotonic() + self.poll
        try:
            self._look_at(watched)
        except Exception as error:
            if not self._retry_later(error, self._polling_trouble):
                self._finish(watched, error)
            return
        with self._lock:
            self._polling_trouble.clear()

    def _look_at(self, watched: Mapping[str, JobFuture]) -> None:
        """One listing of the live jobs; a job in flight that is not in it has ended: one
        read of it settles its future."""
        listed = self.client.jobs(self.system, state=LIVE)
        live = {job.id: job for job in listed}
        arrays = {job.array_job_id for job in listed if job.array_job_id}  # tasks running
        for job_id, future in watched.items():
            if job_id in live:
                future.job = live[job_id]
            elif job_id not in arrays:
                self._read_ended(job_id, future)

    def _read_ended(self, job_id: str, future: JobFuture) -> None:
        try:
            job = self.client.job(self.system, job_id)
        except NotFound as error:
            self._finish([job_id], error)  # the job is gone
            return
        future.job = job
        if job.state.terminal:
            self._finish([job_id], job)

    def _finish(self, job_ids: Iterable[str], outcome: Job | BaseException) -> None:
        """Settle the futures of ``job_ids`` still in flight with ``outcome``."""
        with self._lock:
            owned = [self._in_flight.pop(job_id, None) for job_id in job_ids]
        for future in owned:
            if future is not None:
                _settle(future, outcome)

    def _retry_later(self, error: Exception, trouble: Trouble) -> bool:
        """Whether ``error`` is passing trouble to wait out, pausing all requests a little
        longer each time; False when not, or when it has lasted ``give_up_after`` s."""
        if not transient(error):
            return False
        now = time.monotonic()
        with self._lock:
            lasting = trouble.note(now)
            pause = min(max(self.poll, MAX_PAUSE), self.poll * 2.0 ** min(trouble.count, 16))
            self._resume_at = max(self._resume_at, now + pause)
            if lasting >= self.give_up_after:
                trouble.clear()
                return False
        log.warning("gateway trouble (%s); trying again in %.1f s", error, pause)
        return True

    def _fail_queued(self, error: BaseException) -> None:
        with self._lock:
            futures = list(self._queue)
            self._queue.clear()
        for future in futures:
            _settle(future, error)

    def _fail_all(self, error: BaseException) -> None:
        with self._lock:
            futures = [*self._queue, *self._in_flight.values()]
            if self._sending is not None:
                futures.append(self._sending)
            self._queue.clear()
            self._in_flight.clear()
        for future in futures:
            _settle(future, error)

    # Cancelling (called from the future's owner's thread) ------------------------------

    def _cancel(self, future: JobFuture) -> bool:
        with self._lock:
            if future.done():
                return future.cancelled()
            job = future.job
            if job is None:
                future._cancel_requested = True  # not sent yet, or its submit is on the way
            elif self._in_flight.pop(job.id, None) is None:
                return False  # the poller is settling it: it has ended
        if job is None:
            return future._cancel_here()
        try:
            answer = self._cancel_or_read(job.id)
        except Exception as error:
            log.warning("could not cancel job %s on %s: %s", job.id, self.system, error)
            with self._lock:
                self._in_flight[job.id] = future
            return False
        future.job = answer
        if answer.state.terminal:  # it had ended before the cancel came
            _settle(future, answer)
            return False
        return future._cancel_here()

    def _cancel_or_read(self, job_id: str) -> Job:
        try:
            return self.client.cancel(self.system, job_id)
        except Conflict:  # it had already ended: its outcome
            return self.client.job(self.system, job_id)

    def _cancel_job(self, job_id: str) -> None:
        try:
            self.client.cancel(self.system, job_id)
        except Conflict:  # it has ended: nothing to cancel
            pass
        except Exception as error:
            log.warning("could not cancel job %s on %s: %s", job_id, self.system, error)


def as_spec(spec: Spec) -> JobSpec:
    """A :class:`JobSpec` from a spec, a mapping of its fields or a script's text."""
    if isinstance(spec, JobSpec):
        return spec
    if isinstance(spec, str):
        return JobSpec(script=spec)
    if isinstance(spec, Mapping):
        return JobSpec.model_validate(dict(spec))
    raise TypeError(
        "an Executor runs batch jobs: pass a JobSpec, a mapping of its fields or a script, "
        f"not {type(spec).__name__}"
    )


def transient(error: BaseException) -> bool:
    """Whether ``error`` may pass if the same request is sent again later."""
    if isinstance(error, ClientError):
        return isinstance(error, GatewayUnreachable)
    if isinstance(error, RateLimited | IdempotencyInProgress):
        return True
    if isinstance(error, NotImplementedByScheduler):
        return False
    return isinstance(error, HpcgateError) and error.http_status >= 500


def _settle(future: JobFuture, outcome: Job | BaseException) -> None:
    try:
        if isinstance(outcome, BaseException):
            future.set_exception(outcome)
        elif outcome.state is JobState.COMPLETED:
            future.set_result(outcome)
        else:
            future.set_exception(JobFailed(outcome))
    except concurrent.futures.InvalidStateError:
        pass  # cancelled in the meantime


def _results(futures: list[JobFuture], deadline: float | None) -> Iterator[Job]:
    """The results of ``futures`` in order; the rest are cancelled if this stops early."""
    pending = futures[::-1]
    try:
        while pending:
            wait = None if deadline is None else deadline - time.monotonic()
            yield pending[-1].result(wait)
            pending.pop()
    finally:
        for future in pending:
            future.cancel()
