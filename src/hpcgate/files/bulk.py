"""Long file operations (copy, move, compress, extract), run as tasks.

Copy, move and compress each run one program (``cp``, ``mv``, ``tar --create``) as the
caller's account, from an argv, with both paths checked against the roots first and given
to it as :class:`~hpcgate.model.commands.Beneath` arguments, which the transport hands it
confined where it can (:meth:`~hpcgate.transports.base.Commands.run_files`). Extract
runs no program: the gateway reads the archive and makes its vetted members itself, through
the caller's file system, into a directory the request creates (:mod:`.extraction`). The
request returns at once with a task (``202``); the task reports progress in bytes while it
runs and can be cancelled, which kills the program or stops the extraction.
"""

from __future__ import annotations

import posixpath
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import Any

import anyio
from pydantic import BaseModel

from hpcgate.files import extraction
from hpcgate.files.extraction import ExtractLimits
from hpcgate.files.service import FileService, Place, publish, temporary_name
from hpcgate.model.commands import Beneath, FileCommand
from hpcgate.model.errors import (
    BadRequest,
    Conflict,
    HpcgateError,
    NotFound,
)
from hpcgate.model.files import Compress, Extract, Transfer
from hpcgate.model.tasks import Task
from hpcgate.target import Target
from hpcgate.tasks.service import Progress, TaskService, TaskWork
from hpcgate.transports.os_errors import complaint_kind

RECORD_BYTES = 10240  # tar's record: 20 blocks of 512 bytes, one per checkpoint count
CHECKPOINT_RECORDS = 100
POLL_SECONDS = 2.0
Finish = Callable[[], Awaitable[None]]
PARSERS = 4  # extractions parsing at once; more wait their turn
DEFAULT_LIMITS = ExtractLimits(members=1_000_000, bytes=64 << 30)  # as the settings'
_FLAGS: dict[str, tuple[str, ...]] = {"gzip": ("--gzip",), "bzip2": ("--bzip2",), "xz": ("--xz",)}


def at(place: Place) -> Beneath:
    """A checked place as a program's path argument, confined to its root (if it has one)."""
    return Beneath(place.real, place.root)


def copy_command(source: Beneath, target: Beneath) -> FileCommand:
    """Symlinks are copied as links, never followed; an existing file in the way is removed
    first, so a symlink there is replaced, never written through."""
    return FileCommand((
        "cp", "-R", "-P", "--preserve=mode,timestamps", "--remove-destination", "-T", "--",
        source, target,
    ))  # fmt: skip


def move_command(source: Beneath, target: Beneath) -> FileCommand:
    return FileCommand(("mv", "-T", "--", source, target))


def _checkpoints() -> tuple[str, ...]:
    return (f"--checkpoint={CHECKPOINT_RECORDS}", "--checkpoint-action=echo=%u")


def compress_command(source: Beneath, target: Beneath, compression: str) -> FileCommand:
    """``--force-local``: an archive whose name has a colon is a file, never ``host:file``.
    The archive (``target``) is a file made beforehand, which tar writes through, never a
    name it creates."""
    flags = _FLAGS.get(compression, ())
    return FileCommand((
        "tar", "--create", replace(target, part="file", prefix="--file="), "--force-local",
        *flags, *_checkpoints(),
        "-C", replace(source, part="folder"), "--", replace(source, part="name"),
    ))  # fmt: skip


def compress_argv(source: str, target: str, compression: str) -> tuple[str, ...]:
    """The tar argv for two paths given by name, as the SSH transport sends it."""
    unconfined = compress_command(Beneath(source, None), Beneath(target, None), compression)
    return unconfined.plain().argv


def checkpoint_bytes(line: str) -> int | None:
    """Bytes tar has processed, from one of its checkpoint lines ('tar: 300')."""
    _, _, count = line.rpartition(" ")
    return int(count) * RECORD_BYTES if count.isdigit() else None


