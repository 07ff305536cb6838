"""The operations an agent serves: one frozen dataclass per request, each naming the type of
its result, and the envelopes they travel in.

The wire names an operation by string (``op``); each side is typed all the same: the
gateway builds a request of one of these classes and gets back its declared ``Result``, the
agent finds the class by its name in :data:`OPERATIONS` (nothing else is served) and decodes
its arguments strictly (:mod:`.codec`). Model types of the gateway (``FileEntry``...) are
carried as JSON objects (``Document``) that the gateway validates with its own models, so
this module needs nothing of the server.

Confinement: a file request's ``root`` is the root the gateway checked the path against
(None: the whole file system); the agent checks it against its own roots before acting.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, ClassVar, Generic, TypeVar

from hpcgate.agentwire import codec
from hpcgate.agentwire.frames import ProtocolError

R = TypeVar("R")
Document = dict[str, object]  # a model of the gateway's (FileEntry, Content...), as JSON

MAX_ARGV_WORDS = 4096
MAX_IO_BYTES = 512 * 1024  # file contents per request or result: base64 fits a control frame
MAX_DATA_IO = 64 * 1024 * 1024  # file contents per handle_read_data or handle_write_data
MAX_BULK_IO = 1 << 40  # file contents per handle_read_bulk (its own connection: one a file)
#: The WebSocket handshake's header in which an agent names what it takes beyond the base
#: protocol (comma-separated; a header, not a HELLO field: HELLO is decoded strictly, so a
#: gateway that predates a feature still takes an agent that has it, and the reverse).
FEATURES_HEADER = "hpcgate-agent-features"
BULK = "bulk-read"  # the feature: handle_read_bulk
BULK_PATH = "/api/v1/agent/streams/"  # + the stream id
STREAM_ID = re.compile(r"[A-Za-z0-9_-]{43}")  # secrets.token_urlsafe(32)


@dataclass(frozen=True, slots=True)
class Request(Generic[R]):
    """One operation; ``Result`` is its result's type, ``op`` its name on the wire."""

    op: ClassVar[str]
    Result: ClassVar[Any]
    #: Whether it may be sent again after a break without doing twice what it does.
    idempotent: ClassVar[bool] = False
    #: Whether it means something only on the connection that sent it (an open file's).
    bound: ClassVar[bool] = False


def kept(kind: type[Request[Any]]) -> bool:
    """Whether the agent keeps the results of this operation until the gateway's ACK (and
    the gateway asks STATUS after a break): it does something, on no one connection."""
    return not (kind.idempotent or kind.bound)


# ------------------------------------------------------------------------------ results


@dataclass(frozen=True, slots=True)
class Output:
    """A finished command (``stdout`` and ``stderr`` cut to what a result can carry)."""

    returncode: int
    stdout: bytes
    stderr: bytes


@dataclass(frozen=True, slots=True)
class User:
    name: str
    uid: int
    gid: int
    home: str
    groups: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class Info:
    size: int
    modified_ns: int
    inode: int


# ------------------------------------------------------------------------------ commands


@dataclass(frozen=True, slots=True)
class Run(Request[Output]):
    op = "run"
    Result = Output
    argv: tuple[str, ...]
    stdin: bytes | None
    env: dict[str, str] | None
    timeout: float


@dataclass(frozen=True, slots=True)
class RunLong(Request[Output]):
    """Its stderr lines come as LINE frames on its channel before the result."""

    op = "run_long"
    Result = Output
    argv: tuple[str, ...]
    env: dict[str, str] | None


@dataclass(frozen=True, slots=True)
class Beneath:
    """A path word of a file program (:class:`hpcgate.model.commands.Beneath`)."""

    path: str
    root: str | None
    part: str
    prefix: str


@dataclass(frozen=True, slots=True)
class RunFiles(Request[Output]):
    op = "run_files"
    Result = Output
    argv: tuple[str | Beneath, ...]


# ------------------------------------------------------------------------------ users


@dataclass(frozen=True, slots=True)
class LookupUser(Request[User | None]):
    op, Result, idempotent = "lookup_user", User | None, True
    name: str


@dataclass(frozen=True, slots=True)
class OwnHome(Request[str]):
    op, Result, idempotent = "own_home", str, True


# ------------------------------------------------------------------------------ files


@dataclass(frozen=True, slots=True)
class Resolve(Request[str]):
    op, Result, idempotent = "resolve", str, True
    root: str | None
    path: str
    follow: bool


@dataclass(frozen=True, slots=True)
class Lstat(Request[Document]):
    op, Result, idempotent = "lstat", Document, True
    root: str | None
    path: str
    numeric: bool


@dataclass(frozen=True, slots=True)
class ListDir(Request[list[Document]]):
    op, Result, idempotent = "listing", list[Document], True
    root: str | None
    path: str
    hidden: bool
    depth: int
    numeric: bool


