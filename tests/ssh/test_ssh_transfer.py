"""Moving a file's contents over SFTP: the read-ahead of an open file (a download), the
write-behind of one opened for writing (an upload) and the cipher the gateway's connections
use, against the test sshd (scripts/sshd), as alice."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
import pwd
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from hpcgate.model.errors import InsufficientStorage
from hpcgate.transports.ssh import SshTransport
from hpcgate.transports.ssh_sftp import AHEAD, BEHIND
from tests.ssh.test_ssh_transport import alice, new
from tests.support.sshd import Sshd

MIB = 1 << 20


@pytest.fixture
def folder() -> Iterator[Path]:
    """A folder of alice's in her home, removed afterwards."""
    path = Path(alice().home) / f"hpcgate-transfer-{os.urandom(4).hex()}"
    path.mkdir()
    shutil.chown(path, "alice", "alice")
    yield path
    shutil.rmtree(path, ignore_errors=True)


def alices_file(folder: Path, size: int) -> tuple[Path, bytes]:
    path, data = folder / "data.bin", os.urandom(size)
    path.write_bytes(data)
    shutil.chown(path, "alice", "alice")
    return path, data


async def test_a_download_read_ahead_gives_every_byte_in_order_and_any_range(
    sshd: Sshd, transports: list[SshTransport], folder: Path
) -> None:
    path, data = alices_file(folder, 5 * MIB + 12345)
    opened = await new(transports, sshd).files(alice()).open_read(str(path))
    try:
        got = [await opened.read(offset, MIB) for offset in range(0, len(data), MIB)]
        assert b"".join(got) == data
        assert await opened.read(len(data), MIB) == b""
        assert await opened.read(3 * MIB + 7, 1000) == data[3 * MIB + 7 : 3 * MIB + 1007]  # back
        assert await opened.read(3 * MIB + 1007, 3) == data[3 * MIB + 1007 : 3 * MIB + 1010]
        assert await opened.read(11, 2 * MIB) == data[11 : 2 * MIB + 11]
        assert await opened.read(len(data) - 5, MIB) == data[-5:]
    finally:
        await opened.close()


async def test_a_file_cut_short_while_read_ahead_ends_where_it_was_cut(
    sshd: Sshd, transports: list[SshTransport], folder: Path
) -> None:
    """Requests sent before the cut bring their bytes (at most AHEAD blocks past what was
    read); those sent after find the new end, and nothing past it is returned or asked.
    The requests left unanswered past the end report nothing (no "Task exception was never
    retrieved")."""
    unread: list[dict[str, object]] = []
    asyncio.get_running_loop().set_exception_handler(lambda _, context: unread.append(context))
    cut = 10 * MIB
    assert cut > MIB + AHEAD * 256 * 1024  # what was asked before the cut lies before it
    path, data = alices_file(folder, 16 * MIB)
    opened = await new(transports, sshd).files(alice()).open_read(str(path))
    try:
        got = [await opened.read(0, MIB)]
        os.truncate(path, cut)
        while chunk := await opened.read(sum(map(len, got)), MIB):
            got.append(chunk)
        assert b"".join(got) == data[:cut]
        assert await opened.read(cut, MIB) == b""
    finally:
        await opened.close()
    await asyncio.sleep(1)  # the last answers come in
    gc.collect()
    assert not unread


@pytest.fixture
def small(folder: Path) -> Iterator[Path]:
    """A 1 MiB tmpfs of alice's in ``folder`` (this needs root, as the tier does)."""
    path = folder / "small"
    path.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=1m,mode=0755", "tmpfs", str(path)],
        capture_output=True,
        text=True,
    )
    assert mounted.returncode == 0, f"this test needs root to mount a tmpfs: {mounted.stderr}"
    try:
        account = pwd.getpwnam("alice")
        os.chown(path, account.pw_uid, account.pw_gid)
        yield path
    finally:
        subprocess.run(["umount", str(path)], check=True)


async def test_writes_behind_keep_every_byte_in_order_and_appends_go_on_from_the_end(
    sshd: Sshd, transports: list[SshTransport], folder: Path
) -> None:
    """Writes of odd sizes, many more blocks than are kept in flight, land in order; the
    size seen before the close already counts every byte written (it waits for them)."""
    data = os.urandom(BEHIND * 256 * 1024 * 2 + 54321)
    pieces = [data[start : start + 300_001] for start in range(0, len(data), 300_001)]
    files = new(transports, sshd).files(alice())
    target = folder / "written.bin"
    opened = await files.open_new(str(target))
    try:
        for piece in pieces[:-3]:
            await opened.write(piece)
    finally:
        await opened.close()
    appended = await files.open_append(str(target))
    try:
        assert (await appended.info()).size == sum(map(len, pieces[:-3]))
        for piece in pieces[-3:]:
            await appended.write(piece)
        assert (await appended.info()).size == len(data)
    finally:
        await appended.close()
    assert target.read_bytes() == data


async def test_a_write_that_fails_behind_is_raised_and_leaves_no_hole(
    sshd: Sshd, transports: list[SshTransport], small: Path
) -> None:
    """A full disk found by a request still in flight is raised (507) by a later write or
    by the close, never lost; the file is cut back to the bytes written without a gap."""
    data = os.urandom(3 * MIB)
    target = small / "big.bin"
    opened = await new(transports, sshd).files(alice()).open_new(str(target))

    async def write_all() -> None:
        try:
            for start in range(0, len(data), MIB // 4):
                await opened.write(data[start : start + MIB // 4])
        finally:
            await opened.close()

    with pytest.raises(InsufficientStorage):
        await write_all()
    kept = target.read_bytes()
    assert len(kept) <= MIB  # a tmpfs of 1 MiB holds that much
    assert kept == data[: len(kept)]


async def test_a_truncation_waits_for_the_writes_behind_and_wins(
    sshd: Sshd, transports: list[SshTransport], folder: Path
) -> None:
    """What resumable uploads do with a chunk that was too long: the cut comes after every
    write sent, so none lands past it."""
    data = os.urandom(4 * MIB)
    target = folder / "cut.bin"
    opened = await new(transports, sshd).files(alice()).open_new(str(target))
    try:
        await opened.write(data)
        await opened.truncate(1000)
        await opened.write(b"tail")
    finally:
        await opened.close()
    assert target.read_bytes() == data[:1000] + b"tail"


async def test_a_cancelled_write_leaves_the_file_closable(
    sshd: Sshd, transports: list[SshTransport], folder: Path
) -> None:
    """A client gone mid-upload cancels the write; the close still ends (after the requests
    in flight) and gives the connection back."""
    transport = new(transports, sshd)
    opened = await transport.files(alice()).open_new(str(folder / "gone.bin"))
    writing = asyncio.ensure_future(opened.write(os.urandom(64 * MIB)))
    await asyncio.sleep(0.05)
    writing.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await writing
    async with asyncio.timeout(30):
        await opened.close()
    assert transport.pool.stats().leased == 0


async def test_the_gateway_s_connections_prefer_aes_gcm(
    sshd: Sshd, transports: list[SshTransport]
) -> None:
    """OpenSSH offers AES-GCM by default; asyncssh's ChaCha20-Poly1305 costs the gateway a
    third more CPU per byte (bench/bench_files.py)."""
    transport = new(transports, sshd)
    async with transport.pool.lease(transport.login(alice()), channel=False) as lease:
        assert lease.conn.get_extra_info("send_cipher") == "aes256-gcm@openssh.com"
        assert lease.conn.get_extra_info("recv_cipher") == "aes256-gcm@openssh.com"
