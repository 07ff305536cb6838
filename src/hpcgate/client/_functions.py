"""The SDK's functions methods, as ``client.functions``: register Python functions, invoke
them as a stream of typed events, and follow, resume and cancel their invocations.

Invoking streams Server-Sent Events whose ids are the events' seq (1, 2, ...). The SDK
invokes with ``detach=<grace>`` under the hood (60 s unless ``grace=`` says otherwise), so
that a connection that breaks mid-stream does not cancel the invocation on the gateway:
the stream is opened again on the invocation's ``events`` with ``Last-Event-ID`` and goes
on exactly after the last event seen. It is reopened as :class:`~hpcgate.client.Retry`
says: by default up to 4 times in a row with no event between, after 0.5, 1, 2, 4 s (with
jitter), each reopening itself retrying a refused connection as often, so a gateway that
is away for some 20 to 45 s (a restart) is waited out; then
:class:`~hpcgate.client.GatewayUnreachable` is raised.
Leaving the iteration early (a ``break``, an exception, closing it) cancels the invocation
unless ``detach=True`` was asked (then it is invoked with ``detach=true``, and runs to its
end); a client process that dies mid-stream leaves it running for its grace, after which
the gateway cancels it unless some client reads its events again.
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import json
import time
from collections.abc import (
    AsyncGenerator,
    AsyncIterator,
    Callable,
    Generator,
    Iterable,
    Iterator,
    Mapping,
)
from dataclasses import dataclass
from datetime import timedelta
from functools import cached_property
from typing import TYPE_CHECKING, Any, Generic, Literal, TypeAlias, TypeVar

import httpx
from pydantic import BaseModel

from hpcgate.client._async import AsyncCore
from hpcgate.client._base import Call, given, request
from hpcgate.client._errors import FunctionFailed, GatewayUnreachable
from hpcgate.client._jobs import SSE, Event, EventParser
from hpcgate.client._sealed import HEADER as ENCRYPT_HEADER
from hpcgate.client._sealed import Opener
from hpcgate.client._sync import SyncCore
from hpcgate.client._tokens import key_call, keys_of, revoke_call, tokens_call
from hpcgate.model.bounds import GRACE_MAX
from hpcgate.model.errors import HpcgateError
from hpcgate.model.functions import Function, FunctionCreate, Invocation, InvocationError
from hpcgate.model.tokens import CreatedToken, TokenInfo

if TYPE_CHECKING:
    from hpcgate.client._remote import AsyncRemoteFunction, FunctionExecutor, RemoteFunction

INVOCATION_HEADER = "Hpcgate-Invocation"
GRACE = 60  # seconds an invocation runs on with no reader (a dead client's), by default
KINDS = frozenset({"key", "output", "result", "error"})
Spec: TypeAlias = FunctionCreate | Mapping[str, Any]


@dataclass(frozen=True)
class Output:
    """One ``yield`` of the function: ``data`` as JSON gives it (a ``str`` as it is);
    ``bytes`` it yielded arrive as base64 text with ``encoding`` ``"base64"``."""

    seq: int
    data: Any
    encoding: str | None = None
    type: Literal["output"] = "output"


@dataclass(frozen=True)
class Result:
    """The final event of a success: ``data`` is the return value (None if none)."""

    seq: int
    data: Any
    type: Literal["result"] = "result"


@dataclass(frozen=True)
class Error:
    """The final event of a failure: the exception's type, message and traceback."""

    seq: int
    error: InvocationError
    type: Literal["error"] = "error"


FunctionEvent: TypeAlias = Output | Result | Error


def event_of(event: Event) -> FunctionEvent | None:
    """The typed event of a Server-Sent Event of an invocation's stream; None for others."""
    seq, data = int(event.id or 0), json.loads(event.data)
    if event.event == "output":
        return output_of(seq, data)
    return final_of(seq, event.event, data)


def final_of(seq: int, kind: str, data: Any) -> Result | Error | None:
    if kind == "result":
        return Result(seq, data)
    if kind == "error":
        return Error(seq, InvocationError.model_validate(data))
    return None


