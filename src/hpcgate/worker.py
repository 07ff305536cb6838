"""The functions worker: one Python function served over HTTP on a compute node.

This one module is what a function's worker pool runs on the cluster. It uses the standard
library only (Python >= 3.9) and imports nothing of hpcgate: the gateway embeds its text in
the pool's job script and calls ``main(spec_json)``. ``python -m hpcgate.worker`` with the
spec base64-encoded in ``HPCGATE_FUNCTION_SPEC`` does the same (for tests).

**The spec** (JSON): ``{"name", "source" | "entry", "callable", "concurrency", "max_concurrency",
"secret"}``. ``source`` is exec'd once into a fresh module (as file ``<function NAME>``, its text in
:mod:`linecache`, so tracebacks show its lines) and ``callable`` looked up in it;
``entry`` (``pkg.module:attr``, or ``pkg.module`` with ``callable``) is imported. If that
fails, the worker still serves: ``/health`` reports the error and every invocation ends at
once with it (``ImportFailed``). ``secret``, when given, must come in the
``X-Hpcgate-Worker-Secret`` header of every request but ``GET /health`` (401 otherwise).

**Serving.** An asyncio server on ``$HPCGATE_SERVICE_HOST`` (default ``0.0.0.0``) port
``$HPCGATE_SERVICE_PORT``, HTTP/1.1 with keep-alive, a request parser of its own: request
line, headers, ``Content-Length`` bodies only (chunked request bodies: 411). Bounds: header
block 64 KiB (431), body 16 MiB (413), 10,000 connections (503 to the next), a request's
head within 30 s of its first byte, an idle connection closed after 300 s (30 s until it
has shown the secret). Every answer but the event stream is JSON; errors are
``{"error": "..."}`` with a 4xx/5xx status; one that leaves the connection in an unknown
state (a head or body that could not be read, a 401) closes it.

- ``GET /health`` -> ``{"status": "ok", "running": n, "queued": n, "error": null | E}``
  (E: the import error's ``type`` and ``message``; its traceback only in the invocations').
- ``POST /invocations`` ``{"id": ID, "input": {...}}`` (ID: 1-64 of ``[A-Za-z0-9_-]``) ->
  201 ``{"id", "state"}``, runs ``callable(**input)``; the same ID again -> 200 with its
  state, never run twice. At most ``max_concurrency`` run at once, the rest queue in
  order, at most 10,000 of them and 256 MiB of their inputs (then 503 ``{"error": "busy"}``).
- ``GET /invocations/ID`` -> ``{"id", "state", "events": n}``; state ``queued``,
  ``running``, ``succeeded``, ``failed`` or ``cancelled``.
- ``GET /invocations/ID/events?after=N`` -> ``application/x-ndjson``, chunked: one
  ``{"seq": k, "type": T, "data": ...}`` line per event with seq > N (seq counts from 1),
  then new ones as they come; it ends after the final event. T is ``output`` (one per
  yield: a ``str`` as is, ``bytes`` as base64 with ``"encoding": "base64"``, JSON values as
  JSON, anything else as its ``repr()``), then one ``result`` (the return value) or
  ``error`` (``{"type", "message", "traceback"}``, the message cut to 64 KiB and the
  traceback to 256 KiB; the worker's own types: ``ImportFailed``, ``Cancelled``,
  ``WorkerCrashed``, ``NotSerializable`` for a return value JSON cannot carry,
  ``OutputTooLarge`` for an output or return value over 16 MiB encoded). A new events
  request for an ID closes the previous reader's connection.
- ``DELETE /invocations/ID`` -> ``{"id", "state"}``: cancels it (its final event is
  ``error`` ``Cancelled``, written at once); a finished one is left as it is.
- ``GET /follow`` with ``Upgrade: hpcgate-events`` -> ``101``: the gateway's one connection
  for the events of every invocation it follows here. It sends lines of JSON:
  ``{"op": "run", "id", "input"[, "seal"], "credit"}`` (as ``POST /invocations``, answered
  ``ID {"status": 201 | 200, "id", "state"}`` or a refusal ``ID {"status": S, "error"}``,
  then followed from its start), ``{"op": "follow", "id", "after", "credit"}`` (as an
  events request for ``after``; it
  replaces any other reader of the invocation, and a follow of the same ID on this
  connection), ``{"op": "credit", "id", "bytes"}`` and ``{"op": "stop", "id"}``. The worker
  sends ``ID {event line}`` for each event, in seq order, while the follow has credit
  (bytes of the event lines with their newlines, IDs not counted; at most 64 MiB), and ends
  a follow after its final event, or with ``ID {"status": S, "error": ...}`` (404, 410
  with ``oldest``, 400, as the events request; 409 when another reader took it over). A
  command it cannot read closes the connection. A follow out of credit holds back its own
  invocation only (its buffer fills, its function blocks at a yield); one task writes the
  connection for all of them.

**Backpressure and retention.** Per invocation at most 256 events / 1 MiB are held that no
reader has been handed yet; a yield beyond that blocks until a reader takes them. The last
1,024 events (4 MiB) handed out are kept as a tail for a reader that comes back with
``after=N``; an ``N`` older than the tail -> 410 ``{"oldest": k}``, one past the last event
-> 400. A finished invocation is dropped 600 s after its last read (its ID, state and event
count are still remembered, so it never runs again; its events then answer 410 with
``oldest`` one past its last). ``HPCGATE_WORKER_RETAIN_SECONDS`` changes the 600 s (tests).

**Concurrency modes.** ``threads``: each invocation runs in a thread of its own (an async
function in that thread's own event loop); ``async``: coroutines and async generators run on
the worker's loop, a plain callable in a thread; ``processes``: each invocation in a forked
child, its events sent back over a pipe; a child that dies without a final event (killed,
``os._exit``, a crash) ends its invocation with ``WorkerCrashed``, and the worker lives on.
Cancelling cancels the task (async), closes the generator at its next yield (threads: a
thread busy computing cannot be interrupted and keeps its slot until it returns or yields),
or sends SIGTERM to the child, SIGKILL 2 s later (processes).
"""

from __future__ import annotations

import asyncio
import base64
import collections
import contextlib
import hmac
import importlib
import inspect
import itertools
import json
import linecache
import os
import re
import resource
import signal
import sys
import threading
import time
import traceback
import types
from collections.abc import Callable
from typing import Any

MAX_HEAD = 64 * 1024
MAX_BODY = 16 * 1024 * 1024
MAX_CONNECTIONS = 10_000
MAX_QUEUED = 10_000
MAX_QUEUED_BYTES = 256 * 1024 * 1024  # of the queued invocations' inputs
MAX_CONCURRENCY = 1_000
MAX_EVENT = 16 * 1024 * 1024  # one event's line: an output or result encoded
MAX_MESSAGE = 64 * 1024  # an error's message, and (4 times) its traceback
PENDING_EVENTS = 256
PENDING_BYTES = 1024 * 1024
TAIL_EVENTS = 1024
TAIL_BYTES = 4 * 1024 * 1024
RETAIN_SECONDS = 600.0
GONE_IDS = 100_000
HEAD_SECONDS = 30.0
IDLE_SECONDS = 300.0
KILL_GRACE = 2.0
SECRET_HEADER = "x-hpcgate-worker-secret"  # noqa: S105 - a header name
MODES = ("threads", "async", "processes")
FINAL_STATES = ("succeeded", "failed", "cancelled")

_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
_ENCODER = json.JSONEncoder(ensure_ascii=True, allow_nan=False, separators=(",", ":"))
_quote: Callable[[str], str] = json.encoder.encode_basestring_ascii
_REASONS = {
    200: "OK",
    201: "Created",
    400: "Bad Request",
    401: "Unauthorized",
    404: "Not Found",
    405: "Method Not Allowed",
    408: "Request Timeout",
    410: "Gone",
    411: "Length Required",
    413: "Content Too Large",
    431: "Request Header Fields Too Large",
    503: "Service Unavailable",
}


# -- events: how a value becomes one line of the stream --------------------------------------


class NotSerializable(Exception):
    """A return value that JSON cannot carry."""


