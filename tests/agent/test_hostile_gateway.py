"""A hostile gateway: a WebSocket server of the test's own, which the real agent process
dials, asks for what the agent's protocol and policy do not allow. Each request is refused
(answered ``refused``, and logged), and nothing runs: the canary files never appear."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed

from hpcgate.agentwire import messages as m
from hpcgate.agentwire.frames import HEADER, MAX_CONTROL_BODY, Kind, control, decode, fields
from tests.support.accounts import own_directory, passable, unix_account
from tests.support.agent_process import AgentProcess, facing_peer


class HostileGateway:
    """Accepts one agent at a time; the test drives it."""

    def __init__(self) -> None:
        self.connections: asyncio.Queue[ServerConnection] = asyncio.Queue()
        self.hellos: list[dict[str, object]] = []

    async def handler(self, connection: ServerConnection) -> None:
        self.hellos.append(fields(decode(await connection.recv(decode=False))))
        await connection.send(control(Kind.WELCOME, 0, {"epoch": "hostile"}))
        await self.connections.put(connection)
        await connection.wait_closed()


async def ask(connection: ServerConnection, channel: int, body: dict[str, Any]) -> dict[str, Any]:
    """Send one REQUEST body, return its RESULT body (LINE frames skipped)."""
    await connection.send(control(Kind.REQUEST, channel, body))
    while True:
        frame = decode(await asyncio.wait_for(connection.recv(decode=False), 30))
        if frame.kind is Kind.RESULT and frame.channel == channel:
            return fields(frame)


def request(op: m.Request[Any], account: str | None = None) -> dict[str, Any]:
    return m.request_fields(op, account)


@pytest.fixture
async def hostile(tmp_path: Path) -> AsyncIterator[tuple[HostileGateway, AgentProcess, Path]]:
    gateway = HostileGateway()
    async with facing_peer(gateway.handler, tmp_path) as (agent, root):
        yield gateway, agent, root


async def test_requests_outside_the_protocol_are_refused_and_nothing_runs(
    hostile: tuple[HostileGateway, AgentProcess, Path], tmp_path: Path
) -> None:
    gateway, agent, root = hostile
    connection = await asyncio.wait_for(gateway.connections.get(), 60)
    assert gateway.hellos[0]["user"] is None  # a root agent
    canary = tmp_path / "canary"
    outside = tmp_path / "outside"
    engine = ("python3", "-m", "hpcgate.embedded", "--spool", "/x", "--slots", "1")
    hostile_bodies = [
        {"op": "exec", "args": {"argv": ["sh", "-c", f"touch {canary}"]}, "account": None},
        request(m.Run(("sh", "-c", f"touch {canary}"), None, None, 10)),
        request(m.Run(("/usr/bin/touch", str(canary)), None, None, 10)),
        request(m.Run(("touch", str(canary)), None, None, 10)),
        request(m.Run((*engine[:2], "os", *engine[3:], "submit"), None, None, 10)),
        request(m.Run((*engine, "submit"), None, {"LD_PRELOAD": "/tmp/x.so"}, 10)),
        request(m.RunLong(("sh", "-c", f"touch {canary}"), None)),
        request(m.RunFiles(("rm", m.Beneath(str(root), str(root), "path", "")))),
        request(
            m.RunFiles(("cp", "--", "/etc/hostname", m.Beneath(str(canary), None, "path", "")))
        ),
        request(
            m.RunFiles(
                (
                    "cp",
                    "--",
                    m.Beneath("/etc/hostname", "/", "path", ""),
                    m.Beneath(str(canary), str(tmp_path), "path", ""),
                )
            )
        ),
        request(m.Mkdir(None, str(outside), False)),
        request(m.Mkdir(str(root), f"{root}/../outside", False)),
        request(m.Open(None, str(canary), "new")),
        request(m.Symlink(str(root), f"{root}/link", "/etc")),
        request(m.Mkdir(str(root), f"{root}/as-root", False), account="root"),
        request(m.Mkdir(str(root), f"{root}/as-daemon", False), account="daemon"),
        request(m.Mkdir(str(root), f"{root}/as-nobody", False), account="nobody"),
        {"op": "mkdir", "args": {"root": None, "path": str(outside)}, "account": None},
        {
            "op": "mkdir",
            "args": {"root": None, "path": str(outside), "parents": 1},
            "account": None,
        },
    ]
    for channel, body in enumerate(hostile_bodies, start=1):
        answer = await ask(connection, channel, body)
        assert answer["ok"] is False and answer["error"]["kind"] == "refused", (body, answer)
    assert not canary.exists() and not outside.exists()
    assert not list(root.iterdir())
    assert agent.log().count("refused request") == len(hostile_bodies)
    # the same connection still serves what is allowed
    fine = await ask(connection, 99, request(m.Mkdir(str(root), f"{root}/fine", False)))
    assert fine == {"ok": True, "value": None} and (root / "fine").is_dir()


async def test_an_oversize_frame_closes_the_connection(
    hostile: tuple[HostileGateway, AgentProcess, Path], tmp_path: Path
) -> None:
    gateway, _, _ = hostile
    connection = await asyncio.wait_for(gateway.connections.get(), 60)
    argv = ["touch", str(tmp_path / "canary")]
    body = {"op": "run", "args": {"argv": argv}, "account": None, "pad": "x" * MAX_CONTROL_BODY}
    await connection.send(HEADER.pack(Kind.REQUEST, 1) + json.dumps(body).encode())
    with pytest.raises(ConnectionClosed) as closed:
        await asyncio.wait_for(connection.recv(), 30)
    assert closed.value.rcvd is not None and closed.value.rcvd.code in (1008, 1009)
    assert not (tmp_path / "canary").exists()


async def test_a_text_message_closes_the_connection(
    hostile: tuple[HostileGateway, AgentProcess, Path],
) -> None:
    gateway, _, _ = hostile
    connection = await asyncio.wait_for(gateway.connections.get(), 60)
    await connection.send("hello")
    with pytest.raises(ConnectionClosed) as closed:
        await asyncio.wait_for(connection.recv(), 30)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1003


async def test_a_user_agent_refuses_any_other_account(tmp_path: Path) -> None:
    """Defence in depth: a gateway that routes bob's work to alice's agent is refused by
    the agent itself, and nothing is made; alice's own (or the agent's own) work runs."""
    gateway = HostileGateway()
    base = tmp_path / "user-agent"
    base.mkdir()
    passable(base)
    root = own_directory(base, unix_account("alice"))
    async with serve(gateway.handler, "127.0.0.1", 0, max_size=None) as server:
        port = server.sockets[0].getsockname()[1]
        agent = AgentProcess(
            base / "agent", f"ws://127.0.0.1:{port}", "hpcg_x", (str(root),),
            base / "agent" / "spool", user="alice",
        )  # fmt: skip
        agent.start()
        try:
            connection = await asyncio.wait_for(gateway.connections.get(), 60)
            assert gateway.hellos[0]["user"] == "alice"
            accounts: tuple[str | None, ...] = ("bob", "root", "alice", None)
            for channel, account in enumerate(accounts, start=1):
                made = request(m.Mkdir(str(root), f"{root}/as-{account}", False), account)
                answer = await ask(connection, channel, made)
                if account in ("alice", None):
                    assert answer == {"ok": True, "value": None}
                else:
                    assert answer["ok"] is False and answer["error"]["kind"] == "refused", answer
        finally:
            agent.stop()
    assert sorted(path.name for path in root.iterdir()) == ["as-None", "as-alice"]
    assert (root / "as-alice").stat().st_uid == unix_account("alice").uid
