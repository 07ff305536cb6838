"""Moving a file's contents over SFTP: the read-ahead of an open file (a download) and the
cipher the gateway's connections use, against the test sshd (scripts/sshd), as alice."""

from __future__ import annotations

import asyncio
import gc
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from hpcgate.transports.ssh import SshTransport
from hpcgate.transports.ssh_sftp import AHEAD
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


async def test_the_gateway_s_connections_prefer_aes_gcm(
    sshd: Sshd, transports: list[SshTransport]
) -> None:
    """OpenSSH offers AES-GCM by default; asyncssh's ChaCha20-Poly1305 costs the gateway a
    third more CPU per byte (bench/bench_files.py)."""
    transport = new(transports, sshd)
    async with transport.pool.lease(transport.login(alice()), channel=False) as lease:
        assert lease.conn.get_extra_info("send_cipher") == "aes256-gcm@openssh.com"
        assert lease.conn.get_extra_info("recv_cipher") == "aes256-gcm@openssh.com"