class OutputTooLarge(Exception):
    """An output or return value over MAX_EVENT encoded."""


def _sized(body: str) -> str:
    if len(body) > MAX_EVENT:
        message = f"an event of {len(body)} bytes encoded is over the {MAX_EVENT} one may be"
        raise OutputTooLarge(message)
    return body


def _json_or_none(value: Any) -> str | None:
    try:
        return _ENCODER.encode(value)
    except (TypeError, ValueError, RecursionError):
        return None


def _safe_repr(value: Any) -> str:
    try:
        return repr(value)
    except Exception as error:  # a broken __repr__ is the function's, not the stream's
        return f"<unrepresentable {type(value).__name__}: {error!r}>"


def _bytes_body(kind: str, value: Any) -> str:
    text = base64.b64encode(bytes(value)).decode("ascii")
    return f'"type":"{kind}","data":"{text}","encoding":"base64"'


def output_body(value: Any) -> str:
    """An ``output`` event without its seq: the text between ``{"seq":k,`` and ``}``."""
    if isinstance(value, str):
        return _sized('"type":"output","data":' + _quote(value))
    if isinstance(value, (bytes, bytearray, memoryview)):
        return _sized(_bytes_body("output", value))
    data = _json_or_none(value)
    text = data if data is not None else _quote(_safe_repr(value))
    return _sized('"type":"output","data":' + text)


def result_body(value: Any) -> str:
    """The ``result`` event of a return value; NotSerializable if JSON cannot carry it."""
    if isinstance(value, (bytes, bytearray, memoryview)):
        return _sized(_bytes_body("result", value))
    data = _json_or_none(value)
    if data is None:
        raise NotSerializable(f"the return value ({type(value).__name__}) is not JSON")
    return _sized('"type":"result","data":' + data)


def error_body(kind: str, message: str, trace: str = "") -> str:
    data = {
        "type": kind,
        "message": _cut(message, MAX_MESSAGE),
        "traceback": _cut(trace, 4 * MAX_MESSAGE),
    }
    return '"type":"error","data":' + _ENCODER.encode(data)


def _cut(text: str, limit: int) -> str:
    """At most ``limit`` characters: the start and the end of a longer text."""
    if len(text) <= limit:
        return text
    half = limit // 2
    return f"{text[:half]}\n... ({len(text) - 2 * half} characters left out) ...\n{text[-half:]}"


def exception_body(error: BaseException) -> str:
    return error_body(type(error).__name__, str(error), user_traceback(error))


def user_traceback(error: BaseException) -> str:
    """The traceback without this module's own frames: the function's owner reads it."""
    report = traceback.TracebackException.from_exception(error)
    own = user_traceback.__code__.co_filename
    report.stack = traceback.StackSummary.from_list(
        [frame for frame in report.stack if frame.filename != own]
    )
    return "".join(report.format())


def outcome_body(value: Any) -> tuple[str, str]:
    """The final event and state of a function that returned ``value``."""
    try:
        return result_body(value), "succeeded"
    except (NotSerializable, OutputTooLarge) as error:
        return error_body(type(error).__name__, str(error)), "failed"


CANCELLED = error_body("Cancelled", "the invocation was cancelled")


# -- end-to-end encryption: sealing an invocation's events for its caller ---------------------

SEAL_LABEL = b"hpcgate-e2e-v1"
KEY_BYTES = 32
_KEY_TEXT = re.compile(r"[A-Za-z0-9_-]{43}")  # 32 bytes, base64url without padding


class EncryptionUnavailable(Exception):
    """The worker's Python cannot import ``cryptography``: nothing is run unencrypted."""


def seal_context(ident: str, client_key: bytes, worker_key: bytes) -> bytes:
    """HKDF's info: the invocation and both public keys (a key for this exchange only)."""
    return b"\0".join((SEAL_LABEL, ident.encode("ascii"), client_key, worker_key))


def seal_aad(ident: str, seq: int, kind: str) -> bytes:
    """What each sealed event is bound to: its invocation, its place and its type."""
    return b"\0".join((SEAL_LABEL, ident.encode("ascii"), str(seq).encode(), kind.encode()))


def seal_nonce(seq: int) -> bytes:
    return seq.to_bytes(12, "big")  # one key per invocation, one seq per event


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def key_bytes(text: Any) -> bytes:
    """A public key as sent (base64url, 43 characters); ValueError for anything else."""
    if not isinstance(text, str) or not _KEY_TEXT.fullmatch(text):
        raise ValueError("public_key must be 32 bytes in base64url without padding")
    return base64.urlsafe_b64decode(text + "=")


class Sealer:
    """One invocation's side of the exchange: an ephemeral X25519 key of the worker's,
    the AES-256-GCM key both derive (HKDF-SHA256), and each event sealed with its seq as
    nonce and (invocation, seq, type) as associated data. ``cryptography`` is imported
    here only, when an invocation asks for encryption."""

    def __init__(self, ident: str, client_key: bytes, tracebacks: bool) -> None:
        try:
            from cryptography.hazmat.primitives import hashes, serialization
            from cryptography.hazmat.primitives.asymmetric import x25519
            from cryptography.hazmat.primitives.ciphers.aead import AESGCM
            from cryptography.hazmat.primitives.kdf.hkdf import HKDF
        except ImportError as missing:
            raise EncryptionUnavailable(
                f"the worker's Python ({sys.executable}) cannot encrypt: {missing}; install"
                " the 'cryptography' package for it, or invoke without encryption"
            ) from None
        mine = x25519.X25519PrivateKey.generate()
        raw = serialization.Encoding.Raw, serialization.PublicFormat.Raw
        self.public_key = mine.public_key().public_bytes(*raw)
        shared = mine.exchange(x25519.X25519PublicKey.from_public_bytes(client_key))
        info = seal_context(ident, client_key, self.public_key)
        key = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=info).derive(shared)
        self.aead = AESGCM(key)
        self.ident = ident
        self.tracebacks = tracebacks

    def key_body(self) -> str:
        """The first event: the worker's public key (plain: it is no secret)."""
        return f'"type":"key","data":{{"public_key":"{_b64url(self.public_key)}"}}'

    def seal(self, seq: int, body: str) -> str:
        """The event ``body`` (``"type":T,...``) as ``"type":T,"data":{"sealed":...}``."""
        kind = body[8 : body.index('"', 8)]
        hint = ',"state":"cancelled"' if body == CANCELLED else ""  # for the gateway's books
        if kind == "error" and not self.tracebacks:  # the owner's only, as unsealed
            body = _without_traceback(body)
        plain = ("{" + body + "}").encode("ascii")
        sealed = self.aead.encrypt(seal_nonce(seq), plain, seal_aad(self.ident, seq, kind))
        text = base64.b64encode(sealed).decode("ascii")
        return f'"type":"{kind}","data":{{"sealed":"{text}"{hint}}}'


def _without_traceback(body: str) -> str:
    event = json.loads("{" + body + "}")
    event["data"].pop("traceback", None)
    return _ENCODER.encode(event)[1:-1]


# -- one invocation's events: the buffer, the tail, backpressure ------------------------------


