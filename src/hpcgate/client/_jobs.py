"""The SDK's jobs methods: pure call builders and stream readers, and the twins that send
them. Live output and state events come as Server-Sent Events; a stream that breaks before
its end is opened again with ``Last-Event-ID``, so nothing is lost or repeated."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Iterable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Generic, TypeVar

import httpx
from pydantic_core import to_jsonable_python

from hpcgate.client._async import AsyncCore
from hpcgate.client._base import BaseClient, Call, Waiting, request
from hpcgate.client._errors import GatewayUnreachable, JobFailed
from hpcgate.client._sync import SyncCore
from hpcgate.model.jobs import Job, JobEvent, JobPage, JobSpec, JobState

T = TypeVar("T")
PAGE_SIZE = 100  # jobs asked for per page of a listing
SSE = "text/event-stream"


def submit_call(
    system: str,
    script: str | None,
    spec: JobSpec | Mapping[str, Any] | None,
    idempotency_key: str,
    fields: Mapping[str, Any],
) -> Call:
    """The submit: the fields the caller set (``spec``, then ``fields``, then ``script``),
    with the key that makes a resend return the same job."""
    given = spec.model_dump(mode="json", exclude_unset=True) if isinstance(spec, JobSpec) else {}
    if isinstance(spec, Mapping):
        given = dict(spec)
    body = {**given, **fields, **({} if script is None else {"script": script})}
    json, headers = to_jsonable_python(body), {"Idempotency-Key": idempotency_key}
    return request("POST", "systems", system, "jobs", json=json, headers=headers)


def job_call(method: str, system: str, job_id: str, *rest: str) -> Call:
    return request(method, "systems", system, "jobs", job_id, *rest)


def output_call(system: str, job_id: str, stream: str, offset: int) -> Call:
    params = {"stream": stream, "offset": offset}
    return request("GET", "systems", system, "jobs", job_id, "output", params=params)


def finished(job: Job, check: bool) -> Job:
    """``job``, which has ended; with ``check``, :class:`JobFailed` unless it completed."""
    if check and job.state is not JobState.COMPLETED:
        raise JobFailed(job)
    return job


@dataclass
class Listing:
    """The pages of a job listing still to fetch, and the jobs read so far."""

    system: str
    states: list[str]
    name: str | None
    limit: int | None
    page_size: int
    jobs: list[Job] = field(default_factory=list)
    cursor: str | None = None
    done: bool = False

    @classmethod
    def of(
        cls,
        system: str,
        state: Iterable[JobState | str] | None,
        name: str | None,
        limit: int | None,
        page_size: int,
    ) -> Listing:
        states = [JobState(s).value for s in ([] if state is None else state)]
        return cls(system, states, name, limit, page_size)

    def next_call(self) -> Call | None:
        """The request for the next page; None when the listing is complete."""
        wanted = self.page_size if self.limit is None else self.limit - len(self.jobs)
        if self.done or wanted <= 0:
            return None
        params: dict[str, Any] = {"limit": min(wanted, self.page_size), "state": self.states}
        params |= {k: v for k, v in (("name", self.name), ("cursor", self.cursor)) if v}
        return request("GET", "systems", self.system, "jobs", params=params)

    def add(self, page: JobPage) -> None:
        self.jobs.extend(page.items)
        self.cursor = page.next_cursor
        self.done = page.next_cursor is None or not page.items


@dataclass(frozen=True)
class Event:
    """One Server-Sent Event."""

    event: str
    data: str
    id: str | None


class EventParser:
    """Server-Sent Events from the lines of a stream (the WHATWG framing rules): feed it
    each line; a blank line completes an event."""

    def __init__(self) -> None:
        self._name = "message"
        self._data: list[str] = []
        self._id: str | None = None

    def feed(self, line: str) -> Event | None:
        if not line:
            event = Event(self._name, "\n".join(self._data), self._id) if self._data else None
            self._name, self._data = "message", []
            return event
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "event":
            self._name = value
        elif name == "data":
            self._data.append(value)
        elif name == "id" and "\x00" not in value:
            self._id = value
        return None  # a comment (ping), retry or unknown field


class Reader(Generic[T]):
    """What one event stream is about: the request (from where it stopped), what each
    event yields, and whether the end has come."""

    def __init__(self, first: Call) -> None:
        self.first = first
        self.last_id: str | None = None
        self.ended = False

    def call(self) -> Call:
        headers = {"Accept": SSE}
        if self.last_id is not None:
            headers["Last-Event-ID"] = self.last_id
        return replace(self.first, headers=headers)

    def take(self, event: Event) -> T | None:
        if event.id is not None:
            self.last_id = event.id
        return self._item(event)

    def _item(self, event: Event) -> T | None:
        raise NotImplementedError


class OutputReader(Reader[str]):
    """``output`` events carry ``{"text", "offset"}``; ``end`` comes after the job ended
    and all its output was sent."""

    def __init__(self, system: str, job_id: str, stream: str) -> None:
        params = {"stream": stream, "follow": "true"}
        super().__init__(request("GET", "systems", system, "jobs", job_id, "output", params=params))

    def _item(self, event: Event) -> str | None:
        if event.event == "end":
            self.ended = True
        if event.event != "output":
            return None
        return str(json.loads(event.data)["text"])


class EventReader(Reader[JobEvent]):
    """``state`` events carry a :class:`JobEvent`; the stream closes after a final one."""

    def __init__(self, system: str, job_id: str) -> None:
        super().__init__(job_call("GET", system, job_id, "events"))

    def _item(self, event: Event) -> JobEvent | None:
        if event.event != "state":
            return None
        job_event = JobEvent.model_validate_json(event.data)
        self.ended = job_event.state.terminal
        return job_event


def reopen_pause(client: BaseClient, breaks: int, reader: Reader[Any], broken: Exception) -> float:
    """The pause before a broken stream is opened again, after ``breaks`` breaks with no
    event between them; :class:`GatewayUnreachable` when the retries are spent."""
    pause = client.retry.delay(breaks, reader.call(), None)
    if pause is None:
        raise GatewayUnreachable(f"{client.base_url}: {broken}") from broken
    return pause


class SyncJobs(SyncCore):
    """Jobs methods of :class:`~hpcgate.Client`."""

    def submit(
        self,
        system: str,
        script: str | None = None,
        *,
        spec: JobSpec | Mapping[str, Any] | None = None,
        idempotency_key: str | None = None,
        **fields: Any,
    ) -> Job:
        """Submit a batch job: ``script`` and the :class:`~hpcgate.model.jobs.JobSpec`
        fields as keywords, or a whole ``spec``. Only the fields given are sent. A resend
        (after a lost answer) carries the same ``idempotency_key`` (one is made when none
        is given), so the gateway never makes two jobs of one submit."""
        key = idempotency_key or self._new_idempotency_key()
        return self._call(submit_call(system, script, spec, key, fields), Job)

    def job(self, system: str, job_id: str) -> Job:
        """The job as it is now."""
        return self._call(job_call("GET", system, job_id), Job)

    def jobs(
        self,
        system: str,
        *,
        state: Iterable[JobState | str] | None = None,
        name: str | None = None,
        limit: int | None = None,
        page_size: int = PAGE_SIZE,
    ) -> list[Job]:
        """The caller's jobs, newest first, in these states (default: any) and with this
        name; at most ``limit`` (default: all), fetched ``page_size`` at a time."""
        listing = Listing.of(system, state, name, limit, page_size)
        while (call := listing.next_call()) is not None:
            listing.add(self._call(call, JobPage))
        return listing.jobs

    def cancel(self, system: str, job_id: str) -> Job:
        """Ask the scheduler to cancel the job (it then ends CANCELLED); a job that has
        already ended raises :class:`~hpcgate.model.errors.Conflict`."""
        return self._call(job_call("DELETE", system, job_id), Job)

    def wait(
        self, system: str, job_id: str, *, timeout: float | None = None, check: bool = False
    ) -> Job:
        """The job once it has ended, polled with a growing pause (0.5 s to 10 s).
        :class:`WaitTimeout` after ``timeout`` seconds; with ``check``, :class:`JobFailed`
        unless it ended COMPLETED."""
        waiting = Waiting(timeout)
        while True:
            job = self.job(system, job_id)
            if job.state.terminal:
                return finished(job, check)
            time.sleep(waiting.pause(f"job {job_id} is still {job.state.value}"))

    def output(self, system: str, job_id: str, *, stream: str = "stdout", offset: int = 0) -> str:
        """The job's ``stdout`` or ``stderr`` as written so far, from byte ``offset``."""
        return self._send(output_call(system, job_id, stream, offset)).text

    def follow(self, system: str, job_id: str, *, stream: str = "stdout") -> Iterator[str]:
        """The job's output as it is written, piece by piece, until the job has ended and
        all of it was read."""
        return self._events(OutputReader(system, job_id, stream))

    def events(self, system: str, job_id: str) -> Iterator[JobEvent]:
        """The job's state changes from its submit, live, until its final state."""
        return self._events(EventReader(system, job_id))

    def _events(self, reader: Reader[T]) -> Iterator[T]:
        breaks = 0
        while True:
            try:
                with self._stream(reader.call()) as response:
                    parser = EventParser()
                    for line in response.iter_lines():
                        if (event := parser.feed(line)) is None:
                            continue
                        breaks = 0
                        if (item := reader.take(event)) is not None:
                            yield item
                        if reader.ended:
                            return
            except httpx.TransportError as exc:
                broken: Exception = exc
            else:
                broken = GatewayUnreachable("the stream closed before its end")
            time.sleep(reopen_pause(self, breaks, reader, broken))
            breaks += 1


