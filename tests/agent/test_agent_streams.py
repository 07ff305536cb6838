"""Byte streams through a real agent process, driven frame by frame by a WebSocket server of
the test's own in the gateway's place (as in test_hostile_gateway): a TCP server of the
test on this machine is the node. Bytes both ways with credit, half-close, cancellation,
one stalled stream beside a live one, and connections the agent's policy refuses."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import random
import socket
from collections import defaultdict
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed

from hpcgate.agentwire import messages as m
from hpcgate.agentwire.credit import INITIAL_WINDOW
from hpcgate.agentwire.frames import (
    MAX_DATA_BODY,
    PEER_DATA_BODY,
    Frame,
    Kind,
    control,
    decode,
    encode,
    fields,
)
from tests.support.agent_process import AgentProcess

FLOOD = 8 << 20


class Node:
    """The test's TCP server on a port of the agent's stream_ports. A connection's first
    line picks what it does: ``echo`` (each piece back), ``digest`` (the sha256 of all
    it reads, after the client's end of file), ``flood`` (FLOOD bytes, then close),
    ``hold`` (nothing; ``ended`` is set when the client goes)."""

    def __init__(self) -> None:
        self.holding = asyncio.Event()
        self.ended = asyncio.Event()
        self.port = 0

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        how = (await reader.readline()).strip()
        if how == b"echo":
            while piece := await reader.read(65536):
                writer.write(piece)
                await writer.drain()
        elif how == b"digest":
            digest = hashlib.sha256()
            while piece := await reader.read(65536):
                digest.update(piece)
            writer.write(digest.hexdigest().encode())
        elif how == b"flood":
            block = bytes(range(256)) * 256
            for _ in range(FLOOD // len(block)):
                writer.write(block)
                await writer.drain()
        elif how == b"hold":
            self.holding.set()
            await reader.read()
            self.ended.set()
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()


async def listening(node: Node) -> asyncio.Server:
    """``node`` serving on a free port of 20000-32767 (the agent's default stream_ports)."""
    for _ in range(100):
        port = random.randint(20000, 32767)
        try:
            server = await asyncio.start_server(node.handle, "127.0.0.1", port)
        except OSError:
            continue
        node.port = port
        return server
    raise RuntimeError("no free port in 20000-32767")


def listener_above_the_range() -> socket.socket:
    for _ in range(100):
        sock = socket.socket()
        try:
            sock.bind(("127.0.0.1", random.randint(40000, 60999)))
        except OSError:
            sock.close()
            continue
        sock.listen()
        return sock
    raise RuntimeError("no free port in 40000-60999")


class Wire:
    """The test's end of the agent's connection: frames by channel."""

    def __init__(self, connection: ServerConnection) -> None:
        self.connection = connection
        self.frames: defaultdict[int, asyncio.Queue[Frame]] = defaultdict(asyncio.Queue)
        self.reader = asyncio.ensure_future(self._read())
        self.largest = 0  # the largest DATA body read_all took

    async def _read(self) -> None:
        with contextlib.suppress(ConnectionClosed):
            while True:
                frame = decode(await self.connection.recv(decode=False))
                await self.frames[frame.channel].put(frame)

    async def next(self, channel: int) -> Frame:
        return await asyncio.wait_for(self.frames[channel].get(), 30)

    async def send(self, kind: Kind, channel: int, body: dict[str, Any] | bytes) -> None:
        message = (
            encode(kind, channel, body) if isinstance(body, bytes) else control(kind, channel, body)
        )
        await self.connection.send(message)

    async def connect(
        self, channel: int, host: str, port: int, account: str | None = None
    ) -> Frame:
        """Ask for a stream; the agent's first answer on the channel."""
        await self.send(Kind.REQUEST, channel, m.request_fields(m.Connect(host, port), account))
        return await self.next(channel)

    async def write(self, channel: int, data: bytes, credit: list[int]) -> None:
        """Send ``data`` within the credit the agent grants (``credit[0]``: what is left)."""
        view = memoryview(data)
        while view:
            while credit[0] == 0:
                frame = await self.next(channel)
                assert frame.kind is Kind.CREDIT, frame
                credit[0] += int(fields(frame)["bytes"])  # type: ignore[call-overload]
            count = min(len(view), credit[0], MAX_DATA_BODY)
            await self.send(Kind.DATA, channel, bytes(view[:count]))
            credit[0] -= count
            view = view[count:]

    async def read_all(self, channel: int, frame_size: int | None = None) -> tuple[bytes, Frame]:
        """DATA until the agent's CLOSE (granting as it comes, in DATA frames of up to
        ``frame_size`` bytes; None: as a gateway that says nothing of it, 64 KiB): the
        bytes, and the CLOSE."""
        got, taken = bytearray(), 0
        grant: dict[str, Any] = {} if frame_size is None else {"frame": frame_size}
        while True:
            frame = await self.next(channel)
            if frame.kind is Kind.DATA:
                assert len(frame.body) <= (frame_size or PEER_DATA_BODY), len(frame.body)
                got += frame.body
                self.largest = max(self.largest, len(frame.body))
                taken += len(frame.body)
                if taken >= INITIAL_WINDOW // 2:  # in batches, as the gateway grants
                    await self.send(Kind.CREDIT, channel, {"bytes": taken, **grant})
                    taken = 0
            elif frame.kind is Kind.CLOSE:
                return bytes(got), frame
            elif frame.kind is Kind.RESULT:  # a failure, or an end with no CLOSE
                raise AssertionError(f"a RESULT before the CLOSE: {fields(frame)}")


class Gateway:
    def __init__(self) -> None:
        self.connections: asyncio.Queue[ServerConnection] = asyncio.Queue()

    async def handler(self, connection: ServerConnection) -> None:
        decode(await connection.recv(decode=False))  # HELLO
        await connection.send(control(Kind.WELCOME, 0, {"epoch": "test"}))
        await self.connections.put(connection)
        await connection.wait_closed()


@pytest.fixture
async def wired(tmp_path: Path) -> AsyncIterator[tuple[Wire, Node, AgentProcess]]:
    gateway, node = Gateway(), Node()
    root = tmp_path / "root"
    root.mkdir()
    tcp = await listening(node)
    async with tcp, serve(gateway.handler, "127.0.0.1", 0, max_size=None) as server:
        port = server.sockets[0].getsockname()[1]
        agent = AgentProcess(
            tmp_path / "agent", f"ws://127.0.0.1:{port}", "hpcg_x", (str(root),), tmp_path / "spool"
        )
        agent.start()
        try:
            connection = await asyncio.wait_for(gateway.connections.get(), 60)
            wire = Wire(connection)
            yield wire, node, agent
            wire.reader.cancel()
        finally:
            agent.stop()


async def test_bytes_go_both_ways_within_the_credit_and_a_close_is_a_half_close(
    wired: tuple[Wire, Node, AgentProcess],
) -> None:
    wire, node, _ = wired
    opened = await wire.connect(1, "127.0.0.1", node.port)
    assert (opened.kind, fields(opened)) == (
        Kind.CREDIT,
        {"bytes": INITIAL_WINDOW, "frame": MAX_DATA_BODY},  # an older gateway ignores "frame"
    )
    data = os.urandom(3 << 20)  # twelve windows: it flows only as the agent grants more
    await wire.write(1, b"digest\n" + data, [INITIAL_WINDOW])
    await wire.send(Kind.CLOSE, 1, {})  # our half: the node reads its end of file...
    answer, close = await wire.read_all(1)  # ...and still answers on the other half
    assert answer == hashlib.sha256(data).hexdigest().encode()
    assert fields(close) == {}
    result = await wire.next(1)
    assert (result.kind, fields(result)) == (Kind.RESULT, {"ok": True, "value": None})


async def test_a_stalled_stream_holds_up_no_other_and_holds_one_window(
    wired: tuple[Wire, Node, AgentProcess],
) -> None:
    wire, node, _ = wired
    assert (await wire.connect(1, "127.0.0.1", node.port)).kind is Kind.CREDIT
    await wire.write(1, b"flood\n", [INITIAL_WINDOW])
    # Channel 1 floods and we grant nothing; channel 2 still echoes at once.
    assert (await wire.connect(2, "127.0.0.1", node.port)).kind is Kind.CREDIT
    for round_ in range(20):
        await wire.write(2, b"echo\n" if round_ == 0 else b"", [INITIAL_WINDOW])
        await wire.write(2, f"ping {round_}".encode(), [INITIAL_WINDOW])
        echoed = await wire.next(2)
        assert (echoed.kind, echoed.body) == (Kind.DATA, f"ping {round_}".encode())
    held = 0
    while not wire.frames[1].empty():
        frame = wire.frames[1].get_nowait()
        assert frame.kind is Kind.DATA
        held += len(frame.body)
    assert 0 < held <= INITIAL_WINDOW  # never more than we granted
    await wire.send(Kind.CREDIT, 1, {"bytes": held})
    rest, close = await wire.read_all(1)
    assert held + len(rest) == FLOOD and fields(close) == {}


async def test_a_cancel_closes_the_node_connection(
    wired: tuple[Wire, Node, AgentProcess],
) -> None:
    wire, node, _ = wired
    assert (await wire.connect(1, "127.0.0.1", node.port)).kind is Kind.CREDIT
    await wire.write(1, b"hold\n", [INITIAL_WINDOW])
    await asyncio.wait_for(node.holding.wait(), 30)
    await wire.send(Kind.CANCEL, 1, {})
    await asyncio.wait_for(node.ended.wait(), 30)
    # the connection goes on: another stream opens
    assert (await wire.connect(2, "127.0.0.1", node.port)).kind is Kind.CREDIT


async def test_streams_outside_the_policy_are_refused_and_logged(
    wired: tuple[Wire, Node, AgentProcess],
) -> None:
    wire, node, agent = wired
    ssh = listener_above_the_range()  # a listener outside stream_ports (as sshd's 22)
    outside = ssh.getsockname()[1]
    refused_targets = [
        ("127.0.0.1", outside),
        ("127.0.0.1", 22),
        ("127.0.0.1", 19999),
        ("10.11.12.13", node.port),  # not this machine: the embedded scheduler's one node
        ("example.org", node.port),
        ("127.0.0.1 -oProxyCommand=x", node.port),
        ("", node.port),
    ]
    with ssh:
        for channel, (host, port) in enumerate(refused_targets, start=1):
            answer = await wire.connect(channel, host, port)
            assert answer.kind is Kind.RESULT, answer
            assert fields(answer)["error"]["kind"] == "refused", fields(answer)  # type: ignore[index]
        root = await wire.connect(50, "127.0.0.1", node.port, account="root")
        assert fields(root)["error"]["kind"] == "refused"  # type: ignore[index]
    assert agent.log().count("refused request") == len(refused_targets) + 1
    assert "outside this agent's stream_ports" in agent.log()
    assert "is not this machine" in agent.log()


async def test_data_after_the_gateways_close_ends_the_connection(
    wired: tuple[Wire, Node, AgentProcess],
) -> None:
    wire, node, _ = wired
    assert (await wire.connect(1, "127.0.0.1", node.port)).kind is Kind.CREDIT
    await wire.send(Kind.CLOSE, 1, {})
    await wire.send(Kind.DATA, 1, b"more")
    await asyncio.wait_for(wire.connection.wait_closed(), 30)
    assert wire.connection.close_code == 1008


async def test_a_large_read_and_write_of_an_open_file_move_as_data(
    wired: tuple[Wire, Node, AgentProcess], tmp_path: Path
) -> None:
    wire, _, _ = wired
    root = tmp_path / "root"
    data = os.urandom(5 << 20)
    await wire.send(Kind.REQUEST, 1, m.request_fields(m.Open(str(root), f"{root}/f", "new"), None))
    handle = fields(await wire.next(1))["value"]
    assert isinstance(handle, int)
    await wire.send(Kind.REQUEST, 2, m.request_fields(m.HandleWriteData(handle), None))
    await wire.write(2, data, [0])  # nothing until the agent's first CREDIT
    await wire.send(Kind.CLOSE, 2, {})
    _, close = await wire.read_all(2)  # the agent's CLOSE: all written
    assert fields(close) == {} and fields(await wire.next(2)) == {"ok": True, "value": len(data)}
    assert (root / "f").read_bytes() == data
    await wire.send(Kind.REQUEST, 5, m.request_fields(m.Open(str(root), f"{root}/f", "read"), None))
    reading = fields(await wire.next(5))["value"]
    assert isinstance(reading, int)
    request = m.HandleReadData(reading, 1000, len(data))
    await wire.send(Kind.REQUEST, 3, m.request_fields(request, None))
    got, _ = await wire.read_all(3)  # as an older gateway: frames of 64 KiB at most
    assert got == data[1000:]
    assert fields(await wire.next(3)) == {"ok": True, "value": len(data) - 1000}
    await wire.send(Kind.REQUEST, 6, m.request_fields(m.HandleReadData(reading, 0, 3 << 20), None))
    wire.largest = 0
    got, _ = await wire.read_all(6, frame_size=MAX_DATA_BODY)  # larger once the grant says so
    assert got == data[: 3 << 20] and wire.largest == MAX_DATA_BODY
    assert fields(await wire.next(6)) == {"ok": True, "value": 3 << 20}
    await wire.send(Kind.REQUEST, 4, m.request_fields(m.HandleReadData(999, 0, 10), None))
    refused = fields(await wire.next(4))
    assert refused["ok"] is False and refused["error"]["kind"] == "refused"  # type: ignore[index]
