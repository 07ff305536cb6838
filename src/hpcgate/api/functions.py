"""``/api/v1/functions``: register Python functions, invoke them (streamed as Server-Sent
Events or answered whole), and follow, resume and cancel their invocations."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import json
from collections.abc import AsyncIterator, Coroutine
from typing import Annotated, Any, TypeVar

from fastapi import APIRouter, Body, Header, Path, Query, Request, Response, status
from fastapi.responses import JSONResponse
from pydantic import Field
from sse_starlette import EventSourceResponse

from hpcgate.api.auth import Caller, GatewayDep, KeyCaller, add_quota
from hpcgate.api.problems import responses
from hpcgate.functions.invocations import Batch, Event, payload
from hpcgate.model.bounds import GRACE_MAX
from hpcgate.model.functions import (
    Function,
    FunctionCreate,
    Invocation,
    InvocationResult,
)
from hpcgate.model.jobs import PROJECT_NAME_PATTERN

SEQ_MAX = 999_999_999  # a resumed stream's seq: nine digits at most
CLIENT_GONE = 499  # logged for an answer nobody was left to read (nginx's number)
T = TypeVar("T")

router = APIRouter(prefix="/api/v1/functions", tags=["functions"])

Name = Annotated[
    str,
    Path(
        pattern=r"^([A-Za-z0-9_][A-Za-z0-9_.-]{0,63}:|[a-z][a-z0-9_-]{0,62}~)?[a-z][a-z0-9_-]{0,39}$",
        description="The function's name: yours, or the one shared with you; OWNER:NAME"
        " names another user's (needed when several share one of that name with you);"
        " PROJECT~NAME a project's",
    ),
]
Key = Annotated[str, Path(pattern=r"^[A-Za-z0-9_-]{1,64}$", description="The invocation's id")]
#: Typed ``str`` (not ``str | None``): the document then says what the header may hold, a
#: seq, and no client reads "null" into it. Absent, it is None.
LastEventId = Annotated[
    str,
    Header(
        alias="Last-Event-ID",
        pattern=r"^(0|[1-9][0-9]{0,8})$",
        description="Resume after this event's id",
    ),
]
After = Annotated[
    int | None,
    Query(ge=0, le=SEQ_MAX, description="Resume after this seq (Last-Event-ID wins)"),
]
Grace = Annotated[int, Field(ge=0, le=GRACE_MAX)]
#: The caller's ephemeral X25519 public key: the invocation's events come sealed for it
#: (typed ``str`` as ``LastEventId`` is: absent, it is None).
Encrypt = Annotated[
    str,
    Header(
        alias="Hpcgate-Encrypt",
        pattern=r"^[A-Za-z0-9_-]{43}$",
        description="Encrypt the events end to end: your ephemeral X25519 public key (32"
        " bytes, base64url without padding). See the operation's description",
    ),
]
SSE = "text/event-stream"
PING_SECONDS = 15
INVOCATION_HEADER = "Hpcgate-Invocation"
EVENTS = (
    "`output` (one per yield, in order), then exactly one of `result` (the return value)"
    " or `error` (`{type, message, traceback}`; the traceback to the function's owner"
    " only). Each event's `id` is its seq (1, 2, ...) and its `data` one line of JSON, so"
    ' no output can forge a frame; bytes arrive as `{"encoding": "base64", "data"}`.'
)

ENCRYPTION = """
    **End-to-end encryption** (optional): with `Hpcgate-Encrypt: <your ephemeral X25519
    public key>`, the worker makes a key of its own and the first event is `key` (`{"public_key":
    "<base64url>"}`, plain). Both sides derive an AES-256-GCM key with HKDF-SHA256 from the
    X25519 secret (no salt; info = `hpcgate-e2e-v1`, the invocation id, your public key and
    the worker's, joined by NUL bytes). Every later event's `data` is `{"sealed": "<base64
    of ciphertext and tag>"}`: the event `{"type", "data"[, "encoding"]}` as JSON, sealed
    with the 12-byte big-endian seq as nonce and `hpcgate-e2e-v1`, the id, the seq and the
    type (NUL-joined) as associated data, so no event can be altered, moved or replayed.
    The gateway stores and relays only ciphertext (the answer without streaming carries the
    sealed `events`; `output`, `result` and `error` stay empty), but the input is in clear:
    it is validated against the schema here. An `error` event that is not sealed is the
    gateway's own (`WorkerLost`, `NoWorker`, `NotEncrypted` when a worker answered
    unencrypted) or `EncryptionUnavailable` (the worker's Python lacks `cryptography`; the
    function did not run): neither is authenticated, and a client should treat any other
    unsealed event as an attack. The key exchange is relayed by the gateway and not
    authenticated: this protects against what the gateway keeps and logs, not against a
    gateway altered to intercept the exchange.
