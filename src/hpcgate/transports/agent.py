"""The agent transport: every operation an RPC to an outbound agent of the system
(``hpcgate-agent`` on its login node, connected through ``/api/v1/agent/connect``).

One typed method per Transport method, each building its request of
:mod:`hpcgate.agentwire.messages`; the agent runs it through its own local transport, after
its own policy. An agent's refusal is Forbidden; its errors come back as the same classes of
the error tree (by a table of names); no agent connected is a TransportError (503 with
Retry-After). A byte stream (:meth:`AgentTransport.stream`) is a ``connect`` request whose
channel then carries the stream's bytes (:mod:`.agent_streams`); the agent connects only to
its scheduler's nodes on the ports of its ``stream_ports`` (:mod:`hpcgate.agent.targets`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import anyio
from anyio.abc import ByteStream
from pydantic import BaseModel, ValidationError

from hpcgate.accounts import Account, UserEntry
from hpcgate.agentwire import messages as m
from hpcgate.agentwire.frames import Kind, ProtocolError, control
from hpcgate.agentwire.pipe import Pipe
from hpcgate.model import errors
from hpcgate.model.commands import Beneath, Command, CommandResult, FileCommand
from hpcgate.model.files import Checksum, Content, FileEntry, FileType
from hpcgate.transports.agent_bulk import BulkPipe, BulkStream, new_stream_id
from hpcgate.transports.agent_hub import AgentHub, AgentLink, unavailable
from hpcgate.transports.agent_streams import AgentStream
from hpcgate.transports.filesystem import FileInfo, FileSystem, OpenFile

R = TypeVar("R")
M = TypeVar("M", bound=BaseModel)
Lines = Callable[[str], None]
CONNECT_WAIT = 30.0  # seconds for the agent to say its connection is open (its own: 10)

#: The errors an agent may report, by name; any other name is a TransportError.
ERRORS: dict[str, type[errors.HpcgateError]] = {
    cls.__name__: cls
    for cls in (
        errors.BadRequest, errors.Invalid, errors.Forbidden, errors.NotFound, errors.Conflict,
        errors.InsufficientStorage, errors.PayloadTooLarge, errors.TransportError,
        errors.CommandTimeout, errors.SchedulerUnavailable, errors.Unavailable,
    )
}  # fmt: skip


def raised(failure: m.Failure) -> errors.HpcgateError:
    """The hpcgate error an agent's failure stands for."""
    if failure.kind == "refused":
        return errors.Forbidden(f"the system's agent refused: {failure.message}")
    return ERRORS.get(failure.kind, errors.TransportError)(failure.message)


async def outcome(
    link: AgentLink, request: m.Request[R], account: Account | None, on_line: Lines | None = None
) -> R:
    """The value of ``request`` on ``link``, or its error raised."""
    try:
        value = await link.call(request, account.name if account else None, on_line)
    except ProtocolError as exc:
        raise errors.TransportError(f"the agent answered out of protocol: {exc}") from None
    if isinstance(value, m.Failure):
        raise raised(value)
    return value


def model(kind: type[M], document: m.Document) -> M:
    """A model the agent sent as JSON, validated as any input is."""
    try:
        return kind.model_validate(document)
    except ValidationError as exc:
        raise errors.TransportError(f"the agent sent a bad {kind.__name__}: {exc}") from None


