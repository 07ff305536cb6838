"""Downloads through an agent on a data connection of their own (``handle_read_bulk``): a
real gateway, a real ``hpcgate-agent`` process (and, where a stream id must be caught, the
agent's own dialer run in this process), real files.

The tests share one gateway; each starts the agent it needs (:func:`only_agent`).
"""

from __future__ import annotations

import hashlib
import os
import queue
import signal
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import anyio
import httpx
import pytest
from anyio.from_thread import start_blocking_portal

from hpcgate.agent import dial
from hpcgate.agent.bulk import BulkSender
from hpcgate.agent.config import AgentConfig
from hpcgate.agentwire import messages as m
from hpcgate.transports.filesystem import OpenFile
from tests.agent.edge import edge_system
from tests.agent.test_agent_gateway import agent_token
from tests.support.accounts import give, passable
from tests.support.agent_process import AgentProcess
from tests.support.gateway_process import GatewayProcess, cli
from tests.support.polling import wait_until

SYSTEM = "/api/v1/systems/edge"
FILES = f"{SYSTEM}/files"
STREAMS = "/api/v1/agent/streams"


@pytest.fixture(scope="module")
def started(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[GatewayProcess, Path, AgentProcess]]:
    base = tmp_path_factory.mktemp("agent-bulk")
    with edge_system(base, ("alice",), 30) as (gateway, agent):
        yield gateway, base, agent


@pytest.fixture(scope="module")
def edge(started: tuple[GatewayProcess, Path, AgentProcess]) -> tuple[GatewayProcess, Path]:
    return started[0], started[1]


@pytest.fixture(scope="module")
def alice(edge: tuple[GatewayProcess, Path]) -> Iterator[httpx.Client]:
    gateway, _ = edge
    with gateway.client(gateway.token("alice")) as client:
        client.timeout = httpx.Timeout(60)
        yield client


def agents(client: httpx.Client) -> int:
    return len(client.get(SYSTEM).json()["agents"])


@pytest.fixture(scope="module")
def token(started: tuple[GatewayProcess, Path, AgentProcess]) -> str:
    """The agent token of ``edge`` (every agent here uses it; one at a time)."""
    return started[2].token


@contextmanager
def only_agent(
    edge: tuple[GatewayProcess, Path], alice: httpx.Client, token: str, name: str, extra: str = ""
) -> Iterator[AgentProcess]:
    """A real agent process, once no other is connected; killed on the way out."""
    gateway, base = edge
    assert wait_until(lambda: agents(alice) == 0, 30)
    made = AgentProcess(
        base / f"agent-{name}", gateway.url, token, (f"{base}/{{user}}",), base / "spool",
        extra=extra,
    )  # fmt: skip
    made.start()
    assert wait_until(lambda: agents(alice) == 1, 30)
    try:
        yield made
    finally:
        made.stop(signal.SIGKILL)


@pytest.fixture(scope="module")
def serving(
    started: tuple[GatewayProcess, Path, AgentProcess], alice: httpx.Client
) -> AgentProcess:
    """The agent the gateway started with (bulk reads on), of the first tests (the third
    kills it)."""
    assert wait_until(lambda: agents(alice) == 1, 30)
    return started[2]


@pytest.fixture
def serving_frames(
    edge: tuple[GatewayProcess, Path], alice: httpx.Client, token: str
) -> Iterator[AgentProcess]:
    """An agent that takes no bulk reads (as one older than them)."""
    with only_agent(edge, alice, token, "frames", "bulk_reads = false\n") as made:
        yield made


def a_file(base: Path, name: str, data: bytes | int) -> Path:
    """alice's file ``name``: ``data``, or that many zero bytes (sparse: nothing to write)."""
    path = base / "alice" / name
    if isinstance(data, int):
        with path.open("wb") as f:
            f.truncate(data)
    else:
        path.write_bytes(data)
    give(path, "alice")
    passable(path)  # again: another pytest session on this machine closes /tmp/pytest-of-*
    return path


def posted_streams(gateway: GatewayProcess) -> int:
    """How many agent data connections the gateway's access log shows."""
    return gateway.log().count(f'"POST {STREAMS}/')


