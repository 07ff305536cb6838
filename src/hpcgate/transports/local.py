"""The local transport: commands run as child processes of the gateway, files are local."""

from __future__ import annotations

import asyncio
import contextlib
import os

import anyio

from hpcgate.commands import Command, CommandResult
from hpcgate.errors import CommandTimeout, Forbidden, NotFound, TransportError


class LocalTransport:
    """Runs argv lists with :func:`asyncio.create_subprocess_exec`; no shell is involved."""

    async def run(self, command: Command, timeout: float) -> CommandResult:
        process = await self._spawn(command)
        try:
            async with asyncio.timeout(timeout):
                stdout, stderr = await process.communicate(command.stdin)
        except TimeoutError:
            _kill(process)
            await process.wait()
            raise CommandTimeout(f"'{command.argv[0]}' did not finish in {timeout:g} s") from None
        return CommandResult(process.returncode or 0, stdout, stderr)

    async def _spawn(self, command: Command) -> asyncio.subprocess.Process:
        stdin = asyncio.subprocess.PIPE if command.stdin is not None else asyncio.subprocess.DEVNULL
        try:
            return await asyncio.create_subprocess_exec(
                *command.argv,
                stdin=stdin,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                start_new_session=True,
                env=None if command.env is None else {**clean_environment(), **command.env},
            )
        except OSError as exc:
            raise TransportError(f"cannot run '{command.argv[0]}': {exc.strerror}") from exc

    async def read(self, path: str, offset: int, size: int) -> bytes:
        return await anyio.to_thread.run_sync(_read, path, offset, size)

    async def file_size(self, path: str) -> int | None:
        try:
            return (await anyio.Path(path).stat()).st_size
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise _translate(exc, path) from exc

    async def make_directory(self, path: str) -> None:
        try:
            await anyio.Path(path).mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise _translate(exc, path) from exc


_BASE_VARIABLES = ("PATH", "HOME", "USER", "LOGNAME", "LANG", "LC_ALL", "TZ", "TMPDIR", "SHELL")


def clean_environment() -> dict[str, str]:
    """The variables every command may see: where programs are and who runs them."""
    return {name: os.environ[name] for name in _BASE_VARIABLES if name in os.environ}


def _kill(process: asyncio.subprocess.Process) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, 9)


def _read(path: str, offset: int, size: int) -> bytes:
    try:
        with open(path, "rb") as handle:
            handle.seek(offset)
            return handle.read(size)
    except OSError as exc:
        raise _translate(exc, path) from exc


def _translate(exc: OSError, path: str) -> Exception:
    if isinstance(exc, FileNotFoundError):
        return NotFound(f"no such file: {path}")
    if isinstance(exc, PermissionError):
        return Forbidden(f"permission denied: {path}")
    return TransportError(f"cannot read {path}: {exc.strerror}")