def opened_of(seq: int, plain: dict[str, Any]) -> FunctionEvent | None:
    """The typed event of an encrypted one, opened (``{"type", "data"[, "encoding"]}``)."""
    if plain["type"] == "output":
        encoding = plain.get("encoding")
        return Output(seq, plain.get("data"), encoding if isinstance(encoding, str) else None)
    return final_of(seq, plain["type"], plain.get("data"))


def output_of(seq: int, data: Any) -> Output:
    if isinstance(data, dict) and data.keys() == {"encoding", "data"} and is_base64(data):
        return Output(seq, data["data"], "base64")
    return Output(seq, data)


def is_base64(data: dict[str, Any]) -> bool:
    return data["encoding"] == "base64" and isinstance(data["data"], str)


def jsonable(value: Any, what: str = "the input") -> Any:
    """``value`` if it is plain JSON (dicts with string keys, lists, str, numbers, bools,
    None; no NaN); else a TypeError saying so: nothing is pickled on the way."""
    try:
        json.dumps(value, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"{what} must be JSON (dicts, lists, str, numbers, None): {exc}") from None
    return value


def input_of(value: Mapping[str, Any] | BaseModel | None) -> dict[str, Any]:
    """The input object: a pydantic model's JSON fields, or a mapping that must be JSON."""
    if isinstance(value, BaseModel):
        dumped: dict[str, Any] = value.model_dump(mode="json")
        return dumped
    return dict(jsonable(dict(value or {})))


def spec_of(spec: Spec | None, fields: Mapping[str, Any]) -> FunctionCreate:
    """A :class:`FunctionCreate` from a spec (a model or its fields) and keywords over it;
    checked here, so a malformed one sends nothing."""
    start = dict(spec) if isinstance(spec, Mapping) else {}
    if isinstance(spec, FunctionCreate):
        start = spec.model_dump(exclude_unset=True)
    return FunctionCreate.model_validate({**start, **fields})


def register_call(spec: FunctionCreate) -> Call:
    body = spec.model_dump(mode="json", exclude_unset=True)
    return request("POST", "functions", json=body)


def function_call(method: str, name: str, *more: str, **params: Any) -> Call:
    return request(method, "functions", name, *more, params=params or None)


def invoke_call(
    name: str, value: dict[str, Any], detach: str, opener: Opener | None = None
) -> Call:
    call = request("POST", "functions", name, "invoke", params={"detach": detach}, json=value)
    headers = {"Accept": SSE}
    if opener is not None:
        headers[ENCRYPT_HEADER] = opener.public_key
    return Call(call.method, call.path, call.params, call.json, headers)


def detach_param(detach: bool, grace: int) -> str:
    """The ``detach`` an invocation is made with: ``true`` (for ever) when the caller
    detaches it, else its grace (a ValueError if out of 1 to 86400 seconds)."""
    if detach:
        return "true"
    if type(grace) is not int or not 1 <= grace <= GRACE_MAX:
        raise ValueError(f"grace must be a whole number of seconds, 1 to {GRACE_MAX}")
    return str(grace)


def events_call(name: str, key: str, after: int) -> Call:
    headers = {"Accept": SSE, "Last-Event-ID": str(after)}
    return request("GET", "functions", name, "invocations", key, "events", headers=headers)


