"""``/api/v1/systems/{system}/jobs``: submit, read, list, cancel, output and events."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import APIRouter, Header, Path, Query, Request, Response, status
from fastapi.responses import StreamingResponse
from sse_starlette import EventSourceResponse, ServerSentEvent

from hpcgate.api.auth import GatewayDep, TargetDep
from hpcgate.api.problems import responses
from hpcgate.jobs.output import JobOutput, OutputChunk, Stream
from hpcgate.model.bounds import BYTES_ASKED_MAX, KEY_MAX
from hpcgate.model.errors import BadRequest
from hpcgate.model.jobs import PROJECT_NAME_PATTERN, Job, JobPage, JobSpec, JobState

router = APIRouter(prefix="/api/v1/systems/{system}/jobs", tags=["jobs"])


JobId = Annotated[str, Path(pattern=r"^[A-Za-z0-9_.+-]{1,64}$", description="The job's id")]
IdempotencyKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        pattern=r"^[\x21-\x7e]{1,255}$",
        description="Send the same key to retry a submit safely: one job, never two",
    ),
]
#: An event id from 0 to KEY_MAX (2**31 - 1), exactly, as a pattern: typed ``str`` (not
#: ``str | None``), so the document says what the header may hold and no client reads
#: "null" into it; absent, it is None.
EVENT_ID = (
    r"^(0|[1-9][0-9]{0,8}|1[0-9]{9}|20[0-9]{8}|21[0-3][0-9]{7}|214[0-6][0-9]{6}"
    r"|2147[0-3][0-9]{5}|21474[0-7][0-9]{4}|214748[0-2][0-9]{3}|2147483[0-5][0-9]{2}"
    r"|21474836[0-3][0-9]|214748364[0-7])$"
)
LastEventId = Annotated[
    str, Header(alias="Last-Event-ID", pattern=EVENT_ID, description="Resume after this id")
]
SSE = "text/event-stream"
TEXT = "text/plain; charset=utf-8"
PING_SECONDS = 15


def _last_event_id(value: str | None, query_value: int | None) -> int:
    if value is None:
        return query_value or 0
    if not (value.isdigit() and int(value) <= KEY_MAX):
        raise BadRequest(f"Last-Event-ID must be an event id, a number from 0 to {KEY_MAX}")
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
    target: TargetDep,
    gateway: GatewayDep,
    request: Request,
    response: Response,
    idempotency_key: IdempotencyKey = None,
) -> Job:
    """Submit a batch job. The job is visible to GET the moment this returns."""
    submitted = await gateway.jobs.submit(target, spec, idempotency_key)
    response.headers["Location"] = str(
        request.url_for("get_job", system=target.system, job_id=submitted.job.id)
    )
    if not submitted.created:
        response.status_code = status.HTTP_200_OK
    return submitted.job


@router.get("", summary="List my jobs, newest first", responses=responses(400, 401, 403, 404, 422))
async def list_jobs(
    target: TargetDep,
    gateway: GatewayDep,
    state: Annotated[list[JobState] | None, Query(description="Only these states")] = None,
    name: Annotated[str | None, Query(max_length=200)] = None,
    cursor: Annotated[
        str | None, Query(pattern=r"^[0-9]{1,10}$", description="From next_cursor")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    everyone: Annotated[
        bool,
        Query(
            alias="all",
            description="Every user's jobs on the system, not only mine (admin scope; 403"
            " otherwise); with user: that user's",
        ),
    ] = False,
    user: Annotated[
        str | None,
        Query(
            max_length=128,
            pattern=r"^[A-Za-z0-9_.@:-]+$",
            description="Only this user's jobs (admin scope, unless it is me; 403 otherwise)",
        ),
    ] = None,
    project: Annotated[
        str | None,
        Query(pattern=PROJECT_NAME_PATTERN, description="A project's jobs instead of mine"),
    ] = None,
) -> JobPage:
    """My jobs on the system, newest first; with `project`, that project's, whoever
    submitted them (a viewer's role suffices; 404 for a project the caller has no role in;
    a token limited to a project lists that project's). An admin may list every user's
    (``all=true``) or one user's (``user=NAME``): each job names its ``owner``."""
    return await gateway.jobs.list(
        target, state or [], name, cursor, limit, everyone, user, project
    )


@router.get("/{job_id}", summary="One job", responses=responses(401, 403, 404, 422))
async def get_job(target: TargetDep, job_id: JobId, gateway: GatewayDep) -> Job:
    return await gateway.jobs.get(target, job_id)


@router.delete(
    "/{job_id}",
    status_code=status.HTTP_202_ACCEPTED,
    summary="Cancel a job",
    responses=responses(401, 403, 404, 409, 422, 503, 504),
)
async def cancel_job(target: TargetDep, job_id: JobId, gateway: GatewayDep) -> Job:
    """Ask the scheduler to cancel the job; it then ends CANCELLED. A job that has already
    ended is a 409 and stays as it is."""
    return await gateway.jobs.cancel(target, job_id)


@router.get(
    "/{job_id}/output",
    summary="The job's stdout or stderr",
    response_class=StreamingResponse,
    responses={
        200: {
            "content": {"text/plain": {}, SSE: {}},
            "description": "Text; or SSE 'output' events {text, offset} then 'end'",
        },
        **responses(400, 401, 403, 404, 422, 503, 504),
    },
)
async def job_output(
    target: TargetDep,
    job_id: JobId,
    gateway: GatewayDep,
    stream: Stream = Stream.STDOUT,
    follow: Annotated[bool, Query(description="Keep streaming until the job ends")] = False,
    offset: Annotated[
        int, Query(ge=0, le=BYTES_ASKED_MAX, description="Start at this byte offset")
    ] = 0,
    accept: Annotated[str, Header()] = "text/plain",
    last_event_id: LastEventId = None,  # type: ignore[assignment]
) -> Response:
    """Plain text by default. With ``follow=true`` new output streams until the job ends:
    as raw text, or with ``Accept: text/event-stream`` as SSE events whose id is the byte
    offset, so a client that reconnects with ``Last-Event-ID`` resumes where it stopped."""
    output = await gateway.jobs.output(target, job_id, stream)  # 404 before any stream starts
    if follow and SSE in accept:
        start = _last_event_id(last_event_id, offset)
        return EventSourceResponse(_output_events(output, start), ping=PING_SECONDS)
    if follow:
        return StreamingResponse(_texts(output.follow(offset)), media_type=TEXT)
    return StreamingResponse(await output.read(offset), media_type=TEXT)


async def _texts(chunks: AsyncIterator[OutputChunk]) -> AsyncIterator[str]:
    async for chunk in chunks:
        yield chunk.text


async def _output_events(output: JobOutput, offset: int) -> AsyncIterator[ServerSentEvent]:
    async for chunk in output.follow(offset):
        data = json.dumps({"text": chunk.text, "offset": chunk.offset})
        yield ServerSentEvent(data, event="output", id=str(chunk.offset))
    yield ServerSentEvent(output.job.model_dump_json(), event="end")  # as the follow ended


@router.get(
    "/{job_id}/events",
    summary="The job's state changes as Server-Sent Events",
    response_class=EventSourceResponse,
    responses={
        200: {
            "content": {SSE: {}},
            "description": "'state' events (JobEvent JSON, with ids) until the job ends",
        },
        **responses(400, 401, 403, 404, 422),
    },
)
async def job_events(
    target: TargetDep,
    job_id: JobId,
    gateway: GatewayDep,
    last_event_id: LastEventId = None,  # type: ignore[assignment]
    after: Annotated[
        int | None, Query(ge=0, le=KEY_MAX, description="Replay events after this id")
    ] = None,
) -> EventSourceResponse:
    """Every state change, starting with the submit. Reconnect with ``Last-Event-ID`` to
    receive only what was missed. The stream ends after the job's final state."""
    changes = await gateway.jobs.events(target, job_id)  # 404 before any stream starts
    events = changes.after(_last_event_id(last_event_id, after))

    async def frames() -> AsyncIterator[ServerSentEvent]:
        async for event in events:
            yield ServerSentEvent(event.model_dump_json(), event="state", id=str(event.id))

    return EventSourceResponse(frames(), ping=PING_SECONDS)
