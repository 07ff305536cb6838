"""Moving a file's bytes between this machine and the gateway, minus the HTTP: a local
file's size and sha256, reading it in pieces as it is sent, counting progress, the
``<local>.part`` file a download grows in, and how many times a broken transfer is
resumed. Both twins of ``_files.py`` use it; only the sending is theirs.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import httpx

from hpcgate.client._base import RETRY_STATUSES, Call, Retry
from hpcgate.client._errors import ClientError, GatewayUnreachable
from hpcgate.model.errors import Conflict, HpcgateError

PIECE = 1 << 20  # bytes per read of a local file and per write of a download
CHUNK = 64 << 20  # bytes per request of a resumable upload, unless the caller says
Progress = Callable[[int, int | None], None]
_RESEND = Call("PUT", "")  # a transfer resumes from what the gateway has: always resendable


class Meter:
    """Calls ``progress(done, total)`` as bytes move; ``done`` counts from the file's start,
    so after a resume it starts where the transfer resumed."""

    def __init__(self, progress: Progress | None, total: int | None = None) -> None:
        self.progress = progress
        self.total = total
        self.done = 0
        self._told: tuple[int, int | None] | None = None

    def at(self, done: int) -> None:
        self.done = done
        if self.progress is not None and self._told != (done, self.total):
            self._told = (done, self.total)
            self.progress(done, self.total)

    def add(self, count: int) -> None:
        self.at(self.done + count)


@dataclass(frozen=True)
class Source:
    """A local file to upload, as it was when it was read for its digest."""

    path: Path
    size: int
    sha256: str

    @classmethod
    def read(cls, local: str | os.PathLike[str]) -> Source:
        """One pass over the file: its size and sha256, never all of it in memory."""
        path = Path(local)
        digest, size = hashlib.sha256(), 0
        with path.open("rb") as handle:
            while data := handle.read(PIECE):
                digest.update(data)
                size += len(data)
        return cls(path, size, digest.hexdigest())

    def resumable(self, chunk_size: int, wanted: bool | None) -> bool:
        """Whether to send it in chunks: as asked, else when it fills a chunk or more."""
        if chunk_size < 1:
            raise ValueError(f"chunk_size must be positive, not {chunk_size}")
        return self.size >= chunk_size if wanted is None else wanted

    def pieces(self, offset: int, length: int, meter: Meter) -> Iterator[bytes]:
        """Bytes ``offset`` to ``offset + length``, read as the request sends them."""
        with self.path.open("rb") as handle:
            handle.seek(offset)
            left = length
            while left > 0:
                data = self._piece(handle, left)
                left -= len(data)
                yield data
                meter.add(len(data))  # resumed: the request has taken the piece

    async def apieces(self, offset: int, length: int, meter: Meter) -> AsyncIterator[bytes]:
        """:meth:`pieces` for the asyncio client; the disk is read in a worker thread."""
        handle = await asyncio.to_thread(self.path.open, "rb")
        try:
            handle.seek(offset)
            left = length
            while left > 0:
                data = await asyncio.to_thread(self._piece, handle, left)
                left -= len(data)
                yield data
                meter.add(len(data))
        finally:
            handle.close()

    def _piece(self, handle: BinaryIO, left: int) -> bytes:
        data = handle.read(min(PIECE, left))
        if not data:
            raise ClientError(f"{self.path} became shorter while it was being uploaded")
        return data


class Part:
    """The open ``.part`` file of a download, in a ``with`` block. The answer's pieces
    are gathered by :meth:`add` and written by :meth:`flush` about :data:`PIECE` bytes at a
    time (also when the block ends, so a broken connection loses nothing received)."""

    def __init__(self, handle: BinaryIO, download: Download) -> None:
        self.handle = handle
        self.download = download
        self.pending: list[bytes] = []
        self.size = 0

    def add(self, data: bytes) -> bool:
        """Keep ``data``; whether enough is kept to :meth:`flush`."""
        self.pending.append(data)
        self.size += len(data)
        return self.size >= PIECE

    def flush(self) -> None:
        self.handle.write(b"".join(self.pending))
        self.download.offset += self.size
        self.download.meter.add(self.size)
        self.pending, self.size = [], 0

    def __enter__(self) -> Part:
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            self.flush()
        finally:
            self.handle.close()


class Download:
    """A download into ``<local>.part`` beside ``local``, renamed to ``local`` once whole.

    A ``.part`` left by an earlier try is resumed with ``Range: bytes=N-``, and with
    ``If-Range`` set to the ETag that try saw (kept in ``<local>.part.etag``), so a file
    changed since comes back whole (200) and the download starts over. A ``.part`` with no
    ETag beside it (written by something else) is trusted, as ``curl -C -`` does.
    """

    def __init__(self, local: str | os.PathLike[str], progress: Progress | None) -> None:
        self.local = Path(local)
        self.part = self.local.with_name(self.local.name + ".part")
        self.tag_file = self.local.with_name(self.local.name + ".part.etag")
        self.meter = Meter(progress)
        self.offset = 0
        self.etag: str | None = None

    @classmethod
    def begin(
        cls, local: str | os.PathLike[str], progress: Progress | None, resume: bool
    ) -> Download:
        """A download to ``local`` that picks up a ``.part`` found there if ``resume``, or
        drops it."""
        download = cls(local, progress)
        if not resume:
            download.start_over()
        elif download.part.exists():
            download.offset = download.part.stat().st_size
            download.etag = download._saved_tag() if download.offset else None
        return download

    def headers(self) -> dict[str, str]:
        """What to ask for: the rest of the ``.part``, if that is still the same file."""
        if not self.offset:
            return {}
        asked = {"Range": f"bytes={self.offset}-"}
        return asked | ({"If-Range": self.etag} if self.etag else {})

    def receive(self, status: int, headers: httpx.Headers) -> Part:
        """The ``.part`` opened for the answer's body: after 206 it grows from where it
        ends, after 200 it is written from the start."""
        start = _range_start(headers) if status == 206 else 0
        if start > self.offset:
            raise ClientError(f"asked for bytes from {self.offset}, got them from {start}")
        self.meter.total = _total(status, headers)
        self.etag = headers.get("ETag")
        self._save_tag()
        handle = self.part.open("ab")
        handle.truncate(start)
        self.offset = start
        self.meter.at(start)
        return Part(handle, self)

    def finish(self) -> Path:
        """Give the whole file its name; a body that ended short is a broken connection."""
        if self.meter.total is not None and self.offset != self.meter.total:
            raise GatewayUnreachable(f"the download ended at {self.offset} bytes")
        self.part.replace(self.local)
        self.tag_file.unlink(missing_ok=True)
        return self.local

    def start_over(self) -> bool:
        """Drop the ``.part``; whether there was anything to drop (after a 416, when the
        ``.part`` is not shorter than the file, there was)."""
        had = self.part.exists()
        self.part.unlink(missing_ok=True)
        self.tag_file.unlink(missing_ok=True)
        self.offset = 0
        self.etag = None
        return had

    def _saved_tag(self) -> str | None:
        try:
            return self.tag_file.read_text().strip() or None
        except FileNotFoundError:
            return None

    def _save_tag(self) -> None:
        if self.etag:
            self.tag_file.write_text(self.etag)
        else:
            self.tag_file.unlink(missing_ok=True)


def _range_start(headers: httpx.Headers) -> int:
    """N of ``Content-Range: bytes N-M/size``."""
    value = headers.get("Content-Range", "")
    try:
        return int(value.removeprefix("bytes ").split("-", 1)[0])
    except ValueError:
        raise ClientError(f"a partial answer with a bad Content-Range: {value!r}") from None


def _total(status: int, headers: httpx.Headers) -> int | None:
    """The file's size: the ``/size`` of a 206's Content-Range, else the Content-Length."""
    if status == 206:
        size = headers.get("Content-Range", "").rpartition("/")[2]
        return int(size) if size.isdigit() else None
    length = headers.get("Content-Length", "")
    return int(length) if length.isdigit() else None


class Attempts:
    """How often a broken transfer is resumed: after a broken connection or a busy gateway
    (429, 502, 503, 504), at most ``retry.attempts`` tries in a row that move no byte, with
    the pauses of the client's :class:`Retry` (or the gateway's ``Retry-After``, capped at
    ``max_wait``). Bytes moved start a new count."""

    def __init__(self, retry: Retry) -> None:
        self.retry = retry
        self.failures = 0
        self.position = 0

    def pause_after(self, error: Exception, position: int, base_url: str) -> float:
        """Seconds to wait before resuming from ``position``; re-raises ``error`` (an
        httpx error as :class:`GatewayUnreachable`) when it is not worth another try."""
        if position > self.position:
            self.position, self.failures = position, 0
        pause = self.retry.delay(self.failures, _RESEND, None) if resumable(error) else None
        told = error.retry_after if isinstance(error, HpcgateError) else None
        if pause is not None and told is not None:  # a busy gateway said how long to wait
            pause = min(told, self.retry.max_wait)
        self.failures += 1
        if pause is not None:
            return pause
        if isinstance(error, httpx.TransportError):
            raise GatewayUnreachable(f"{base_url}: {error}") from error
        raise error


def resumable(error: Exception) -> bool:
    """Whether a transfer that failed with ``error`` may go on from where it stands."""
    if isinstance(error, httpx.TransportError | GatewayUnreachable):
        return True
    if isinstance(error, Conflict) and "offset" in error.extra:
        return True  # a chunk sent from the wrong offset: ask where the upload stands
    return isinstance(error, HpcgateError) and (
        error.problem is not None and error.http_status in RETRY_STATUSES
    )
