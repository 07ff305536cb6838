"""Python functions run remotely: ``@hpc.function(...)`` and the functions' Executor.

Only source text travels: the decorated (or submitted) function's own source, found with
:func:`inspect.getsource`, its decorators stripped, runs in a fresh module on the worker.
So it must be self-contained: imports inside its body, no closure over local variables, no
other function of your module. Inputs, arguments and results are JSON: nothing is pickled,
the gateway unpickles nothing and the worker is sent nothing to unpickle.

Registering is idempotent: when the name is taken by a function with the same content
(source, callable, system, schema and settings), it is used as it is; with other content,
:class:`~hpcgate.model.errors.Conflict` says so, unless ``replace=True`` (the old one is
deleted, its running invocations cancelled, and the new one registered).
"""

from __future__ import annotations

import ast
import asyncio
import concurrent.futures
import contextlib
import hashlib
import inspect
import json
import re
import textwrap
import threading
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Mapping
from typing import Any, Generic, TypeVar

from pydantic import BaseModel

from hpcgate.client._errors import FunctionFailed
from hpcgate.client._functions import (
    AsyncFunctions,
    FunctionEvent,
    Functions,
    Invoked,
    Output,
    jsonable,
    result_of,
)
from hpcgate.model.errors import Conflict, HpcgateError
from hpcgate.model.functions import Function, FunctionCreate, FunctionSettings

SHIM = "hpcgate_call"
NAME = re.compile(r"[a-z][a-z0-9_-]{0,39}")
ARGS_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"args": {"type": "array"}, "kwargs": {"type": "object"}},
    "required": ["args", "kwargs"],
    "additionalProperties": False,
}


def source_of(fn: Callable[..., Any]) -> str:
    """The source of ``fn``'s ``def``, dedented, its decorators stripped. A lambda, a
    builtin or a function typed into an interactive session has none, and a closure's
    variables would not travel with it: a ValueError."""
    name = getattr(fn, "__name__", "")
    if name == "<lambda>":
        raise ValueError("a lambda has no source of its own to send: define it with def")
    try:
        text = textwrap.dedent(inspect.getsource(fn))
    except (OSError, TypeError) as exc:
        raise ValueError(
            f"the source of {name or fn!r} cannot be found ({exc}): define it in a file,"
            " not in an interactive session"
        ) from None
    closed_over = getattr(getattr(fn, "__code__", None), "co_freevars", ())
    if closed_over:
        raise ValueError(
            f"{name} uses variables of the function around it ({', '.join(closed_over)}):"
            " only its own source is sent, so pass them as arguments"
        )
    return strip_decorators(text, name)


def strip_decorators(text: str, name: str) -> str:
    """``text`` from its ``def`` line on (decorators above it are left out)."""
    tree = ast.parse(text)
    node = tree.body[0] if tree.body else None
    if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) or node.name != name:
        raise ValueError(f"the source of {name} is not one plain def")
    lines = text.splitlines(keepends=True)
    return "".join(lines[node.lineno - 1 : node.end_lineno])


def remote_name(fn: Callable[..., Any], name: str | None) -> str:
    """The function's name on the gateway: ``name``, else the Python name in lower case
    (``_`` kept) when that is a valid function name."""
    chosen = name or getattr(fn, "__name__", "").lower()
    if NAME.fullmatch(chosen) is None:
        raise ValueError(
            f"{chosen!r} cannot be a function's name (a-z first, then a-z, 0-9, _ and -,"
            " 40 at most): pass name='...'"
        )
    return chosen


def shim_source(fn: Callable[..., Any]) -> str:
    """The executor's source for ``fn``: its own, then a shim that calls it with the
    invocation's JSON ``args`` and ``kwargs``."""
    shim = f"def {SHIM}(args, kwargs):\n    return {fn.__name__}(*args, **kwargs)\n"
    return f"{source_of(fn)}\n\n{shim}"


def executor_spec(
    fn: Callable[..., Any], system: str, settings: Mapping[str, Any]
) -> FunctionCreate:
    """The function the executor registers for ``fn``: named ``x`` and a hash of all it
    holds (source, system, settings), so one name is always one content."""
    fields = {**settings, "system": system, "source": shim_source(fn), "callable": SHIM}
    fields["input_schema"] = ARGS_SCHEMA
    digest = hashlib.sha256(json.dumps(fields, sort_keys=True, default=str).encode())
    return FunctionCreate.model_validate({**fields, "name": "x" + digest.hexdigest()[:32]})


def same(found: Function, spec: FunctionCreate) -> bool:
    """Whether the registered function is the one ``spec`` would register."""
    settings = FunctionSettings.model_validate(
        spec.model_dump(include=set(FunctionSettings.model_fields))
    )
    return (
        found.source == spec.source
        and found.entry == spec.entry
        and found.callable == spec.target()
        and found.system == spec.system
        and found.input_schema == spec.input_schema
        and found.settings == settings
    )