class Stream:
    """Where one invocation's event stream is: its id (once the gateway gave it), the last
    seq seen, and whether its final event came."""

    def __init__(
        self,
        name: str,
        value: dict[str, Any] | None,
        key: str | None,
        after: int,
        detach: str = "true",
        opener: Opener | None = None,
    ):
        self.name, self.value, self.key, self.last = name, value, key, after
        self.detach = detach  # the invocation's detach parameter, when it invokes
        self.ended = False
        self.breaks = 0
        self.opener = opener  # an encrypted invocation's: every event is opened by it

    def call(self) -> Call:
        """The first request invokes; every later one resumes after the last seq."""
        if self.key is None:
            assert self.value is not None
            return invoke_call(self.name, self.value, self.detach, self.opener)
        return events_call(self.name, self.key, self.last)

    def opened(self, response: httpx.Response) -> None:
        if self.key is None:
            self.key = response.headers.get(INVOCATION_HEADER)

    def take(self, event: Event) -> FunctionEvent | None:
        if self.opener is not None:
            return self._open(event, self.opener)
        found = event_of(event)
        if found is None or found.seq <= self.last:
            return None  # a ping, or an event seen before the break
        self.last, self.breaks = found.seq, 0
        self.ended = not isinstance(found, Output)
        return found

    def _open(self, event: Event, opener: Opener) -> FunctionEvent | None:
        """An encrypted invocation's event, opened: every one must be the next in order,
        sealed by its worker (SealBroken otherwise: nothing in clear is taken)."""
        if event.event not in KINDS:
            return None
        seq = int(event.id or 0)
        plain = opener.open(str(self.key), seq, event.event, json.loads(event.data))
        self.last, self.breaks = seq, 0
        found = None if plain is None else opened_of(seq, plain)
        self.ended = isinstance(found, Result | Error)
        return found

    def pause(self, core: SyncCore | AsyncCore, broken: Exception) -> float:
        """The pause before reopening; GatewayUnreachable once the retries are spent or
        when the invocation's id never came (nothing to resume)."""
        delay = core.retry.delay(self.breaks, self.call(), None) if self.key else None
        if delay is None:
            raise GatewayUnreachable(f"{core.base_url}: {broken}") from broken
        self.breaks += 1
        return delay

    def must_cancel(self, detach: bool) -> bool:
        return not detach and not self.ended and self.key is not None


class Invoked(Iterator[FunctionEvent]):
    """The events of one invocation (an iterator); :attr:`id` is the invocation's id once
    the first event was asked for. :meth:`close` stops reading (and cancels the invocation
    unless it was detached)."""

    def __init__(self, stream: Stream, events: Generator[FunctionEvent, None, None]) -> None:
        self._stream, self._events = stream, events

    @property
    def id(self) -> str | None:
        return self._stream.key

    @property
    def name(self) -> str:
        """The function's name."""
        return self._stream.name

    def __next__(self) -> FunctionEvent:
        return next(self._events)

    def result(self) -> Any:
        """Read to the end: the result (the output dropped); :class:`FunctionFailed` if
        it ended with an error."""
        return result_of(self, lambda: self.id)

    def close(self) -> None:
        self._events.close()


class AsyncInvoked(AsyncIterator[FunctionEvent]):
    """As :class:`Invoked`, for ``async for``; :meth:`aclose` stops reading."""

    def __init__(self, stream: Stream, events: AsyncGenerator[FunctionEvent, None]) -> None:
        self._stream, self._events = stream, events

    @property
    def id(self) -> str | None:
        return self._stream.key

    async def __anext__(self) -> FunctionEvent:
        return await anext(self._events)

    async def result(self) -> Any:
        """As :meth:`Invoked.result` (only the final event is kept)."""
        final = [event async for event in self if not isinstance(event, Output)]
        return result_of(final, lambda: self.id)

    async def aclose(self) -> None:
        await self._events.aclose()


def unended(stream: Stream) -> GatewayUnreachable:
    return GatewayUnreachable(f"the events of invocation {stream.key} stopped before its end")


def result_of(events: Iterable[FunctionEvent], key: Callable[[], str | None]) -> Any:
    """The result of an invocation's events; :class:`FunctionFailed` for an error (``key``
    gives the invocation's id, known once its stream opened)."""
    for event in events:
        if isinstance(event, Result):
            return event.data
        if isinstance(event, Error):
            raise FunctionFailed(event.error, key())
    raise GatewayUnreachable(f"invocation {key()}: the stream ended without a final event")