class Events:
    """An invocation's events: one list of lines (without their newlines), seq ``first``
    .. ``last``; those after ``handed`` wait for a reader (bounded: producers block), those
    up to it are the tail.

    Producers are threads (``put_blocking``), tasks (``put``) or the loop itself
    (``put_nowait`` after checking ``full``); readers are tasks on the loop. One lock
    guards it all, held only briefly.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.lock = threading.Lock()
        self.room_for_threads = threading.Condition(self.lock)
        self.room = asyncio.Event()
        self.lines: list[str] = []
        self.first = 1
        self.handed = 0
        self.pending_bytes = 0
        self.tail_bytes = 0
        self.final = False
        self.on_room: Callable[[], None] | None = None
        self.reader_wake: asyncio.Event | None = None
        self.reader_waiting = False
        self.sealer: Sealer | None = None  # an encrypted invocation's

    @property
    def last(self) -> int:
        return self.first + len(self.lines) - 1

    def full(self) -> bool:
        return self.last - self.handed >= PENDING_EVENTS or self.pending_bytes >= PENDING_BYTES

    def room_left(self) -> tuple[int, int]:
        """How many more events, and bytes, may wait for a reader."""
        return PENDING_EVENTS - (self.last - self.handed), PENDING_BYTES - self.pending_bytes

    def line(self, seq: int, body: str) -> str:
        """The event's line: sealed for an encrypted invocation."""
        if self.sealer is not None:
            body = self.sealer.seal(seq, body)
        return f'{{"seq":{seq},{body}}}'

    def _append(self, body: str) -> None:
        line = self.line(self.last + 1, body)
        self.lines.append(line)
        self.pending_bytes += len(line) + 1

    def _wake_reader(self) -> None:
        if self.reader_wake is not None:
            self.reader_wake.set()

    def put_blocking(self, body: str) -> bool:
        """From a thread: add an output event, waiting for room; False once final."""
        with self.lock:
            while self.full() and not self.final:
                self.room_for_threads.wait()
            if self.final:
                return False
            self._append(body)
            wake, self.reader_waiting = self.reader_waiting, False
        if wake:
            with contextlib.suppress(RuntimeError):  # the loop closed: the worker is stopping
                self.loop.call_soon_threadsafe(self._wake_reader)
        return True

    async def put(self, body: str) -> bool:
        """From a task on the loop: add an output event, waiting for room; False once final."""
        while self.full() and not self.final:
            self.room.clear()
            await self.room.wait()
        if self.final:
            return False
        self.put_nowait(body)
        return True

    def put_nowait(self, body: str) -> None:
        """On the loop: add an output event (the caller checked ``full``)."""
        with self.lock:
            self._append(body)
            self.reader_waiting = False
        self._wake_reader()

    def put_lines(self, lines: list[str]) -> None:
        """On the loop: add output events already numbered (a child's; the caller checked
        ``room_left``)."""
        with self.lock:
            self.lines.extend(lines)
            self.pending_bytes += sum(map(len, lines)) + len(lines)
            self.reader_waiting = False
        self._wake_reader()

    def finish(self, body: str, numbered: bool = False) -> bool:
        """On the loop: add the final event (whatever the room); False if already final."""
        with self.lock:
            if self.final:
                return False
            if numbered:
                self.lines.append(body)
                self.pending_bytes += len(body) + 1
            else:
                self._append(body)
            self.final = True
            self.reader_waiting = False
            self.room_for_threads.notify_all()
        self.room.set()
        self._wake_reader()
        return True

    def oldest(self) -> int:
        return self.first

    def take(self, sent: int) -> tuple[str, int]:
        """On the loop: the lines after seq ``sent`` (joined), now handed to a reader, and
        the seq of the last of them."""
        with self.lock:
            start = max(sent + 1 - self.first, 0)
            if start >= len(self.lines):
                self.reader_waiting = True
                return "", sent
            batch, upto = "\n".join(self.lines[start:]) + "\n", self.last
            self._hand(upto)
            self.room_for_threads.notify_all()
        self.room.set()
        if self.on_room is not None:
            self.on_room()
        return batch, upto

    def take_lines(self, sent: int, limit: int) -> tuple[list[str], int]:
        """On the loop: as :meth:`take`, the lines as a list, about ``limit`` bytes of them
        (at least one, whatever its size)."""
        with self.lock:
            start = max(sent + 1 - self.first, 0)
            if start >= len(self.lines):
                self.reader_waiting = True
                return [], sent
            end, size = start, 0
            while end < len(self.lines) and (size < limit or end == start):
                size += len(self.lines[end]) + 1
                end += 1
            lines = self.lines[start:end]
            upto = self.first + end - 1
            self._hand(upto)
            self.room_for_threads.notify_all()
        self.room.set()
        if self.on_room is not None:
            self.on_room()
        return lines, upto

    def _hand(self, upto: int) -> None:
        if upto > self.handed:
            fresh = self.lines[self.handed + 1 - self.first : upto + 1 - self.first]
            size = sum(map(len, fresh)) + len(fresh)
            self.pending_bytes -= size
            self.tail_bytes += size
            self.handed = upto
        drop = 0
        tail = self.handed - self.first + 1
        while tail - drop > 1 and (tail - drop > TAIL_EVENTS or self.tail_bytes > TAIL_BYTES):
            self.tail_bytes -= len(self.lines[drop]) + 1
            drop += 1
        if drop:
            del self.lines[:drop]
            self.first += drop


# -- invocations ------------------------------------------------------------------------------


class Reader:
    """The one reader of an invocation's events now: an events response's connection, or
    a follow on a gateway's multiplexed connection. ``stop`` ends it when another reader
    takes its place (closing the connection; on a multiplexed one, that follow only)."""

    def __init__(self, stop: Callable[[], None]) -> None:
        self.stop = stop
        self.wake = asyncio.Event()
        self.replaced = False


class Invocation:
    def __init__(self, ident: str, arguments: dict[str, Any], loop: asyncio.AbstractEventLoop):
        self.id = ident
        self.arguments = arguments
        self.state = "queued"
        self.events = Events(loop)
        self.reader: Reader | None = None
        self.started = 0.0
        self.touched = time.monotonic()
        self.task: asyncio.Task[None] | None = None
        self.child: Child | None = None
        self.size = 0

    def summary(self) -> dict[str, Any]:
        return {"id": self.id, "state": self.state}

    def replace_reader(self, reader: Reader) -> None:
        old, self.reader = self.reader, reader
        self.events.reader_wake = reader.wake
        if old is not None:
            old.replaced = True
            old.wake.set()
            old.stop()


class Gone:
    """What is remembered of a dropped invocation: its ID never runs again."""

    def __init__(self, invocation: Invocation) -> None:
        self.id = invocation.id
        self.state = invocation.state
        self.count = invocation.events.last

    def summary(self) -> dict[str, Any]:
        return {"id": self.id, "state": self.state}


# -- the function: loading it -----------------------------------------------------------------


class Spec:
    """The function spec, checked."""

    def __init__(self, raw: Any) -> None:
        if not isinstance(raw, dict):
            raise ValueError("the spec is not a JSON object")
        self.name = _text(raw, "name") or "function"
        self.source = _text(raw, "source")
        self.entry = _text(raw, "entry")
        self.callable = _text(raw, "callable") or self.name
        self.concurrency = _text(raw, "concurrency") or "threads"
        self.max_concurrency = raw.get("max_concurrency", 8)
        self.secret = _text(raw, "secret")
        self._check()

    def _check(self) -> None:
        if (self.source is None) == (self.entry is None):
            raise ValueError("the spec needs exactly one of source and entry")
        if self.concurrency not in MODES:
            raise ValueError(f"concurrency must be one of {', '.join(MODES)}")
        limit = self.max_concurrency
        if type(limit) is not int or not 1 <= limit <= MAX_CONCURRENCY:
            raise ValueError(f"max_concurrency must be an integer 1-{MAX_CONCURRENCY}")


def _text(raw: dict[str, Any], key: str) -> str | None:
    value = raw.get(key)
    if value is not None and not isinstance(value, str):
        raise ValueError(f"{key} must be a string")
    return value


def load_function(spec: Spec) -> tuple[Callable[..., Any] | None, dict[str, str] | None]:
    """The callable, or the ImportFailed error that will end every invocation."""
    try:
        found = _import_callable(spec)
    except BaseException as error:  # a SystemExit at import is a failed import too
        return None, _import_error(f"{type(error).__name__}: {error}", user_traceback(error))
    if not callable(found):
        return None, _import_error(f"{spec.callable!r} is not callable", "")
    return found, None


def _import_error(message: str, trace: str) -> dict[str, str]:
    return {"type": "ImportFailed", "message": message, "traceback": trace}


def _import_callable(spec: Spec) -> Any:
    if spec.source is not None:
        module = types.ModuleType("hpcgate_function")
        module.__file__ = f"<function {spec.name}>"
        sys.modules[module.__name__] = module
        remember_source(module.__file__, spec.source)
        exec(compile(spec.source, module.__file__, "exec"), module.__dict__)  # noqa: S102
        return _attribute(module, spec.callable)
    module_name, _, attr = (spec.entry or "").partition(":")
    return _attribute(importlib.import_module(module_name), attr or spec.callable)


