"""The agent's handlers: each operation of :mod:`hpcgate.agentwire.messages`, checked by the
policy and then done by the local transport, as the request's account.

:data:`Server.HANDLERS` is the one table from request type to handler; a type that is not
in it is not served. Files are always opened beneath one of the agent's roots.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from hpcgate.accounts import Account
from hpcgate.agent.policy import Policy, Refused
from hpcgate.agentwire import messages as m
from hpcgate.model.commands import Beneath, Command, CommandResult, FileCommand
from hpcgate.model.errors import PayloadTooLarge
from hpcgate.transports.filesystem import FileSystem, OpenFile
from hpcgate.transports.local import LocalTransport

MAX_STDOUT = 384 * 1024  # with stderr, base64 of both fits one control frame
MAX_STDERR = 64 * 1024
MAX_OPEN_FILES = 256  # per connection
OnLine = Callable[[str], None]
Handler = Callable[[Any, Any, Account | None, OnLine], Awaitable[Any]]


class Server:
    """The operations of one connection (its open files are its own)."""

    def __init__(self, policy: Policy, transport: LocalTransport) -> None:
        self._policy = policy
        self._transport = transport
        self._open: dict[int, OpenFile] = {}
        self._next_handle = 1

    async def handle(
        self, request: m.Request[Any], account_name: str | None, on_line: OnLine
    ) -> Any:
        """The value of ``request`` (Refused or an hpcgate error otherwise)."""
        handler = HANDLERS.get(type(request))
        if handler is None:
            raise Refused(f"operation {request.op!r} is not served")
        account = self._policy.account(account_name)
        return await handler(self, request, account, on_line)

    async def close(self) -> None:
        """Close the connection's open files."""
        files, self._open = list(self._open.values()), {}
        for opened in files:
            await opened.close()

    # ------------------------------------------------------------------ commands

    async def run(self, request: m.Run, account: Account | None, on_line: OnLine) -> m.Output:
        argv = self._policy.command(request.argv, request.env)
        command = Command(argv, request.stdin, request.env)
        timeout = min(max(request.timeout, 0.1), 24 * 3600)
        return _output(await self._transport.run(command, timeout, account))

    async def run_long(
        self, request: m.RunLong, account: Account | None, on_line: OnLine
    ) -> m.Output:
        argv = self._policy.command(request.argv, request.env)
        result = await self._transport.run_long(Command(argv, env=request.env), account, on_line)
        return _output(result)

    async def run_files(
        self, request: m.RunFiles, account: Account | None, on_line: OnLine
    ) -> m.Output:
        program = self._policy.file_command(request.argv)
        words = [self._word(word, account) for word in request.argv[1:]]
        command = FileCommand((program, *words))
        return _output(await self._transport.run_files(command, account, on_line))

    def _word(self, word: str | m.Beneath, account: Account | None) -> str | Beneath:
        if isinstance(word, str):
            return word
        if word.part not in ("path", "folder", "name", "file"):
            raise Refused(f"unknown path part {word.part[:32]!r}")
        root = self._policy.confine(word.root, word.path, account)
        return Beneath(word.path, root, word.part, word.prefix)  # type: ignore[arg-type]

    # ------------------------------------------------------------------ users

    async def lookup_user(
        self, request: m.LookupUser, account: Account | None, _: OnLine
    ) -> m.User | None:
        entry = await self._transport.lookup_user(request.name)
        if entry is None:
            return None
        return m.User(entry.name, entry.uid, entry.gid, entry.home, entry.groups)

    async def own_home(self, request: m.OwnHome, account: Account | None, _: OnLine) -> str:
        return await self._transport.own_home()

    # ------------------------------------------------------------------ files

    def files(self, root: str | None, path: str, account: Account | None) -> FileSystem:
        """The file system as ``account``, beneath the root the policy confines ``path`` to."""
        confined = self._policy.confine(root, path, account)
        return self._transport.files(account).beneath(confined)

    async def resolve(self, r: m.Resolve, account: Account | None, _: OnLine) -> str:
        return await self.files(r.root, r.path, account).resolve(r.path, r.follow)

    async def lstat(self, r: m.Lstat, account: Account | None, _: OnLine) -> m.Document:
        entry = await self.files(r.root, r.path, account).lstat(r.path, r.numeric)
        return entry.model_dump(mode="json")

    async def listing(self, r: m.ListDir, account: Account | None, _: OnLine) -> list[m.Document]:
        files = self.files(r.root, r.path, account)
        entries = await files.listing(r.path, r.hidden, min(max(r.depth, 1), 64), r.numeric)
        return [entry.model_dump(mode="json") for entry in entries]

    async def size(self, r: m.Size, account: Account | None, _: OnLine) -> int | None:
        return await self.files(r.root, r.path, account).size(r.path)

    async def usage(self, r: m.Usage, account: Account | None, _: OnLine) -> int:
        return await self.files(r.root, r.path, account).usage(r.path)

    async def read(self, r: m.Read, account: Account | None, _: OnLine) -> bytes:
        size = _io_size(r.size)
        return await self.files(r.root, r.path, account).read(r.path, max(r.offset, 0), size)

    async def head(self, r: m.Head, account: Account | None, _: OnLine) -> m.Document:
        content = await self.files(r.root, r.path, account).head(r.path, r.lines, r.size)
        return content.model_dump(mode="json")

    async def tail(self, r: m.Tail, account: Account | None, _: OnLine) -> m.Document:
        content = await self.files(r.root, r.path, account).tail(r.path, r.lines, r.size)
        return content.model_dump(mode="json")

    async def checksum(self, r: m.Digest, account: Account | None, _: OnLine) -> m.Document:
        digest = await self.files(r.root, r.path, account).checksum(r.path, r.algorithm)
        return digest.model_dump(mode="json")

    async def file_type(self, r: m.FileKind, account: Account | None, _: OnLine) -> m.Document:
        kind = await self.files(r.root, r.path, account).file_type(r.path)
        return kind.model_dump(mode="json")

    async def open(self, r: m.Open, account: Account | None, _: OnLine) -> int:
        if len(self._open) >= MAX_OPEN_FILES:
            raise Refused(f"more than {MAX_OPEN_FILES} files open on one connection")
        files = self.files(r.root, r.path, account)
        openers = {"read": files.open_read, "new": files.open_new, "append": files.open_append}
        if r.how not in openers:
            raise Refused(f"unknown way to open a file {r.how[:32]!r}")
        handle, self._next_handle = self._next_handle, self._next_handle + 1
        self._open[handle] = await openers[r.how](r.path)
        return handle

    async def mkdir(self, r: m.Mkdir, account: Account | None, _: OnLine) -> None:
        await self.files(r.root, r.path, account).mkdir(r.path, r.parents)

    async def remove(self, r: m.Remove, account: Account | None, _: OnLine) -> None:
        await self.files(r.root, r.path, account).remove(r.path, r.recursive)

    async def chmod(self, r: m.Chmod, account: Account | None, _: OnLine) -> m.Document:
        entry = await self.files(r.root, r.path, account).chmod(r.path, r.mode & 0o7777)
        return entry.model_dump(mode="json")

    async def chown(self, r: m.Chown, account: Account | None, _: OnLine) -> m.Document:
        entry = await self.files(r.root, r.path, account).chown(r.path, r.owner, r.group)
        return entry.model_dump(mode="json")

    async def symlink(self, r: m.Symlink, account: Account | None, _: OnLine) -> m.Document:
        files = self.files(r.root, r.path, account)
        self._policy.confine(r.root, r.target, account)  # the link may not point out
        return (await files.symlink(r.path, r.target)).model_dump(mode="json")

    async def publish(self, r: m.Publish, account: Account | None, _: OnLine) -> m.Document:
        files = self.files(r.root, r.path, account)
        if self._policy.confine(r.root, r.target, account) != self._policy.confine(
            r.root, r.path, account
        ):
            raise Refused("an upload is published within its own root")
        entry = await files.publish(r.path, r.target, r.overwrite, r.mode & 0o7777)
        return entry.model_dump(mode="json")

    async def discard(self, r: m.Discard, account: Account | None, _: OnLine) -> None:
        await self.files(r.root, r.path, account).discard(r.path)

    # ------------------------------------------------------------------ open files

    def open_file(self, handle: int) -> OpenFile:
        """The file open as ``handle`` on this connection (Refused if none is)."""
        return self._file(handle)

    def _file(self, handle: int) -> OpenFile:
        opened = self._open.get(handle)
        if opened is None:
            raise Refused(f"no open file {handle}")
        return opened

    async def handle_info(self, r: m.HandleInfo, account: Account | None, _: OnLine) -> m.Info:
        info = await self._file(r.handle).info()
        return m.Info(info.size, info.modified_ns, info.inode)

    async def handle_read(self, r: m.HandleRead, account: Account | None, _: OnLine) -> bytes:
        return await self._file(r.handle).read(max(r.offset, 0), _io_size(r.size))

    async def handle_write(self, r: m.HandleWrite, account: Account | None, _: OnLine) -> None:
        await self._file(r.handle).write(r.data)

    async def handle_truncate(
        self, r: m.HandleTruncate, account: Account | None, _: OnLine
    ) -> None:
        await self._file(r.handle).truncate(max(r.size, 0))

    async def handle_chmod(self, r: m.HandleChmod, account: Account | None, _: OnLine) -> None:
        await self._file(r.handle).chmod(r.mode & 0o7777)

    async def handle_close(self, r: m.HandleClose, account: Account | None, _: OnLine) -> None:
        opened = self._open.pop(r.handle, None)
        if opened is not None:
            await opened.close()