class Functions:
    """``client.functions`` of :class:`~hpcgate.Client`: register, invoke and follow
    functions (see :mod:`hpcgate.client._functions` for how a stream is resumed)."""

    def __init__(self, core: SyncCore) -> None:
        self._core = core

    def register(self, spec: Spec | None = None, /, **fields: Any) -> Function:
        """Register a function: a :class:`~hpcgate.model.functions.FunctionCreate` (or its
        fields as a mapping) and/or its fields as keywords (``name``, ``system``,
        ``source`` or ``entry``, ``input_schema``, settings). A name taken is a
        :class:`~hpcgate.model.errors.Conflict`. With ``project="p"`` it is the project's
        (still run as you), named ``p~NAME`` in every other call."""
        return self._core._call(register_call(spec_of(spec, fields)), Function)

    def list(self, project: str | None = None) -> builtins.list[Function]:
        """Your functions and those shared with you; with ``project``, that project's
        (address one as ``PROJECT~NAME``)."""
        return self._core._call(_list_call(project), builtins.list[Function])

    def get(self, name: str) -> Function:
        """One function: schema and settings; to its owner also source and workers."""
        return self._core._call(function_call("GET", name), Function)

    def delete(self, name: str) -> None:
        """Remove your function: its running invocations end ``Cancelled``."""
        self._core._send(function_call("DELETE", name))

    def invoke(
        self,
        name: str,
        input: Mapping[str, Any] | BaseModel | None = None,
        *,
        detach: bool = False,
        grace: int = GRACE,
        encrypt: bool = False,
    ) -> Invoked:
        """Invoke ``name`` with ``input`` (a JSON object or a pydantic model): its events as
        they come, :class:`Output` then one :class:`Result` or :class:`Error`, resumed by
        itself when the connection breaks. Stopping early (``close()``, a ``break`` then
        garbage collection, an exception) cancels the invocation unless ``detach`` (then it
        runs to its end). Should this process die, the gateway cancels it once no client has
        read its events for ``grace`` seconds (1 to 86400). The request is sent when the
        first event is asked for; ``.id`` is then its id.

        ``encrypt``: its events are encrypted end to end between the worker and this
        process (the gateway sees only ciphertext; the input is still in clear, validated
        there); an event out of order, altered or unencrypted raises :class:`SealBroken`
        (so does an error the gateway made itself, such as ``WorkerLost``)."""
        opener = Opener() if encrypt else None
        stream = Stream(name, input_of(input), None, 0, detach_param(detach, grace), opener)
        return Invoked(stream, self._follow(stream, detach))

    def call(
        self,
        name: str,
        input: Mapping[str, Any] | BaseModel | None = None,
        *,
        encrypt: bool = False,
    ) -> Any:
        """Invoke and return its result (its output is dropped); :class:`FunctionFailed`
        with the error's type, message and traceback if it fails."""
        return self.invoke(name, input, encrypt=encrypt).result()

    def invocations(self, name: str, *, limit: int = 100) -> builtins.list[Invocation]:
        """The function's invocations, newest first (all to its owner, else your own)."""
        call = function_call("GET", name, "invocations", limit=limit)
        return self._core._call(call, builtins.list[Invocation])

    def invocation(self, name: str, key: str) -> Invocation:
        return self._core._call(function_call("GET", name, "invocations", key), Invocation)

    def events(self, name: str, key: str, *, after: int = 0) -> Invoked:
        """An invocation's events after seq ``after``, live, until its final one; resumed
        as :meth:`invoke`'s. Stopping early does not cancel it."""
        stream = Stream(name, None, key, after)
        return Invoked(stream, self._follow(stream, True))

    def cancel(self, name: str, key: str) -> Invocation:
        """Cancel an invocation (an ended one is left as it is)."""
        return self._core._call(function_call("DELETE", name, "invocations", key), Invocation)

    def create_key(
        self,
        functions: str | Iterable[str],
        *,
        per_minute: int | None = None,
        concurrent: int | None = None,
        expires_in: float | timedelta | None = None,
        description: str | None = None,
    ) -> CreatedToken:
        """An API key for your function(s), for a web app to invoke them without your
        token: it may invoke them and read the invocations it started, nothing else, at
        most ``per_minute`` requests a minute and ``concurrent`` unended invocations
        (beyond: :class:`~hpcgate.RateLimited`). Its secret, ``.token``, is shown only this
        once; revoke it with :meth:`revoke_key` (revoking your token revokes it too)."""
        call = key_call(functions, per_minute, concurrent, expires_in, description)
        return self._core._call(call, CreatedToken)

    def keys(self, name: str | None = None) -> builtins.list[TokenInfo]:
        """Your API keys (those for function ``name``, if given), never their secrets."""
        return keys_of(self._core._call(tokens_call(None), builtins.list[TokenInfo]), name)

    def revoke_key(self, key_id: str) -> None:
        """Revoke an API key at once."""
        self._core._send(revoke_call(key_id))

    def executor(self, system: str, *, encrypt: bool = False, **settings: Any) -> FunctionExecutor:
        """A :class:`concurrent.futures.Executor` running Python functions on ``system``
        (see :class:`~hpcgate.client.FunctionExecutor`); ``settings`` are the functions'
        (``python``, ``max_workers``, ``concurrency``, ``partition``, ...); ``encrypt``
        encrypts each invocation's events end to end."""
        from hpcgate.client._remote import FunctionExecutor

        return FunctionExecutor(self, system, encrypt=encrypt, **settings)

    def _follow(self, stream: Stream, detach: bool) -> Generator[FunctionEvent, None, None]:
        try:
            while not stream.ended:
                try:
                    yield from self._read(stream)
                    broken: Exception = unended(stream)
                except (httpx.TransportError, GatewayUnreachable) as exc:
                    broken = exc
                if not stream.ended:
                    self._pause(stream, broken)
        finally:
            if stream.must_cancel(detach):
                self._cancel_quietly(stream)

    def _read(self, stream: Stream) -> Iterator[FunctionEvent]:
        with self._core._stream(stream.call()) as response:
            stream.opened(response)
            parser = EventParser()
            for line in response.iter_lines():
                if (event := parser.feed(line)) and (found := stream.take(event)):
                    yield found
                    if stream.ended:
                        return

    def _pause(self, stream: Stream, broken: Exception) -> None:
        time.sleep(stream.pause(self._core, broken))

    def _cancel_quietly(self, stream: Stream) -> None:
        with contextlib.suppress(HpcgateError):  # best effort: the caller is leaving
            self.cancel(stream.name, str(stream.key))


