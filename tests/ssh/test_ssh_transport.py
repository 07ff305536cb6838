"""The SSH transport against the real OpenSSH server of scripts/sshd, as alice and bob.

The server runs on this machine, so what happened on "the host" is seen directly: which
processes run (pgrep), what sshd logged. Nothing here is mocked.
"""

from __future__ import annotations

import asyncio
import os
import pwd
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from hpcgate.accounts import Account
from hpcgate.config import SshConfig
from hpcgate.model.commands import Command
from hpcgate.model.errors import CommandTimeout, Forbidden, NotFound, TransportError
from hpcgate.transports.ssh import SshTransport
from hpcgate.transports.ssh_identity import CertificateAuthority
from tests.support.gateway_process import free_port
from tests.support.hostile import HOSTILE_ARGV
from tests.support.sshd import Sshd, own_sshd

HOSTILE = (*HOSTILE_ARGV, "é ✓")


def account(name: str) -> Account:
    entry = pwd.getpwnam(name)
    groups = tuple(os.getgrouplist(entry.pw_name, entry.pw_gid))
    return Account(entry.pw_name, entry.pw_uid, entry.pw_gid, groups, entry.pw_dir)


def config(sshd: Sshd, identity: str = "ca", **changes: Any) -> SshConfig:
    keys: dict[str, Any] = {"ca_key": sshd.ca} if identity == "ca" else {"keys_dir": sshd.keys}
    table: dict[str, Any] = {
        "host": sshd.host,
        "port": sshd.port,
        "known_hosts": sshd.known_hosts,
        "identity": identity,
        "user": "bob",
        **keys,
    }
    return SshConfig(**(table | changes))


def new(
    made: list[SshTransport], sshd: Sshd, system: str = "cluster", **changes: Any
) -> SshTransport:
    transport = SshTransport(system, config(sshd, **changes))
    made.append(transport)
    return transport


def alice() -> Account:
    return account("alice")


def running(pattern: str) -> list[str]:
    found = subprocess.run(["pgrep", "-af", pattern], capture_output=True, text=True)
    return [line for line in found.stdout.splitlines() if "pgrep" not in line]


async def eventually(condition: Callable[[], bool], seconds: float = 5) -> bool:
    for _ in range(int(seconds / 0.05)):
        if condition():
            return True
        await asyncio.sleep(0.05)
    return condition()


async def gone(pattern: str) -> bool:
    return await eventually(lambda: not running(pattern))


def keygen(path: Path) -> Path:
    """A new ed25519 key pair at ``path`` (private) and ``path.pub``."""
    argv = ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)]
    subprocess.run(argv, check=True, stdin=subprocess.DEVNULL)
    return path


def described(certificate: Path) -> str:
    """What OpenSSH's own ssh-keygen -L reads in a certificate file."""
    argv = ["ssh-keygen", "-L", "-f", str(certificate)]
    return subprocess.run(argv, capture_output=True, text=True, check=True).stdout


@pytest.mark.parametrize("identity", ["ca", "keys"])
async def test_commands_run_as_the_account(
    sshd: Sshd, transports: list[SshTransport], identity: str
) -> None:
    transport = new(transports, sshd, identity=identity)
    await transport.start()
    as_alice = await transport.run(Command(("id", "-un")), 10, alice())
    assert (as_alice.returncode, as_alice.stdout, as_alice.stderr) == (0, b"alice\n", b"")
    own = await transport.run(Command(("sh", "-c", 'id -un; echo "$HOME"')), 10)
    assert own.stdout.decode().split() == ["bob", pwd.getpwnam("bob").pw_dir]


