"""files.streams.receive on real files: every byte written once, in order, and hashed;
a full device and an over-long body stop it with the API's errors."""

from __future__ import annotations

import hashlib
import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import BinaryIO

import pytest

from hpcgate.errors import BadRequest, InsufficientStorage
from hpcgate.files.streams import WRITE_BATCH, receive


async def _chunks(data: bytes, size: int) -> AsyncIterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


@pytest.mark.parametrize("chunk", [1, 4096, 65536, WRITE_BATCH + 7])
async def test_the_file_holds_the_body_and_its_sha256_is_returned(
    tmp_path: Path, chunk: int
) -> None:
    data = os.urandom(3 * WRITE_BATCH + 12345) if chunk > 1 else os.urandom(5000)
    target = tmp_path / "out.bin"
    with target.open("wb", buffering=0) as handle:
        digest = await receive(_chunks(data, chunk), handle, "out.bin")
    assert target.read_bytes() == data
    assert digest == hashlib.sha256(data).hexdigest()


async def test_an_empty_body_gives_an_empty_file(tmp_path: Path) -> None:
    target = tmp_path / "empty"
    with target.open("wb", buffering=0) as handle:
        digest = await receive(_chunks(b"", 1), handle, "empty")
    assert target.read_bytes() == b""
    assert digest == hashlib.sha256(b"").hexdigest()


@pytest.fixture
def full_device() -> Iterator[BinaryIO]:
    """/dev/full answers every write with ENOSPC, as a full filesystem does."""
    with Path("/dev/full").open("wb", buffering=0) as handle:
        yield handle


async def test_a_full_device_is_insufficient_storage(full_device: BinaryIO) -> None:
    with pytest.raises(InsufficientStorage):
        await receive(_chunks(os.urandom(3 * WRITE_BATCH), 65536), full_device, "big.bin")


async def test_more_than_the_limit_is_refused_and_stops_the_writing(tmp_path: Path) -> None:
    target = tmp_path / "limited"
    data = os.urandom(4 * WRITE_BATCH)
    with target.open("wb", buffering=0) as handle, pytest.raises(BadRequest):
        await receive(_chunks(data, 65536), handle, "limited", limit=2 * WRITE_BATCH)
    written = target.read_bytes()
    assert len(written) <= 2 * WRITE_BATCH + 65536
    assert data.startswith(written)