class AgentTransport:
    """The Transport of a system served by agents."""

    def __init__(self, system: str, hub: AgentHub) -> None:
        self.system = system
        self.hub = hub

    async def call(
        self, request: m.Request[R], account: Account | None, on_line: Lines | None = None
    ) -> R:
        try:
            value = await self.hub.call(self.system, request, _name(account), on_line)
        except ProtocolError as exc:
            raise errors.TransportError(f"the agent answered out of protocol: {exc}") from None
        if isinstance(value, m.Failure):
            raise raised(value)
        return value

    async def run(
        self, command: Command, timeout: float, account: Account | None = None
    ) -> CommandResult:
        env = dict(command.env) if command.env is not None else None
        output = await self.call(m.Run(command.argv, command.stdin, env, timeout), account)
        return CommandResult(output.returncode, output.stdout, output.stderr)

    async def run_long(
        self, command: Command, account: Account | None, on_line: Lines
    ) -> CommandResult:
        env = dict(command.env) if command.env is not None else None
        output = await self.call(m.RunLong(command.argv, env), account, on_line)
        return CommandResult(output.returncode, output.stdout, output.stderr)

    async def run_files(
        self, command: FileCommand, account: Account | None, on_line: Lines
    ) -> CommandResult:
        words = tuple(_word(word) for word in command.argv)
        output = await self.call(m.RunFiles(words), account, on_line)
        return CommandResult(output.returncode, output.stdout, output.stderr)

    def files(self, account: Account | None = None) -> FileSystem:
        return AgentFiles(self, account, None)

    async def stream(self, host: str, port: int, account: Account | None = None) -> ByteStream:
        """A TCP connection the agent opens to ``host``:``port`` (Forbidden if its policy
        refuses the target; TransportError if it cannot connect)."""
        link = self.hub.pick(self.system, account.name if account else None)
        return await open_stream(link, m.Connect(host, port), account)

    async def lookup_user(self, name: str) -> UserEntry | None:
        user = await self.call(m.LookupUser(name), None)
        return (
            None
            if user is None
            else UserEntry(user.name, user.uid, user.gid, user.home, user.groups)
        )

    async def own_home(self) -> str:
        return await self.call(m.OwnHome(), None)

    async def start(self) -> None:
        """Nothing to prepare: agents connect to the gateway."""

    async def close(self) -> None:
        """Agents' connections end with the server."""


async def open_stream(link: AgentLink, request: m.Connect, account: Account | None) -> AgentStream:
    """Send ``request`` on a new channel of ``link``; its stream once the agent says it is
    open, or the agent's refusal or failure raised."""
    pipe, stream = await _channel(link, request, account)
    try:
        with anyio.fail_after(CONNECT_WAIT):
            await pipe.opened.wait()
        _raise_failure(link, request, pipe)
    except BaseException as exc:
        await stream.aclose()
        if isinstance(exc, TimeoutError):
            raise errors.TransportError(
                f"the agent did not connect to {request.host}:{request.port} in time"
            ) from None
        raise
    return stream


async def _channel(
    link: AgentLink, request: m.Request[Any], account: Account | None
) -> tuple[Pipe, AgentStream]:
    """A new channel of ``link`` for a request of ``m.STREAMED``, the request sent on it."""
    if link.streams.broken is not None:
        raise unavailable(link.streams.broken)
    channel = link.next_channel()
    pipe = Pipe(channel, link.send, may_send=0)  # the agent's first CREDIT opens it
    link.streams.add(pipe)
    stream = AgentStream(pipe, link.streams, link.send)
    try:
        body = m.request_fields(request, account.name if account else None)
        await link.send(control(Kind.REQUEST, channel, body))
    except BaseException:
        await stream.aclose()
        raise
    return pipe, stream


async def _bulk_channel(
    link: AgentLink, request: m.HandleReadBulk, account: Account | None
) -> tuple[BulkPipe, BulkStream]:
    """A new channel of ``link`` for a ``handle_read_bulk``, its read waiting for the
    agent's data connection (:mod:`.agent_bulk`), the request sent on it."""
    if link.streams.broken is not None or link.bulk is None:
        raise unavailable(link.streams.broken or "the agent takes no bulk reads")
    pipe = BulkPipe(link.next_channel(), link.token_id, request.stream)
    link.streams.add(pipe)
    link.bulk.add(pipe)
    stream = BulkStream(pipe, link.bulk, link.streams.forget, link.send, lambda: link.is_broken)
    try:
        body = m.request_fields(request, account.name if account else None)
        await link.send(control(Kind.REQUEST, pipe.channel, body))
    except BaseException:
        await stream.aclose()
        raise
    return pipe, stream


def _raise_failure(link: AgentLink, request: m.Request[Any], pipe: Pipe | BulkPipe) -> None:
    """Raise why the channel's stream broke or did not open, if it did."""
    body = link.streams.result(pipe.channel)
    if body is not None:
        try:
            value = m.parse_result(request, body)
        except ProtocolError as exc:
            raise errors.TransportError(f"the agent answered out of protocol: {exc}") from None
        if isinstance(value, m.Failure):
            raise raised(value)
    if link.streams.broken is not None:
        raise unavailable(link.streams.broken)
    if pipe.error is not None and body is None:
        raise errors.TransportError(f"the agent's {request.op} broke: {pipe.error}")


