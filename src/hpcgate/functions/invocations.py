"""Invocations: validate the input, write the row, hand it to a ready worker, then follow
its events to the end (streamed as they come, or collected). The handing over and the
events go over the worker's one multiplexed connection (:mod:`hpcgate.functions.mux`).

Every way an invocation can go wrong ends it with an ``error`` event within seconds: the
worker's stream breaking off or its replica ending (its job killed, failed health: the
controller closes its connections) is ``WorkerLost``; no worker ready within the services'
wait is ``NoWorker``. A caller that goes away cancels its invocation unless it was
detached; a detached one is kept by a task of the gateway's (it holds the worker busy, so
the pool does not stop under it, and records how it ends), as are those a restarted
gateway finds running.

Detached with a grace of N seconds, an invocation is cancelled once no client has read its
events for N seconds (checked every :data:`POLL_SECONDS`): a client that died leaves no
invocation holding a worker for ever. The grace is kept with the invocation, so a restarted
gateway keeps it too, counting from its start (every reader was cut off by the restart);
one that was not detached gets :data:`RESTART_GRACE` then, its caller cut off too.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import secrets
import time
from collections import Counter
from collections.abc import AsyncGenerator, AsyncIterator, Coroutine
from dataclasses import dataclass, field
from typing import Any, NoReturn

from hpcgate.clock import utcnow
from hpcgate.functions import link, schemas
from hpcgate.functions.keys import KeySlots
from hpcgate.functions.mux import Muxes
from hpcgate.functions.registry import Found, Registry
from hpcgate.functions.workers import Workers
from hpcgate.model.errors import (
    BadGateway,
    Gone,
    NoReplica,
    NotFound,
    PayloadTooLarge,
    Unavailable,
)
from hpcgate.model.functions import (
    Invocation,
    InvocationError,
    InvocationResult,
    InvocationState,
)
from hpcgate.model.principal import Principal, Role, Scope
from hpcgate.ratelimits import Quota, RateLimits
from hpcgate.services.traffic import Route
from hpcgate.store.functions import InvocationStore
from hpcgate.store.tables import InvocationRow

log = logging.getLogger(__name__)

Event = dict[str, Any]
Batch = list[Event]  # the events one read from the worker brought, in order (never empty)
FINAL = ("result", "error")
POLL_SECONDS = 2.0  # how often a kept invocation's worker is asked how it is
RETRY_AFTER = 10.0
COLLECT_MAX = 16 << 20  # bytes of output an answer without streaming collects
FAILOVERS = 3
RESTART_GRACE = 60  # seconds a restarted gateway keeps an undetached one for a reader
TEXT_MAX = 64 << 10  # characters of an error's message and traceback kept


@dataclass(slots=True)
class Call:
    """An invocation on its way: its function, who called, and the worker that has it."""

    id: str
    found: Found
    caller: str
    detached: bool
    grace: int | None = None  # detached: seconds it runs on unread (None: for ever)
    route: Route | None = None
    last: int = 0  # the last seq seen
    ended: bool = False
    for_owner: bool = False  # whoever reads the events is the function's owner
    seal: str | None = None  # the caller's public key: its events are end-to-end encrypted
    started: AsyncGenerator[Batch, None] | None = None  # its events from the start, if run so
    quotas: list[Quota] = field(default_factory=list)  # the limits it was started under

    @property
    def secret(self) -> str | None:
        """What its pool's workers want to be shown (None: a pool made before secrets)."""
        return self.found.row.worker_secret


def _error(kind: str, message: str, seq: int) -> Event:
    return {"seq": seq, "type": "error", "data": {"type": kind, "message": message}}


def _end_state(event: Event) -> InvocationState:
    if event["type"] == "result":
        return InvocationState.SUCCEEDED
    data = event.get("data")
    # a sealed error's state is the one thing of it the gateway may know
    cancelled = isinstance(data, dict) and (
        data.get("type") == "Cancelled" or data.get("state") == "cancelled"
    )
    return InvocationState.CANCELLED if cancelled else InvocationState.FAILED


