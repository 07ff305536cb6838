"""Results survive a break: a real ``hpcgate-agent`` process dials a WebSocket server of the
test's own, which plays the gateway's side of the protocol exactly (WELCOME with an epoch,
REQUEST, STATUS after a reconnect, ACK), and cuts the connection or kills the agent
(``kill -9``) at the moments that matter."""

from __future__ import annotations

import asyncio
import os
import signal
import stat
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from websockets.asyncio.server import ServerConnection

from hpcgate.agentwire import messages as m
from hpcgate.agentwire.frames import Frame, Kind, control, decode, fields
from tests.support.agent_process import AgentProcess, facing_peer

EPOCH = "0123abcd"


class TestGateway:
    """Welcomes each connection with one epoch and hands it to the test."""

    __test__ = False

    def __init__(self) -> None:
        self.connections: asyncio.Queue[ServerConnection] = asyncio.Queue()

    async def handler(self, connection: ServerConnection) -> None:
        await connection.recv(decode=False)  # HELLO
        await connection.send(control(Kind.WELCOME, 0, {"epoch": EPOCH}))
        await self.connections.put(connection)
        await connection.wait_closed()

    async def next(self) -> ServerConnection:
        return await asyncio.wait_for(self.connections.get(), 60)


async def answer(connection: ServerConnection, channel: int) -> Frame:
    """The next RESULT or STATUS frame on ``channel`` (LINE frames skipped)."""
    while True:
        frame = decode(await asyncio.wait_for(connection.recv(decode=False), 30))
        if frame.kind in (Kind.RESULT, Kind.STATUS) and frame.channel == channel:
            return frame


@pytest.fixture
async def setup(tmp_path: Path) -> AsyncIterator[tuple[TestGateway, AgentProcess, Path]]:
    gateway = TestGateway()
    async with facing_peer(gateway.handler, tmp_path) as (agent, root):
        yield gateway, agent, root


def spooled(agent: AgentProcess) -> list[Path]:
    results = agent.directory / "state" / "results"
    return sorted(path for path in results.iterdir() if not path.name.startswith("."))


def copy(source: Path, target: Path, root: Path) -> dict[str, Any]:
    words = (
        "cp",
        m.Beneath(str(source), str(root), "path", ""),
        m.Beneath(str(target), str(root), "path", ""),
    )
    return m.request_fields(m.RunFiles(words), None)


async def test_a_command_that_ends_during_a_break_gives_its_result_after_the_reconnect(
    setup: tuple[TestGateway, AgentProcess, Path],
) -> None:
    gateway, agent, root = setup
    connection = await gateway.next()
    fifo = root / "slow"
    os.mkfifo(fifo)  # cp waits on it until the test writes: the command runs on
    await connection.send(control(Kind.REQUEST, 7, copy(fifo, root / "copied", root)))
    await connection.close()
    await asyncio.to_thread(fifo.write_bytes, b"made during the break")
    again = await gateway.next()
    await again.send(control(Kind.STATUS, 7, {}))
    result = fields(await answer(again, 7))
    assert result["ok"] is True and result["value"]["returncode"] == 0, result  # type: ignore[index]
    assert (root / "copied").read_bytes() == b"made during the break"
    await again.send(control(Kind.ACK, 7, {}))
    await again.send(control(Kind.STATUS, 7, {}))  # acknowledged: forgotten
    assert fields(await answer(again, 7)) == {"state": "unknown"}
    assert spooled(agent) == []


async def written(agent: AgentProcess, timeout: float = 30) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not spooled(agent):
        assert loop.time() < deadline, "the unacknowledged result was never written"
        await asyncio.sleep(0.05)


async def test_a_result_not_acknowledged_survives_kill_9_of_the_agent(
    setup: tuple[TestGateway, AgentProcess, Path],
) -> None:
    gateway, agent, root = setup
    connection = await gateway.next()
    made = m.request_fields(m.Mkdir(str(root), str(root / "made"), False), None)
    await connection.send(control(Kind.REQUEST, 3, made))
    first = fields(await answer(connection, 3))
    assert first == {"ok": True, "value": None}
    await written(agent)  # no ACK within the agent's SPOOL_AFTER: its file is written
    (kept,) = spooled(agent)
    assert kept.name == f"{EPOCH}-3.json" and stat.S_IMODE(kept.stat().st_mode) == 0o600
    agent.stop(signal.SIGKILL)  # no ACK was sent: the result must still be offered
    agent.start()
    again = await gateway.next()
    await again.send(control(Kind.STATUS, 3, {}))
    assert fields(await answer(again, 3)) == first
    await again.send(control(Kind.STATUS, 4, {}))  # never sent: unknown, nothing runs
    assert fields(await answer(again, 4)) == {"state": "unknown"}
    await again.send(control(Kind.ACK, 3, {}))
    await again.send(control(Kind.STATUS, 3, {}))
    assert fields(await answer(again, 3)) == {"state": "unknown"}
    assert spooled(agent) == []


async def test_a_request_running_at_a_reconnect_is_running_and_its_result_follows(
    setup: tuple[TestGateway, AgentProcess, Path],
) -> None:
    gateway, _, root = setup
    connection = await gateway.next()
    fifo = root / "slower"
    os.mkfifo(fifo)
    await connection.send(control(Kind.REQUEST, 9, copy(fifo, root / "later", root)))
    await connection.close()
    again = await gateway.next()
    await again.send(control(Kind.STATUS, 9, {}))
    assert fields(await answer(again, 9)) == {"state": "running"}
    await asyncio.to_thread(fifo.write_bytes, b"after")
    result = fields(await answer(again, 9))
    assert result["ok"] is True and result["value"]["returncode"] == 0, result  # type: ignore[index]