async def read_data(link: AgentLink, request: m.HandleReadData, account: Account | None) -> bytes:
    """The bytes of a ``handle_read_data``, as DATA on its channel."""
    pipe, stream = await _channel(link, request, account)
    chunks: list[bytes] = []
    try:
        while True:
            chunks.append(await pipe.receive(1 << 20))
    except anyio.EndOfStream:
        return b"".join(chunks)
    except anyio.BrokenResourceError:
        _raise_failure(link, request, pipe)
        raise errors.TransportError(f"the agent's read broke: {pipe.error}") from None
    finally:
        await stream.aclose()


async def write_data(
    link: AgentLink, request: m.HandleWriteData, data: bytes, account: Account | None
) -> None:
    """Write ``data`` by a ``handle_write_data``: DATA as the agent grants, then CLOSE; done
    once the agent's CLOSE says all is written."""
    pipe, stream = await _channel(link, request, account)
    try:
        await pipe.send(data)
        await pipe.send_eof()
        while True:
            await pipe.receive()  # the agent sends no DATA here; its CLOSE ends this
    except anyio.EndOfStream:
        return
    except anyio.BrokenResourceError:
        _raise_failure(link, request, pipe)
        raise errors.TransportError(f"the agent's write broke: {pipe.error}") from None
    finally:
        await stream.aclose()


def _word(word: str | Beneath) -> str | m.Beneath:
    if isinstance(word, str):
        return word
    return m.Beneath(word.path, word.root, word.part, word.prefix)


class AgentFiles:
    """The FileSystem through an agent, as ``account``, confined to ``root`` (None: the
    agent confines every path to its own roots anyway)."""

    def __init__(
        self, transport: AgentTransport, account: Account | None, root: str | None
    ) -> None:
        self._transport = transport
        self._account = account
        self._root = root

    async def _call(self, request: m.Request[R]) -> R:
        return await self._transport.call(request, self._account)

    def beneath(self, root: str) -> FileSystem:
        return AgentFiles(self._transport, self._account, root)

    async def resolve(self, path: str, follow: bool) -> str:
        return await self._call(m.Resolve(self._root, path, follow))

    async def lstat(self, path: str, numeric: bool = False) -> FileEntry:
        return model(FileEntry, await self._call(m.Lstat(self._root, path, numeric)))

    async def listing(self, path: str, hidden: bool, depth: int, numeric: bool) -> list[FileEntry]:
        found = await self._call(m.ListDir(self._root, path, hidden, depth, numeric))
        return [model(FileEntry, entry) for entry in found]

    async def size(self, path: str) -> int | None:
        return await self._call(m.Size(self._root, path))

    async def usage(self, path: str) -> int:
        return await self._call(m.Usage(self._root, path))

    async def read(self, path: str, offset: int, size: int) -> bytes:
        chunks: list[bytes] = []
        while size > 0:
            chunk = await self._call(m.Read(self._root, path, offset, min(size, m.MAX_IO_BYTES)))
            chunks.append(chunk)
            if len(chunk) < min(size, m.MAX_IO_BYTES):
                break
            offset, size = offset + len(chunk), size - len(chunk)
        return b"".join(chunks)

    async def head(self, path: str, lines: int | None, size: int | None) -> Content:
        return model(Content, await self._call(m.Head(self._root, path, lines, size)))

    async def tail(self, path: str, lines: int | None, size: int | None) -> Content:
        return model(Content, await self._call(m.Tail(self._root, path, lines, size)))

    async def checksum(self, path: str, algorithm: str) -> Checksum:
        return model(Checksum, await self._call(m.Digest(self._root, path, algorithm)))

    async def file_type(self, path: str) -> FileType:
        return model(FileType, await self._call(m.FileKind(self._root, path)))

    async def _open(self, path: str, how: str) -> OpenFile:
        link = self._transport.hub.pick(self._transport.system, _name(self._account))
        handle = await outcome(link, m.Open(self._root, path, how), self._account)
        return AgentFile(link, handle, self._account)

    async def open_read(self, path: str) -> OpenFile:
        return await self._open(path, "read")

    async def open_new(self, path: str) -> OpenFile:
        return await self._open(path, "new")

    async def open_append(self, path: str) -> OpenFile:
        return await self._open(path, "append")

    async def mkdir(self, path: str, parents: bool) -> None:
        await self._call(m.Mkdir(self._root, path, parents))

    async def remove(self, path: str, recursive: bool) -> None:
        await self._call(m.Remove(self._root, path, recursive))

    async def chmod(self, path: str, mode: int) -> FileEntry:
        return model(FileEntry, await self._call(m.Chmod(self._root, path, mode)))

    async def chown(self, path: str, owner: str | None, group: str | None) -> FileEntry:
        return model(FileEntry, await self._call(m.Chown(self._root, path, owner, group)))

    async def symlink(self, path: str, target: str) -> FileEntry:
        return model(FileEntry, await self._call(m.Symlink(self._root, path, target)))

    async def publish(self, path: str, target: str, overwrite: bool, mode: int) -> FileEntry:
        found = await self._call(m.Publish(self._root, path, target, overwrite, mode))
        return model(FileEntry, found)

    async def discard(self, path: str) -> None:
        """Remove an upload's hidden file; with no agent to ask (its token revoked, say),
        the hub keeps the discard for the system's next agent (and it still fails)."""
        request = m.Discard(self._root, path)
        try:
            await self._call(request)
        except errors.TransportError:
            self._transport.hub.discard_later(self._transport.system, request, _name(self._account))
            raise


