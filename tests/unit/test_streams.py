"""files.streams.receive on real files: every byte written once, in order, and hashed
while it is written; a full device and an over-long body stop it with the API's errors."""

from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from types import SimpleNamespace

import anyio
import pytest

from hpcgate.files import streams
from hpcgate.files.streams import WRITE_BATCH, receive
from hpcgate.model.errors import BadRequest, InsufficientStorage
from hpcgate.transports.local_files import LocalFile


def opened(path: Path | str) -> LocalFile:
    return LocalFile(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600))


async def _chunks(data: bytes, size: int) -> AsyncIterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


@pytest.mark.parametrize("chunk", [1, 4096, 65536, WRITE_BATCH + 7])
async def test_the_file_holds_the_body_and_its_sha256_is_returned(
    tmp_path: Path, chunk: int
) -> None:
    data = os.urandom(3 * WRITE_BATCH + 12345) if chunk > 1 else os.urandom(5000)
    target = tmp_path / "out.bin"
    handle = opened(target)
    digest = await receive(_chunks(data, chunk), handle, "out.bin")
    await handle.close()
    assert target.read_bytes() == data
    assert digest == hashlib.sha256(data).hexdigest()


async def test_an_empty_body_gives_an_empty_file(tmp_path: Path) -> None:
    target = tmp_path / "empty"
    handle = opened(target)
    digest = await receive(_chunks(b"", 1), handle, "empty")
    await handle.close()
    assert target.read_bytes() == b""
    assert digest == hashlib.sha256(b"").hexdigest()


@pytest.fixture
def full_device() -> Iterator[int]:
    """/dev/full answers every write with ENOSPC, as a full filesystem does."""
    fd = os.open("/dev/full", os.O_WRONLY)
    yield fd
    os.close(fd)


async def test_a_full_device_is_insufficient_storage(full_device: int) -> None:
    with pytest.raises(InsufficientStorage, match=r"No space left on device: big\.bin$"):
        await receive(
            _chunks(os.urandom(3 * WRITE_BATCH), 65536), LocalFile(full_device), "big.bin"
        )


async def test_more_than_the_limit_is_refused_and_stops_the_writing(tmp_path: Path) -> None:
    target = tmp_path / "limited"
    data = os.urandom(4 * WRITE_BATCH)
    handle = opened(target)
    with pytest.raises(BadRequest):
        await receive(_chunks(data, 65536), handle, "limited", limit=2 * WRITE_BATCH)
    await handle.close()
    written = target.read_bytes()
    assert len(written) <= 2 * WRITE_BATCH + 65536
    assert data.startswith(written)


class BarrierDigest:
    """sha256 whose ``update`` (in its worker thread) waits at ``barrier`` first."""

    def __init__(self, barrier: threading.Barrier) -> None:
        self._barrier = barrier
        self._digest = hashlib.sha256()

    def update(self, data: bytes) -> None:
        self._barrier.wait()
        self._digest.update(data)

    def hexdigest(self) -> str:
        return self._digest.hexdigest()


class BarrierFile(LocalFile):
    """A real file whose ``write`` waits at ``barrier`` (in a thread) before it writes."""

    def __init__(self, fd: int, barrier: threading.Barrier) -> None:
        super().__init__(fd)
        self._barrier = barrier

    async def write(self, data: bytes) -> None:
        await anyio.to_thread.run_sync(self._barrier.wait)
        await super().write(data)


async def test_each_batch_is_hashed_while_it_is_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The hash and the write of a batch meet at a barrier: only if they run at the same
    time do both get through (one after the other, the first waits out the timeout)."""
    barrier = threading.Barrier(2, timeout=5)
    monkeypatch.setattr(streams, "hashlib", SimpleNamespace(sha256=lambda: BarrierDigest(barrier)))
    data = os.urandom(3 * WRITE_BATCH + 5)
    target = tmp_path / "out.bin"
    handle = BarrierFile(os.open(target, os.O_WRONLY | os.O_CREAT, 0o600), barrier)
    digest = await receive(_chunks(data, 65536), handle, "out.bin")
    await handle.close()
    assert target.read_bytes() == data
    assert digest == hashlib.sha256(data).hexdigest()