async def test_the_certificate_is_what_openssh_reads(
    sshd: Sshd, transports: list[SshTransport], tmp_path: Path
) -> None:
    """ssh-keygen -L on a certificate the CA issued: the account, minutes of life, no rights."""
    system = f"t{uuid.uuid4().hex[:8]}"
    transport = new(transports, sshd, system, cert_minutes=3)
    assert (await transport.run(Command(("true",)), 10, alice())).ok
    ca = CertificateAuthority(sshd.ca, 180, system)
    ca.start()
    ca.certificate("alice").write_certificate(tmp_path / "cert.pub")
    shown = described(tmp_path / "cert.pub")
    assert f'Key ID: "hpcgate:{system}:alice"' in shown
    assert "Principals: \n                alice\n" in shown
    assert "Critical Options: (none)" in shown and "Extensions: (none)" in shown
    lifetime = shown.split("Valid: from ")[1].split("\n")[0].split(" to ")
    start, end = (time.mktime(time.strptime(t, "%Y-%m-%dT%H:%M:%S")) for t in lifetime)
    assert end - start == 180 + 60  # three minutes, from a minute ago (clock drift)
    log = sshd.log.read_text(errors="replace")
    assert f"ID hpcgate:{system}:alice" in log  # sshd logged the login with its key id


async def test_hostile_argv_arrive_verbatim(sshd: Sshd, transports: list[SshTransport]) -> None:
    transport = new(transports, sshd)
    result = await transport.run(Command(("printf", "%s\\0", *HOSTILE)), 10, alice())
    assert result.ok, result.stderr
    assert result.stdout.decode().split("\0")[:-1] == list(HOSTILE)
    for value in HOSTILE:
        printed = await transport.run(Command(("printenv", "X"), env={"X": value}), 10, alice())
        assert printed.stdout.decode() == value + "\n"


async def test_stdin_exit_status_and_signals(sshd: Sshd, transports: list[SshTransport]) -> None:
    transport = new(transports, sshd)
    fed = await transport.run(Command(("sh", "-c", "cat; exit 3"), stdin=b"job\0data"), 10)
    assert (fed.returncode, fed.stdout) == (3, b"job\0data")
    nothing = await transport.run(Command(("cat",)), 10)  # no stdin: end of file at once
    assert (nothing.returncode, nothing.stdout) == (0, b"")
    killed = await transport.run(Command(("sh", "-c", "echo oops >&2; kill -TERM $$")), 10)
    assert (killed.returncode, killed.stderr) == (-signal.SIGTERM, b"oops\n")


async def test_a_timeout_kills_the_command_on_the_host(
    sshd: Sshd, transports: list[SshTransport]
) -> None:
    transport = new(transports, sshd)
    marker = f"{time.time() % 1000:.4f}3"
    started = time.monotonic()
    with pytest.raises(CommandTimeout, match="did not finish in 1 s"):
        await transport.run(Command(("sh", "-c", f"sleep {marker}; echo late")), 1, alice())
    assert time.monotonic() - started < 3
    assert await gone(f"sleep {marker}"), running(f"sleep {marker}")
    assert (await transport.run(Command(("true",)), 10, alice())).ok  # the connection lives on
    assert transport.pool.stats().opened == 1


async def test_a_long_command_streams_stderr_and_dies_when_cancelled(
    sshd: Sshd, transports: list[SshTransport]
) -> None:
    transport = new(transports, sshd)
    lines: list[str] = []
    done = await transport.run_long(
        Command(("sh", "-c", "echo one >&2; echo out; echo two >&2; exit 4")), alice(), lines.append
    )
    assert (done.returncode, done.stderr, lines) == (4, b"one\ntwo", ["one", "two"])
    marker = f"{time.time() % 1000:.4f}7"
    first = asyncio.Event()
    script = f"echo started >&2; sleep {marker}"
    task = asyncio.create_task(
        transport.run_long(Command(("sh", "-c", script)), alice(), lambda _: first.set())
    )
    await asyncio.wait_for(first.wait(), 10)
    assert running(f"sleep {marker}")
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await gone(f"sleep {marker}"), running(f"sleep {marker}")


async def test_an_open_file_s_mode_is_set_through_its_handle(
    sshd: Sshd, transports: list[SshTransport]
) -> None:
    """fsetstat on the handle: the file written, whatever its name points to by then."""
    files = new(transports, sshd).files(alice())
    path = f"{alice().home}/hpcgate-mode-{uuid.uuid4().hex[:8]}"
    opened = await files.open_new(path)
    try:
        await opened.write(b"#!/bin/sh\n")
        await opened.chmod(0o751)
    finally:
        await opened.close()
    try:
        assert os.stat(path).st_mode & 0o7777 == 0o751
    finally:
        os.unlink(path)


