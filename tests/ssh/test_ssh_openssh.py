"""Long transfers over OpenSSH's client (``ssh.bulk``): the same file, every byte, the key
on disk only while ``ssh`` logs in, the process ended whatever happens to the transfer,
against the test sshd (scripts/sshd), as alice and as the functional account."""

from __future__ import annotations

import asyncio
import os
import shutil
import stat
from collections.abc import Iterator
from pathlib import Path

import asyncssh
import pytest

from hpcgate.config import SshConfig
from hpcgate.model.errors import HpcgateError, TransportError
from hpcgate.transports.filesystem import OpenFile
from hpcgate.transports.ssh import SshTransport
from hpcgate.transports.ssh_openssh import private_files, ssh_argv
from hpcgate.transports.ssh_sftp import BULK_AFTER
from tests.ssh.test_ssh_forced import forced_config
from tests.ssh.test_ssh_transport import alice, config, eventually, new
from tests.support.sshd import FunctionalAccount, Sshd

MIB = 1 << 20
SIZE = BULK_AFTER + 9 * MIB + 4321  # past the switch, and not a whole number of blocks


def ssh_children() -> list[tuple[int, str]]:
    """The ``ssh`` processes this test process started (pid, command line), zombies too."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            name = (entry / "comm").read_text().strip()
            line = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except (OSError, IndexError):
            continue
        if name == "ssh" and int(fields[1]) == os.getpid():
            found.append((int(entry.name), line))
    return found


def key_folder(line: str) -> Path:
    """The private folder of the key files an ssh was given (its IdentityFile's)."""
    [option] = [word for word in line.split() if word.startswith("IdentityFile=")]
    return Path(option.removeprefix("IdentityFile=")).parent


@pytest.fixture
def folder() -> Iterator[Path]:
    """A folder of alice's in her home, removed afterwards."""
    path = Path(alice().home) / f"hpcgate-openssh-{os.urandom(4).hex()}"
    path.mkdir()
    shutil.chown(path, "alice", "alice")
    yield path
    shutil.rmtree(path, ignore_errors=True)


def alices_file(path: Path, size: int) -> bytes:
    data = os.urandom(size)
    path.write_bytes(data)
    shutil.chown(path, "alice", "alice")
    return data


def described(path: Path) -> tuple[bytes, int, int]:
    """What a file holds, its permissions and its owner."""
    info = path.stat()
    return path.read_bytes(), stat.S_IMODE(info.st_mode), info.st_uid


async def write_all(opened: OpenFile, data: bytes, step: int = MIB) -> None:
    for start in range(0, len(data), step):
        await opened.write(data[start : start + step])


async def read_all(opened: OpenFile, start: int = 0) -> bytes:
    parts: list[bytes] = []
    while chunk := await opened.read(start + sum(map(len, parts)), MIB):
        parts.append(chunk)
    return b"".join(parts)


# ------------------------------------------------------------------ pure: the argv


def test_the_argv_takes_no_config_and_forwards_nothing(tmp_path: Path) -> None:
    argv = ssh_argv("/usr/bin/ssh", tmp_path, "login.example.org", 2222, "alice", 10)
    assert argv[:3] == ["/usr/bin/ssh", "-F", "none"]
    assert argv[-6:] == ["-l", "alice", "-s", "--", "login.example.org", "sftp"]
    options = {argv[i + 1] for i, word in enumerate(argv) if word == "-o"}
    for needed in (
        "BatchMode=yes",
        "IdentitiesOnly=yes",
        "IdentityAgent=none",
        "StrictHostKeyChecking=yes",
        "GlobalKnownHostsFile=none",
        "ClearAllForwardings=yes",
        "ForwardAgent=no",
        "ForwardX11=no",
        "ControlMaster=no",
        "ControlPath=none",
        "PermitLocalCommand=no",
        "ProxyCommand=none",
        f"UserKnownHostsFile={tmp_path / 'known_hosts'}",
        f"IdentityFile={tmp_path / 'id'}",
    ):
        assert needed in options


@pytest.mark.parametrize(
    ("host", "login"),
    [
        ("-oProxyCommand=touch /tmp/pwned", "alice"),
        ("host name", "alice"),
        ("host;id", "alice"),
        ("", "alice"),
        ("login", "-oProxyCommand=id"),
        ("login", "al%ice"),
        ("login", "al ice"),
        ("login", "alice@other"),
        ("login", ""),
    ],
)
def test_an_unusual_host_or_login_never_reaches_ssh(tmp_path: Path, host: str, login: str) -> None:
    with pytest.raises(TransportError):
        ssh_argv("/usr/bin/ssh", tmp_path, host, 22, login, 10)


@pytest.mark.parametrize("name", ["with space", "per%cent", "~tilde"])
def test_key_files_where_ssh_would_read_another_path_are_refused(tmp_path: Path, name: str) -> None:
    with pytest.raises(TransportError):
        ssh_argv("/usr/bin/ssh", tmp_path / name, "login", 22, "alice", 10)


def test_the_key_files_are_the_owner_s_alone_and_never_written_through_a_link(
    tmp_path: Path, sshd: Sshd
) -> None:
    folder = tmp_path / "private"
    folder.mkdir(mode=0o700)
    key = asyncssh.generate_private_key("ssh-ed25519")
    certificate = key.generate_user_certificate(key, "test", principals=["alice"])
    private_files(folder, (key, certificate), sshd.known_hosts)
    for name in ("id", "id-cert.pub", "known_hosts"):
        assert stat.S_IMODE((folder / name).stat().st_mode) == 0o600
    assert (folder / "known_hosts").read_bytes() == sshd.known_hosts.read_bytes()
    elsewhere = tmp_path / "victim"
    again = tmp_path / "again"
    again.mkdir()
    (again / "id").symlink_to(elsewhere)
    with pytest.raises(FileExistsError):
        private_files(again, key, sshd.known_hosts)
    assert not elsewhere.exists()


def test_openssh_cannot_be_asked_through_a_jump_host(sshd: Sshd) -> None:
    with pytest.raises(ValueError, match="jump_host"):
        config(sshd, bulk="openssh", jump_host="bob@127.0.0.1:2222")
    assert config(sshd, bulk="auto", jump_host="bob@127.0.0.1:2222").bulk == "auto"


# ------------------------------------------------------------------ against the test sshd


async def test_a_long_download_goes_over_ssh_and_gives_every_byte(
    sshd: Sshd, transports: list[SshTransport], folder: Path
) -> None:
    data = alices_file(folder / "data.bin", SIZE)
    opened = await new(transports, sshd).files(alice()).open_read(str(folder / "data.bin"))
    try:
        head = await opened.read(0, BULK_AFTER)
        assert ssh_children() == []  # nothing started for the first BULK_AFTER bytes
        rest = await read_all(opened, len(head))
        [(_, line)] = ssh_children()
        assert " -s -- 127.0.0.1 sftp" in line
        assert not key_folder(line).exists()  # logged in: its key files are gone already
        assert head + rest == data
        assert await opened.read(5, 10) == data[5:15]  # back, on the same session
    finally:
        await opened.close()
    assert ssh_children() == []  # ended and reaped


async def test_ranges_and_short_reads_start_no_process(
    sshd: Sshd, transports: list[SshTransport], folder: Path
) -> None:
    data = alices_file(folder / "data.bin", SIZE)
    opened = await new(transports, sshd).files(alice()).open_read(str(folder / "data.bin"))
    try:
        for offset in range(0, SIZE, 2 * MIB):  # every other MiB: never BULK_AFTER in order
            assert await opened.read(offset, MIB) == data[offset : offset + MIB]
        assert ssh_children() == []
    finally:
        await opened.close()


async def test_a_long_upload_goes_over_ssh_and_an_append_goes_on_from_its_end(
    sshd: Sshd, transports: list[SshTransport], folder: Path
) -> None:
    data = os.urandom(2 * SIZE)
    files = new(transports, sshd).files(alice())
    target = str(folder / "up.bin")
    written = await files.open_new(target)
    try:
        for start in range(0, SIZE, MIB):
            await written.write(data[start : min(start + MIB, SIZE)])
        assert len(ssh_children()) == 1
        assert (await written.info()).size == SIZE
    finally:
        await written.close()
    assert ssh_children() == []
    appended = await files.open_append(target)
    try:
        for start in range(SIZE, 2 * SIZE, 3 * MIB):
            await appended.write(data[start : min(start + 3 * MIB, 2 * SIZE)])
    finally:
        await appended.close()
    assert described(Path(target)) == (data, 0o600, alice().uid)


async def test_a_file_swapped_under_a_download_is_not_followed(
    sshd: Sshd, transports: list[SshTransport], folder: Path
) -> None:
    """The name now means another file: the transfer stays on the file it opened."""
    path = folder / "data.bin"
    data = alices_file(path, SIZE)
    opened = await new(transports, sshd).files(alice()).open_read(str(path))
    try:
        head = await opened.read(0, BULK_AFTER)
        alices_file(folder / "other.bin", SIZE + 1)
        os.replace(folder / "other.bin", path)
        assert head + await read_all(opened, len(head)) == data
        assert ssh_children() == []  # started, found another file, ended
    finally:
        await opened.close()


async def test_a_killed_ssh_fails_the_download_and_leaves_nothing_behind(
    sshd: Sshd, transports: list[SshTransport], folder: Path
) -> None:
    data = alices_file(folder / "data.bin", 3 * SIZE)
    opened = await new(transports, sshd).files(alice()).open_read(str(folder / "data.bin"))
    got = b""
    try:
        got = await opened.read(0, BULK_AFTER)
        got += await opened.read(len(got), MIB)
        assert got == data[: len(got)]
        [(pid, line)] = ssh_children()
        os.kill(pid, 9)
        with pytest.raises(HpcgateError) as failed:
            await read_all(opened, len(got))
        assert failed.value.status == 503
    finally:
        await opened.close()
    assert await eventually(lambda: ssh_children() == [])
    assert not key_folder(line).exists()


async def test_a_killed_ssh_fails_the_upload_without_a_hole(
    sshd: Sshd, transports: list[SshTransport], folder: Path
) -> None:
    data = os.urandom(3 * SIZE)
    target = folder / "up.bin"
    written = await new(transports, sshd).files(alice()).open_new(str(target))
    try:
        for start in range(0, BULK_AFTER + 2 * MIB, MIB):
            await written.write(data[start : start + MIB])
        [(pid, _)] = ssh_children()
        os.kill(pid, 9)
        with pytest.raises(HpcgateError) as failed:
            await write_all(written, data[BULK_AFTER + 2 * MIB :])
        assert failed.value.status == 503
    finally:
        await written.close()
    assert await eventually(lambda: ssh_children() == [])
    kept = target.read_bytes()
    assert data.startswith(kept) and len(kept) < len(data)


async def test_a_cancelled_transfer_ends_the_process(
    sshd: Sshd, transports: list[SshTransport], folder: Path
) -> None:
    alices_file(folder / "data.bin", 3 * SIZE)
    opened = await new(transports, sshd).files(alice()).open_read(str(folder / "data.bin"))
    await read_all_until(opened, BULK_AFTER + MIB)
    assert len(ssh_children()) == 1

    reading = asyncio.ensure_future(read_all(opened, BULK_AFTER + MIB))
    await asyncio.sleep(0.05)
    reading.cancel()
    with pytest.raises(asyncio.CancelledError):
        await reading
    await opened.close()
    assert ssh_children() == []


async def read_all_until(opened: OpenFile, size: int) -> None:
    at = 0
    while at < size:
        at += len(await opened.read(at, MIB))


async def test_asyncssh_carries_everything_when_asked(
    sshd: Sshd, transports: list[SshTransport], folder: Path
) -> None:
    data = alices_file(folder / "data.bin", SIZE)
    transport = new(transports, sshd, bulk="asyncssh")
    opened = await transport.files(alice()).open_read(str(folder / "data.bin"))
    try:
        assert await read_all(opened) == data
        assert ssh_children() == []
    finally:
        await opened.close()


async def test_a_functional_account_s_transfer_goes_through_hpcgate_forced(
    sshd: Sshd,
    functional_account: FunctionalAccount,
    functional_scratch: Path,
) -> None:
    key = functional_account.key()
    transport = SshTransport("cluster", forced_config(sshd, key))
    await transport.start()
    assert transport.bulk is not None
    data = os.urandom(SIZE)
    target = str(functional_scratch / "up.bin")
    try:
        written = await transport.files().open_new(target)
        try:
            await write_all(written, data)
            assert len(ssh_children()) == 1
        finally:
            await written.close()
        opened = await transport.files().open_read(target)
        try:
            assert await read_all(opened) == data
        finally:
            await opened.close()
    finally:
        await transport.close()
    assert described(Path(target))[0] == data
    assert ssh_children() == []


def test_the_setting_is_checked(sshd: Sshd) -> None:
    with pytest.raises(ValueError, match="bulk"):
        SshConfig(**(config(sshd).model_dump() | {"bulk": "scp"}))