def remember_source(filename: str, source: str) -> None:
    """Put the exec'd source in :mod:`linecache` under its pseudo-filename, so tracebacks
    show its lines (an entry without an mtime is one ``linecache.checkcache`` keeps)."""
    linecache.cache[filename] = (len(source), None, source.splitlines(keepends=True), filename)


def _attribute(module: types.ModuleType, path: str) -> Any:
    found: Any = module
    for part in path.split("."):
        try:
            found = getattr(found, part)
        except AttributeError:
            raise AttributeError(f"{module.__name__} has no {path!r}") from None
    return found


def is_async(function: Callable[..., Any]) -> bool:
    call = getattr(function, "__call__", None)  # noqa: B004 - an object with async __call__
    return any(
        inspect.iscoroutinefunction(f) or inspect.isasyncgenfunction(f) for f in (function, call)
    )


# -- running invocations: threads -------------------------------------------------------------


def run_sync(function: Callable[..., Any], invocation: Invocation) -> tuple[str, str]:
    """Run ``function(**arguments)`` here (a thread or a child); its final event and state."""
    events = invocation.events
    if events.final:  # cancelled before it began
        return CANCELLED, "cancelled"
    try:
        returned = function(**invocation.arguments)
        if inspect.isgenerator(returned):
            return _drive_generator(returned, events.put_blocking)
        if inspect.isasyncgen(returned) or inspect.iscoroutine(returned):
            return asyncio.run(_drive_async(returned, _async_put(events.put_blocking)))
        return outcome_body(returned)
    except BaseException as error:
        return exception_body(error), "failed"


def _async_put(put: Callable[[str], bool]) -> Callable[[str], Any]:
    async def put_async(body: str) -> bool:
        return put(body)

    return put_async


def _drive_generator(generator: Any, put: Callable[[str], bool]) -> tuple[str, str]:
    try:
        while True:
            if not put(output_body(next(generator))):
                generator.close()
                return CANCELLED, "cancelled"
    except StopIteration as stop:
        return outcome_body(stop.value)
    except OutputTooLarge as error:
        generator.close()
        return error_body("OutputTooLarge", str(error)), "failed"


async def _drive_async(returned: Any, put: Callable[[str], Any]) -> tuple[str, str]:
    """Await a coroutine or iterate an async generator (its return value is always None)."""
    if inspect.iscoroutine(returned):
        return outcome_body(await returned)
    try:
        async for value in returned:
            if not await put(output_body(value)):
                return CANCELLED, "cancelled"
    except OutputTooLarge as error:
        return error_body("OutputTooLarge", str(error)), "failed"
    finally:
        await returned.aclose()
    return outcome_body(None)


# -- running invocations: processes -----------------------------------------------------------


class Child:
    """A forked child running one invocation; its events come back over a pipe as the
    stream's own lines (numbered by the child: all but a cancel's or crash's are its)."""

    def __init__(self, pid: int, invocation: Invocation, read_fd: int) -> None:
        self.pid = pid
        self.invocation = invocation
        self.read_fd = read_fd
        self.status: int | None = None
        self.pipe_closed = False
        self.buffer = bytearray()
        self.transport: asyncio.ReadTransport | None = None
        self.finished = asyncio.Event()

    def crash_body(self) -> str:
        status = self.status if self.status is not None else 0
        if os.WIFSIGNALED(status):
            number = os.WTERMSIG(status)
            name = signal.Signals(number).name if number in signal.valid_signals() else "?"
            what = f"was killed by signal {number} ({name})"
        else:
            what = f"exited with code {os.waitstatus_to_exitcode(status)}"
        return error_body("WorkerCrashed", f"the function's process {what} without a result")


class ChildPipe(asyncio.Protocol):
    """Reads a child's lines into its invocation's events, pausing when they are full."""

    def __init__(self, child: Child) -> None:
        self.child = child
        self.events = child.invocation.events
        self.paused = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.child.transport = transport  # type: ignore[assignment]
        self.events.on_room = self.parse

    def data_received(self, data: bytes) -> None:
        self.child.buffer += data
        self.parse()

    def parse(self) -> None:
        while not self.events.final and self._deliver():
            pass
        if self.events.final:
            self.child.buffer.clear()  # cancelled: the rest is dropped
        self._flow()
        _child_check(self.child)

    def _deliver(self) -> bool:
        """Move the complete lines there is room for into the events; whether any were."""
        lines = _split_lines(self.child.buffer, *self.events.room_left())
        if not lines:
            return False
        if _is_output(lines[-1]):
            self.events.put_lines(lines)
        else:  # the child's last line: its result or error
            self.events.put_lines(lines[:-1])
            failed = lines[-1].find('"type":"error"', 0, 48) >= 0
            finish(self.child.invocation, lines[-1], "failed" if failed else "succeeded", True)
        return True

    def _flow(self) -> None:
        transport = self.child.transport
        should_pause = self.events.full() and not self.events.final
        if transport is None or should_pause == self.paused or self.child.pipe_closed:
            return
        self.paused = should_pause
        (transport.pause_reading if should_pause else transport.resume_reading)()

    def connection_lost(self, exc: Exception | None) -> None:
        self.child.pipe_closed = True
        self.events.on_room = None
        _child_check(self.child)


def _split_lines(buffer: bytearray, count: int, size: int) -> list[str]:
    """Take up to ``count`` complete lines, about ``size`` bytes, off the buffer's front."""
    end = taken = 0
    if count <= 0 or size <= 0:
        return []
    while taken < count and (end < size or not taken):
        newline = buffer.find(b"\n", end)
        if newline < 0:
            break
        end, taken = newline + 1, taken + 1
    if not taken:
        return []
    text = buffer[: end - 1].decode("ascii", "backslashreplace")
    del buffer[:end]
    return text.split("\n")


def _is_output(line: str) -> bool:
    return line.find('"type":"output"', 0, 48) >= 0


def _child_check(child: Child) -> None:
    """Once the pipe is closed, its lines read and the child reaped, end its invocation
    if no final event came (a crash)."""
    if child.finished.is_set() or not child.pipe_closed or child.status is None:
        return
    if b"\n" in child.buffer and not child.invocation.events.final:
        return  # waiting for a reader to make room for the rest
    finish(child.invocation, child.crash_body(), "failed")
    child.finished.set()


def child_main(
    function: Callable[..., Any], invocation: Invocation, fd: int, close: list[int]
) -> None:
    """In the forked child: run the invocation, send its events as numbered lines, exit.
    ``close``: the worker's own descriptors (its sockets, the other children's pipes)."""
    _child_setup(close)
    events = invocation.events
    numbered = itertools.count(events.last + 1)  # after the key event of an encrypted one

    def send(body: str) -> bool:
        _write_all(fd, (events.line(next(numbered), body) + "\n").encode("ascii"))
        return True

    events.put_blocking = send  # type: ignore[method-assign]
    body, _ = run_sync(function, invocation)
    send(body)
    for stream in (sys.stdout, sys.stderr):
        stream.flush()


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


_PRCTL: list[Callable[..., int]] = []  # libc's prctl, looked up once before the first fork


def _find_prctl() -> None:
    with contextlib.suppress(ImportError, OSError, AttributeError):
        import ctypes  # not imported in every child: that took ~30 ms of each one's start

        _PRCTL.append(ctypes.CDLL(None).prctl)