async def test_files_over_sftp_as_the_account(sshd: Sshd, transports: list[SshTransport]) -> None:
    transport = new(transports, sshd)
    home = alice().home
    work = f"{home}/hpcgate-test-{uuid.uuid4().hex[:8]}"
    try:
        await transport.files(alice()).mkdir(f"{work}/a/b", parents=True)
        await transport.files(alice()).mkdir(f"{work}/a/b", parents=True)  # fine if it exists
        made = await transport.run(Command(("stat", "-c", "%U", f"{work}/a/b")), 10, alice())
        assert made.stdout == b"alice\n"
        write = ("sh", "-c", 'printf "0123456789" > "$1"', "-", f"{work}/out")
        assert (await transport.run(Command(write), 10, alice())).ok
        assert await transport.files(alice()).size(f"{work}/out") == 10
        assert await transport.files(alice()).read(f"{work}/out", 3, 4) == b"3456"
        assert await transport.files(alice()).read(f"{work}/out", 8, 1 << 20) == b"89"
        assert await transport.files(alice()).read(f"{work}/out", 10, 100) == b""
        assert await transport.files(alice()).size(f"{work}/missing") is None
        with pytest.raises(NotFound):
            await transport.files(alice()).read(f"{work}/missing", 0, 10)
        with pytest.raises(Forbidden):
            await transport.files(alice()).read("/etc/shadow", 0, 10)
        assert transport.pool.stats().opened == 1  # commands and SFTP share the connection
    finally:
        await transport.run(Command(("rm", "-rf", work)), 10, alice())


async def test_a_wrong_host_key_never_logs_in(
    sshd: Sshd, transports: list[SshTransport], tmp_path: Path
) -> None:
    other = keygen(tmp_path / "other")
    wrong = tmp_path / "known_hosts"
    wrong.write_text(f"[{sshd.host}]:{sshd.port} {other.with_suffix('.pub').read_text()}")
    empty = tmp_path / "empty"
    empty.write_text("")
    for known_hosts in (wrong, empty):
        system = f"w{uuid.uuid4().hex[:8]}"
        transport = new(transports, sshd, system, known_hosts=known_hosts)
        with pytest.raises(TransportError, match="host key") as caught:
            await transport.run(Command(("touch", "/tmp/should-not-exist")), 10, alice())
        assert caught.value.status == 503
        assert transport.pool.stats().opened == 0
        assert f"hpcgate:{system}:" not in sshd.log.read_text(errors="replace")


async def test_refused_logins(sshd: Sshd, transports: list[SshTransport]) -> None:
    stranger = Account("nosuchuser", 4242, 4242, (), "/nonexistent")
    with pytest.raises(TransportError, match="refused the login of nosuchuser"):
        await new(transports, sshd).run(Command(("true",)), 10, stranger)
    with pytest.raises(Forbidden, match="has no SSH key"):
        await new(transports, sshd, identity="keys").run(Command(("true",)), 10, stranger)
    closed = new(transports, sshd, port=free_port(), connect_timeout=2)
    with pytest.raises(TransportError, match="cannot reach"):
        await closed.run(Command(("true",)), 10, alice())


async def test_a_host_that_never_answers_is_a_503_after_connect_timeout(
    sshd: Sshd, transports: list[SshTransport]
) -> None:
    with socket.socket() as silent:  # the kernel completes the handshake; nobody speaks
        silent.bind((sshd.host, 0))
        silent.listen()
        port = silent.getsockname()[1]
        transport = new(transports, sshd, port=port, connect_timeout=1)
        started = time.monotonic()
        with pytest.raises(TransportError, match="did not answer in time") as caught:
            await transport.run(Command(("true",)), 10, alice())
        assert caught.value.status == 503
        assert 0.9 < time.monotonic() - started < 3