class AsyncJobs(AsyncCore):
    """Jobs methods of :class:`~hpcgate.AsyncClient`."""

    async def submit(
        self,
        system: str,
        script: str | None = None,
        *,
        spec: JobSpec | Mapping[str, Any] | None = None,
        idempotency_key: str | None = None,
        **fields: Any,
    ) -> Job:
        """As :meth:`Client.submit`."""
        key = idempotency_key or self._new_idempotency_key()
        return await self._call(submit_call(system, script, spec, key, fields), Job)

    async def job(self, system: str, job_id: str) -> Job:
        """The job as it is now."""
        return await self._call(job_call("GET", system, job_id), Job)

    async def jobs(
        self,
        system: str,
        *,
        state: Iterable[JobState | str] | None = None,
        name: str | None = None,
        limit: int | None = None,
        page_size: int = PAGE_SIZE,
    ) -> list[Job]:
        """As :meth:`Client.jobs`."""
        listing = Listing.of(system, state, name, limit, page_size)
        while (call := listing.next_call()) is not None:
            listing.add(await self._call(call, JobPage))
        return listing.jobs

    async def cancel(self, system: str, job_id: str) -> Job:
        """As :meth:`Client.cancel`."""
        return await self._call(job_call("DELETE", system, job_id), Job)

    async def wait(
        self, system: str, job_id: str, *, timeout: float | None = None, check: bool = False
    ) -> Job:
        """As :meth:`Client.wait`."""
        waiting = Waiting(timeout)
        while True:
            job = await self.job(system, job_id)
            if job.state.terminal:
                return finished(job, check)
            await asyncio.sleep(waiting.pause(f"job {job_id} is still {job.state.value}"))

    async def output(
        self, system: str, job_id: str, *, stream: str = "stdout", offset: int = 0
    ) -> str:
        """As :meth:`Client.output`."""
        return (await self._send(output_call(system, job_id, stream, offset))).text

    def follow(self, system: str, job_id: str, *, stream: str = "stdout") -> AsyncIterator[str]:
        """As :meth:`Client.follow`: ``async for piece in client.follow(...)``."""
        return self._events(OutputReader(system, job_id, stream))

    def events(self, system: str, job_id: str) -> AsyncIterator[JobEvent]:
        """As :meth:`Client.events`: ``async for event in client.events(...)``."""
        return self._events(EventReader(system, job_id))

    async def _events(self, reader: Reader[T]) -> AsyncIterator[T]:
        breaks = 0
        while True:
            try:
                async with self._stream(reader.call()) as response:
                    parser = EventParser()
                    async for line in response.aiter_lines():
                        if (event := parser.feed(line)) is None:
                            continue
                        breaks = 0
                        if (item := reader.take(event)) is not None:
                            yield item
                        if reader.ended:
                            return
            except httpx.TransportError as exc:
                broken: Exception = exc
            else:
                broken = GatewayUnreachable("the stream closed before its end")
            await asyncio.sleep(reopen_pause(self, breaks, reader, broken))
            breaks += 1
