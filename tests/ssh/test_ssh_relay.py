"""Streams to a replica on the cluster through hpcgate-forced's relay (``relay HOST PORT``)
and through ``direct-tcpip``, as the functional account ``hpcgate-svc``, to an echo server
run as a real Slurm job named as the services core names replicas (``hpcgate-echo-PORT``,
on a test node whose NodeAddr is 127.0.0.1).

The shared test sshd forwards nothing; the tests that forward run an sshd of their own
(``AllowTcpForwarding local``), where the key's ``restrict`` still forbids it unless the
key adds ``port-forwarding``.
"""

from __future__ import annotations

import os
import shlex
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest

from hpcgate.config import SshConfig
from hpcgate.model.errors import ForwardingProhibited, TransportError
from hpcgate.transports.ssh import SshTransport
from tests.ssh.test_ssh_forced import slurm_association
from tests.ssh.test_ssh_transport import eventually, keygen, running
from tests.support.echo import assert_echoes
from tests.support.gateway_process import free_port
from tests.support.replica import replica_job
from tests.support.slurm import ensure_cluster
from tests.support.sshd import FORCED, FUNCTIONAL, FunctionalAccount, Sshd, own_sshd

RELAYS = f"^/usr/bin/python3 -I {FORCED}$"  # the relays (and commands) of hpcgate-forced


@pytest.fixture(scope="module")
def cluster() -> None:
    if os.geteuid() != 0:
        pytest.skip("starting replica jobs as other accounts needs root")
    ensure_cluster()
    slurm_association(FUNCTIONAL)


@pytest.fixture(scope="module")
def replica(cluster: None) -> Iterator[int]:
    """The port of the functional account's echo replica."""
    port = free_port()
    with replica_job(FUNCTIONAL, port):
        yield port


@pytest.fixture(scope="module")
def forwarding_sshd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sshd]:
    with own_sshd(tmp_path_factory.mktemp("sshd"), forwarding=True) as server:
        yield server


@pytest.fixture(scope="module")
def forwarding_key(functional_account: FunctionalAccount) -> Path:
    """A key of the functional account whose ``restrict`` is relaxed by ``port-forwarding``."""
    key = keygen(functional_account.keys / "forwarding")
    entry = shlex.join(["/usr/bin/python3", "-I", str(FORCED)])
    line = f'restrict,port-forwarding,command="{entry}" {key.with_suffix(".pub").read_text()}'
    with functional_account.authorized_keys.open("a") as authorized:
        authorized.write(line)
    return key


def forced(sshd: Sshd, key: Path, **changes: Any) -> SshConfig:
    table: dict[str, Any] = {
        "host": sshd.host,
        "port": sshd.port,
        "known_hosts": sshd.known_hosts,
        "identity": "forced",
        "key": key,
        "user": FUNCTIONAL,
    }
    return SshConfig(**(table | changes))


async def started(made: list[SshTransport], config: SshConfig) -> SshTransport:
    transport = SshTransport("cluster", config)
    made.append(transport)
    await transport.start()
    return transport


def relay(sshd: Sshd, key: Path, *words: str) -> subprocess.CompletedProcess[str]:
    """The relay asked for with the OpenSSH client."""
    argv = [*sshd.ssh_argv(FUNCTIONAL, key), *words]
    return subprocess.run(argv, capture_output=True, text=True, timeout=60, input="")


async def test_the_relay_carries_a_stream_both_ways(
    sshd: Sshd, functional_account: FunctionalAccount, replica: int, transports: list[SshTransport]
) -> None:
    """4 MiB each way at once, then our end and the server's; by the node's address and
    its host name, on one connection kept for streams."""
    transport = await started(transports, forced(sshd, functional_account.key(), stream="relay"))
    with anyio.fail_after(120):
        await assert_echoes(await transport.stream("127.0.0.1", replica))
        await assert_echoes(await transport.stream("localhost", replica))
    assert (transport.tunnels.stats().opened, transport.pool.stats().opened) == (1, 0)


async def test_a_closed_stream_ends_its_relay(
    sshd: Sshd, functional_account: FunctionalAccount, cluster: None, transports: list[SshTransport]
) -> None:
    """Closed after our EOF, to a server that keeps its side open: the relay sees sshd's
    end of the channel and exits, so nothing is left on the login node."""
    transport = await started(transports, forced(sshd, functional_account.key(), stream="relay"))
    port = free_port()
    with replica_job(FUNCTIONAL, port, hold=True):
        before = len(running(RELAYS))
        stream = await transport.stream("127.0.0.1", port)
        await stream.send(b"ping")
        assert await stream.receive() == b"ping"
        await stream.send_eof()
        assert len(running(RELAYS)) == before + 1
        await stream.aclose()
        assert await eventually(lambda: len(running(RELAYS)) == before), running(RELAYS)