async def test_concurrent_commands_share_one_connection(
    sshd: Sshd, transports: list[SshTransport]
) -> None:
    transport = new(transports, sshd)
    started = time.monotonic()
    results = await asyncio.gather(
        *(transport.run(Command(("sh", "-c", f"sleep 0.3; echo {n}")), 20) for n in range(20))
    )
    assert [r.stdout for r in results] == [f"{n}\n".encode() for n in range(20)]
    assert transport.pool.stats().opened == 1
    assert time.monotonic() - started < 5  # eight channels at a time: three rounds, not twenty


async def test_channels_up_to_sshds_own_limit(sshd: Sshd, transports: list[SshTransport]) -> None:
    """With as many channels as sshd's MaxSessions (10), a new channel often reaches sshd
    before it has freed the session of one just closed: the refusal is waited out."""
    transport = new(transports, sshd, sessions_per_connection=10)
    for _ in range(3):
        results = await asyncio.gather(*(transport.run(Command(("true",)), 20) for _ in range(60)))
        assert all(result.ok for result in results)
    assert transport.pool.stats().opened == 1


async def test_an_idle_connection_is_closed(sshd: Sshd, transports: list[SshTransport]) -> None:
    transport = new(transports, sshd, idle_seconds=0.3)
    assert (await transport.run(Command(("true",)), 10)).ok
    assert transport.pool.stats().open == 1
    await asyncio.sleep(0.8)
    assert transport.pool.stats().open == 0
    assert (await transport.run(Command(("true",)), 10)).ok
    assert (transport.pool.stats().open, transport.pool.stats().opened) == (1, 2)


async def test_the_connection_cap(sshd: Sshd, transports: list[SshTransport]) -> None:
    transport = new(transports, sshd, max_connections=1, connect_timeout=1)
    assert (await transport.run(Command(("true",)), 10, alice())).ok
    assert (await transport.run(Command(("true",)), 10)).ok  # bob's replaces alice's idle one
    assert (transport.pool.stats().open, transport.pool.stats().opened) == (1, 2)
    busy = asyncio.create_task(transport.run(Command(("sleep", "2")), 10))
    await asyncio.sleep(0.3)
    with pytest.raises(TransportError, match="all 1 SSH connections of this system are busy"):
        await transport.run(Command(("true",)), 10, alice())
    assert (await busy).ok


@pytest.fixture
def restart_sshd(tmp_path: Path) -> Iterator[Sshd]:
    """An sshd of the test's own, to restart: the shared one serves other tests meanwhile."""
    with own_sshd(tmp_path / "sshd") as server:
        yield server


async def test_a_restarted_sshd_is_reconnected(
    transports: list[SshTransport], restart_sshd: Sshd
) -> None:
    transport = new(transports, restart_sshd)
    assert (await transport.run(Command(("true",)), 10, alice())).ok
    done = await asyncio.to_thread(restart_sshd.run, "restart")
    assert done.returncode == 0, done.stderr
    result = await transport.run(Command(("id", "-un")), 10, alice())
    assert result.stdout == b"alice\n"
    assert transport.pool.stats().opened == 2


async def test_a_connection_found_dead_when_used_is_replaced_and_the_command_sent_again(
    transports: list[SshTransport], restart_sshd: Sshd
) -> None:
    """The restart runs without yielding to the event loop, so the client has not yet read
    the server's goodbye: the next channel fails to open, and the command (which never
    started) goes out again on a fresh connection."""
    transport = new(transports, restart_sshd)
    assert (await transport.run(Command(("true",)), 10, alice())).ok
    assert restart_sshd.run("restart").returncode == 0  # blocking on purpose
    result = await transport.run(Command(("id", "-un")), 10, alice())
    assert result.stdout == b"alice\n"
    assert transport.pool.stats().opened == 2