@dataclass
class _Reading:
    """A ``handle_read_data`` (or ``handle_read_bulk``) under way: the file's bytes from
    ``start`` on, as the agent sends them, as fast as they are taken (at most its credit
    window, 1 MiB, or a bulk read's buffer, 4 MiB, waits here)."""

    request: m.HandleReadData | m.HandleReadBulk
    pipe: Pipe | BulkPipe
    stream: AgentStream | BulkStream
    offset: int  # the next byte's
    ended: bool = False  # the agent sent all it will

    @property
    def whole(self) -> bool:
        """Whether it ended for its size, not at the file's end."""
        return self.offset - self.request.offset >= self.request.size


def _name(account: Account | None) -> str | None:
    return account.name if account else None


class AgentFile:
    """A file the agent holds open for us, on the one connection that opened it.

    A large read (above :data:`~hpcgate.agentwire.messages.MAX_IO_BYTES`: a download's)
    asks the agent for the rest of the file as one stream, and the next read from where it
    ended takes the following bytes of that same stream: the agent reads and sends while
    the gateway passes the last piece on, instead of one round trip per piece. The stream
    is a bulk read on a data connection of its own (:mod:`.agent_bulk`) where the agent
    takes those, else DATA frames on its channel (up to ``MAX_DATA_IO`` each). A read
    elsewhere, a write or a truncate ends the stream (a CANCEL).
    """

    def __init__(self, link: AgentLink, handle: int, account: Account | None) -> None:
        self._link = link
        self._handle = handle
        self._account = account
        self._reading: _Reading | None = None

    async def _call(self, request: m.Request[R]) -> R:
        return await outcome(self._link, request, self._account)

    async def info(self) -> FileInfo:
        info = await self._call(m.HandleInfo(self._handle))
        return FileInfo(info.size, info.modified_ns, info.inode)

    async def read(self, offset: int, size: int) -> bytes:
        if size > m.MAX_IO_BYTES:  # raw DATA frames, not base64 in a RESULT
            return await self._read_streamed(offset, size)
        chunks: list[bytes] = []
        while size > 0:
            wanted = min(size, m.MAX_IO_BYTES)
            chunk = await self._call(m.HandleRead(self._handle, offset, wanted))
            chunks.append(chunk)
            if len(chunk) < wanted:
                break
            offset, size = offset + len(chunk), size - len(chunk)
        return b"".join(chunks)

    async def read_some(self, offset: int, size: int) -> bytes:
        """A large read's next piece as it came from the agent (a DATA frame's, or what
        one receive of its data connection's body brought), not joined to ``size``."""
        if size > m.MAX_IO_BYTES:
            return await self._piece(offset, size)
        return await self.read(offset, size)

    async def _read_streamed(self, offset: int, size: int) -> bytes:
        chunks: list[bytes] = []
        while size > 0:
            chunk = await self._piece(offset, size)
            if not chunk:
                break  # the file's end
            chunks.append(chunk)
            offset, size = offset + len(chunk), size - len(chunk)
        return b"".join(chunks)

    async def _piece(self, offset: int, size: int) -> bytes:
        """The stream's next piece from ``offset``, up to ``size`` bytes (b"": the file
        ended there)."""
        while True:
            reading = await self._reading_at(offset)
            if reading is None:
                return b""
            chunk = await self._take(reading, size)
            if chunk:
                return chunk
            # that stream ended for its size; the next one goes on from here

    async def _reading_at(self, offset: int) -> _Reading | None:
        """The stream that goes on from ``offset`` (a new one if none does; None: the file
        ended there)."""
        reading = self._reading
        if reading is not None and reading.offset == offset and not reading.ended:
            return reading
        if reading is not None and reading.offset == offset and not reading.whole:
            return None
        await self._stop_reading()
        self._reading = await self._start_reading(offset)
        return self._reading

    async def _start_reading(self, offset: int) -> _Reading:
        """A read of the rest of the file from ``offset``: on a data connection of its own
        where the agent takes that (:mod:`.agent_bulk`), else as DATA frames."""
        if self._link.bulk is not None:
            bulk = m.HandleReadBulk(self._handle, offset, m.MAX_BULK_IO, new_stream_id())
            pipe, stream = await _bulk_channel(self._link, bulk, self._account)
            return _Reading(bulk, pipe, stream, offset)
        request = m.HandleReadData(self._handle, offset, m.MAX_DATA_IO)
        framed, channel = await _channel(self._link, request, self._account)
        return _Reading(request, framed, channel, offset)

    async def _take(self, reading: _Reading, size: int) -> bytes:
        """Up to ``size`` bytes of the stream (b"": it ended)."""
        try:
            chunk = await reading.pipe.receive(size)
        except anyio.EndOfStream:
            reading.ended = True
            return b""
        except anyio.BrokenResourceError:
            self._reading = None
            await reading.stream.aclose()
            _raise_failure(self._link, reading.request, reading.pipe)
            raise errors.TransportError(f"the agent's read broke: {reading.pipe.error}") from None
        reading.offset += len(chunk)
        return chunk

    async def _stop_reading(self) -> None:
        reading, self._reading = self._reading, None
        if reading is not None:
            await reading.stream.aclose()

    async def _read_data(self, offset: int, size: int) -> bytes:
        chunks: list[bytes] = []
        while size > 0:
            wanted = min(size, m.MAX_DATA_IO)
            request = m.HandleReadData(self._handle, offset, wanted)
            chunk = await read_data(self._link, request, self._account)
            chunks.append(chunk)
            if len(chunk) < wanted:
                break
            offset, size = offset + len(chunk), size - len(chunk)
        return b"".join(chunks)

    async def write(self, data: bytes) -> None:
        await self._stop_reading()
        if len(data) > m.MAX_IO_BYTES:  # raw DATA frames, not base64 in a REQUEST
            for start in range(0, len(data), m.MAX_DATA_IO):
                piece = data[start : start + m.MAX_DATA_IO]
                await write_data(self._link, m.HandleWriteData(self._handle), piece, self._account)
            return
        for start in range(0, len(data), m.MAX_IO_BYTES):
            await self._call(m.HandleWrite(self._handle, data[start : start + m.MAX_IO_BYTES]))

    async def truncate(self, size: int) -> None:
        await self._stop_reading()
        await self._call(m.HandleTruncate(self._handle, size))

    async def chmod(self, mode: int) -> None:
        await self._call(m.HandleChmod(self._handle, mode))

    async def close(self) -> None:
        await self._stop_reading()
        # a broken connection: the agent closed the file with it
        with contextlib.suppress(errors.TransportError):
            await self._call(m.HandleClose(self._handle))
