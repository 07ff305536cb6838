"""Streams through the login node: ``direct-tcpip`` channels to a real TCP echo server,
opened by the SSH transport as alice through a real sshd.

The shared test sshd allows no forwarding, so these run an sshd of their own with
``AllowTcpForwarding local``; the shared one shows what a site that forbids it answers.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import anyio
import pytest

from hpcgate.model.errors import TransportError
from hpcgate.transports.ssh import SshTransport
from tests.ssh.test_ssh_transport import alice, new
from tests.support.echo import assert_echoes, echo_server
from tests.support.gateway_process import free_port
from tests.support.sshd import Sshd, own_sshd


@pytest.fixture(scope="module")
def forwarding_sshd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sshd]:
    with own_sshd(tmp_path_factory.mktemp("sshd"), forwarding=True) as server:
        yield server


@pytest.mark.parametrize("identity", ["ca", "keys"])
async def test_a_stream_reaches_a_port_on_the_cluster(
    forwarding_sshd: Sshd, transports: list[SshTransport], identity: str
) -> None:
    """Through alice's connection (in CA mode one whose certificate may forward, apart
    from the connection her commands use, whose certificate may not)."""
    transport = new(transports, forwarding_sshd, identity=identity)
    await transport.start()
    async with echo_server() as port:
        with anyio.fail_after(60):
            await assert_echoes(await transport.stream("127.0.0.1", port, alice()))
            await assert_echoes(await transport.stream("127.0.0.1", port, alice()))
    assert transport.tunnels.stats().opened == 1
    assert transport.pool.stats().opened == 0
    assert "Accepted publickey for alice" in forwarding_sshd.log.read_text(errors="replace")


async def test_a_port_nobody_listens_on_is_a_transport_error(
    forwarding_sshd: Sshd, transports: list[SshTransport]
) -> None:
    transport = new(transports, forwarding_sshd)
    await transport.start()
    with pytest.raises(TransportError, match=re.escape("could not connect to 127.0.0.1:")):
        await transport.stream("127.0.0.1", free_port(), alice())


async def test_an_sshd_that_forbids_forwarding_says_so(
    sshd: Sshd, transports: list[SshTransport]
) -> None:
    transport = new(transports, sshd)
    await transport.start()
    async with echo_server() as port:
        with pytest.raises(TransportError, match="AllowTcpForwarding"):
            await transport.stream("127.0.0.1", port, alice())