async def test_a_command_cut_off_midway_is_not_repeated(
    transports: list[SshTransport], restart_sshd: Sshd
) -> None:
    transport = new(transports, restart_sshd)
    work = f"{alice().home}/cut-{uuid.uuid4().hex[:8]}"
    script = f'echo ran >> "{work}"; sleep 3'
    task = asyncio.create_task(transport.run(Command(("sh", "-c", script)), 10, alice()))
    assert await eventually(Path(work).exists, 10)
    assert (await asyncio.to_thread(restart_sshd.run, "restart")).returncode == 0
    with pytest.raises(TransportError, match="it may have run"):
        await task
    try:
        assert (await transport.files(alice()).read(work, 0, 100)) == b"ran\n"
    finally:
        await transport.run(Command(("rm", "-f", work)), 10, alice())


@pytest.fixture
def jump_sshd(sshd: Sshd, tmp_path: Path) -> Iterator[tuple[int, Path]]:
    """A second sshd, a bastion that may forward only to the test sshd, with a known_hosts
    file naming both."""
    port = free_port()
    base = Path(str(sshd.host_key).removesuffix(".pub")).parent
    text = (base / "sshd_config").read_text()
    text = text.replace(f"Port {sshd.port}", f"Port {port}")
    text = text.replace(f"PidFile {base}/sshd.pid", f"PidFile {tmp_path}/jump.pid")
    text = text.replace("AllowTcpForwarding no", "AllowTcpForwarding yes")
    text += f"PermitOpen {sshd.host}:{sshd.port}\n"
    (tmp_path / "jump_config").write_text(text)
    key = " ".join(sshd.host_key.read_text().split()[:2])
    known_hosts = tmp_path / "known_hosts"
    known_hosts.write_text(f"{sshd.known_hosts.read_text()}[{sshd.host}]:{port} {key}\n")
    argv = ["/usr/sbin/sshd", "-D", "-f", str(tmp_path / "jump_config")]
    process = subprocess.Popen([*argv, "-E", str(tmp_path / "jump.log")])
    try:
        deadline = time.monotonic() + 10
        while b"SSH-2.0" not in _banner(sshd.host, port) and time.monotonic() < deadline:
            time.sleep(0.05)
        yield port, known_hosts
    finally:
        process.terminate()
        process.wait(10)


def _banner(host: str, port: int) -> bytes:
    try:
        with socket.create_connection((host, port), timeout=1) as sock:
            return sock.recv(64)
    except OSError:
        return b""


@pytest.mark.parametrize("identity", ["ca", "keys"])
async def test_through_a_jump_host(
    sshd: Sshd, transports: list[SshTransport], jump_sshd: tuple[int, Path], identity: str
) -> None:
    port, known_hosts = jump_sshd
    transport = new(
        transports,
        sshd,
        identity=identity,
        known_hosts=known_hosts,
        jump_host=f"{sshd.host}:{port}",
    )
    result = await transport.run(Command(("sh", "-c", "id -un; echo $SSH_CLIENT")), 10, alice())
    name, client = result.stdout.decode().splitlines()
    assert name == "alice"
    assert client.startswith("127.0.0.1 ")
    log = (known_hosts.parent / "jump.log").read_text()
    assert "Accepted" in log and "for alice" in log


async def test_waiting_for_a_channel_is_bounded_by_the_command_timeout(
    sshd: Sshd, transports: list[SshTransport]
) -> None:
    """With its channels busy, a command waits for one no longer than its own timeout, then
    fails as not sent (503), and the busy commands are not disturbed."""
    transport = new(transports, sshd, sessions_per_connection=2)
    sleeper = Command(("sh", "-c", "sleep 3; echo done"))
    busy = [asyncio.create_task(transport.run(sleeper, 20)) for _ in range(2)]
    await asyncio.sleep(0.5)
    started = time.monotonic()
    with pytest.raises(TransportError, match="stayed busy for 1 s; the command was not sent"):
        await transport.run(Command(("true",)), 1)
    assert 0.9 < time.monotonic() - started < 2.5
    assert [(await task).stdout for task in busy] == [b"done\n"] * 2
    assert (await transport.run(Command(("true",)), 5)).ok  # the channels are free again
