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

from hpcgate.files.service import FileService, publish, temporary_name, verify
from hpcgate.files.streams import receive
from hpcgate.model.errors import BadRequest, Conflict, NotFound
from hpcgate.model.files import FileEntry, NewUpload, UploadState
from hpcgate.model.principal import Principal
from hpcgate.store.tables import UploadRow
from hpcgate.store.uploads import UploadStore
from hpcgate.transports.files import FileAccess, OpenFile


class ResumableUploads:
    def __init__(self, files: FileService, store: UploadStore) -> None:
        self._files = files
        self._store = store

    async def begin(self, who: Principal, system: str, wanted: NewUpload) -> UploadState:
        place = await self._files.writable(who, system, wanted.path, follow=False)
        if not wanted.overwrite and await self._exists(place.fs, place.real):
            raise Conflict(f"{wanted.path} exists; ask for overwrite to replace it")
        temporary = temporary_name(place.real)
        await (await place.fs.open("open_new", temporary)).close()
        row = UploadRow(
            id=uuid.uuid4().hex,
            owner=who.user,
            system=system,
            path=place.real,
            temporary=temporary,
            size=wanted.size,
            sha256=wanted.sha256.lower() if wanted.sha256 else None,
            overwrite=wanted.overwrite,
        )
        await self._store.add(row)
        if wanted.size == 0:
            return await self._finish(who, row)
        return _state(row, 0)

    @staticmethod
    async def _exists(fs: FileAccess, path: str) -> bool:
        try:
            await fs.call("lstat", path)
        except NotFound:
            return False
        return True

    async def _own(self, who: Principal, system: str, upload_id: str) -> UploadRow:
        row = await self._store.get(upload_id)
        if row is None or row.owner != who.user or row.system != system:
            raise NotFound(f"no upload {upload_id!r}")
        return row

    async def state(self, who: Principal, system: str, upload_id: str) -> UploadState:
        row = await self._own(who, system, upload_id)
        place = await self._files.writable(who, row.system, row.temporary, follow=False)
        return _state(row, (await place.fs.call("size_of", place.real))["size"])

    async def append(
        self,
        who: Principal,
        system: str,
        upload_id: str,
        offset: int,
        body: AsyncIterator[bytes],
    ) -> UploadState:
        """Write a chunk that starts at ``offset``; the last one completes the upload."""
        row = await self._own(who, system, upload_id)
        place = await self._files.writable(who, row.system, row.temporary, follow=False)
        handle = await place.fs.open("open_append", place.real)
        try:
            received = await _append(handle, body, offset, row)
        finally:
            with anyio.CancelScope(shield=True):
                await handle.close()
        if received < row.size:
            return _state(row, received)
        return await self._finish(who, row)

    async def _finish(self, who: Principal, row: UploadRow) -> UploadState:
        place = await self._files.writable(who, row.system, row.temporary, follow=False)
        digest = (await place.fs.call("checksum", place.real, algorithm="sha256"))["checksum"]
        try:
            verify(digest, row.sha256)
        except BadRequest:
            await self.abort(who, row.system, row.id)
            raise
        target = await self._files.writable(who, row.system, row.path, follow=False)
        entry = await publish(place.fs, place.real, target.real, row.path, row.overwrite)
        await self._store.remove(row.id)
        return UploadState(
            **_state(row, row.size).model_dump(exclude={"complete", "sha256", "entry"}),
            complete=True,
            sha256=digest,
            entry=FileEntry(**entry),
        )

    async def abort(self, who: Principal, system: str, upload_id: str) -> None:
        row = await self._own(who, system, upload_id)
        place = await self._files.writable(who, row.system, row.temporary, follow=False)
        await place.fs.call("discard", place.real)
        await self._store.remove(row.id)


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