def _stored_error(event: Event) -> str | None:
    if event["type"] != "error":
        return None
    data = event.get("data") if isinstance(event.get("data"), dict) else {}
    assert isinstance(data, dict)
    if "sealed" in data:
        return SEALED_ERROR.model_dump_json()
    error = InvocationError(
        type=str(data.get("type") or "Error")[:256],
        message=str(data.get("message") or "")[:TEXT_MAX],
        traceback=str(data["traceback"])[:TEXT_MAX] if data.get("traceback") else None,
    )
    return error.model_dump_json()


def keeping(detach: int | bool) -> tuple[bool, int | None]:
    """Whether an invocation is detached, and its grace, from the ``detach`` asked:
    true, detached for ever; false or 0, not detached; N, detached for N seconds unread."""
    if detach is True or not detach:
        return bool(detach), None
    return True, int(detach)


SEALED_ERROR = InvocationError(
    type="Sealed", message="the error is end-to-end encrypted: only its caller can read it"
)


def unsealed(event: Event) -> bool:
    """Whether an event of an encrypted invocation came unsealed (the worker's key event
    and its EncryptionUnavailable, which carries nothing of the function, excepted)."""
    data = event.get("data")
    if event["type"] == "key" or (isinstance(data, dict) and "sealed" in data):
        return False
    return not (isinstance(data, dict) and data.get("type") == "EncryptionUnavailable")


def shown(event: Event, owner: bool) -> Event:
    """The event as a caller sees it: an error's traceback is its function's owner's only."""
    data = event.get("data")
    if owner or event.get("type") != "error" or not isinstance(data, dict):
        return event
    return {**event, "data": {k: v for k, v in data.items() if k != "traceback"}}