def _child_setup(close: list[int]) -> None:
    signal.set_wakeup_fd(-1)
    for number in (signal.SIGTERM, signal.SIGINT, signal.SIGCHLD):
        signal.signal(number, signal.SIG_DFL)
    asyncio.events._set_running_loop(None)  # the function may asyncio.run() its own
    if _PRCTL:  # die with the worker (Linux), not run on unseen
        _PRCTL[0](1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    for fd in close:  # a connection the worker closes must not stay open in a child
        with contextlib.suppress(OSError):
            os.close(fd)


# -- the worker: invocations, scheduling, cancelling ------------------------------------------


class Seal:
    """An invocation's request for encryption: the caller's public key, and whether the
    caller may read tracebacks (the function's owner)."""

    def __init__(self, raw: Any) -> None:
        if not isinstance(raw, dict):
            raise ValueError("seal must be a JSON object")
        self.client_key = key_bytes(raw.get("public_key"))
        tracebacks = raw.get("tracebacks", False)
        if not isinstance(tracebacks, bool):
            raise ValueError("seal.tracebacks must be true or false")
        self.tracebacks = tracebacks


def _sealed(invocation: Invocation, seal: Seal) -> bool:
    """Start sealing the invocation's events with its key event first; if this worker
    cannot, end it at once with an (unsealed, function-free) EncryptionUnavailable."""
    try:
        sealer = Sealer(invocation.id, seal.client_key, seal.tracebacks)
    except EncryptionUnavailable as error:
        finish(invocation, error_body("EncryptionUnavailable", str(error)), "failed")
        return False
    except ValueError as error:  # a key that is not a point X25519 takes
        finish(invocation, error_body("EncryptionUnavailable", f"bad key: {error}"), "failed")
        return False
    invocation.events.put_nowait(sealer.key_body())
    invocation.events.sealer = sealer
    return True


def finish(invocation: Invocation, body: str, state: str, numbered: bool = False) -> None:
    """End an invocation with its final event (a no-op if it has one already); ``body``
    is the event without its seq, or (``numbered``) its whole line."""
    if invocation.events.finish(body, numbered):
        invocation.arguments = {}  # kept no longer than needed: its events may stay 600 s
        invocation.state = state
        invocation.touched = time.monotonic()
        took = time.monotonic() - invocation.started if invocation.started else 0.0
        count = invocation.events.last
        log(f"invocation {invocation.id} {state} after {took:.3f} s, {count} events")


def log(message: str) -> None:
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime())
    sys.stderr.write(f"{stamp} hpcgate-worker: {message}\n")
    sys.stderr.flush()


class Worker:
    """The invocations of one function, their scheduling and their modes."""

    def __init__(self, spec: Spec, function: Callable[..., Any] | None, error: Any) -> None:
        self.spec = spec
        self.function = function
        self.error = error
        self.invocations: dict[str, Invocation] = {}
        self.gone: collections.OrderedDict[str, Gone] = collections.OrderedDict()
        self.waiting: collections.deque[Invocation] = collections.deque()
        self.queued = 0
        self.queued_bytes = 0
        self.running = 0
        self.own_fds: Callable[[], list[int]] = list
        self.children: dict[int, Child] = {}
        self.retain = RETAIN_SECONDS
        self.loop = asyncio.get_running_loop()

    def health(self) -> dict[str, Any]:
        """The error without its traceback: anyone on the node may ask for /health."""
        error = self.error and {"type": self.error["type"], "message": self.error["message"]}
        return {"status": "ok", "running": self.running, "queued": self.queued, "error": error}

    def find(self, ident: str) -> Invocation | Gone | None:
        return self.invocations.get(ident) or self.gone.get(ident)

    def submit(
        self, ident: str, arguments: dict[str, Any], size: int, seal: Seal | None = None
    ) -> Invocation:
        invocation = Invocation(ident, arguments, self.loop)
        invocation.size = size
        self.invocations[ident] = invocation
        if seal is not None and not _sealed(invocation, seal):
            return invocation  # ended: it cannot be encrypted here
        if self.function is None:
            error = self.error or {}
            body = error_body("ImportFailed", error.get("message", ""), error.get("traceback", ""))
            finish(invocation, body, "failed")
        elif self.running < self.spec.max_concurrency:
            self._start(invocation)
        else:
            self.waiting.append(invocation)
            self.queued += 1
            self.queued_bytes += invocation.size
        return invocation

    def _start(self, invocation: Invocation) -> None:
        self.running += 1
        invocation.state = "running"
        invocation.started = time.monotonic()
        log(f"invocation {invocation.id} started")
        try:
            self._launch(invocation)
        except (OSError, RuntimeError) as error:  # no thread or process to be had now
            finish(invocation, exception_body(error), "failed")
            self.loop.call_soon(self._release)  # not recursively: the queue may be long

    def _launch(self, invocation: Invocation) -> None:
        function = self.function
        assert function is not None
        if self.spec.concurrency == "processes":
            self._fork(function, invocation)
        elif self.spec.concurrency == "async" and is_async(function):
            invocation.task = self.loop.create_task(self._run_task(function, invocation))
        else:
            threading.Thread(
                target=self._run_thread, args=(function, invocation), daemon=True
            ).start()

    def _release(self) -> None:
        self.running -= 1
        while self.waiting and self.running < self.spec.max_concurrency:
            invocation = self.waiting.popleft()
            if invocation.state == "queued":
                self._unqueue(invocation)
                self._start(invocation)

    def _unqueue(self, invocation: Invocation) -> None:
        self.queued -= 1
        self.queued_bytes -= invocation.size

    def busy(self, size: int) -> bool:
        """Whether one more invocation of ``size`` input bytes would have to queue, and
        the queue is full."""
        if self.running < self.spec.max_concurrency:
            return False
        return self.queued >= MAX_QUEUED or self.queued_bytes + size > MAX_QUEUED_BYTES

    def _run_thread(self, function: Callable[..., Any], invocation: Invocation) -> None:
        body, state = run_sync(function, invocation)
        with contextlib.suppress(RuntimeError):  # the loop closed: the worker is stopping
            self.loop.call_soon_threadsafe(self._thread_done, invocation, body, state)

    def _thread_done(self, invocation: Invocation, body: str, state: str) -> None:
        finish(invocation, body, state)
        self._release()

    async def _run_task(self, function: Callable[..., Any], invocation: Invocation) -> None:
        try:
            returned = function(**invocation.arguments)
            body, state = await _drive_async(returned, invocation.events.put)
        except asyncio.CancelledError:
            body, state = CANCELLED, "cancelled"
        except BaseException as error:  # the function's failure, whatever it is
            body, state = exception_body(error), "failed"
        finish(invocation, body, state)
        self._release()

    def _fork(self, function: Callable[..., Any], invocation: Invocation) -> None:
        if not _PRCTL:
            _find_prctl()
        read_fd, write_fd = os.pipe()
        close = [*self.own_fds(), *(child.read_fd for child in self.children.values()), read_fd]
        pid = os.fork()
        if pid == 0:  # the child: never returns
            try:
                child_main(function, invocation, write_fd, close)
            finally:
                os._exit(0)
        os.close(write_fd)
        child = self.children[pid] = invocation.child = Child(pid, invocation, read_fd)
        invocation.task = self.loop.create_task(self._watch_child(child, read_fd))
        self.reap()  # it may have ended already

    async def _watch_child(self, child: Child, read_fd: int) -> None:
        pipe = os.fdopen(read_fd, "rb", buffering=0)
        await self.loop.connect_read_pipe(lambda: ChildPipe(child), pipe)
        await child.finished.wait()
        self._release()

    def reap(self) -> None:
        """On SIGCHLD: collect the children that ended (only ours, by pid)."""
        for pid, child in list(self.children.items()):
            try:
                done, status = os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                done, status = pid, 0
            if done:
                del self.children[pid]
                child.status = status
                self.loop.call_later(KILL_GRACE, _close_pipe, child)
                _child_check(child)

    def cancel(self, invocation: Invocation) -> None:
        if invocation.state in FINAL_STATES:
            return
        was_queued = invocation.state == "queued"
        finish(invocation, CANCELLED, "cancelled")
        if was_queued:
            self._unqueue(invocation)
        elif invocation.child is not None:
            _terminate(invocation.child, self.loop)
        elif invocation.task is not None:
            invocation.task.cancel()

    def stop_children(self) -> None:
        for child in self.children.values():
            _signal(child.pid, signal.SIGKILL)

    def sweep(self) -> None:
        """Drop the finished invocations no one has read for ``retain`` seconds."""
        now = time.monotonic()
        for ident, invocation in list(self.invocations.items()):
            idle = now - invocation.touched
            if (
                invocation.state in FINAL_STATES
                and invocation.reader is None
                and idle > self.retain
            ):
                del self.invocations[ident]
                self.gone[ident] = Gone(invocation)
        while len(self.gone) > GONE_IDS:
            self.gone.popitem(last=False)


