"""The SDK's uploads and downloads: streamed from and to disk, resumed where they broke
(the pure parts, sources, meters and partial files, are in ``_transfer.py``), as twins on
top of the files methods, whose ``checksum`` and ``stat`` settle a chunk whose answer was
lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from pathlib import Path

import httpx

from hpcgate.client._base import Call
from hpcgate.client._errors import GatewayUnreachable
from hpcgate.client._files import AsyncFiles, SyncFiles, _body, _files
from hpcgate.client._transfer import CHUNK, Attempts, Download, Meter, Progress, Source
from hpcgate.model.errors import HpcgateError, NotFound, RangeNotSatisfiable
from hpcgate.model.files import FileEntry, Uploaded, UploadState

LocalPath = str | os.PathLike[str]
_FAILED = (HpcgateError, httpx.TransportError)  # what may break a transfer half-way


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


class SyncTransfers(SyncFiles):
    """Uploads and downloads of the blocking client."""

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


class AsyncTransfers(AsyncFiles):
    """Uploads and downloads of the asyncio client."""

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
