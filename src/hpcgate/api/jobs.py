"""``/api/v1/systems/{system}/jobs``: submit, read, list, cancel, output and events."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import APIRouter, Header, Path, Query, Request, Response, status
from fastapi.responses import StreamingResponse
from sse_starlette import EventSourceResponse, ServerSentEvent

from hpcgate.api.auth import Caller, GatewayDep
from hpcgate.api.problems import responses
from hpcgate.gateway import Gateway
from hpcgate.jobs.output import OutputChunk, Stream, follow_output, read_output
from hpcgate.model.errors import BadRequest
from hpcgate.model.jobs import Job, JobPage, JobSpec, JobState
from hpcgate.model.principal import Principal

router = APIRouter(prefix="/api/v1/systems/{system}/jobs", tags=["jobs"])

SystemName = Annotated[str, Path(max_length=64, description="A configured system")]
JobId = Annotated[str, Path(pattern=r"^[A-Za-z0-9_.+-]{1,64}$", description="The job's id")]
IdempotencyKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        pattern=r"^[\x21-\x7e]{1,255}$",
        description="Send the same key to retry a submit safely: one job, never two",
    ),
]
LastEventId = Annotated[str | None, Header(alias="Last-Event-ID", max_length=32)]
SSE = "text/event-stream"
PING_SECONDS = 15


def _last_event_id(value: str | None, query_value: int | None) -> int:
    if value is None:
        return query_value or 0
    if not value.isdigit():
        raise BadRequest("Last-Event-ID must be a number")
    return int(value)


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    summary="Submit a job",
    responses={
        200: {"model": Job, "description": "Replay of an earlier submit with this key"},
        **responses(400, 401, 403, 404, 409, 413, 422, 503, 504),
    },
)
async def submit_job(
    spec: JobSpec,
    system: SystemName,
    who: Caller,
    gateway: GatewayDep,
    request: Request,
    response: Response,
    idempotency_key: IdempotencyKey = None,
) -> Job:
    """Submit a batch job. The job is visible to GET the moment this returns."""
    submitted = await gateway.jobs.submit(who, system, spec, idempotency_key)
    response.headers["Location"] = str(
        request.url_for("get_job", system=system, job_id=submitted.job.id)
    )
    if not submitted.created:
        response.status_code = status.HTTP_200_OK
    return submitted.job


@router.get("", summary="List my jobs, newest first", responses=responses(401, 403, 404, 422))
async def list_jobs(
    system: SystemName,
    who: Caller,
    gateway: GatewayDep,
    state: Annotated[list[JobState] | None, Query(description="Only these states")] = None,
    name: Annotated[str | None, Query(max_length=200)] = None,
    cursor: Annotated[str | None, Query(max_length=32, description="From next_cursor")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> JobPage:
    return await gateway.jobs.list(who, system, state or [], name, cursor, limit)


@router.get("/{job_id}", summary="One job", responses=responses(401, 403, 404, 422))
async def get_job(system: SystemName, job_id: JobId, who: Caller, gateway: GatewayDep) -> Job:
    return await gateway.jobs.get(who, system, job_id)


@router.delete(
    "/{job_id}",
    status_code=status.HTTP_202_ACCEPTED,
    summary="Cancel a job",
    responses=responses(401, 403, 404, 422, 503, 504),
)
async def cancel_job(system: SystemName, job_id: JobId, who: Caller, gateway: GatewayDep) -> Job:
    """Ask the scheduler to cancel the job; it then ends CANCELLED. An ended job is returned
    as it is."""
    return await gateway.jobs.cancel(who, system, job_id)


@router.get(
    "/{job_id}/output",
    summary="The job's stdout or stderr",
    response_class=StreamingResponse,
    responses={
        200: {
            "content": {"text/plain": {}, SSE: {}},
            "description": "Text; or SSE 'output' events {text, offset} then 'end'",
        },
        **responses(401, 403, 404, 422, 503, 504),
    },
)
async def job_output(
    system: SystemName,
    job_id: JobId,
    who: Caller,
    gateway: GatewayDep,
    stream: Stream = Stream.STDOUT,
    follow: Annotated[bool, Query(description="Keep streaming until the job ends")] = False,
    offset: Annotated[int, Query(ge=0, description="Start at this byte offset")] = 0,
    accept: Annotated[str, Header()] = "text/plain",
    last_event_id: LastEventId = None,
) -> Response:
    """Plain text by default. With ``follow=true`` new output streams until the job ends:
    as raw text, or with ``Accept: text/event-stream`` as SSE events whose id is the byte
    offset, so a client that reconnects with ``Last-Event-ID`` resumes where it stopped."""
    await gateway.jobs.job_row(who, system, job_id)  # 404 before any stream starts
    if follow and SSE in accept:
        start = _last_event_id(last_event_id, offset)
        chunks = follow_output(gateway.jobs, who, system, job_id, stream, start)
        return EventSourceResponse(
            _output_events(chunks, gateway, who, system, job_id), ping=PING_SECONDS
        )
    if follow:
        chunks = follow_output(gateway.jobs, who, system, job_id, stream, offset)
        return StreamingResponse(_texts(chunks), media_type="text/plain; charset=utf-8")
    data = await read_output(gateway.jobs, who, system, job_id, stream, offset)
    return StreamingResponse(data, media_type="text/plain; charset=utf-8")


async def _texts(chunks: AsyncIterator[OutputChunk]) -> AsyncIterator[str]:
    async for chunk in chunks:
        yield chunk.text


async def _output_events(
    chunks: AsyncIterator[OutputChunk],
    gateway: Gateway,
    who: Principal,
    system: str,
    job_id: str,
) -> AsyncIterator[ServerSentEvent]:
    async for chunk in chunks:
        data = json.dumps({"text": chunk.text, "offset": chunk.offset})
        yield ServerSentEvent(data, event="output", id=str(chunk.offset))
    job = await gateway.jobs.get(who, system, job_id)
    yield ServerSentEvent(job.model_dump_json(), event="end")


@router.get(
    "/{job_id}/events",
    summary="The job's state changes as Server-Sent Events",
    response_class=EventSourceResponse,
    responses={
        200: {
            "content": {SSE: {}},
            "description": "'state' events (JobEvent JSON, with ids) until the job ends",
        },
        **responses(401, 403, 404, 422),
    },
)
async def job_events(
    system: SystemName,
    job_id: JobId,
    who: Caller,
    gateway: GatewayDep,
    last_event_id: LastEventId = None,
    after: Annotated[int | None, Query(ge=0, description="Replay events after this id")] = None,
) -> EventSourceResponse:
    """Every state change, starting with the submit. Reconnect with ``Last-Event-ID`` to
    receive only what was missed. The stream ends after the job's final state."""
    await gateway.jobs.job_row(who, system, job_id)
    events = gateway.jobs.events(who, system, job_id, _last_event_id(last_event_id, after))

    async def frames() -> AsyncIterator[ServerSentEvent]:
        async for event in events:
            yield ServerSentEvent(event.model_dump_json(), event="state", id=str(event.id))

    return EventSourceResponse(frames(), ping=PING_SECONDS)
