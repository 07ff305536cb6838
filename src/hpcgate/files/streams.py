"""Request bodies written to an open file (batched, hashed off the event loop), and an open
file read out into an answer's body."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from typing import Any

import anyio
from anyio.abc import ObjectReceiveStream, ObjectSendStream

from hpcgate.model.errors import BadRequest, HpcgateError
from hpcgate.transports.filesystem import OpenFile

WRITE_BATCH = 1 << 20
READ_PIECE = 1 << 20  # the most one piece of a file read out asks for


async def read_out(file: OpenFile, start: int, length: int) -> AsyncIterator[bytes]:
    """``length`` bytes of ``file`` from ``start``, a piece at a time as the transport has
    them (:meth:`OpenFile.read_some`); fewer if the file shrank meanwhile (the client then
    sees a short body). The file is closed at the end, however the answer ends."""
    try:
        offset, left = start, length
        while left > 0:
            data = await file.read_some(offset, min(READ_PIECE, left))
            if not data:
                return
            yield data
            offset += len(data)
            left -= len(data)
    finally:
        with anyio.CancelScope(shield=True):
            await file.close()


async def receive(
    body: AsyncIterator[bytes], handle: OpenFile, path: str, limit: int | None = None
) -> str:
    """Write all of ``body`` to ``handle`` (at most ``limit`` bytes); its sha256 in hex.
    A failed write is reported naming ``path``.

    Two halves run at once: the event loop gathers chunks into batches of about
    :data:`WRITE_BATCH` bytes while a writer task writes the previous batch to the file
    and, at the same time, hashes it in a worker thread. The hand-over has no buffer, so at
    most two batches are in memory and a slow disk slows the reading of the request
    (back-pressure), never the gateway's memory.
    """
    digest = hashlib.sha256()
    sender, batches = anyio.create_memory_object_stream[list[bytes]](0)
    with batches:  # the writer leaves it open when it fails, so the sender waits to be cancelled
        try:
            async with anyio.create_task_group() as group:
                group.start_soon(_writer, batches, handle, digest, path)
                async with sender:
                    await _gather(body, sender, limit)
        except ExceptionGroup as failures:
            raise _cause(failures) from None
    return digest.hexdigest()


async def _gather(
    body: AsyncIterator[bytes], sender: ObjectSendStream[list[bytes]], limit: int | None
) -> None:
    pending: list[bytes] = []
    size = total = 0
    async for chunk in body:
        pending.append(chunk)
        size += len(chunk)
        total += len(chunk)
        if limit is not None and total > limit:
            raise BadRequest(f"more bytes than the {limit} the upload still expects")
        if size >= WRITE_BATCH:
            await sender.send(pending)
            pending, size = [], 0
    if pending:
        await sender.send(pending)


async def _writer(
    batches: ObjectReceiveStream[list[bytes]], handle: OpenFile, digest: Any, path: str
) -> None:
    """Each batch hashed in a worker thread while it is written, so a batch costs the
    longer of the two, not their sum (hashlib lets go of the GIL)."""
    async for batch in batches:
        data = b"".join(batch)
        async with anyio.create_task_group() as both:
            both.start_soon(anyio.to_thread.run_sync, digest.update, data)
            await _write(handle, data, path)


async def _write(handle: OpenFile, data: bytes, path: str) -> None:
    try:
        await handle.write(data)
    except HpcgateError as exc:
        raise type(exc)(f"{exc.detail}: {path}", **exc.extra) from exc


def _cause(failures: BaseExceptionGroup[BaseException]) -> BaseException:
    """The one error that stopped the pipeline (the other half was only cancelled)."""
    first = failures.exceptions[0]
    while isinstance(first, BaseExceptionGroup):
        first = first.exceptions[0]
    return first
