"""LocalFile.read_into: a file's bytes into a caller's buffer, from the page cache without
a worker thread (RWF_NOWAIT), from the disk in one (after the file's pages were dropped
from the cache), whole either way, short only at the end of the file. On this machine's
real file system and page cache."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread
import pytest

from hpcgate.transports import local_files
from hpcgate.transports.local_files import LocalFile

SIZE = 3 * 1024 * 1024 + 123


@pytest.fixture
def threads(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """The functions sent to worker threads while the test runs."""
    sent: list[Any] = []
    run_sync = anyio.to_thread.run_sync

    async def counted(function: Any, *args: Any, **kwargs: Any) -> Any:
        sent.append(args[0] if args else function)
        return await run_sync(function, *args, **kwargs)

    monkeypatch.setattr(anyio.to_thread, "run_sync", counted)
    return sent


def _file(tmp_path: Path) -> tuple[Path, bytes]:
    data = os.urandom(SIZE)
    path = tmp_path / "data.bin"
    path.write_bytes(data)
    return path, data


async def _read_all(file: LocalFile, piece: int) -> bytes:
    out, offset = bytearray(), 0
    while True:
        buffer = bytearray(piece)
        with memoryview(buffer) as view:
            done = await file.read_into(offset, view)
        out += buffer[:done]
        offset += done
        if done < piece:
            return bytes(out)


async def test_cached_pieces_come_whole_without_a_worker_thread(
    tmp_path: Path, threads: list[Any]
) -> None:
    if local_files.NOWAIT is None:
        pytest.fail("this Linux has no RWF_NOWAIT (4.14+): the test machine should")
    path, data = _file(tmp_path)
    path.read_bytes()  # in the page cache
    file = LocalFile(os.open(path, os.O_RDONLY))
    try:
        assert await _read_all(file, 1 << 20) == data
    finally:
        await file.close()
    # only the read at the end of the file (0 bytes: nothing to say it ended) goes to one
    assert len(threads) <= 1


async def test_pieces_not_in_the_page_cache_are_read_in_a_worker_thread(
    tmp_path: Path, threads: list[Any]
) -> None:
    path, data = _file(tmp_path)
    fd = os.open(path, os.O_RDONLY)
    os.fsync(fd)  # clean pages can be dropped
    os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    file = LocalFile(fd)
    try:
        assert await _read_all(file, 1 << 20) == data
    finally:
        await file.close()
    # beside the read at the end of the file, the pieces the cache no longer held
    assert len(threads) > 1, "the pages had been dropped: reads must have waited in a thread"


async def test_a_read_past_the_end_is_empty_and_one_across_it_is_short(tmp_path: Path) -> None:
    path, data = _file(tmp_path)
    file = LocalFile(os.open(path, os.O_RDONLY))
    try:
        buffer = bytearray(4096)
        with memoryview(buffer) as view:
            assert await file.read_into(SIZE - 100, view) == 100
        assert bytes(buffer[:100]) == data[-100:]
        with memoryview(buffer) as view:
            assert await file.read_into(SIZE + 5, view) == 0
    finally:
        await file.close()


async def test_no_view_of_the_buffer_outlives_the_read(tmp_path: Path) -> None:
    """Once the read returns, nothing holds a view of the caller's buffer (a worker thread
    keeps its last call's arguments until its next call, so read_into releases the slice
    it gave one): the buffer can be resized. CI met a BufferError resizing the agent's
    piece once (2026-12-05); the agent no longer resizes, and this holds read_into to it."""
    path, data = _file(tmp_path)
    fd = os.open(path, os.O_RDONLY)
    os.fsync(fd)
    os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)  # so the read takes the thread
    file = LocalFile(fd)
    try:
        buffer = bytearray(1 << 20)
        with memoryview(buffer) as view:
            assert await file.read_into(5, view) == 1 << 20
        del buffer[10:]  # BufferError while any view of it lives
        assert bytes(buffer) == data[5:15]
    finally:
        await file.close()
