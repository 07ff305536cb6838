"""Resumable uploads: a file sent in chunks over many requests, across broken connections
and gateway restarts, checked by sha256 at the end.

The bytes so far live in a hidden file beside the target, and the file's own size is the
offset to resume from, so nothing is remembered that the disk does not confirm. The last
chunk triggers the check and the one rename that gives the file its name.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import anyio

from hpcgate.files.service import (
    FileService,
    Place,
    open_temporary,
    publish,
    temporary_name,
    verify,
)
from hpcgate.files.streams import receive
from hpcgate.model.errors import BadRequest, Conflict, NotFound
from hpcgate.model.files import NewUpload, UploadState
from hpcgate.store.tables import UploadRow
from hpcgate.store.uploads import UploadStore
from hpcgate.target import Target
from hpcgate.transports.filesystem import FileSystem, OpenFile


class ResumableUploads:
    def __init__(self, files: FileService, store: UploadStore) -> None:
        self._files = files
        self._store = store

    async def begin(self, target: Target, wanted: NewUpload) -> UploadState:
        place = await self._files.writable(target, wanted.path, follow=False)
        if not wanted.overwrite and await _exists(place.fs, place.real):
            raise Conflict(f"{wanted.path} exists; ask for overwrite to replace it")
        temporary = temporary_name(place.real)
        await (await open_temporary(place.fs, temporary, wanted.path)).close()
        row = UploadRow(
            id=uuid.uuid4().hex,
            owner=target.who.user,
            system=target.system,
            path=place.real,
            temporary=temporary,
            size=wanted.size,
            sha256=wanted.sha256.lower() if wanted.sha256 else None,
            overwrite=wanted.overwrite,
        )
        await self._store.add(row)
        if wanted.size == 0:
            return await self._finish(target, row)
        return _state(row, 0)

    async def _own(self, target: Target, upload_id: str) -> tuple[UploadRow, Place]:
        """The caller's upload on this system and the checked place of its hidden file."""
        row = await self._store.get(upload_id)
        if row is None or row.owner != target.who.user or row.system != target.system:
            raise NotFound(f"no upload {upload_id!r}")
        return row, await self._files.writable(target, row.temporary, follow=False)

    async def state(self, target: Target, upload_id: str) -> UploadState:
        row, place = await self._own(target, upload_id)
        return _state(row, (await place.fs.lstat(place.real, numeric=True)).size)

    async def append(
        self, target: Target, upload_id: str, offset: int, body: AsyncIterator[bytes]
    ) -> UploadState:
        """Write a chunk that starts at ``offset``; the last one completes the upload."""
        row, place = await self._own(target, upload_id)
        handle = await place.fs.open_append(place.real)
        try:
            received = await _append(handle, body, offset, row)
        finally:
            with anyio.CancelScope(shield=True):
                await handle.close()
        if received < row.size:
            return _state(row, received)
        return await self._finish(target, row)

    async def _finish(self, target: Target, row: UploadRow) -> UploadState:
        place = await self._files.writable(target, row.temporary, follow=False)
        digest = (await place.fs.checksum(place.real, "sha256")).checksum
        try:
            verify(digest, row.sha256)
        except BadRequest:
            await self.abort(target, row.id)
            raise
        destination = await self._files.writable(target, row.path, follow=False)
        entry = await publish(place.fs, place.real, destination.real, row.path, row.overwrite)
        await self._store.remove(row.id)
        return UploadState(
            **_state(row, row.size).model_dump(exclude={"complete", "sha256", "entry"}),
            complete=True,
            sha256=digest,
            entry=entry,
        )

    async def abort(self, target: Target, upload_id: str) -> None:
        row, place = await self._own(target, upload_id)
        await place.fs.discard(place.real)
        await self._store.remove(row.id)


async def _exists(fs: FileSystem, path: str) -> bool:
    try:
        await fs.lstat(path, numeric=True)
    except NotFound:
        return False
    return True


async def _append(handle: OpenFile, body: AsyncIterator[bytes], offset: int, row: UploadRow) -> int:
    """Write a chunk at the end of the file, which must be at ``offset``; the new size."""
    current = (await handle.info()).size
    if current != offset:
        raise Conflict(f"the upload has {current} bytes; send from there", offset=current)
    try:
        await receive(body, handle, row.path, limit=row.size - offset)
    except BadRequest:
        await handle.truncate(offset)  # a chunk too long is not kept in part
        raise
    return (await handle.info()).size


def _state(row: UploadRow, offset: int) -> UploadState:
    return UploadState(id=row.id, system=row.system, path=row.path, size=row.size, offset=offset)
