"""The SDK's files methods: pure call builders, and the twins that send them.

Remote paths are absolute, or relative to the caller's home (or the system's default
directory) on the system; the gateway confines them to the system's roots. Uploads and
downloads stream from and to disk (see ``_transfer.py``); cp, mv, compress and extract
start a :class:`~hpcgate.model.tasks.Task` to poll with ``wait_task``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from pathlib import Path
from typing import Any, Literal

import httpx

from hpcgate.client._async import AsyncCore
from hpcgate.client._base import Call, given, request
from hpcgate.client._errors import GatewayUnreachable
from hpcgate.client._sync import SyncCore
from hpcgate.client._transfer import CHUNK, Attempts, Download, Meter, Progress, Source
from hpcgate.model.errors import HpcgateError, NotFound, RangeNotSatisfiable
from hpcgate.model.files import (
    Checksum,
    Compression,
    Content,
    FileEntry,
    FileType,
    Listing,
    Uploaded,
    UploadState,
)
from hpcgate.model.tasks import Task

LocalPath = str | os.PathLike[str]
_FAILED = (HpcgateError, httpx.TransportError)  # what may break a transfer half-way


def _files(method: str, system: str, *operation: str, **parts: Any) -> Call:
    """A request to ``systems/{system}/files/...``; ``parts`` as :func:`request` takes them."""
    return request(method, "systems", system, "files", *operation, **parts)


def _get(system: str, name: str, path: str, **params: Any) -> Call:
    """A GET of ``files/name`` about ``path``; parameters that are None are left out."""
    return _files("GET", system, name, params={"path": path, **params})


def _body(method: str, system: str, name: str, **fields: Any) -> Call:
    """A request with a JSON body; fields that are None are left out."""
    return _files(method, system, name, json=given(fields))


def _mode(mode: str | int) -> str:
    return mode if isinstance(mode, str) else format(mode, "o")


def _listing(system: str, path: str, hidden: bool, depth: int, numeric: bool) -> Call:
    return _get(system, "ls", path, hidden=hidden, depth=depth, numeric=numeric)


def _remove(system: str, path: str, recursive: bool) -> Call:
    return _files("DELETE", system, "rm", params={"path": path, "recursive": recursive})


def _put_upload(system: str, remote: str, overwrite: bool, source: Source) -> Call:
    params = {"path": remote, "overwrite": overwrite, "sha256": source.sha256}
    return _files("PUT", system, "upload", params=params, headers=_octets(source.size))


def _begin_upload(system: str, remote: str, overwrite: bool, source: Source) -> Call:
    fields = {"path": remote, "size": source.size, "sha256": source.sha256}
    return _body("POST", system, "uploads", **fields, overwrite=overwrite)


def _upload_state(system: str, upload_id: str) -> Call:
    return _files("GET", system, "uploads", upload_id)


def _abort_upload(system: str, upload_id: str) -> Call:
    return _files("DELETE", system, "uploads", upload_id)


def _chunk(system: str, state: UploadState, length: int) -> Call:
    params, headers = {"offset": state.offset}, _octets(length)
    return _files("PUT", system, "uploads", state.id, params=params, headers=headers)


def _chunk_length(state: UploadState, chunk_size: int) -> int:
    return min(chunk_size, state.size - state.offset)


def _octets(length: int) -> dict[str, str]:
    return {"Content-Type": "application/octet-stream", "Content-Length": str(length)}


def _arrived(state: UploadState, entry: FileEntry, sha256: str) -> UploadState:
    """The state of an upload whose last chunk arrived though its answer was lost."""
    update = {"offset": state.size, "complete": True, "sha256": sha256, "entry": entry}
    return state.model_copy(update=update)


def _uploaded(state: UploadState) -> Uploaded:
    assert state.entry is not None and state.sha256 is not None, state
    return Uploaded(entry=state.entry, sha256=state.sha256)


def _download(system: str, remote: str, target: Download) -> Call:
    return _files("GET", system, "download", params={"path": remote}, headers=target.headers())


def _content(response: httpx.Response) -> str:
    return Content.model_validate_json(response.content).content


class SyncFiles(SyncCore):
    """Files methods of :class:`~hpcgate.Client`."""

    def ls(
        self, system: str, path: str, *, hidden: bool = False, depth: int = 1, numeric: bool = False
    ) -> Listing:
        """The directory's entries (``depth`` levels down; symlinks are not descended)."""
        return self._call(_listing(system, path, hidden, depth, numeric), Listing)

    def stat(
        self, system: str, path: str, *, dereference: bool = False, numeric: bool = False
    ) -> FileEntry:
        """A file's details; a symlink's own unless ``dereference``."""
        call = _get(system, "stat", path, dereference=dereference, numeric=numeric)
        return self._call(call, FileEntry)

    def checksum(self, system: str, path: str, algorithm: str = "sha256") -> Checksum:
        return self._call(_get(system, "checksum", path, algorithm=algorithm), Checksum)

    def head(
        self, system: str, path: str, *, lines: int | None = None, bytes: int | None = None
    ) -> str:
        """The first ``lines`` lines (10 unless asked) or ``bytes`` bytes, as text."""
        return _content(self._send(_get(system, "head", path, lines=lines, bytes=bytes)))

    def tail(
        self, system: str, path: str, *, lines: int | None = None, bytes: int | None = None
    ) -> str:
        """The last ``lines`` lines (10 unless asked) or ``bytes`` bytes, as text."""
        return _content(self._send(_get(system, "tail", path, lines=lines, bytes=bytes)))

    def view(self, system: str, path: str, offset: int = 0, length: int = 65536) -> str:
        """``length`` bytes (at most 1 MiB) from ``offset``, as text."""
        return _content(self._send(_get(system, "view", path, offset=offset, size=length)))

    def file_type(self, system: str, path: str) -> FileType:
        return self._call(_get(system, "file", path), FileType)

    def mkdir(self, system: str, path: str, *, parents: bool = False) -> FileEntry:
        return self._call(_body("POST", system, "mkdir", path=path, parents=parents), FileEntry)

    def rm(self, system: str, path: str, *, recursive: bool = False) -> None:
        """Remove a file, a link (never what it points to) or, if ``recursive``, a tree."""
        self._send(_remove(system, path, recursive))

    def chmod(self, system: str, path: str, mode: str | int) -> FileEntry:
        """``mode`` in octal: ``"750"`` or ``0o750``."""
        return self._call(_body("PUT", system, "chmod", path=path, mode=_mode(mode)), FileEntry)

    def chown(
        self, system: str, path: str, *, owner: str | None = None, group: str | None = None
    ) -> FileEntry:
        call = _body("PUT", system, "chown", path=path, owner=owner, group=group)
        return self._call(call, FileEntry)

    def symlink(self, system: str, path: str, target: str) -> FileEntry:
        """Make ``path`` a link to ``target`` (which must lie inside the roots)."""
        return self._call(_body("POST", system, "symlink", path=path, target=target), FileEntry)

    def cp(self, system: str, source: str, target: str, *, overwrite: bool = False) -> Task:
        """Copy a file or a tree, links as links; a task."""
        call = _body("POST", system, "cp", source=source, target=target, overwrite=overwrite)
        return self._call(call, Task)

    def mv(self, system: str, source: str, target: str, *, overwrite: bool = False) -> Task:
        """Move or rename, across filesystems too; a task."""
        call = _body("POST", system, "mv", source=source, target=target, overwrite=overwrite)
        return self._call(call, Task)

    def compress(
        self,
        system: str,
        source: str,
        target: str,
        *,
        compression: Compression = "gzip",
        overwrite: bool = False,
    ) -> Task:
        """Archive ``source`` (a file or a tree) into the tar file ``target``; a task."""
        fields = {"source": source, "target": target, "compression": compression}
        return self._call(_body("POST", system, "compress", **fields, overwrite=overwrite), Task)

    def extract(
        self,
        system: str,
        source: str,
        target: str,
        *,
        compression: Compression | Literal["auto"] = "auto",
    ) -> Task:
        """Unpack the tar file ``source`` into the directory ``target``; a task."""
        fields = {"source": source, "target": target, "compression": compression}
        return self._call(_body("POST", system, "extract", **fields), Task)

    def upload(
        self,
        system: str,
        local: LocalPath,
        remote: str,
        *,
        overwrite: bool = False,
        progress: Progress | None = None,
        chunk_size: int = CHUNK,
        resumable: bool | None = None,
    ) -> Uploaded:
        """Send the local file to ``remote``, streamed from disk and checked by its sha256
        on the gateway (the file is read once for it first). Files of ``chunk_size`` or
        more (or any, if ``resumable``) go in chunks of that size, and a chunk that breaks
        off is resumed from where the gateway stands; smaller ones (or any, if
        ``resumable`` is false) go in one request, not resumed. ``progress(done, total)``
        is called as the bytes go out. Nothing is at ``remote`` until all of it has
        arrived; without ``overwrite`` an existing file there is
        :class:`~hpcgate.model.errors.Conflict`."""
        source = Source.read(local)
        meter = Meter(progress, source.size)
        meter.at(0)
        if not source.resumable(chunk_size, resumable):
            content = source.pieces(0, source.size, meter)
            response = self._send(_put_upload(system, remote, overwrite, source), content)
            return self._decode(response, Uploaded)
        state = self._call(_begin_upload(system, remote, overwrite, source), UploadState)
        try:
            return self._send_chunks(system, source, state, chunk_size, meter)
        except GatewayUnreachable:
            raise  # the gateway keeps what it has; nothing to tell it
        except Exception:
            self._abandon(system, state.id)
            raise

    def _send_chunks(
        self, system: str, source: Source, state: UploadState, chunk_size: int, meter: Meter
    ) -> Uploaded:
        tries, stale = Attempts(self.retry), False
        while not state.complete:
            try:
                if stale:
                    state, stale = self._standing(system, source, state), False
                    continue
                meter.at(state.offset)
                length = _chunk_length(state, chunk_size)
                content = source.pieces(state.offset, length, meter)
                response = self._send(_chunk(system, state, length), content)
                state = self._decode(response, UploadState)
            except _FAILED as exc:
                time.sleep(tries.pause_after(exc, state.offset, self.base_url))
                stale = True
        return _uploaded(state)

    def _standing(self, system: str, source: Source, state: UploadState) -> UploadState:
        """Where the upload stands after a chunk broke off. The gateway forgets a finished
        upload, so a last chunk whose answer was lost shows as the file, whole."""
        try:
            return self._call(_upload_state(system, state.id), UploadState)
        except NotFound:
            if self.checksum(system, state.path).checksum != source.sha256:
                raise
            return _arrived(state, self.stat(system, state.path), source.sha256)

    def _abandon(self, system: str, upload_id: str) -> None:
        """Best effort: the gateway drops what it has of an upload that will not finish."""
        with contextlib.suppress(*_FAILED):
            self._send(_abort_upload(system, upload_id))

    def download(
        self,
        system: str,
        remote: str,
        local: LocalPath,
        *,
        progress: Progress | None = None,
        resume: bool = True,
    ) -> Path:
        """Fetch ``remote`` to ``local`` through ``<local>.part``, renamed once whole, so
        nothing is at ``local`` unless it is all there. A broken connection is resumed
        where it broke; so is a ``.part`` left by an earlier try (whose ETag is kept in
        ``<local>.part.etag``: a file changed since is fetched anew), unless ``resume`` is
        false. ``progress(done, total)`` is called as bytes arrive."""
        target, tries = Download.begin(local, progress, resume), Attempts(self.retry)
        while True:
            try:
                with (
                    self._stream(_download(system, remote, target)) as response,
                    target.receive(response.status_code, response.headers) as part,
                ):
                    for data in response.iter_raw():
                        if part.add(data):
                            part.flush()
                return target.finish()
            except RangeNotSatisfiable:
                if not target.start_over():
                    raise
            except _FAILED as exc:
                time.sleep(tries.pause_after(exc, target.offset, self.base_url))


