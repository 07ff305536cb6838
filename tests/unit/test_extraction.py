"""Extraction through this machine's real file system (as the gateway), cancelled midway."""

from __future__ import annotations

import asyncio
import io
import os
import stat
import sys
import tarfile
import threading
import traceback
from pathlib import Path

from hpcgate.files.extraction import ExtractLimits, extract
from hpcgate.tasks.service import Progress
from hpcgate.transports.local import LocalTransport

LIMITS = ExtractLimits(members=1000, bytes=1 << 30)


def big_archive(path: Path, files: int, size: int) -> int:
    block = os.urandom(size)
    with tarfile.open(path, "w") as made:
        for number in range(files):
            info = tarfile.TarInfo(f"d/f{number}")
            info.size = size
            made.addfile(info, io.BytesIO(block))
    return path.stat().st_size


class Watched(Progress):
    """Progress that says when ``at`` bytes are done."""

    def __init__(self, at: int) -> None:
        super().__init__("bytes")
        self.at, self.reached = at, asyncio.Event()

    def update(self, done: int, total: int | None = None, message: str | None = None) -> None:
        super().update(done, total, message)
        if done >= self.at:
            self.reached.set()


async def test_a_cancelled_extraction_removes_its_directory(tmp_path: Path) -> None:
    total = big_archive(tmp_path / "big.tar", 60, 2 << 20)
    root = tmp_path / "out"
    root.mkdir()
    fs, progress = LocalTransport().files(), Watched(4 << 20)
    running = asyncio.create_task(
        extract(fs, str(tmp_path / "big.tar"), str(root), "auto", LIMITS, progress)
    )
    await progress.reached.wait()
    running.cancel()
    await asyncio.wait([running])
    assert running.cancelled(), running.result()
    assert progress.done < total and not root.exists()
    assert not _parsing(), "the parsing thread outlived its extraction"


def _parsing() -> list[str]:
    """The threads whose stack is in the extraction's parser now."""
    names = {thread.ident: thread.name for thread in threading.enumerate()}
    return [
        names.get(ident, str(ident))
        for ident, top in sys._current_frames().items()
        if any(frame.f_code.co_name == "_unpack" for frame, _ in traceback.walk_stack(top))
    ]


async def test_an_extraction_reports_what_it_made(tmp_path: Path) -> None:
    total = big_archive(tmp_path / "small.tar", 3, 1000)
    root = tmp_path / "out"
    root.mkdir()
    fs, progress = LocalTransport().files(), Progress("bytes")
    result = await extract(fs, str(tmp_path / "small.tar"), str(root), "none", LIMITS, progress)
    assert result == {"members": 4, "bytes": 3000, "archive_bytes": total}
    assert (progress.done, progress.total) == (total, total)
    assert sorted(p.name for p in (root / "d").iterdir()) == ["f0", "f1", "f2"]
    assert {stat.S_IMODE(p.stat().st_mode) for p in (root / "d").iterdir()} == {0o644}