class BulkFiles:
    def __init__(
        self, files: FileService, tasks: TaskService, limits: ExtractLimits = DEFAULT_LIMITS
    ) -> None:
        self._files = files
        self._tasks = tasks
        self._limits = limits
        self._parsers = anyio.CapacityLimiter(PARSERS)  # not the file operations' threads

    async def copy(self, target: Target, request: Transfer) -> Task:
        origin, destination = await self._pair(target, request)
        command = copy_command(at(origin), at(destination))
        return await self._start(target, "copy", request, command, origin, destination)

    async def move(self, target: Target, request: Transfer) -> Task:
        origin, destination = await self._pair(target, request)
        origin.roots.check_not_root(origin.real, request.source)
        command = move_command(at(origin), at(destination))
        return await self._start(target, "move", request, command, None, None)

    async def compress(self, target: Target, request: Compress) -> Task:
        """tar writes a hidden file it did not open by the target's name, created here
        exclusively beside it, which then takes the target's name in one rename: a symlink
        at the target is replaced, never written through."""
        origin, destination = await self._pair(target, request)
        partial = replace(destination, real=temporary_name(destination.real))
        await (await partial.fs.open_new(partial.real)).close()
        command = compress_command(at(origin), at(partial), request.chosen_compression())

        async def finish() -> None:
            shown, overwrite = request.target, request.overwrite
            await publish(partial.fs, partial.real, destination.real, shown, overwrite)

        work = _command_work(target, command, origin, None, partial, finish)
        return await self._tasks.start(
            target.who, target.system, "compress", request.model_dump(), work, "bytes"
        )

    async def extract(self, target: Target, request: Extract) -> Task:
        """Into a new directory (Conflict if the name exists), made here, before the task."""
        origin = await self._files.readable(target, request.source)
        destination = await self._files.writable(target, request.target, follow=False)
        await _exists(origin)
        await destination.fs.mkdir(posixpath.dirname(destination.real), parents=True)
        try:
            await destination.fs.mkdir(destination.real, parents=False)
        except Conflict:
            raise Conflict(f"{request.target} exists; extract into a new directory") from None
        limits, compression, parsers = self._limits, request.compression, self._parsers

        async def work(progress: Progress) -> dict[str, Any]:
            fs, archive, root = destination.fs, origin.real, destination.real
            return await extraction.extract(
                fs, archive, root, compression, limits, progress, parsers
            )

        who, system = target.who, target.system
        return await self._tasks.start(who, system, "extract", request.model_dump(), work, "bytes")

    async def _pair(self, target: Target, request: Transfer | Compress) -> tuple[Place, Place]:
        """The checked source, which must exist, and target, which must not unless the
        request overwrites it."""
        origin = await self._files.writable(target, request.source, follow=False)
        destination = await self._files.writable(target, request.target, follow=False)
        await _exists(origin)
        if not request.overwrite and await _present(destination):
            raise Conflict(f"{request.target} exists; ask for overwrite to replace it")
        return origin, destination

    async def _start(
        self,
        target: Target,
        kind: str,
        request: BaseModel,
        command: FileCommand,
        measured: Place | None,
        growing: Place | None,
    ) -> Task:
        """Start the task that runs ``command`` as the caller (see :func:`_command_work`)."""
        work = _command_work(target, command, measured, growing, None, None)
        who, system = target.who, target.system
        return await self._tasks.start(who, system, kind, request.model_dump(), work, "bytes")


def _command_work(
    target: Target,
    command: FileCommand,
    measured: Place | None,
    growing: Place | None,
    partial: Place | None,
    finish: Finish | None,
) -> TaskWork:
    """The task body: run ``command`` as the caller; progress from tar's checkpoints or, for
    a copy, from the size of ``growing`` as it reaches that of ``measured``. A ``partial``
    file (an archive being written) is removed if the program or ``finish`` (what follows
    the program's success) fails or is cancelled."""

    async def work(progress: Progress) -> dict[str, Any]:
        try:
            return await run(progress)
        except BaseException:
            if partial is not None:
                with anyio.CancelScope(shield=True):
                    await partial.fs.discard(partial.real)
            raise

    async def run(progress: Progress) -> dict[str, Any]:
        total = await _usage(measured) if measured is not None else None
        progress.update(0, total)

        def on_line(line: str) -> None:
            done = checkpoint_bytes(line)
            if done is not None:
                progress.update(done, total)

        account = await target.account()
        async with anyio.create_task_group() as group:
            if growing is not None:
                group.start_soon(_watch, growing, total, progress)
            transport = target.cluster.transport
            result = await transport.run_files(command, account, on_line)
            group.cancel_scope.cancel()
        program = str(command.argv[0])
        if not result.ok:
            raise failure(program, result.error_text())
        if finish is not None:
            await finish()
        progress.update(total or 0, total)
        return {"argv": [program], "bytes": total}

    return work


def failure(program: str, complaint: str) -> HpcgateError:
    """The error for a program that failed, from what it said on stderr."""
    kind = complaint_kind(complaint) or BadRequest
    return kind(f"{program} failed: {complaint}")


async def _usage(place: Place) -> int:
    return await place.fs.usage(place.real)


async def _watch(place: Place, total: int | None, progress: Progress) -> None:
    while True:
        await anyio.sleep(POLL_SECONDS)
        try:
            progress.update(await _usage(place), total)
        except NotFound:
            continue


async def _exists(place: Place) -> None:
    await place.fs.lstat(place.real, numeric=True)


async def _present(place: Place) -> bool:
    try:
        await _exists(place)
    except NotFound:
        return False
    return True