@dataclass(frozen=True, slots=True)
class Size(Request[int | None]):
    op, Result, idempotent = "size", int | None, True
    root: str | None
    path: str


@dataclass(frozen=True, slots=True)
class Usage(Request[int]):
    op, Result, idempotent = "usage", int, True
    root: str | None
    path: str


@dataclass(frozen=True, slots=True)
class Read(Request[bytes]):
    op, Result, idempotent = "read", bytes, True
    root: str | None
    path: str
    offset: int
    size: int


@dataclass(frozen=True, slots=True)
class Head(Request[Document]):
    op, Result, idempotent = "head", Document, True
    root: str | None
    path: str
    lines: int | None
    size: int | None


@dataclass(frozen=True, slots=True)
class Tail(Request[Document]):
    op, Result, idempotent = "tail", Document, True
    root: str | None
    path: str
    lines: int | None
    size: int | None


@dataclass(frozen=True, slots=True)
class Digest(Request[Document]):
    op, Result, idempotent = "checksum", Document, True
    root: str | None
    path: str
    algorithm: str


@dataclass(frozen=True, slots=True)
class FileKind(Request[Document]):
    op, Result, idempotent = "file_type", Document, True
    root: str | None
    path: str


@dataclass(frozen=True, slots=True)
class Open(Request[int]):
    """Opens a file; the result is a handle, valid on this connection until closed."""

    op, Result, bound = "open", int, True
    root: str | None
    path: str
    how: str  # read | new | append


@dataclass(frozen=True, slots=True)
class Mkdir(Request[None]):
    op, Result = "mkdir", type(None)
    root: str | None
    path: str
    parents: bool


@dataclass(frozen=True, slots=True)
class Remove(Request[None]):
    op, Result = "remove", type(None)
    root: str | None
    path: str
    recursive: bool


@dataclass(frozen=True, slots=True)
class Chmod(Request[Document]):
    op, Result = "chmod", Document
    root: str | None
    path: str
    mode: int


@dataclass(frozen=True, slots=True)
class Chown(Request[Document]):
    op, Result = "chown", Document
    root: str | None
    path: str
    owner: str | None
    group: str | None


@dataclass(frozen=True, slots=True)
class Symlink(Request[Document]):
    op, Result = "symlink", Document
    root: str | None
    path: str
    target: str


@dataclass(frozen=True, slots=True)
class Publish(Request[Document]):
    op, Result = "publish", Document
    root: str | None
    path: str
    target: str
    overwrite: bool
    mode: int


@dataclass(frozen=True, slots=True)
class Discard(Request[None]):
    op, Result = "discard", type(None)
    root: str | None
    path: str


# ------------------------------------------------------------------------------ open files


@dataclass(frozen=True, slots=True)
class HandleInfo(Request[Info]):
    op, Result, idempotent, bound = "handle_info", Info, True, True
    handle: int


@dataclass(frozen=True, slots=True)
class HandleRead(Request[bytes]):
    op, Result, idempotent, bound = "handle_read", bytes, True, True
    handle: int
    offset: int
    size: int


@dataclass(frozen=True, slots=True)
class HandleWrite(Request[None]):
    op, Result, bound = "handle_write", type(None), True
    handle: int
    data: bytes


@dataclass(frozen=True, slots=True)
class HandleTruncate(Request[None]):
    op, Result, bound = "handle_truncate", type(None), True
    handle: int
    size: int


@dataclass(frozen=True, slots=True)
class HandleChmod(Request[None]):
    op, Result, bound = "handle_chmod", type(None), True
    handle: int
    mode: int


@dataclass(frozen=True, slots=True)
class HandleClose(Request[None]):
    op, Result, bound = "handle_close", type(None), True
    handle: int


# ------------------------------------------------------------------------------ streams


@dataclass(frozen=True, slots=True)
class Connect(Request[None]):
    """A TCP connection from the agent to ``host``:``port`` (a service replica or a function
    worker on a node), its bytes then DATA frames on this channel both ways
    (:mod:`.pipe`); its RESULT comes when the stream has ended."""

    op, Result, bound = "connect", type(None), True
    host: str
    port: int


@dataclass(frozen=True, slots=True)
class HandleReadData(Request[int]):
    """As :class:`HandleRead`, for a larger piece: its bytes come as DATA frames on the
    channel (with credit), then a CLOSE; the result is their count. Raw bytes, where a
    RESULT's base64 in JSON costs a copy and a pass on each side."""

    op, Result, idempotent, bound = "handle_read_data", int, True, True
    handle: int
    offset: int
    size: int


@dataclass(frozen=True, slots=True)
class HandleWriteData(Request[int]):
    """As :class:`HandleWrite`, for a larger piece: after the agent's first CREDIT the
    gateway sends the bytes as DATA frames, then a CLOSE; the agent CLOSEs once all is
    written, and the result is the count."""

    op, Result, bound = "handle_write_data", int, True
    handle: int