@pytest.mark.parametrize(
    ("host", "port", "said"),
    [
        ("127.0.0.1", None, "not a node where this account runs a job named hpcgate-"),
        ("10.11.12.13", 0, "10.11.12.13 is not a node where this account runs"),
        ("127.0.0.1", 22, "ports 1024 to 65535 only"),
        ("$(id)", 0, "must be a node's name or address"),
        ("-oProxyCommand=id", 0, "must be a node's name or address"),
    ],
)
async def test_the_relay_refuses_what_is_not_a_replica(
    sshd: Sshd,
    functional_account: FunctionalAccount,
    replica: int,
    transports: list[SshTransport],
    host: str,
    port: int | None,
    said: str,
) -> None:
    """A port with no job (None), a host that is not the replica's node (0: the replica's
    port), a privileged port, junk hosts: a TransportError with hpcgate-forced's reason."""
    transport = await started(transports, forced(sshd, functional_account.key(), stream="relay"))
    target = free_port() if port is None else port or replica
    with pytest.raises(TransportError, match=said) as refused:
        await transport.stream(host, target)
    assert "hpcgate-forced: refused" in str(refused.value)


async def test_another_accounts_replica_is_refused(
    sshd: Sshd, functional_account: FunctionalAccount, cluster: None, transports: list[SshTransport]
) -> None:
    """alice's job is named as a replica and listens, but it is not the account's."""
    transport = await started(transports, forced(sshd, functional_account.key(), stream="relay"))
    port = free_port()
    refused = pytest.raises(TransportError, match="not a node where this account runs")
    with replica_job("alice", port), refused:
        await transport.stream("127.0.0.1", port)


async def test_a_replica_that_does_not_listen_is_a_failed_connection(
    sshd: Sshd, functional_account: FunctionalAccount, cluster: None, transports: list[SshTransport]
) -> None:
    transport = await started(transports, forced(sshd, functional_account.key(), stream="relay"))
    port = free_port()
    failed = pytest.raises(TransportError, match=f"cannot connect to 127.0.0.1:{port}")
    with replica_job(FUNCTIONAL, port, serve=False), failed:
        await transport.stream("127.0.0.1", port)


@pytest.mark.parametrize(
    "words",
    [
        ("relay",),
        ("relay", "127.0.0.1"),
        ("relay", "127.0.0.1", "2222", "x"),
        ("relay 127.0.0.1 02222",),
        ("relay  127.0.0.1 2222",),
        ("relay 127.0.0.1 2222; id",),
        ("timeout", "-s", "KILL", "5", "relay", "127.0.0.1", "2222"),
    ],
)
def test_junk_relay_requests_are_refused(
    sshd: Sshd, functional_account: FunctionalAccount, words: tuple[str, ...]
) -> None:
    done = relay(sshd, functional_account.key(), *words)
    assert done.returncode == 126, done
    assert done.stderr.startswith("hpcgate-forced: refused: ") and done.stdout == ""


def test_the_relay_speaks_to_the_openssh_client(
    sshd: Sshd, functional_account: FunctionalAccount, replica: int
) -> None:
    """``ssh ... relay HOST PORT`` is a netcat to the replica: what goes in comes back."""
    data = os.urandom(1 << 20)
    argv = [
        *sshd.ssh_argv(FUNCTIONAL, functional_account.key()),
        "relay",
        "127.0.0.1",
        str(replica),
    ]
    done = subprocess.run(argv, capture_output=True, timeout=60, input=data)
    assert (done.returncode, done.stdout) == (0, data), done.stderr
    assert done.stderr == b"hpcgate-forced: relay open\n"


async def test_auto_falls_back_to_the_relay_once_forwarding_is_refused(
    forwarding_sshd: Sshd,
    functional_account: FunctionalAccount,
    replica: int,
    transports: list[SshTransport],
) -> None:
    """The sshd forwards, the key (``restrict``) does not: the first stream is refused
    forwarding and goes through the relay, and later ones go there at once."""
    transport = await started(transports, forced(forwarding_sshd, functional_account.key()))
    logged = len(forwarding_sshd.log.read_bytes())
    with anyio.fail_after(120):
        await assert_echoes(await transport.stream("127.0.0.1", replica))
        assert transport.relays
        await assert_echoes(await transport.stream("127.0.0.1", replica))
    log = forwarding_sshd.log.read_bytes()[logged:].decode(errors="replace")
    assert log.count("refused local port forward") == 1, log[-3000:]


async def test_a_key_that_may_forward_opens_direct_tcpip(
    forwarding_sshd: Sshd, forwarding_key: Path, replica: int, transports: list[SshTransport]
) -> None:
    transport = await started(transports, forced(forwarding_sshd, forwarding_key))
    logged = len(forwarding_sshd.log.read_bytes())
    with anyio.fail_after(120):
        await assert_echoes(await transport.stream("127.0.0.1", replica))
    assert not transport.relays
    assert b"refused local port forward" not in forwarding_sshd.log.read_bytes()[logged:]


async def test_forward_alone_does_not_fall_back(
    sshd: Sshd, functional_account: FunctionalAccount, replica: int, transports: list[SshTransport]
) -> None:
    config = forced(sshd, functional_account.key(), stream="forward")
    transport = await started(transports, config)
    with pytest.raises(ForwardingProhibited, match="does not let hpcgate-svc open connections"):
        await transport.stream("127.0.0.1", replica)
    assert not transport.relays
