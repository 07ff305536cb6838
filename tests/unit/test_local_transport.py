"""The local transport's long commands, on real child processes, and its streams, to a
real TCP server."""

from __future__ import annotations

import sys

import anyio
import pytest
from anyio.abc import SocketAttribute

from hpcgate.model.commands import Command
from hpcgate.model.errors import TransportError
from hpcgate.transports.local import MAX_LINE, LocalTransport
from tests.support.echo import assert_echoes, echo_server
from tests.support.gateway_process import free_port

WRITER = """
import sys
sys.stderr.write("x" * 200000 + "\\n")  # one line far over the limit
sys.stderr.write("y" * 2000000)  # and two megabytes more, more than a pipe holds
sys.stderr.write("done\\n")
"""


async def test_over_long_stderr_lines_never_stall_a_long_command() -> None:
    lines: list[str] = []
    with anyio.fail_after(30):
        result = await LocalTransport().run_long(
            Command((sys.executable, "-c", WRITER)), None, lines.append
        )
    assert result.returncode == 0
    assert "".join(lines) == "x" * 200000 + "y" * 2000000 + "done"  # newlines end lines
    assert max(len(line) for line in lines) <= MAX_LINE


# A line whose newline comes in the read that takes it past the limit: the first part is
# read on its own (below the limit, so the reader asks for more), the rest with the newline.
LATE_NEWLINE = """
import sys, time
sys.stderr.write("a" * 60000); sys.stderr.flush(); time.sleep(0.3)
sys.stderr.write("b" * 40000 + "\\n"); sys.stderr.flush()
"""


async def test_a_line_whose_newline_comes_past_the_limit_is_cut_too() -> None:
    lines: list[str] = []
    with anyio.fail_after(30):
        result = await LocalTransport().run_long(
            Command((sys.executable, "-c", LATE_NEWLINE)), None, lines.append
        )
    assert result.returncode == 0
    assert "".join(lines) == "a" * 60000 + "b" * 40000
    assert max(len(line) for line in lines) <= MAX_LINE


async def test_a_stream_is_a_tcp_connection_from_here() -> None:
    async with echo_server() as port:
        with anyio.fail_after(30):
            await assert_echoes(await LocalTransport().stream("127.0.0.1", port, None))


async def test_a_stream_to_an_address_or_a_name_is_a_socket_stream() -> None:
    """An address is connected to directly, a name through anyio's resolver: either way
    a socket the proxy's pool can poll, that carries the bytes both ways."""
    async with echo_server() as port:
        for host in ("127.0.0.1", "localhost"):
            with anyio.fail_after(30):
                stream = await LocalTransport().stream(host, port)
                raw = stream.extra(SocketAttribute.raw_socket)  # noqa: S610 (anyio, not SQL)
                assert raw.getpeername()[1] == port
                await assert_echoes(stream)


async def test_a_stream_nobody_answers_is_a_transport_error() -> None:
    port = free_port()
    with pytest.raises(TransportError, match=f"127\\.0\\.0\\.1:{port}"):
        await LocalTransport().stream("127.0.0.1", port)