class AsyncFunctions:
    """``client.functions`` of :class:`~hpcgate.AsyncClient`: as :class:`Functions`,
    awaited; :meth:`invoke` and :meth:`events` are ``async for`` iterators."""

    def __init__(self, core: AsyncCore) -> None:
        self._core = core

    async def register(self, spec: Spec | None = None, /, **fields: Any) -> Function:
        """As :meth:`Functions.register`."""
        return await self._core._call(register_call(spec_of(spec, fields)), Function)

    async def list(self, project: str | None = None) -> builtins.list[Function]:
        return await self._core._call(_list_call(project), builtins.list[Function])

    async def get(self, name: str) -> Function:
        return await self._core._call(function_call("GET", name), Function)

    async def delete(self, name: str) -> None:
        await self._core._send(function_call("DELETE", name))

    def invoke(
        self,
        name: str,
        input: Mapping[str, Any] | BaseModel | None = None,
        *,
        detach: bool = False,
        grace: int = GRACE,
        encrypt: bool = False,
    ) -> AsyncInvoked:
        """As :meth:`Functions.invoke`: ``async for event in ...``."""
        opener = Opener() if encrypt else None
        stream = Stream(name, input_of(input), None, 0, detach_param(detach, grace), opener)
        return AsyncInvoked(stream, self._follow(stream, detach))

    async def call(
        self,
        name: str,
        input: Mapping[str, Any] | BaseModel | None = None,
        *,
        encrypt: bool = False,
    ) -> Any:
        """As :meth:`Functions.call`."""
        return await self.invoke(name, input, encrypt=encrypt).result()

    async def invocations(self, name: str, *, limit: int = 100) -> builtins.list[Invocation]:
        call = function_call("GET", name, "invocations", limit=limit)
        return await self._core._call(call, builtins.list[Invocation])

    async def invocation(self, name: str, key: str) -> Invocation:
        return await self._core._call(function_call("GET", name, "invocations", key), Invocation)

    def events(self, name: str, key: str, *, after: int = 0) -> AsyncInvoked:
        """As :meth:`Functions.events`."""
        stream = Stream(name, None, key, after)
        return AsyncInvoked(stream, self._follow(stream, True))

    async def cancel(self, name: str, key: str) -> Invocation:
        call = function_call("DELETE", name, "invocations", key)
        return await self._core._call(call, Invocation)

    async def create_key(
        self,
        functions: str | Iterable[str],
        *,
        per_minute: int | None = None,
        concurrent: int | None = None,
        expires_in: float | timedelta | None = None,
        description: str | None = None,
    ) -> CreatedToken:
        """As :meth:`Functions.create_key`."""
        call = key_call(functions, per_minute, concurrent, expires_in, description)
        return await self._core._call(call, CreatedToken)

    async def keys(self, name: str | None = None) -> builtins.list[TokenInfo]:
        """As :meth:`Functions.keys`."""
        found = await self._core._call(tokens_call(None), builtins.list[TokenInfo])
        return keys_of(found, name)

    async def revoke_key(self, key_id: str) -> None:
        """As :meth:`Functions.revoke_key`."""
        await self._core._send(revoke_call(key_id))

    async def _follow(self, stream: Stream, detach: bool) -> AsyncGenerator[FunctionEvent, None]:
        try:
            while not stream.ended:
                try:
                    async for event in self._read(stream):
                        yield event
                    broken: Exception = unended(stream)
                except (httpx.TransportError, GatewayUnreachable) as exc:
                    broken = exc
                if not stream.ended:
                    await asyncio.sleep(stream.pause(self._core, broken))
        finally:
            if stream.must_cancel(detach):
                await self._cancel_quietly(stream)

    async def _read(self, stream: Stream) -> AsyncIterator[FunctionEvent]:
        async with self._core._stream(stream.call()) as response:
            stream.opened(response)
            parser = EventParser()
            async for line in response.aiter_lines():
                if (event := parser.feed(line)) and (found := stream.take(event)):
                    yield found
                    if stream.ended:
                        return

    async def _cancel_quietly(self, stream: Stream) -> None:
        with contextlib.suppress(HpcgateError):  # best effort: the caller is leaving
            await self.cancel(stream.name, str(stream.key))