def test_a_64_mib_download_comes_whole_over_the_data_connection(
    edge: tuple[GatewayProcess, Path], alice: httpx.Client, serving: AgentProcess
) -> None:
    gateway, base = edge
    data = os.urandom(64 << 20)
    a_file(base, "big.bin", data)
    before = posted_streams(gateway)
    digest = hashlib.sha256()
    with alice.stream("GET", f"{FILES}/download", params={"path": "big.bin"}) as answer:
        assert answer.status_code == 200, answer.read()
        for chunk in answer.iter_bytes():
            digest.update(chunk)
    assert digest.hexdigest() == hashlib.sha256(data).hexdigest()
    assert wait_until(
        lambda: posted_streams(gateway) == before + 1, 30
    )  # one data connection, not frames
    ranged = alice.get(
        f"{FILES}/download", params={"path": "big.bin"}, headers={"Range": "bytes=5-1048580"}
    )
    assert ranged.status_code == 206 and ranged.content == data[5:1048581]


def _rchar(pid: int) -> int:
    """Bytes process ``pid`` has read (files and sockets)."""
    for line in Path(f"/proc/{pid}/io").read_text().splitlines():
        if line.startswith("rchar:"):
            return int(line.split()[1])
    raise AssertionError("no rchar")


def _rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def _settled(read: object) -> int:
    """The counter ``read()`` once it moves by less than 8 MiB in half a second: an idle
    agent reads a few MB a second besides (its engine's files); one reading the file reads
    hundreds of MiB a second."""
    last = read()  # type: ignore[operator]
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        time.sleep(0.5)
        now = read()  # type: ignore[operator]
        if now - last < 8 << 20:
            return int(now)
        last = now
    raise AssertionError("it never stopped")


def test_a_client_that_stops_reading_stops_the_agents_reads(
    edge: tuple[GatewayProcess, Path], alice: httpx.Client, serving: AgentProcess
) -> None:
    gateway, base = edge
    size = 1 << 30
    a_file(base, "huge.bin", size)
    assert serving.process is not None and gateway.process is not None
    agent_pid, gateway_pid = serving.process.pid, gateway.process.pid
    rss_before, read_before = _rss(gateway_pid), _rchar(agent_pid)
    with alice.stream("GET", f"{FILES}/download", params={"path": "huge.bin"}) as answer:
        assert answer.status_code == 200
        next(answer.iter_raw(65536))  # then nothing more is read
        read = _settled(lambda: _rchar(agent_pid)) - read_before
        grown = _rss(gateway_pid) - rss_before
    assert read < 256 << 20, read  # of 1 GiB: the agent stopped reading
    assert grown < 64 << 20, grown  # and the gateway holds a bounded part of it


def test_the_agent_killed_mid_download_never_passes_for_the_whole_file(
    edge: tuple[GatewayProcess, Path], alice: httpx.Client, serving: AgentProcess
) -> None:
    _, base = edge
    size = 256 << 20
    a_file(base, "cut.bin", size)
    received = 0

    def read_all() -> None:
        nonlocal received
        with alice.stream("GET", f"{FILES}/download", params={"path": "cut.bin"}) as answer:
            assert answer.status_code == 200
            for chunk in answer.iter_raw(1 << 20):
                if not received:
                    serving.stop(signal.SIGKILL)  # the rest in flight is a bounded few MiB
                received += len(chunk)

    with pytest.raises(httpx.HTTPError):
        read_all()
    assert received < size


def test_an_agent_without_the_feature_downloads_over_its_websocket(
    edge: tuple[GatewayProcess, Path], alice: httpx.Client, serving_frames: AgentProcess
) -> None:
    gateway, base = edge
    data = os.urandom(8 << 20)
    a_file(base, "old.bin", data)
    before = posted_streams(gateway)
    answer = alice.get(f"{FILES}/download", params={"path": "old.bin"})
    assert answer.status_code == 200 and answer.content == data
    assert posted_streams(gateway) == before