class AsyncFiles(AsyncCore):
    """Files methods of :class:`~hpcgate.AsyncClient`; see :class:`SyncFiles`."""

    async def ls(
        self, system: str, path: str, *, hidden: bool = False, depth: int = 1, numeric: bool = False
    ) -> Listing:
        return await self._call(_listing(system, path, hidden, depth, numeric), Listing)

    async def stat(
        self, system: str, path: str, *, dereference: bool = False, numeric: bool = False
    ) -> FileEntry:
        call = _get(system, "stat", path, dereference=dereference, numeric=numeric)
        return await self._call(call, FileEntry)

    async def checksum(self, system: str, path: str, algorithm: str = "sha256") -> Checksum:
        return await self._call(_get(system, "checksum", path, algorithm=algorithm), Checksum)

    async def head(
        self, system: str, path: str, *, lines: int | None = None, bytes: int | None = None
    ) -> str:
        return _content(await self._send(_get(system, "head", path, lines=lines, bytes=bytes)))

    async def tail(
        self, system: str, path: str, *, lines: int | None = None, bytes: int | None = None
    ) -> str:
        return _content(await self._send(_get(system, "tail", path, lines=lines, bytes=bytes)))

    async def view(self, system: str, path: str, offset: int = 0, length: int = 65536) -> str:
        return _content(await self._send(_get(system, "view", path, offset=offset, size=length)))

    async def file_type(self, system: str, path: str) -> FileType:
        return await self._call(_get(system, "file", path), FileType)

    async def mkdir(self, system: str, path: str, *, parents: bool = False) -> FileEntry:
        call = _body("POST", system, "mkdir", path=path, parents=parents)
        return await self._call(call, FileEntry)

    async def rm(self, system: str, path: str, *, recursive: bool = False) -> None:
        await self._send(_remove(system, path, recursive))

    async def chmod(self, system: str, path: str, mode: str | int) -> FileEntry:
        call = _body("PUT", system, "chmod", path=path, mode=_mode(mode))
        return await self._call(call, FileEntry)

    async def chown(
        self, system: str, path: str, *, owner: str | None = None, group: str | None = None
    ) -> FileEntry:
        call = _body("PUT", system, "chown", path=path, owner=owner, group=group)
        return await self._call(call, FileEntry)

    async def symlink(self, system: str, path: str, target: str) -> FileEntry:
        call = _body("POST", system, "symlink", path=path, target=target)
        return await self._call(call, FileEntry)

    async def cp(self, system: str, source: str, target: str, *, overwrite: bool = False) -> Task:
        call = _body("POST", system, "cp", source=source, target=target, overwrite=overwrite)
        return await self._call(call, Task)

    async def mv(self, system: str, source: str, target: str, *, overwrite: bool = False) -> Task:
        call = _body("POST", system, "mv", source=source, target=target, overwrite=overwrite)
        return await self._call(call, Task)

    async def compress(
        self,
        system: str,
        source: str,
        target: str,
        *,
        compression: Compression = "gzip",
        overwrite: bool = False,
    ) -> Task:
        fields = {"source": source, "target": target, "compression": compression}
        call = _body("POST", system, "compress", **fields, overwrite=overwrite)
        return await self._call(call, Task)

    async def extract(
        self,
        system: str,
        source: str,
        target: str,
        *,
        compression: Compression | Literal["auto"] = "auto",
    ) -> Task:
        fields = {"source": source, "target": target, "compression": compression}
        return await self._call(_body("POST", system, "extract", **fields), Task)

    async def upload(
        self,
        system: str,
        local: LocalPath,
        remote: str,
        *,
        overwrite: bool = False,
        progress: Progress | None = None,
        chunk_size: int = CHUNK,
        resumable: bool | None = None,
    ) -> Uploaded:
        """As :meth:`SyncFiles.upload`; the disk is read in worker threads."""
        source = await asyncio.to_thread(Source.read, local)
        meter = Meter(progress, source.size)
        meter.at(0)
        if not source.resumable(chunk_size, resumable):
            content = source.apieces(0, source.size, meter)
            response = await self._send(_put_upload(system, remote, overwrite, source), content)
            return self._decode(response, Uploaded)
        state = await self._call(_begin_upload(system, remote, overwrite, source), UploadState)
        try:
            return await self._send_chunks(system, source, state, chunk_size, meter)
        except GatewayUnreachable:
            raise  # the gateway keeps what it has; nothing to tell it
        except Exception:
            await self._abandon(system, state.id)
            raise

    async def _send_chunks(
        self, system: str, source: Source, state: UploadState, chunk_size: int, meter: Meter
    ) -> Uploaded:
        tries, stale = Attempts(self.retry), False
        while not state.complete:
            try:
                if stale:
                    state, stale = await self._standing(system, source, state), False
                    continue
                meter.at(state.offset)
                length = _chunk_length(state, chunk_size)
                content = source.apieces(state.offset, length, meter)
                response = await self._send(_chunk(system, state, length), content)
                state = self._decode(response, UploadState)
            except _FAILED as exc:
                await asyncio.sleep(tries.pause_after(exc, state.offset, self.base_url))
                stale = True
        return _uploaded(state)

    async def _standing(self, system: str, source: Source, state: UploadState) -> UploadState:
        try:
            return await self._call(_upload_state(system, state.id), UploadState)
        except NotFound:
            if (await self.checksum(system, state.path)).checksum != source.sha256:
                raise
            return _arrived(state, await self.stat(system, state.path), source.sha256)

    async def _abandon(self, system: str, upload_id: str) -> None:
        with contextlib.suppress(*_FAILED):
            await self._send(_abort_upload(system, upload_id))

    async def download(
        self,
        system: str,
        remote: str,
        local: LocalPath,
        *,
        progress: Progress | None = None,
        resume: bool = True,
    ) -> Path:
        """As :meth:`SyncFiles.download`; the disk is written in worker threads."""
        target, tries = Download.begin(local, progress, resume), Attempts(self.retry)
        while True:
            try:
                async with self._stream(_download(system, remote, target)) as response:
                    with target.receive(response.status_code, response.headers) as part:
                        async for data in response.aiter_raw():
                            if part.add(data):
                                await asyncio.to_thread(part.flush)
                return target.finish()
            except RangeNotSatisfiable:
                if not target.start_over():
                    raise
            except _FAILED as exc:
                await asyncio.sleep(tries.pause_after(exc, target.offset, self.base_url))
