"""Request bodies written to an open file: batched, hashed, off the event loop."""

from __future__ import annotations

import errno
import hashlib
from collections.abc import AsyncIterator
from typing import Any

import anyio

from hpcgate.errors import BadRequest
from hpcgate.transports.files import translate

WRITE_BATCH = 4 << 20


async def receive(
    body: AsyncIterator[bytes], handle: Any, path: str, limit: int | None = None
) -> str:
    """Write all of ``body`` to ``handle`` (at most ``limit`` bytes); its sha256 in hex.

    Chunks are gathered up to :data:`WRITE_BATCH` bytes and written by a worker thread, so
    the event loop never waits on the disk and hops to a thread once per batch.
    """
    try:
        return await _write_stream(body, handle, limit)
    except OSError as exc:
        raise translate(exc.errno or errno.EIO, exc.strerror or str(exc), path) from exc


async def _write_stream(body: AsyncIterator[bytes], handle: Any, limit: int | None) -> str:
    digest = hashlib.sha256()
    pending: list[bytes] = []
    size = total = 0
    async for chunk in body:
        pending.append(chunk)
        size += len(chunk)
        total += len(chunk)
        if limit is not None and total > limit:
            raise BadRequest(f"more bytes than the {limit} the upload still expects")
        if size >= WRITE_BATCH:
            await anyio.to_thread.run_sync(_write_all, handle, digest, pending)
            pending, size = [], 0
    await anyio.to_thread.run_sync(_write_all, handle, digest, pending)
    return digest.hexdigest()


def _write_all(handle: Any, digest: Any, chunks: list[bytes]) -> None:
    data = b"".join(chunks)
    digest.update(data)
    view = memoryview(data)
    while view:
        view = view[handle.write(view) :]