R = TypeVar("R")


class FunctionDecorator(Generic[R]):
    """The ``function`` decorator both clients have; each makes its own twin of a remote
    function (:meth:`_remote`)."""

    def function(
        self,
        *,
        system: str,
        input: type[BaseModel] | None = None,
        name: str | None = None,
        replace: bool = False,
        encrypt: bool = False,
        **settings: Any,
    ) -> Callable[[Callable[..., Any]], R]:
        """``@hpc.function(system=..., input=Model, **settings)``: the decorated function
        runs remotely (see :class:`~hpcgate.client.RemoteFunction`; with
        :class:`~hpcgate.AsyncClient` ``await f(**kwargs)``, ``async for e in
        f.stream(**kwargs)``); ``encrypt=True`` encrypts its events end to end (see
        :meth:`Functions.invoke`)."""
        from hpcgate.client._remote import decorated

        def wrap(fn: Callable[..., Any]) -> R:
            spec = decorated(fn, system, input, name, settings)
            return self._remote(spec, input, replace, encrypt)

        return wrap

    def _remote(
        self, spec: FunctionCreate, input: type[BaseModel] | None, replace: bool, encrypt: bool
    ) -> R:
        raise NotImplementedError


class SyncFunctionMethods(SyncCore, FunctionDecorator["RemoteFunction"]):
    """Gives :class:`~hpcgate.Client` its ``functions`` and the ``function`` decorator."""

    @cached_property
    def functions(self) -> Functions:
        """Register, invoke and follow functions; ``functions.executor(...)``."""
        return Functions(self)

    def _remote(
        self, spec: FunctionCreate, input: type[BaseModel] | None, replace: bool, encrypt: bool
    ) -> RemoteFunction:
        from hpcgate.client._remote import RemoteFunction

        return RemoteFunction(self.functions, spec, input, replace, encrypt)


class AsyncFunctionMethods(AsyncCore, FunctionDecorator["AsyncRemoteFunction"]):
    """Gives :class:`~hpcgate.AsyncClient` its ``functions`` and the ``function``
    decorator."""

    @cached_property
    def functions(self) -> AsyncFunctions:
        """As :attr:`Client.functions` (no executor: that one is blocking by nature)."""
        return AsyncFunctions(self)

    def _remote(
        self, spec: FunctionCreate, input: type[BaseModel] | None, replace: bool, encrypt: bool
    ) -> AsyncRemoteFunction:
        from hpcgate.client._remote import AsyncRemoteFunction

        return AsyncRemoteFunction(self.functions, spec, input, replace, encrypt)


def _list_call(project: str | None) -> Call:
    return request("GET", "functions", params=given({"project": project}))