class Invocations:
    def __init__(
        self,
        registry: Registry,
        store: InvocationStore,
        workers: Workers,
        limits: RateLimits | None = None,
    ) -> None:
        self._registry = registry
        self._store = store
        self._workers = workers
        self._slots = KeySlots(store, limits)
        self._muxes = Muxes()  # each worker's one connection carrying the events followed
        self._reading: Counter[str] = Counter()  # readers of each invocation's events
        self._unread_since: dict[str, float] = {}  # kept ones with a grace: since when
        self._tasks: set[asyncio.Task[None]] = set()

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def stop(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._muxes.aclose()

    # -- invoking

    async def invoke(
        self,
        who: Principal,
        name: str,
        value: Any,
        detach: int | bool,
        seal: str | None = None,
    ) -> Call:
        """Validate the input, write the invocation, hand it to a ready worker (``detach``:
        see :func:`keeping`; ``seal``: the caller's public key, for events encrypted end to
        end)."""
        who.require(Scope.JOBS_WRITE)
        found = await self._registry.find(who, name, Role.MEMBER)  # a project's: a member
        filled = schemas.validated(found.spec.input_schema, value)
        detached, grace = keeping(detach)
        service = found.row.service_pk
        route = None if service is None else self._workers.ready_now(service)
        row = InvocationRow(
            id=secrets.token_urlsafe(16),
            function_pk=found.row.pk,
            caller=who.user,
            state=(InvocationState.QUEUED if route is None else InvocationState.RUNNING).value,
            replica_pk=None if route is None else route.replica,
            detached=detached,
            grace_seconds=grace,
            last_seq=0,
            created_at=utcnow(),
            key_id=who.key_id,
        )
        async with self._slots.taken(who, found) as quotas:  # over a limit: a 429, no row
            await self._store.add(row)
        owner = found.owned_by(who)
        call = Call(row.id, found, who.user, detached, grace, for_owner=owner, seal=seal)
        call.quotas = quotas
        await self._hand_over(call, filled, route)
        if detached:
            self._spawn(self._keep(call))
        return call

    async def _hand_over(self, call: Call, value: dict[str, Any], route: Route | None) -> None:
        """Submit to ``route`` (the worker the row names already), else to the first worker
        ready within the services' wait. The row says which worker took it: written with the
        row when one was ready at once (a gateway that stops before the worker has it finds
        at its start that the worker does not know it: ``WorkerLost``), else now."""
        recorded = None if route is None else route.replica
        if route is None:
            route = await self._wait_for_worker(call)
        call.route = await self._submit(call, route, value)
        if call.route.replica != recorded:
            running = InvocationState.RUNNING.value
            await self._store.update(call.id, state=running, replica_pk=call.route.replica)

    async def _wait_for_worker(self, call: Call) -> Route:
        service = call.found.row.service_pk
        route = None if service is None else await self._workers.ready(service)
        if route is None:
            wait = self._workers.wait_seconds
            why = f"function {call.found.row.name!r} has no ready worker after {wait:g} s"
            await self._finish(call, _error("NoWorker", why, 1))
            raise NoReplica(f"{why}; one is starting", retry_after=RETRY_AFTER, invocation=call.id)
        return route

    async def _submit(self, call: Call, route: Route, value: dict[str, Any]) -> Route:
        """The worker that took the invocation: one that could not be connected to (so
        nothing was sent) is passed over for another ready one."""
        for _ in range(FAILOVERS):
            try:
                with self._workers.serving(route.replica):
                    await self._run(call, route, value)
                return route
            except link.NotSent as exc:
                other = self._workers.instead_of(route)
                if other is None:
                    await self._lost(call, f"no connection to a worker: {exc}")
                route = other
            except link.Refused as exc:
                await self._refused(call, exc)
            except link.Broken as exc:
                await self._lost(call, f"the worker broke the connection off: {exc}")
        return await self._lost(call, "no worker could be connected to")

    async def _run(self, call: Call, route: Route, value: dict[str, Any]) -> None:
        """Hand it over with its events' follow in one message on the worker's multiplexed
        connection, or (a worker without one) by a request of its own."""
        seal = _seal(call)
        call.started = await self._muxes.run(route, call.id, value, call.secret, seal)
        if call.started is None:
            await link.submit(route, call.id, value, call.secret, seal)

    async def _lost(self, call: Call, why: str) -> NoReturn:
        await self._finish(call, _error("WorkerLost", why, call.last + 1))
        raise BadGateway(f"the invocation was not started: {why}", invocation=call.id)

    async def _refused(self, call: Call, exc: link.Refused) -> NoReturn:
        if exc.status == 503:
            why = "every worker of the function is busy"
            await self._finish(call, _error("WorkerBusy", why, 1))
            raise Unavailable(f"{why}: retry later", invocation=call.id)
        await self._lost(call, f"the worker refused it ({exc.status})")

    # -- following

    async def follow(
        self, call: Call, after: int, cancel_if_gone: bool
    ) -> AsyncGenerator[Batch, None]:
        """The invocation's events after seq ``after``, to its final one (a gateway-made
        ``WorkerLost`` if the worker's stream breaks off), in batches as the worker's
        stream brings them. Closed early (the caller gone), it cancels the invocation when
        ``cancel_if_gone``."""
        try:
            async with contextlib.aclosing(self._from_worker(call, after)) as batches:
                async for batch in batches:
                    yield [shown(event, call.for_owner) for event in batch]
        finally:
            if cancel_if_gone and not call.ended and not call.detached:
                self._spawn(self._cancel_quietly(call, "its caller went away"))

    async def _from_worker(self, call: Call, after: int) -> AsyncGenerator[Batch, None]:
        route = call.route
        assert route is not None
        self._reading[call.id] += 1
        started, call.started = call.started, None
        if started is not None and after:  # not from the start: followed anew
            await started.aclose()
            started = None
        stream = started or self._muxes.events(route, call.id, after, call.secret)
        try:
            with self._workers.serving(route.replica):
                async for found in stream:
                    batch, refused = _screened(call, found)
                    last = batch[-1]  # a final event ends its batch (link.events)
                    call.last = last["seq"]
                    if refused:  # no more of what cannot be relayed
                        self._spawn(self._cancel_quietly(call, "it came unencrypted"))
                    if last["type"] in FINAL:
                        await self._finish(call, last)
                    yield batch
                    if refused:
                        return
        except link.LinkError as exc:
            if isinstance(exc, link.Refused) and exc.status == 410:
                raise  # older events than the worker keeps: only a resume asks for them
            event = _error("WorkerLost", f"the worker was lost: {exc}", call.last + 1)
            await self._finish(call, event)
            yield [event]
        finally:
            await stream.aclose()
            self._reading[call.id] -= 1
            if not self._reading[call.id]:
                del self._reading[call.id]
                if call.id in self._unread_since:  # its grace starts again
                    self._unread_since[call.id] = time.monotonic()

    async def collect(self, call: Call) -> InvocationResult:
        """The whole answer once the invocation ends; past :data:`COLLECT_MAX` of output the
        invocation is cancelled and the answer is a 413."""
        output: list[Any] = []
        size = 0
        final: Event | None = None
        sealed: list[Event] = []
        async with contextlib.aclosing(self.follow(call, 0, cancel_if_gone=True)) as batches:
            async for batch in batches:  # closed at once if the caller leaves (cancelled)
                for event in batch:
                    if call.seal is not None:
                        sealed.append(event)
                    if event["type"] == "key":
                        continue
                    if event["type"] != "output":
                        final = event
                        continue
                    size += len(json.dumps(event.get("data")))
                    if size > COLLECT_MAX:
                        await self._too_much(call)
                    output.append(payload(event))
        assert final is not None
        if call.seal is not None:  # nothing of it in clear: the caller opens the events
            state = _end_state(final)
            return InvocationResult(id=call.id, state=state, output=[], events=sealed)
        return _result(call, output, final)

    async def _too_much(self, call: Call) -> NoReturn:
        await self._cancel_quietly(call, "its output exceeds what an answer collects")
        raise PayloadTooLarge(
            f"the output exceeds {COLLECT_MAX} bytes: it was cancelled; invoke it with"
            " 'Accept: text/event-stream' to stream its output",
            invocation=call.id,
        )

    async def _finish(self, call: Call, event: Event) -> None:
        """Record how the invocation ended (once: a later end changes nothing)."""
        call.ended = True
        await self._store.end(
            call.id,
            state=_end_state(event).value,
            error=_stored_error(event),
            last_seq=min(int(event.get("seq", call.last)), 2**31 - 1),
            ended_at=utcnow(),
        )

    # -- kept invocations: detached, or found running at start

    async def _keep(self, call: Call) -> None:
        """Follow a detached invocation's state until it ends, holding its worker busy."""
        route = call.route
        if route is None:
            return
        if call.grace is not None:
            self._unread_since[call.id] = time.monotonic()
        try:
            with self._workers.serving(route.replica):
                for _ in itertools.count():
                    if await self._kept_round(call, route):
                        return
                    await asyncio.sleep(POLL_SECONDS)
        except Exception:  # one invocation's keeper never takes the gateway down
            log.exception("keeping invocation %s failed", call.id)
        finally:
            self._unread_since.pop(call.id, None)

    def _unread_too_long(self, call: Call) -> bool:
        """Whether no client has read the invocation's events for its whole grace."""
        since = self._unread_since.get(call.id)
        if since is None or call.grace is None or self._reading[call.id]:
            return False
        return time.monotonic() - since >= call.grace

    async def _kept_round(self, call: Call, route: Route) -> bool:
        """Whether the invocation has ended (recording how, if no reader does)."""
        if call.ended:
            return True
        try:
            seen = await link.state(route, call.id, call.secret)
        except link.LinkError as exc:
            seen, why = None, f"the worker was lost: {exc}"
        else:
            why = "the worker no longer knows the invocation"
        if seen is None or not await self._workers.alive(route.replica):
            await self._finish(call, _error("WorkerLost", why, call.last + 1))
            return True
        state, count = seen
        if state not in ("succeeded", "failed", "cancelled"):
            return await self._cancelled_if_unread(call)
        if self._reading[call.id]:  # its reader records the end, unless it leaves first
            row = await self._store.get(call.id)
            return row is None or InvocationState(row.state).ended
        await self._final_of(call, route, count)
        return True

    async def _cancelled_if_unread(self, call: Call) -> bool:
        """Cancel the running invocation if its grace is over; whether it was."""
        if not self._unread_too_long(call):
            return False
        await self._cancel_quietly(call, f"no client read its events for {call.grace} s")
        return True

    async def _final_of(self, call: Call, route: Route, count: int) -> None:
        """Read the ended invocation's final event from its worker and record it."""
        with contextlib.suppress(link.LinkError):
            after = max(count - 1, 0)
            events = self._muxes.events(route, call.id, after, call.secret)
            async with contextlib.aclosing(events):
                async for batch in events:
                    if batch[-1]["type"] in FINAL:
                        await self._finish(call, batch[-1])
        if not call.ended:  # never left running: the worker has it ended
            why = "its worker ended it, but its final event could not be read"
            await self._finish(call, _error("WorkerLost", why, max(count, call.last + 1)))

    async def recover(self) -> None:
        """At start: invocations a previous run left unended are kept again where their
        worker still runs, else ended ``WorkerLost``."""
        for row in await self._store.unended():
            found = await self._registry.by_pk(row.function_pk)
            if found is None:
                continue
            grace = row.grace_seconds if row.detached else RESTART_GRACE
            call = Call(row.id, found, row.caller, True, grace, last=row.last_seq)
            route = await self._route(found, row)
            if route is None:
                why = "the gateway restarted and its worker is gone"
                await self._finish(call, _error("WorkerLost", why, row.last_seq + 1))
                continue
            call.route = route
            self._spawn(self._keep(call))

    async def _route(self, found: Found, row: InvocationRow) -> Route | None:
        if row.replica_pk is None:
            return None
        return await self._workers.route(row.replica_pk, found.row.owner, found.row.system)

    # -- invocations as the API shows them

    async def _visible(self, who: Principal, name: str, key: str) -> tuple[Found, InvocationRow]:
        found = await self._registry.find(who, name)
        row = await self._store.get(key)
        if row is None or row.function_pk != found.row.pk:
            raise NotFound(f"no invocation {key!r} of {name!r}")
        if not found.owned_by(who) and (row.caller != who.user or row.key_id != who.key_id):
            raise NotFound(f"no invocation {key!r} of {name!r}")
        return found, row

    async def list(self, who: Principal, name: str, limit: int) -> list[Invocation]:
        """The newest invocations: all of them to the function's owner, else the caller's."""
        found = await self._registry.find(who, name)
        caller = None if found.owned_by(who) else who.user
        rows = await self._store.of(found.row.pk, caller, limit, who.key_id)
        return [_shown_row(found, row, who) for row in rows]

    async def get(self, who: Principal, name: str, key: str) -> Invocation:
        found, row = await self._visible(who, name, key)
        return _shown_row(found, row, who)

    async def cancel(self, who: Principal, name: str, key: str) -> Invocation:
        """Cancel it on its worker; an ended one is left as it is."""
        who.require(Scope.JOBS_WRITE)
        found, row = await self._visible(who, name, key)
        if not InvocationState(row.state).ended:
            call = Call(row.id, found, row.caller, row.detached, last=row.last_seq)
            call.route = await self._route(found, row)
            await self._cancel_quietly(call, f"cancelled by {who.user}")
        return await self.get(who, name, key)

    async def _cancel_quietly(self, call: Call, why: str) -> None:
        """Cancel on the worker (which ends it with its own Cancelled event), and record it."""
        if call.route is not None:
            with contextlib.suppress(link.LinkError):
                await link.cancel(call.route, call.id, call.secret)
        await self._finish(call, _error("Cancelled", why, call.last + 1))

    async def resume(self, who: Principal, name: str, key: str, after: int) -> Call:
        """The invocation to read the events of, after seq ``after``."""
        found, row = await self._visible(who, name, key)
        call = Call(row.id, found, row.caller, True, last=after, for_owner=found.owned_by(who))
        call.ended = InvocationState(row.state).ended
        call.route = await self._route(found, row)
        if call.route is None and not call.ended:
            why = "its worker is gone"
            await self._finish(call, _error("WorkerLost", why, max(row.last_seq, after) + 1))
        return call

    async def replay(self, call: Call, after: int) -> AsyncIterator[Batch]:
        """The events after ``after``, in batches: from its worker, or (the worker gone, the
        invocation ended) the final event the gateway recorded."""
        if call.route is not None:
            try:
                async for batch in self.follow(call, after, cancel_if_gone=False):
                    yield batch
            except link.Refused as exc:
                raise Gone(f"events up to {exc.body.get('oldest')} are no longer kept") from exc
            return
        row = await self._store.get(call.id)
        if row is None or row.last_seq <= after:
            return
        yield [shown(_recorded_final(row), call.for_owner)]

    async def delete_function(self, who: Principal, name: str) -> None:
        """Cancel the function's running invocations, forget it, stop its pool."""
        who.require(Scope.JOBS_WRITE)
        found = await self._registry.owned(who, name)
        for row in await self._store.unended(found.row.pk):
            call = Call(row.id, found, row.caller, row.detached, last=row.last_seq)
            call.route = await self._route(found, row)
            await self._cancel_quietly(call, "its function was deleted")
        await self._registry.remove(found)


def _seal(call: Call) -> dict[str, Any] | None:
    """What the worker is told of an encrypted invocation: the caller's key, and whether
    it may read tracebacks (the owner only: the gateway cannot cut them from sealed ones)."""
    if call.seal is None:
        return None
    return {"public_key": call.seal, "tracebacks": call.for_owner}


def _screened(call: Call, batch: Batch) -> tuple[Batch, bool]:
    """The batch as it may be relayed: an encrypted invocation's is cut at the first event
    that came unsealed, which becomes the gateway's own refusal (True: one did)."""
    if call.seal is None:
        return batch, False
    for index, event in enumerate(batch):
        if unsealed(event):
            return [*batch[:index], _refused(event)], True
    return batch, False


def _refused(event: Event) -> Event:
    """The gateway's own error in place of an event an encrypted invocation's worker sent
    unsealed (a worker from before encryption): nothing of it is relayed or kept."""
    why = f"its worker sent a {event['type']} event unencrypted (a worker too old to encrypt?)"
    return _error("NotEncrypted", why, event["seq"])


def payload(event: Event) -> Any:
    """An output event's data; bytes (base64) as ``{"encoding": "base64", "data": ...}``."""
    if event.get("encoding") == "base64":
        return {"encoding": "base64", "data": event.get("data")}
    return event.get("data")


def _result(call: Call, output: list[Any], final: Event) -> InvocationResult:
    state = _end_state(final)
    if final["type"] == "result":
        return InvocationResult(id=call.id, state=state, output=output, result=final.get("data"))
    error = _stored_error(final)
    assert error is not None
    return InvocationResult(
        id=call.id, state=state, output=output, error=InvocationError.model_validate_json(error)
    )


def _recorded_final(row: InvocationRow) -> Event:
    if row.error is None:
        return {"seq": row.last_seq, "type": "result", "data": None}
    return {"seq": row.last_seq, "type": "error", "data": json.loads(row.error)}


def _shown_row(found: Found, row: InvocationRow, who: Principal) -> Invocation:
    error = InvocationError.model_validate_json(row.error) if row.error else None
    if error is not None and not found.owned_by(who):
        error = error.model_copy(update={"traceback": None})
    try:
        state = InvocationState(row.state)
    except ValueError:
        state = InvocationState.FAILED
    return Invocation(
        id=row.id,
        function=found.row.name,
        caller=row.caller,
        state=state,
        detached=row.detached,
        grace=row.grace_seconds,
        events=max(0, min(row.last_seq, 2**31 - 1)),
        created_at=row.created_at,
        ended_at=row.ended_at,
        error=error,
        key=row.key_id,
    )