class HeldSender(BulkSender):
    """The agent's own sender, which first hands each stream id to the test (as a peer
    that saw it would have it) and waits for the test's go."""

    ids: queue.Queue[str] = queue.Queue()
    go = threading.Event()

    async def send(self, stream: str, opened: OpenFile, offset: int, size: int) -> int:
        HeldSender.ids.put(stream)
        await anyio.to_thread.run_sync(HeldSender.go.wait, 20)
        return await super().send(stream, opened, offset, size)


@pytest.fixture
def held_agent(
    edge: tuple[GatewayProcess, Path],
    alice: httpx.Client,
    token: str,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[str]:
    """The agent's dialer, run in this process with :class:`HeldSender`; its token."""
    gateway, base = edge
    assert wait_until(lambda: agents(alice) == 0, 30)
    (base / "held").mkdir(exist_ok=True)
    (base / "held" / "token").write_text(token)
    config = AgentConfig(
        gateway=gateway.url, token_file=base / "held" / "token", scheduler="embedded",
        roots=(f"{base}/{{user}}",), state_dir=base / "held", embedded_spool=base / "spool",
    )  # fmt: skip
    monkeypatch.setattr(dial, "BulkSender", HeldSender)
    HeldSender.go.clear()
    with start_blocking_portal() as portal:
        running = portal.start_task_soon(dial.Dialer(config).forever)
        try:
            assert wait_until(lambda: agents(alice) == 1, 30)
            yield token
        finally:
            HeldSender.go.set()
            running.cancel()
    assert wait_until(lambda: agents(alice) == 0, 30)


def test_a_stream_id_serves_only_its_agents_token_and_only_once(
    edge: tuple[GatewayProcess, Path], alice: httpx.Client, held_agent: str
) -> None:
    gateway, base = edge
    data = os.urandom(3 << 20)
    a_file(base, "held.bin", data)
    _, other_token = agent_token(gateway)  # another agent's, of the same system
    user_token = str(alice.headers["Authorization"]).removeprefix("Bearer ")
    with ThreadPoolExecutor(1) as pool:
        download = pool.submit(alice.get, f"{FILES}/download", params={"path": "held.bin"})
        stream = HeldSender.ids.get(timeout=20)
        assert m.STREAM_ID.fullmatch(stream)
        url = f"{gateway.url}{STREAMS}/{stream}"
        for sent, refused in ((other_token, 404), (user_token, 401), ("", 401)):
            headers = {"Authorization": f"Bearer {sent}"} if sent else {}
            answer = httpx.post(url, content=b"x" * 10, headers=headers)
            assert answer.status_code == refused, answer.text
            assert answer.headers["content-type"] == "application/problem+json"
        HeldSender.go.set()  # the agent's own POST: the download goes on, whole
        got = download.result(30)
    assert got.status_code == 200 and got.content == data
    replayed = httpx.post(url, content=b"x", headers={"Authorization": f"Bearer {held_agent}"})
    assert replayed.status_code == 404, replayed.text


def hidden_uploads(base: Path) -> list[str]:
    return sorted(p.name for p in (base / "alice").glob(".up.bin.hpcgate-upload-*"))


def test_a_revoked_agents_partial_upload_is_discarded_by_the_next_agent(
    edge: tuple[GatewayProcess, Path], alice: httpx.Client, token: str
) -> None:
    gateway, base = edge
    token_id, secret = agent_token(gateway)
    release = threading.Event()

    def body() -> Iterator[bytes]:
        yield os.urandom(2 << 20)
        release.wait(30)
        yield os.urandom(2 << 20)

    with only_agent(edge, alice, secret, "revoked"), ThreadPoolExecutor(1) as pool:
        where = {"path": "up.bin"}
        put = pool.submit(alice.put, f"{FILES}/upload", params=where, content=body())
        assert wait_until(lambda: bool(hidden_uploads(base)), 30)  # its first bytes are written
        cli(gateway.home, "agent-token", "revoke", token_id)
        assert wait_until(lambda: agents(alice) == 0, 30)
        release.set()
        assert put.result(30).status_code == 503
    assert hidden_uploads(base)  # no agent could remove it
    with only_agent(edge, alice, token, "next"):
        assert wait_until(lambda: not hidden_uploads(base), 30)
    assert not (base / "alice" / "up.bin").exists()