@dataclass(frozen=True, slots=True)
class HandleReadBulk(Request[int]):
    """As :class:`HandleReadData`, the bytes on a data connection of their own: the agent
    POSTs them, as one chunked request body, to the gateway's
    ``/api/v1/agent/streams/{stream}`` (:data:`BULK_PATH`) with its agent token, and the
    result is their count once the gateway has taken them all. Sent only to an agent that
    said it takes it (:data:`FEATURES_HEADER`); ``stream`` is the gateway's unguessable,
    single-use name for it (:data:`STREAM_ID`)."""

    op, Result, idempotent, bound = "handle_read_bulk", int, True, True
    handle: int
    offset: int
    size: int
    stream: str


ALL: tuple[type[Request[Any]], ...] = (
    Run, RunLong, RunFiles, LookupUser, OwnHome, Resolve, Lstat, ListDir, Size, Usage, Read,
    Head, Tail, Digest, FileKind, Open, Mkdir, Remove, Chmod, Chown, Symlink, Publish, Discard,
    HandleInfo, HandleRead, HandleWrite, HandleTruncate, HandleChmod, HandleClose, Connect,
    HandleReadData, HandleWriteData, HandleReadBulk,
)  # fmt: skip
OPERATIONS: dict[str, type[Request[Any]]] = {cls.op: cls for cls in ALL}
#: The requests whose channel carries DATA (:mod:`.pipe`) besides their RESULT.
STREAMED = (Connect, HandleReadData, HandleWriteData, HandleReadBulk)


# ------------------------------------------------------------------------------ envelopes


@dataclass(frozen=True, slots=True)
class Envelope:
    """A REQUEST frame's body: the operation, its arguments, and as whom (None: the agent's
    own account, or its service account)."""

    op: str
    args: dict[str, object]
    account: str | None


@dataclass(frozen=True, slots=True)
class Failure:
    """Why a request failed: ``kind`` is an error class's name of the gateway's error tree
    (``refused`` where the agent's policy said no)."""

    kind: str
    message: str


@dataclass(frozen=True, slots=True)
class Hello:
    """The agent's first frame: who it is and as whom it serves (``user`` None: root, every
    account; else only that account)."""

    agent_id: str
    host: str
    version: str
    scheduler: str
    user: str | None


@dataclass(frozen=True, slots=True)
class Welcome:
    epoch: str


@dataclass(frozen=True, slots=True)
class Progress:
    """The agent's answer to a STATUS when it has no result to send: ``running`` (the
    RESULT follows on this connection) or ``unknown`` (never seen, not kept, or cut by the
    agent's own end: its outcome is lost)."""

    state: str


@dataclass(frozen=True, slots=True)
class Line:
    """One stderr line of a running ``run_long``/``run_files`` (a LINE frame)."""

    line: str


def request_fields(request: Request[Any], account: str | None) -> dict[str, object]:
    """A request's REQUEST body."""
    args = codec.encode(request, type(request))
    return codec.encode(Envelope(request.op, args, account), Envelope)  # type: ignore[no-any-return]


def parse_request(fields: dict[str, object]) -> tuple[Request[Any], str | None]:
    """The request a REQUEST body holds and its account; ProtocolError for anything but a
    request of :data:`OPERATIONS` with exactly its arguments, each of its type."""
    envelope: Envelope = codec.decode(fields, Envelope, "request")
    kind = OPERATIONS.get(envelope.op)
    if kind is None:
        raise ProtocolError(f"unknown operation {envelope.op[:64]!r}")
    request = codec.decode(envelope.args, kind, envelope.op)
    if (
        isinstance(request, Run | RunLong | RunFiles)
        and not 0 < len(request.argv) <= MAX_ARGV_WORDS
    ):
        raise ProtocolError(f"{envelope.op}: argv of {len(request.argv)} words")
    return request, envelope.account


def result_fields(request: Request[R], value: R) -> dict[str, object]:
    """A successful RESULT body."""
    return {"ok": True, "value": codec.encode(value, request.Result)}


def failure_fields(kind: str, message: str) -> dict[str, object]:
    """A failed RESULT body (the message cut to 2,000 characters)."""
    return {"ok": False, "error": {"kind": kind, "message": message[:2000]}}


def parse_result(request: Request[R], fields: dict[str, object]) -> R | Failure:
    """A RESULT body for ``request``: its value, or why it failed."""
    if fields.get("ok") is True and set(fields) == {"ok", "value"}:
        return codec.decode(fields["value"], request.Result, request.op)  # type: ignore[no-any-return]
    if fields.get("ok") is False and set(fields) == {"ok", "error"}:
        return codec.decode(fields["error"], Failure, "error")  # type: ignore[no-any-return]
    raise ProtocolError("a result is {'ok': true, 'value'} or {'ok': false, 'error'}")