def ensure(functions: Functions, spec: FunctionCreate, replace: bool) -> Function:
    """``spec`` registered: made, or the same one found (see the module's docstring)."""
    try:
        return functions.register(spec)
    except Conflict:
        found = functions.get(spec.name)
        if same(found, spec):
            return found
        if not replace:
            raise taken(spec.name) from None
    functions.delete(spec.name)
    return functions.register(spec)


async def async_ensure(functions: AsyncFunctions, spec: FunctionCreate, replace: bool) -> Function:
    """As :func:`ensure`, awaited."""
    try:
        return await functions.register(spec)
    except Conflict:
        found = await functions.get(spec.name)
        if same(found, spec):
            return found
        if not replace:
            raise taken(spec.name) from None
    await functions.delete(spec.name)
    return await functions.register(spec)


def taken(name: str) -> Conflict:
    return Conflict(
        f"function {name} is registered with other content: delete it"
        " (hpc.functions.delete), pass replace=True, or choose another name="
    )


FunctionsT = TypeVar("FunctionsT")
LockT = TypeVar("LockT")


class Remote(Generic[FunctionsT, LockT]):
    """What both twins of a remote function hold: the client's functions, the function to
    register, the input model, whether a different one under its name is replaced, and
    the lock (of each twin's kind) that registers it once."""

    _new_lock: Callable[[], LockT]

    def __init__(
        self,
        functions: FunctionsT,
        spec: FunctionCreate,
        input: type[BaseModel] | None,
        replace: bool,
        encrypt: bool = False,
    ) -> None:
        self.spec, self.input, self.replace = spec, input, replace
        self._functions: FunctionsT = functions
        self._lock: LockT = type(self)._new_lock()
        self._registered: Function | None = None
        self.encrypt = encrypt  # its events encrypted end to end

    @property
    def remote(self) -> str:
        """Its name on the gateway."""
        return self.spec.name

    def _input(self, kwargs: dict[str, Any]) -> dict[str, Any]:
        if self.input is None:
            return dict(jsonable(kwargs, "the arguments"))
        dumped: dict[str, Any] = self.input.model_validate(kwargs).model_dump(mode="json")
        return dumped


class RemoteFunction(Remote[Functions, threading.Lock]):
    """A Python function that runs remotely, as ``@hpc.function`` makes it.

    ``f(**kwargs)`` invokes it and returns its result (:class:`FunctionFailed` if it
    raised); ``f.stream(**kwargs)`` gives its events as they come; ``f.remote`` is its
    name on the gateway. It is registered at the first call (or :meth:`register`). With
    an ``input`` model, the keywords are checked by it here and sent as its JSON."""

    _new_lock = threading.Lock

    def register(self) -> Function:
        """Register it now (once; a same one already there is used)."""
        with self._lock:
            if self._registered is None:
                self._registered = ensure(self._functions, self.spec, self.replace)
            return self._registered

    def __call__(self, **kwargs: Any) -> Any:
        return self.stream(**kwargs).result()

    def stream(self, **kwargs: Any) -> Invoked:
        """Its events: :class:`~hpcgate.client.Output` per yield, then the result or
        error."""
        value = self._input(kwargs)  # checked first: a refused input registers nothing
        self.register()
        return self._functions.invoke(self.remote, value, encrypt=self.encrypt)


class AsyncRemoteFunction(Remote[AsyncFunctions, asyncio.Lock]):
    """``@hpc.function`` of :class:`~hpcgate.AsyncClient`: as :class:`RemoteFunction`,
    ``await f(**kwargs)`` and ``async for event in f.stream(**kwargs)``."""

    _new_lock = asyncio.Lock

    async def register(self) -> Function:
        """As :meth:`RemoteFunction.register`."""
        async with self._lock:
            if self._registered is None:
                self._registered = await async_ensure(self._functions, self.spec, self.replace)
            return self._registered

    async def __call__(self, **kwargs: Any) -> Any:
        value = self._input(kwargs)
        await self.register()
        return await self._functions.invoke(self.remote, value, encrypt=self.encrypt).result()

    async def stream(self, **kwargs: Any) -> AsyncIterator[FunctionEvent]:
        """As :meth:`RemoteFunction.stream`."""
        value = self._input(kwargs)
        await self.register()
        events = self._functions.invoke(self.remote, value, encrypt=self.encrypt)
        try:
            async for event in events:
                yield event
        finally:
            await events.aclose()


def decorated(
    fn: Callable[..., Any],
    system: str,
    input: type[BaseModel] | None,
    name: str | None,
    settings: Mapping[str, Any],
) -> FunctionCreate:
    """What ``@hpc.function`` registers for ``fn`` (checked here: nothing is sent)."""
    schema = input.model_json_schema() if input is not None else {"type": "object"}
    source = source_of(fn)
    fields = {**settings, "system": system, "callable": fn.__name__, "input_schema": schema}
    return FunctionCreate.model_validate(
        {**fields, "name": remote_name(fn, name), "source": source}
    )