"""


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    summary="Register a function",
    responses=responses(401, 403, 404, 409, 413, 422),
)
async def create_function(spec: FunctionCreate, who: Caller, gateway: GatewayDep) -> Function:
    """Your function, run by a pool of workers on the system you name, as you: the pool is
    one of your services (named `fn.NAME.…`, counted in your service limits, shown with
    the function rather than among your services), whose job runs hpcgate's worker with
    your code on `python`. `source` must compile (a syntax error is a 422 naming the
    line; it is never run on the gateway); `input_schema` must be a valid JSON Schema.
    Workers start when invoked (or `min_workers` at once) and stop after `idle_seconds`
    without invocations. `limits` (`per_minute`, `concurrent`) hold each caller but you
    (with your own token) apart: a user, each API key (yours too); a key's own limits apply
    as well, the stricter wins. With `project` (your role there: member or owner; a viewer
    gets 403, a non-member 404) it still runs as you, and the project's members address it
    as `PROJECT~NAME`: viewers see it, members and owners invoke it (and read their own
    invocations), an owner of the project may delete it; no API key reaches it."""
    return await gateway.functions.create(who, spec)


@router.get("", summary="The functions I may invoke", responses=responses(401, 403, 404, 429))
async def list_functions(
    who: KeyCaller,
    gateway: GatewayDep,
    project: Annotated[
        str | None,
        Query(
            pattern=PROJECT_NAME_PATTERN,
            description="That project's functions instead (any role; 404 without one)",
        ),
    ] = None,
) -> list[Function]:
    """Your own (with source and workers) and those other users share with you; no
    project's (ask for them with `project`)."""
    return await gateway.functions.list(who, project)


@router.get("/{name}", summary="One function", responses=responses(401, 403, 404, 409, 422, 429))
async def get_function(name: Name, who: KeyCaller, gateway: GatewayDep) -> Function:
    """Its input schema and settings; to its owner also its source, its pool's workers and
    what keeps them from starting, if anything."""
    return await gateway.functions.show(who, await gateway.functions.find(who, name))


@router.delete(
    "/{name}",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="Remove my function",
    responses=responses(401, 403, 404, 409, 422),
)
async def delete_function(name: Name, who: Caller, gateway: GatewayDep) -> Response:
    """Its running invocations end `Cancelled`, it and its invocations are forgotten, and
    its workers drain and stop. A project's: by its owner or an owner of the project."""
    await gateway.invocations.delete_function(who, name)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


#: The invoke operation's description (a computed string is no docstring).
INVOKE = inspect.cleandoc(
    """The input is validated against the function's schema first (422 listing the errors;
    nothing runs, nothing is recorded) and its top-level defaults filled in; then the
    invocation is recorded, a ready worker takes it (waiting while one starts, up to the
    services' bound: then 503 with Retry-After, the invocation ended `NoWorker`), and it
    runs. The `Hpcgate-Invocation` header gives its id.

    Past the function's `limits` on its caller (invocations a minute, unended ones at
    once; not for its owner's own token), or an API key's own, the answer is a 429 with
    `Retry-After` and the RateLimit fields of the limit, and nothing is recorded or run;
    within them, the answer's RateLimit fields list every limit it counted against.

    With `Accept: text/event-stream` the answer streams as it is produced: """
    + EVENTS
    + (
        """

    Otherwise the answer comes when it ends: `{id, state, output: [...], result | error}`.
    Past 16 MiB of output the invocation is cancelled and the answer is a 413: stream it.

    Either way a caller that disconnects before the end cancels the invocation, unless
    `detach` is asked: `true` keeps it running to its end; N seconds keeps it as long as
    some client reads its events (`GET .../invocations/{id}/events`) and cancels it once
    none has for N seconds (checked every 2 s; a restarted gateway counts them again from
    its start).
"""
        + ENCRYPTION
    )
)


@router.post(
    "/{name}/invoke",
    summary="Invoke a function",
    description=INVOKE,
    response_model=InvocationResult,
    responses={
        200: {
            "content": {SSE: {}},
            "description": "With `Accept: text/event-stream`: the events, " + EVENTS,
        },
        **responses(401, 403, 404, 409, 413, 422, 429, 502, 503),
    },
)
async def invoke(
    name: Name,
    value: Annotated[dict[str, Any], Body(description="The input: an object the schema takes")],
    who: KeyCaller,
    gateway: GatewayDep,
    request: Request,
    detach: Annotated[
        Grace | bool,
        Query(
            description="Keep running if I disconnect (resume with .../events): `true`, for"
            " ever; N (1 to 86400), for N seconds with no client reading its events, then it"
            " is cancelled; `false` or 0, not at all"
        ),
    ] = False,
    encrypt: Encrypt = None,  # type: ignore[assignment]
) -> Response:
    call = await gateway.invocations.invoke(who, name, value, detach, encrypt)
    for quota in call.quotas:  # the key's and the function's limits it was started under
        add_quota(request.scope, quota)
    headers = {INVOCATION_HEADER: call.id}
    if SSE in request.headers.get("accept", ""):
        events = gateway.invocations.follow(call, 0, cancel_if_gone=True)
        return _stream(events, headers)
    result = await _unless_gone(request, gateway.invocations.collect(call))
    if result is None:  # nobody to answer: the invocation is cancelled (unless detached)
        return Response(status_code=CLIENT_GONE, headers=headers)
    return JSONResponse(result.model_dump(mode="json"), headers=headers)