HANDLERS: dict[type[m.Request[Any]], Handler] = {
    m.Run: Server.run, m.RunLong: Server.run_long, m.RunFiles: Server.run_files,
    m.LookupUser: Server.lookup_user, m.OwnHome: Server.own_home,
    m.Resolve: Server.resolve, m.Lstat: Server.lstat, m.ListDir: Server.listing,
    m.Size: Server.size, m.Usage: Server.usage, m.Read: Server.read, m.Head: Server.head,
    m.Tail: Server.tail, m.Digest: Server.checksum, m.FileKind: Server.file_type,
    m.Open: Server.open, m.Mkdir: Server.mkdir, m.Remove: Server.remove,
    m.Chmod: Server.chmod, m.Chown: Server.chown, m.Symlink: Server.symlink,
    m.Publish: Server.publish, m.Discard: Server.discard,
    m.HandleInfo: Server.handle_info, m.HandleRead: Server.handle_read,
    m.HandleWrite: Server.handle_write, m.HandleTruncate: Server.handle_truncate,
    m.HandleChmod: Server.handle_chmod, m.HandleClose: Server.handle_close,
}  # fmt: skip


def _io_size(size: int) -> int:
    return min(max(size, 0), m.MAX_IO_BYTES)


def _output(result: CommandResult) -> m.Output:
    if len(result.stdout) > MAX_STDOUT:
        raise PayloadTooLarge(
            f"a command's output of {len(result.stdout)} bytes is over {MAX_STDOUT}"
        )
    stderr = result.stderr
    if len(stderr) > MAX_STDERR:
        stderr = stderr[: MAX_STDERR - 16] + b"\n[...cut]"
    return m.Output(result.returncode, result.stdout, stderr)