class FunctionFuture(concurrent.futures.Future[Any]):
    """The future of one :meth:`FunctionExecutor.submit`: its result is the function's
    return value; a failure is :class:`FunctionFailed`. :meth:`cancel` also cancels the
    invocation on the gateway once it has started (then returns True as well)."""

    def __init__(self, functions: Functions) -> None:
        super().__init__()
        self.events: Invoked | None = None
        self._functions = functions
        self._settling = threading.Lock()

    @property
    def invocation(self) -> str | None:
        """The invocation's id, once the gateway has given it."""
        return None if self.events is None else self.events.id

    def cancel(self) -> bool:
        with self._settling:
            if self.done() or not super().cancel():
                return self.cancelled()
            self.set_running_or_notify_cancel()  # CANCELLED: wakes wait() and as_completed()
        if self.invocation is not None and self.events is not None:
            with contextlib.suppress(HpcgateError):  # its reader cancels it at its next event
                self._functions.cancel(self.events.name, self.invocation)
        return True

    def settle(self, event: FunctionEvent) -> None:
        """End with the final event's result or error, unless cancelled meanwhile."""
        with self._settling:
            if self.done():
                return
            if isinstance(event, Output):
                return
            try:
                self.set_result(result_of([event], lambda: self.invocation))
            except FunctionFailed as failed:
                self.set_exception(failed)

    def fail(self, error: BaseException) -> None:
        with self._settling:
            if not self.done():
                self.set_exception(error)


class FunctionExecutor(concurrent.futures.Executor):
    """Runs Python functions on a system of the gateway as futures, as
    ``hpc.functions.executor(system, **settings)`` makes it.

    :meth:`submit` ``(fn, *args, **kwargs)`` registers ``fn`` the first time (its source and
    a shim that calls it with the JSON ``args`` and ``kwargs``, named from a hash of them
    and the settings; the same content is reused) and invokes it; the future's result is
    its return value. Arguments and results must be JSON (a TypeError at submit
    otherwise): nothing is pickled either way. At most ``max_in_flight`` invocations are
    followed at once (each holds one thread here); the others wait in order. ``settings``
    are the functions' (:class:`~hpcgate.model.functions.FunctionSettings`); ``encrypt``
    encrypts every invocation's events end to end (see :meth:`Functions.invoke`)."""

    def __init__(
        self,
        functions: Functions,
        system: str,
        *,
        max_in_flight: int = 16,
        encrypt: bool = False,
        **settings: Any,
    ) -> None:
        if max_in_flight < 1:
            raise ValueError("max_in_flight must be at least 1")
        FunctionSettings.model_validate(settings)  # a bad setting fails here, not per call
        self.system, self.settings, self.encrypt = system, settings, encrypt
        self._functions = functions
        self._pool = concurrent.futures.ThreadPoolExecutor(max_in_flight, "hpcgate-functions")
        self._registered: dict[str, Function] = {}
        self._registering = threading.Lock()
        self._futures: set[FunctionFuture] = set()

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> FunctionFuture:
        """Run ``fn(*args, **kwargs)`` remotely; its future. A lambda, a function without
        source or arguments that are not JSON raise here, and nothing is sent."""
        spec = executor_spec(fn, self.system, self.settings)
        value = jsonable({"args": list(args), "kwargs": kwargs}, "the arguments")
        future = FunctionFuture(self._functions)
        self._pool.submit(self._run, future, spec, value)  # after shutdown: RuntimeError
        self._futures.add(future)
        future.add_done_callback(self._futures.discard)
        return future

    def map(
        self,
        fn: Callable[..., Any],
        *iterables: Iterable[Any],
        timeout: float | None = None,
        chunksize: int = 1,
    ) -> Iterator[Any]:
        """As :meth:`concurrent.futures.Executor.map`: every call submitted now, their
        results in order (the futures not yet done are cancelled if it stops early)."""
        return super().map(fn, *iterables, timeout=timeout, chunksize=chunksize)

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """No more submits; ``cancel_futures`` cancels every future not done (and its
        invocation); ``wait`` returns once every one is done."""
        if cancel_futures:
            for future in list(self._futures):
                future.cancel()
        self._pool.shutdown(wait=wait, cancel_futures=cancel_futures)

    def _run(self, future: FunctionFuture, spec: FunctionCreate, value: dict[str, Any]) -> None:
        if future.done():
            return
        try:
            self._register(spec)
            future.events = self._functions.invoke(spec.name, value, encrypt=self.encrypt)
            for event in future.events:
                if future.cancelled():
                    future.events.close()  # cancels the invocation
                    return
                future.settle(event)
        except Exception as error:  # it belongs to the future
            future.fail(error)

    def _register(self, spec: FunctionCreate) -> None:
        with self._registering:
            if spec.name not in self._registered:
                self._registered[spec.name] = ensure(self._functions, spec, False)