def _close_pipe(child: Child) -> None:
    """A child reaped whose pipe is still open (a grandchild holds it): stop waiting."""
    if not child.pipe_closed and child.transport is not None:
        child.transport.close()


def _signal(pid: int, number: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, number)


def _terminate(child: Child, loop: asyncio.AbstractEventLoop) -> None:
    _signal(child.pid, signal.SIGTERM)

    def kill() -> None:
        if child.status is None:
            _signal(child.pid, signal.SIGKILL)

    loop.call_later(KILL_GRACE, kill)


# -- HTTP: requests ---------------------------------------------------------------------------


class HTTPError(Exception):
    """An answer other than success: its status and JSON body."""

    def __init__(self, status: int, message: str, body: dict[str, Any] | None = None):
        super().__init__(message)
        self.status = status
        self.body = body if body is not None else {"error": message}


class Request:
    def __init__(self, method: str, target: str, version: str, headers: dict[str, str]):
        self.method = method
        path, _, query = target.partition("?")
        self.path = path
        self.query = query
        self.version = version
        self.headers = headers
        self.body = b""

    @property
    def keep_alive(self) -> bool:
        connection = self.headers.get("connection", "").lower()
        if self.version == "HTTP/1.0":
            return connection == "keep-alive"
        return connection != "close"


def parse_head(head: bytes) -> Request:
    """The request line and headers (``head`` ends with an empty line)."""
    try:
        text = head.decode("ascii")
    except UnicodeDecodeError:
        raise HTTPError(400, "the request head is not ASCII") from None
    lines = text[:-4].split("\r\n")
    parts = lines[0].split(" ")
    if len(parts) != 3 or not _TOKEN.fullmatch(parts[0]) or not parts[1].startswith("/"):
        raise HTTPError(400, "malformed request line")
    if parts[2] not in ("HTTP/1.1", "HTTP/1.0"):
        raise HTTPError(400, "only HTTP/1.1 and HTTP/1.0 are spoken here")
    return Request(parts[0], parts[1], parts[2], _headers(lines[1:]))


def _headers(lines: list[str]) -> dict[str, str]:
    headers: dict[str, str] = {}
    for line in lines:
        name, colon, value = line.partition(":")
        if not colon or not _TOKEN.fullmatch(name):
            raise HTTPError(400, "malformed header line")
        name = name.lower()
        if name in headers and name in ("content-length", "transfer-encoding", SECRET_HEADER):
            raise HTTPError(400, f"{name} given twice")
        headers[name] = value.strip(" \t")
    return headers


def body_length(request: Request) -> int:
    if "transfer-encoding" in request.headers:
        raise HTTPError(411, "send the body with Content-Length, not chunked")
    text = request.headers.get("content-length", "0")
    if not text.isdigit() or not text.isascii() or len(text) > 12:
        raise HTTPError(400, "bad Content-Length")
    if int(text) > MAX_BODY:
        raise HTTPError(413, f"the body is over {MAX_BODY} bytes")
    return int(text)


def json_body(request: Request) -> dict[str, Any]:
    try:
        value = json.loads(request.body)
    except (ValueError, RecursionError):
        raise HTTPError(400, "the body is not JSON") from None
    if not isinstance(value, dict):
        raise HTTPError(400, "the body is not a JSON object")
    return value


def response(status: int, body: Any, close: bool = False, extra: str = "") -> bytes:
    data = _ENCODER.encode(body).encode("ascii")
    head = (
        f"HTTP/1.1 {status} {_REASONS.get(status, 'Error')}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(data)}\r\n{extra}"
        + ("Connection: close\r\n" if close else "")
        + "\r\n"
    )
    return head.encode("ascii") + data


_STREAM_HEAD = (
    b"HTTP/1.1 200 OK\r\nContent-Type: application/x-ndjson\r\n"
    b"Transfer-Encoding: chunked\r\nCache-Control: no-store\r\n\r\n"
)


def chunk(text: str) -> bytes:
    data = text.encode("ascii")
    return b"%x\r\n%b\r\n" % (len(data), data)


# -- HTTP: routes -----------------------------------------------------------------------------


