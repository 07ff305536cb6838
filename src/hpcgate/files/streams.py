"""Request bodies written to an open file: batched, hashed, off the event loop."""

from __future__ import annotations

import errno
import hashlib
from collections.abc import AsyncIterator
from typing import Any

import anyio
from anyio.abc import ObjectReceiveStream, ObjectSendStream

from hpcgate.errors import BadRequest
from hpcgate.transports.files import translate

WRITE_BATCH = 1 << 20


async def receive(
    body: AsyncIterator[bytes], handle: Any, path: str, limit: int | None = None
) -> str:
    """Write all of ``body`` to ``handle`` (at most ``limit`` bytes); its sha256 in hex.

    Two halves run at once: the event loop gathers chunks into batches of about
    :data:`WRITE_BATCH` bytes while a writer task hashes and writes the previous batch in a
    worker thread. The hand-over has no buffer, so at most two batches are in memory and a
    slow disk slows the reading of the request (back-pressure), never the gateway's memory.
    """
    digest = hashlib.sha256()
    sender, batches = anyio.create_memory_object_stream[list[bytes]](0)
    with batches:  # the writer leaves it open when it fails, so the sender waits to be cancelled
        try:
            async with anyio.create_task_group() as group:
                group.start_soon(_writer, batches, handle, digest)
                async with sender:
                    await _gather(body, sender, limit)
        except ExceptionGroup as failures:
            raise _cause(failures, path) from None
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


async def _writer(batches: ObjectReceiveStream[list[bytes]], handle: Any, digest: Any) -> None:
    async for batch in batches:
        await anyio.to_thread.run_sync(_write_all, handle, digest, batch)


def _write_all(handle: Any, digest: Any, chunks: list[bytes]) -> None:
    data = b"".join(chunks)
    digest.update(data)
    view = memoryview(data)
    while view:
        view = view[handle.write(view) :]


def _cause(failures: BaseExceptionGroup[BaseException], path: str) -> BaseException:
    """The one error that stopped the pipeline (the other half was only cancelled)."""
    first = failures.exceptions[0]
    while isinstance(first, BaseExceptionGroup):
        first = first.exceptions[0]
    if isinstance(first, OSError):
        return translate(first.errno or errno.EIO, first.strerror or str(first), path)
    return first