async def _unless_gone(request: Request, work: Coroutine[Any, Any, T]) -> T | None:
    """``work``'s result; None (``work`` cancelled) if the caller disconnects first."""
    task = asyncio.ensure_future(work)
    gone = asyncio.ensure_future(_disconnected(request))
    try:
        await asyncio.wait((task, gone), return_when=asyncio.FIRST_COMPLETED)
    finally:
        gone.cancel()
        task.cancel()  # nothing if done; else (the caller gone) its reading stops
    with contextlib.suppress(asyncio.CancelledError):
        return await task
    return None


async def _disconnected(request: Request) -> None:
    """Return once the caller has disconnected (its body has been read by then)."""
    while (await request.receive())["type"] != "http.disconnect":
        pass


@router.get(
    "/{name}/invocations",
    summary="A function's invocations",
    responses=responses(401, 403, 404, 409, 422, 429),
)
async def list_invocations(
    name: Name,
    who: KeyCaller,
    gateway: GatewayDep,
    limit: Annotated[int, Query(ge=1, le=1000, description="At most this many")] = 100,
) -> list[Invocation]:
    """The newest first: all of them to the function's owner, your own to anyone else."""
    return await gateway.invocations.list(who, name, limit)


@router.get(
    "/{name}/invocations/{key}",
    summary="One invocation",
    responses=responses(401, 403, 404, 409, 422, 429),
)
async def get_invocation(name: Name, key: Key, who: KeyCaller, gateway: GatewayDep) -> Invocation:
    return await gateway.invocations.get(who, name, key)


@router.delete(
    "/{name}/invocations/{key}",
    summary="Cancel an invocation",
    responses=responses(401, 403, 404, 409, 422, 429),
)
async def cancel_invocation(
    name: Name, key: Key, who: KeyCaller, gateway: GatewayDep
) -> Invocation:
    """Its worker cancels it (a thread busy in computation stops at its next yield); it ends
    `cancelled` with a `Cancelled` error event. An ended one is left as it is."""
    return await gateway.invocations.cancel(who, name, key)


@router.get(
    "/{name}/invocations/{key}/events",
    summary="An invocation's events as Server-Sent Events",
    response_class=EventSourceResponse,
    responses={
        200: {"content": {SSE: {}}, "description": "The events after the one asked: " + EVENTS},
        **responses(401, 403, 404, 409, 410, 422, 429),
    },
)
async def invocation_events(
    name: Name,
    key: Key,
    who: KeyCaller,
    gateway: GatewayDep,
    last_event_id: LastEventId = None,  # type: ignore[assignment]
    after: After = None,
) -> EventSourceResponse:
    """Resume with `Last-Event-ID` (or `?after=`): exactly the events after it, from its
    worker, which keeps the last 1,024 (410 if older ones are asked for). Disconnecting
    here does not cancel the invocation (one detached with a grace of N seconds is
    cancelled once no client has read its events for N seconds). Once its worker is gone,
    an ended invocation gives only its final event (a `result` then carries no data)."""
    start = _last_event_id(last_event_id, after)
    call = await gateway.invocations.resume(who, name, key, start)
    events = gateway.invocations.replay(call, start)
    first = await anext(events, None)  # a 410 is a problem document, not a broken stream
    return _stream(_then(first, events), {INVOCATION_HEADER: call.id})


def _last_event_id(value: str | None, query_value: int | None) -> int:
    """Where to resume: the header (checked by its pattern), else the query, else 0."""
    return int(value) if value is not None else query_value or 0


async def _then(first: Batch | None, rest: AsyncIterator[Batch]) -> AsyncIterator[Batch]:
    if first is not None:
        yield first
        async for event in rest:
            yield event


def _stream(batches: AsyncIterator[Batch], headers: dict[str, str]) -> EventSourceResponse:
    return EventSourceResponse(_frames(batches), ping=PING_SECONDS, headers=headers)


async def _frames(batches: AsyncIterator[Batch]) -> AsyncIterator[bytes]:
    """Each batch of events as one write of SSE frames."""
    async with contextlib.aclosing(batches):  # type: ignore[type-var]
        async for batch in batches:
            yield "".join(map(_frame, batch)).encode()


def _frame(event: Event) -> str:
    """One event as an SSE frame: its id a number, its type one of three names (the link
    checked both), its data one line of JSON (``json.dumps`` escapes every line break), so
    no output can forge a frame."""
    data = payload(event) if event["type"] == "output" else event.get("data")
    return f"id: {int(event['seq'])}\r\nevent: {event['type']}\r\ndata: {json.dumps(data)}\r\n\r\n"