class Server:
    """The HTTP side: connections, requests, routes."""

    def __init__(self, worker: Worker) -> None:
        self.worker = worker
        self.open: dict[asyncio.StreamWriter, asyncio.Task[Any] | None] = {}
        self.secret = (worker.spec.secret or "").encode("utf-8")

    async def connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if len(self.open) >= MAX_CONNECTIONS:
            writer.write(response(503, {"error": "too many connections"}, close=True))
            writer.close()
            return
        self.open[writer] = asyncio.current_task()
        try:
            await self._serve(reader, writer)
        except (asyncio.TimeoutError, ConnectionError, asyncio.IncompleteReadError):  # noqa: UP041
            pass
        except Exception as error:  # a bug of ours: one connection lost, the rest served
            trace = traceback.format_exception(type(error), error, error.__traceback__)
            log(f"a connection failed: {''.join(trace).strip()}")
        finally:
            del self.open[writer]
            writer.close()

    def fds(self, listener: asyncio.AbstractServer) -> list[int]:
        """The descriptors of the listening sockets and every connection."""
        sockets = list(getattr(listener, "sockets", None) or ())
        sockets += [writer.get_extra_info("socket") for writer in self.open]
        return [sock.fileno() for sock in sockets if sock is not None]

    async def close_all(self) -> None:
        """Close every connection and let its task end (on the way out)."""
        tasks = {task for task in self.open.values() if task is not None}
        for writer in list(self.open):
            writer.transport.abort()
        if tasks:
            await asyncio.wait(tasks, timeout=2)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Requests one after the other; a connection that has not shown the secret is
        closed after HEAD_SECONDS idle, one that has after IDLE_SECONDS."""
        carry: bytes | None = b""
        idle = HEAD_SECONDS
        while carry is not None:
            try:
                request = await self._read(reader, carry, idle)
            except HTTPError as error:  # the connection's state is unknown: close it
                await self._reply(writer, error.status, error.body, close=True)
                return
            if request is None:
                return
            carry = await self._answer(request, writer, reader)
            if not request.keep_alive:
                return
            if self._authorized(request):
                idle = IDLE_SECONDS

    async def _answer(
        self, request: Request, writer: asyncio.StreamWriter, reader: asyncio.StreamReader
    ) -> bytes | None:
        """Answer a request read whole; the connection stays usable after an error (but
        for a 401: whoever lacks the secret is not kept waiting on)."""
        try:
            return await self._dispatch(request, writer, reader)
        except HTTPError as error:
            refused = error.status == 401
            await self._reply(writer, error.status, error.body, close=refused)
            return None if refused else b""

    async def _read(
        self, reader: asyncio.StreamReader, carry: bytes | None, idle: float
    ) -> Request | None:
        if not carry:
            try:
                carry = await asyncio.wait_for(reader.read(1), idle)
            except asyncio.TimeoutError:  # noqa: UP041 - not the builtin before Python 3.11
                return None
            if not carry:
                return None
        try:
            head = carry + await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), HEAD_SECONDS)
        except asyncio.LimitOverrunError:
            raise HTTPError(431, f"the request head is over {MAX_HEAD} bytes") from None
        except asyncio.TimeoutError:  # noqa: UP041
            raise HTTPError(408, "the request head took too long") from None
        request = parse_head(head)
        size = body_length(request)
        if size:
            request.body = await asyncio.wait_for(reader.readexactly(size), HEAD_SECONDS)
        return request

    async def _dispatch(
        self, request: Request, writer: asyncio.StreamWriter, reader: asyncio.StreamReader
    ) -> bytes | None:
        """Answer one request; the bytes of the next one read meanwhile (None: close)."""
        if request.path == "/health":
            _allow(request, "GET")
            writer.write(response(200, self.worker.health()))
            await writer.drain()
            return b""
        self._check_secret(request)
        if request.path == "/follow":
            await self._multiplexed(request, writer, reader)
            return None
        parts = request.path.split("/")[1:]
        if parts[0] != "invocations" or len(parts) > 3:
            raise HTTPError(404, "no such path")
        if len(parts) == 1:
            return await self._reply(writer, *self._post(request))
        invocation = self._find(parts[1])
        if len(parts) == 3:
            if parts[2] != "events":
                raise HTTPError(404, "no such path")
            _allow(request, "GET")
            return await self._events(request, invocation, writer, reader)
        return await self._reply(writer, 200, self._one(request, invocation))

    async def _multiplexed(
        self, request: Request, writer: asyncio.StreamWriter, reader: asyncio.StreamReader
    ) -> None:
        _allow(request, "GET")
        if request.headers.get("upgrade", "").lower() != UPGRADE:
            raise HTTPError(400, f"send 'Upgrade: {UPGRADE}'")
        writer.write(_SWITCHED)
        await writer.drain()
        await Multiplexed(self.worker, reader, writer).run()

    def _authorized(self, request: Request) -> bool:
        if not self.secret:
            return True
        given = request.headers.get(SECRET_HEADER, "").encode("utf-8", "replace")
        return hmac.compare_digest(given, self.secret)

    def _check_secret(self, request: Request) -> None:
        if not self._authorized(request):
            raise HTTPError(401, "this worker answers its gateway only")

    async def _reply(
        self, writer: asyncio.StreamWriter, status: int, body: Any, close: bool = False
    ) -> bytes:
        writer.write(response(status, body, close))
        await writer.drain()
        return b""

    def _find(self, ident: str) -> Invocation | Gone:
        if not _ID.fullmatch(ident):
            raise HTTPError(400, "an invocation ID is 1-64 of A-Z a-z 0-9 _ -")
        found = self.worker.find(ident)
        if found is None:
            raise HTTPError(404, "no such invocation")
        return found

    def _post(self, request: Request) -> tuple[int, dict[str, Any]]:
        _allow(request, "POST")
        body = json_body(request)
        ident, arguments = body.get("id"), body.get("input", {})
        if not isinstance(ident, str) or not _ID.fullmatch(ident):
            raise HTTPError(400, "id must be 1-64 of A-Z a-z 0-9 _ -")
        if not isinstance(arguments, dict):
            raise HTTPError(400, "input must be a JSON object")
        seal = _seal_of(body)
        known = self.worker.find(ident)
        if known is not None:
            return 200, known.summary()
        if self.worker.busy(len(request.body)):
            raise HTTPError(503, "busy")
        return 201, self.worker.submit(ident, arguments, len(request.body), seal).summary()

    def _one(self, request: Request, found: Invocation | Gone) -> dict[str, Any]:
        if request.method == "DELETE":
            if isinstance(found, Invocation):
                self.worker.cancel(found)
            return found.summary()
        _allow(request, "GET")
        count = found.count if isinstance(found, Gone) else found.events.last
        return {**found.summary(), "events": count}

    async def _events(
        self,
        request: Request,
        found: Invocation | Gone,
        writer: asyncio.StreamWriter,
        reader: asyncio.StreamReader,
    ) -> bytes | None:
        after = _after(request.query)
        if isinstance(found, Gone):
            raise HTTPError(410, "gone", {"oldest": found.count + 1})
        events = found.events
        if after > events.last:
            raise HTTPError(400, f"after={after} is beyond the last event ({events.last})")
        if after < events.oldest() - 1:
            raise HTTPError(410, "gone", {"oldest": events.oldest()})
        return await Stream(found, writer, reader).run(after)


def _seal_of(body: dict[str, Any]) -> Seal | None:
    if body.get("seal") is None:
        return None
    try:
        return Seal(body["seal"])
    except ValueError as error:
        raise HTTPError(400, str(error)) from None


def _allow(request: Request, method: str) -> None:
    if request.method != method:
        raise HTTPError(405, f"use {method} here")


def _after(query: str) -> int:
    after = 0
    for pair in query.split("&") if query else ():
        name, _, value = pair.partition("=")
        if name == "after":
            if not value.isdigit() or not value.isascii() or len(value) > 15:
                raise HTTPError(400, "after must be a whole number")
            after = int(value)
    return after


class Stream:
    """One events response: what is there, then what comes, until the final event."""

    def __init__(
        self, invocation: Invocation, writer: asyncio.StreamWriter, reader: asyncio.StreamReader
    ) -> None:
        self.invocation = invocation
        self.writer = writer
        self.me = Reader(writer.transport.abort)
        self.watch = asyncio.ensure_future(reader.read(1))
        self.watch.add_done_callback(self._watched)

    def _watched(self, watch: asyncio.Future[bytes]) -> None:
        if not watch.cancelled():
            watch.exception()  # retrieved: a reset connection is no error of ours
        self.me.wake.set()

    async def run(self, after: int) -> bytes | None:
        invocation = self.invocation
        invocation.replace_reader(self.me)
        try:
            self.writer.write(_STREAM_HEAD)
            ended = await self._pump(after)
        finally:
            if invocation.reader is self.me:
                invocation.reader = None
                invocation.events.reader_wake = None
            invocation.touched = time.monotonic()
            await self._stop_watch()
        return self._carry() if ended else None

    async def _pump(self, sent: int) -> bool:
        events, me = self.invocation.events, self.me
        while not me.replaced and not self._peer_gone():
            batch, sent = events.take(sent)
            if batch:
                self.writer.write(chunk(batch))
                await self.writer.drain()
            elif events.final and sent >= events.last:
                self.writer.write(b"0\r\n\r\n")
                await self.writer.drain()
                return True
            else:
                await me.wake.wait()
                me.wake.clear()
        return False

    def _peer_gone(self) -> bool:
        watch = self.watch
        return watch.done() and (
            watch.cancelled() or watch.exception() is not None or not watch.result()
        )

    async def _stop_watch(self) -> None:
        if not self.watch.done():
            self.watch.cancel()
            await asyncio.wait({self.watch})  # the reader is free for the next request

    def _carry(self) -> bytes | None:
        """The bytes of a next request the watch read meanwhile (pipelining), b"" if none,
        None if the peer has gone."""
        if self.watch.cancelled():
            return b""
        return None if self._peer_gone() else self.watch.result()


# -- the gateway's multiplexed connection: many invocations' events on one ------------------

UPGRADE = "hpcgate-events"
CREDIT_MAX = 64 * 1024 * 1024  # a follow's credit at most, in bytes
_SWITCHED = (
    b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: hpcgate-events\r\nConnection: Upgrade\r\n\r\n"
)


class Follow:
    """One invocation followed on a multiplexed connection: its events after ``sent``, as
    many bytes of them as the gateway's ``credit`` allows."""

    def __init__(self, invocation: Invocation, sent: int, credit: int) -> None:
        self.invocation = invocation
        self.sent = sent
        self.credit = credit
        self.reader = Reader(lambda: None)  # set by the connection
        self.task: asyncio.Future[None] | None = None


class Multiplexed:
    """A gateway's connection after ``GET /follow`` upgraded it: the events of every
    invocation it follows, each line prefixed with its invocation's ID, and commands the
    other way (see the module's docstring). One task writes; one per follow reads its
    invocation's events as far as its credit goes, so a follow without credit (its client
    slow) holds back only its own invocation."""

    def __init__(self, worker: Worker, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        self.worker = worker
        self.reader = reader
        self.writer = writer
        self.follows: dict[str, Follow] = {}
        self.out: list[bytes] = []
        self.out_ready = asyncio.Event()
        self.closed = False

    async def run(self) -> None:
        sender = asyncio.ensure_future(self._send())
        try:
            parts: list[bytes] = []  # a command's pieces until its line ends
            size = 0
            while True:
                data = await self.reader.read(65536)
                if not data:
                    return  # closed (a line cut off is dropped)
                if b"\n" not in data:
                    parts.append(data)
                    size += len(data)
                    if size > MAX_BODY + MAX_HEAD:
                        raise ValueError("a command over the size a run's input may have")
                    continue
                head, *middle, tail = data.split(b"\n")
                for line in (b"".join([*parts, head]), *middle):
                    self._command(line)
                parts, size = [tail], len(tail)
        except ValueError as error:  # a command not understood
            log(f"a multiplexed connection closed: {error}")
        finally:
            self.closed = True
            for follow in list(self.follows.values()):
                follow.reader.replaced = True
                follow.reader.wake.set()
            self.follows.clear()
            sender.cancel()

    def _command(self, line: bytes) -> None:
        command = json.loads(line)
        if not isinstance(command, dict) or not _ID.fullmatch(str(command.get("id"))):
            raise ValueError("a command without an invocation ID")
        ident, op = command["id"], command.get("op")
        if op == "run":
            self._run(ident, command, len(line))
        elif op == "follow":
            self._follow(ident, _whole(command, "after", 10**15), _whole(command, "credit"))
        elif op == "credit":
            follow = self.follows.get(ident)
            if follow is not None:
                more = _whole(command, "bytes")
                follow.credit = min(follow.credit + more, CREDIT_MAX)
                follow.reader.wake.set()
        elif op == "stop":
            self._drop(ident)
        else:
            raise ValueError(f"no command {op!r}")

    def _follow(self, ident: str, after: int, credit: int) -> None:
        self._drop(ident)  # a new follow of the same ID here: the gateway ended the old one
        found = self.worker.find(ident)
        refused = _refusal(found, after)
        if refused is not None:
            self._emit(ident, _ENCODER.encode(refused))
            return
        assert isinstance(found, Invocation)
        follow = self.follows[ident] = Follow(found, after, min(credit, CREDIT_MAX))
        follow.reader = Reader(lambda: self._replaced(follow))
        found.replace_reader(follow.reader)
        follow.task = asyncio.ensure_future(self._pump(follow))

    def _run(self, ident: str, command: dict[str, Any], size: int) -> None:
        """Submit the invocation as ``POST /invocations`` does (the same ID again is never
        run twice), say so with its status and state, and follow it from its start."""
        credit = _whole(command, "credit")
        try:
            status, summary = self._submitted(ident, command, size)
        except HTTPError as error:
            self._emit(ident, _ENCODER.encode({"status": error.status, **error.body}))
            return
        self._emit(ident, _ENCODER.encode({"status": status, **summary}))
        self._follow(ident, 0, credit)

    def _submitted(
        self, ident: str, command: dict[str, Any], size: int
    ) -> tuple[int, dict[str, Any]]:
        arguments = command.get("input", {})
        if not isinstance(arguments, dict):
            raise HTTPError(400, "input must be a JSON object")
        seal = _seal_of(command)
        known = self.worker.find(ident)
        if known is not None:
            return 200, known.summary()
        if self.worker.busy(size):
            raise HTTPError(503, "busy")
        return 201, self.worker.submit(ident, arguments, size, seal).summary()

    def _drop(self, ident: str) -> None:
        """Stop following ``ident`` quietly (the gateway asked, or follows it anew)."""
        follow = self.follows.pop(ident, None)
        if follow is not None:
            follow.reader.replaced = True
            follow.reader.wake.set()

    def _replaced(self, follow: Follow) -> None:
        """Another reader took the invocation's events: this follow ends, and says so."""
        ident = follow.invocation.id
        if self.follows.get(ident) is follow:
            del self.follows[ident]
            refusal = {"status": 409, "error": "another reader took the events over"}
            self._emit(ident, _ENCODER.encode(refusal))

    async def _pump(self, follow: Follow) -> None:
        invocation, me = follow.invocation, follow.reader
        events, prefix = invocation.events, invocation.id + " "
        try:
            while not me.replaced and not self.closed:
                lines: list[str] = []
                if follow.credit > 0:
                    lines, follow.sent = events.take_lines(follow.sent, follow.credit)
                if lines:
                    follow.credit -= sum(map(len, lines)) + len(lines)
                    self._write("".join([prefix + line + "\n" for line in lines]))
                elif events.final and follow.sent >= events.last:
                    return
                else:
                    await me.wake.wait()
                    me.wake.clear()
        finally:
            if self.follows.get(invocation.id) is follow:
                del self.follows[invocation.id]
            if invocation.reader is me:
                invocation.reader = None
                events.reader_wake = None
            invocation.touched = time.monotonic()

    def _emit(self, ident: str, body: str) -> None:
        self._write(f"{ident} {body}\n")

    def _write(self, text: str) -> None:
        self.out.append(text.encode("ascii"))
        self.out_ready.set()

    async def _send(self) -> None:
        """The one writer: what the follows queued, in one write per turn."""
        try:
            while True:
                await self.out_ready.wait()
                self.out_ready.clear()
                data, self.out = b"".join(self.out), []
                self.writer.write(data)
                await self.writer.drain()
        except (ConnectionError, RuntimeError):
            self.writer.transport.abort()


def _whole(command: dict[str, Any], key: str, limit: int = CREDIT_MAX) -> int:
    value = command.get(key)
    if type(value) is not int or not 0 <= value <= limit:
        raise ValueError(f"{key} must be a whole number up to {limit}")
    return value


def _refusal(found: Invocation | Gone | None, after: int) -> dict[str, Any] | None:
    """Why the events after ``after`` cannot be followed (as an events request's status
    and body), or None."""
    if found is None:
        return {"status": 404, "error": "no such invocation"}
    if isinstance(found, Gone):
        return {"status": 410, "error": "gone", "oldest": found.count + 1}
    events = found.events
    if after > events.last:
        return {"status": 400, "error": f"after={after} is beyond the last event"}
    if after < events.oldest() - 1:
        return {"status": 410, "error": "gone", "oldest": events.oldest()}
    return None


# -- main -------------------------------------------------------------------------------------


def _raise_file_limit() -> None:
    """Room for MAX_CONNECTIONS sockets (a node's default soft limit is often 1,024)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = MAX_CONNECTIONS + 1024
    if hard != resource.RLIM_INFINITY:
        want = min(want, hard)
    if soft != resource.RLIM_INFINITY and soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))


async def serve(spec: Spec, function: Callable[..., Any] | None, error: Any) -> None:
    worker = Worker(spec, function, error)
    worker.retain = float(os.environ.get("HPCGATE_WORKER_RETAIN_SECONDS", RETAIN_SECONDS))
    server = Server(worker)
    host = os.environ.get("HPCGATE_SERVICE_HOST", "0.0.0.0")  # noqa: S104 - a node's service
    port = int(os.environ["HPCGATE_SERVICE_PORT"])
    listener = await asyncio.start_server(
        server.connection, host, port, limit=MAX_HEAD, backlog=1024, reuse_address=True
    )
    worker.own_fds = lambda: server.fds(listener)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGCHLD, worker.reap)
    for number in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(number, stop.set)
    log(f"serving {spec.name!r} ({spec.concurrency}) on {host}:{port}")
    sweeper = loop.create_task(_sweep(worker))
    async with listener:
        await stop.wait()
        listener.close()
        await server.close_all()
    sweeper.cancel()
    worker.stop_children()
    log("stopped")


async def _sweep(worker: Worker) -> None:
    while True:
        await asyncio.sleep(min(10.0, max(0.1, worker.retain / 4)))
        worker.sweep()


def main(spec_json: bytes) -> None:
    """Load the function the spec names and serve it until SIGTERM."""
    try:
        spec = Spec(json.loads(spec_json))
    except ValueError as bad:
        log(f"bad spec: {bad}")
        raise SystemExit(2) from None
    function, error = load_function(spec)
    if error is not None:
        log(f"the function failed to import: {error['message']}")
    _raise_file_limit()
    asyncio.run(serve(spec, function, error))


if __name__ == "__main__" and getattr(__spec__, "name", None) == "hpcgate.worker":
    main(base64.b64decode(os.environ["HPCGATE_FUNCTION_SPEC"]))
