"""A real gateway whose system ``edge`` is served by a real ``hpcgate-agent`` process on
this machine (embedded scheduler): jobs, files, health, restarts and token revocation, all
through the agent's one outbound WebSocket."""

from __future__ import annotations

import hashlib
import os
import pwd
import signal
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from tests.support.accounts import give
from tests.support.agent_process import AgentProcess
from tests.support.gateway_process import GatewayProcess, cli, new_gateway, user_client
from tests.support.jobs import ended, submit, wait_for_job

SYSTEM = "/api/v1/systems/edge"
FILES = f"{SYSTEM}/files"


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("agent")
    base.chmod(0o711)
    for name in ("alice", "bob"):
        (base / name).mkdir()
        give(base / name, name)
    return base


@pytest.fixture(scope="module")
def server(base: Path) -> Iterator[GatewayProcess]:
    config = f"""
[systems.edge]
scheduler = "embedded"
transport = "agent"
status_interval = 0.2
command_timeout = 10
roots = ["{base}/{{user}}"]
workdir = "{base}/{{user}}"
spool = "{base}/spool"
"""
    gateway = new_gateway(base / "gateway-home", config)
    started(gateway)
    yield gateway
    gateway.stop()


def started(gateway: GatewayProcess, deadline: float = 180) -> None:
    """Start the gateway, waiting longer than its own 30 s deadline (with 10 s per health
    request): on a loaded machine a start alone can take longer."""
    try:
        gateway.start()
        return
    except TimeoutError:
        pass
    until = time.monotonic() + deadline
    while time.monotonic() < until:
        try:
            if httpx.get(f"{gateway.url}/api/v1/health", timeout=10).status_code == 200:
                return
        except httpx.TransportError:
            time.sleep(0.5)
    gateway.stop()
    raise TimeoutError(f"gateway did not start:\n{gateway.log_tail()}")


def agent_token(server: GatewayProcess) -> tuple[str, str]:
    """A new agent token for ``edge``: its id and secret."""
    out = cli(server.home, "agent-token", "create", "edge").stdout.strip().splitlines()
    return out[0].split()[2], out[-1]


def new_agent(server: GatewayProcess, base: Path, name: str, token: str) -> AgentProcess:
    roots = (f"{base}/{{user}}",)
    return AgentProcess(base / name, server.url, token, roots, base / "spool")


@pytest.fixture(scope="module")
def agent(server: GatewayProcess, base: Path) -> Iterator[AgentProcess]:
    _, token = agent_token(server)
    made = new_agent(server, base, "agent", token)
    made.start()
    yield made
    made.stop()


alice = user_client("alice", "server")


def eventually(check: Callable[[], bool], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "never happened"
        time.sleep(0.1)


def served(client: httpx.Client) -> bool:
    return client.get(f"{FILES}/ls", params={"path": "."}).status_code == 200


def test_a_job_runs_through_the_agent_and_its_output_is_read_back(
    alice: httpx.Client, agent: AgentProcess, base: Path
) -> None:
    eventually(lambda: served(alice))
    job = submit(alice, "edge", script="#!/bin/sh\necho hello from $(id -un)\n", name="via-agent")
    done = wait_for_job(alice, job["id"], ended, system="edge")
    assert done["state"] == "COMPLETED", done
    (shown,) = alice.get(SYSTEM).json()["agents"]
    assert shown["user"] is None and shown["version"] and shown["host"]
    output = alice.get(f"{SYSTEM}/jobs/{job['id']}/output")
    assert output.status_code == 200, output.text
    assert "hello from alice" in output.text


def test_files_move_through_the_agent(alice: httpx.Client, agent: AgentProcess, base: Path) -> None:
    eventually(lambda: served(alice))
    data = os.urandom(3 << 20) + b"end"  # several of the agent's 512 KiB pieces
    assert alice.post(f"{FILES}/mkdir", json={"path": "data", "parents": True}).status_code == 201
    put = alice.put(f"{FILES}/upload", params={"path": "data/blob.bin"}, content=data)
    assert put.status_code == 201, put.text
    on_disk = base / "alice" / "data" / "blob.bin"
    assert on_disk.read_bytes() == data and on_disk.stat().st_uid == os.stat(base / "alice").st_uid
    listing = alice.get(f"{FILES}/ls", params={"path": "data"}).json()
    assert [(e["name"], e["size"]) for e in listing["entries"]] == [("blob.bin", len(data))]
    digest = alice.get(f"{FILES}/checksum", params={"path": "data/blob.bin"}).json()
    assert digest["checksum"] == hashlib.sha256(data).hexdigest()
    got = alice.get(f"{FILES}/download", params={"path": "data/blob.bin"})
    assert got.status_code == 200 and got.content == data
    for first, last in ((1_000_000, 2_600_000), (5, 700_000)):  # streamed from the middle
        wanted = {"Range": f"bytes={first}-{last}"}
        part = alice.get(f"{FILES}/download", params={"path": "data/blob.bin"}, headers=wanted)
        assert part.status_code == 206 and part.content == data[first : last + 1]


def test_a_path_outside_the_roots_is_refused(
    alice: httpx.Client, agent: AgentProcess, base: Path
) -> None:
    eventually(lambda: served(alice))
    answer = alice.get(f"{FILES}/download", params={"path": f"{base}/bob/x"})
    assert answer.status_code == 403, answer.text


def test_no_agent_is_503_with_retry_after_and_a_restarted_agent_resumes(
    alice: httpx.Client, agent: AgentProcess
) -> None:
    eventually(lambda: served(alice))
    agent.stop(signal.SIGKILL)
    answer = alice.get(f"{FILES}/ls", params={"path": "."})
    eventually(lambda: alice.get(f"{FILES}/ls", params={"path": "."}).status_code == 503)
    answer = alice.get(f"{FILES}/ls", params={"path": "."})
    assert answer.headers["content-type"] == "application/problem+json"
    assert float(answer.headers["retry-after"]) > 0
    eventually(lambda: not alice.get(SYSTEM).json()["healthy"])
    agent.start()
    eventually(lambda: served(alice))
    job = submit(alice, "edge", script="#!/bin/sh\ntrue\n")
    assert wait_for_job(alice, job["id"], ended, system="edge")["state"] == "COMPLETED"


def test_an_agent_token_is_good_for_nothing_else(server: GatewayProcess) -> None:
    _, token = agent_token(server)
    with server.client(token) as client:
        for url in ("/api/v1/systems", f"{SYSTEM}/jobs", "/api/v1/tokens"):
            assert client.get(url).status_code == 401, url


def test_no_token_of_the_api_gets_the_agent_scope(
    server: GatewayProcess, alice: httpx.Client
) -> None:
    admin = (server.home / "admin-token").read_text().strip()
    with server.client(admin) as client:
        answer = client.post("/api/v1/tokens", json={"user": "eve", "scopes": ["agent:serve"]})
        assert answer.status_code == 422, answer.text
        assert "agent-token create" in answer.text
        document = client.get("/openapi.json").json()
    assert alice.post("/api/v1/tokens", json={"scopes": ["agent:serve"]}).status_code == 422
    # The document offers exactly what is taken (a fuzzer once sent agent:serve from it).
    items = document["components"]["schemas"]["NewToken"]["properties"]["scopes"]["items"]
    assert "agent:serve" not in items["enum"] and "admin" in items["enum"]


def test_connect_without_an_agent_token_is_401_before_any_upgrade(
    server: GatewayProcess, alice: httpx.Client
) -> None:
    headers = {"Connection": "Upgrade", "Upgrade": "websocket", "Sec-WebSocket-Version": "13",
               "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ=="}  # fmt: skip
    for auth in ({}, {"Authorization": alice.headers["Authorization"]}):
        answer = httpx.get(f"{server.url}/api/v1/agent/connect", headers={**headers, **auth})
        assert answer.status_code == 401, answer.text
        assert answer.headers["content-type"] == "application/problem+json"


def test_a_revoked_token_cuts_its_agent_within_a_second_and_it_cannot_return(
    server: GatewayProcess, alice: httpx.Client, agent: AgentProcess, base: Path
) -> None:
    agent.stop()
    token_id, token = agent_token(server)
    second = new_agent(server, base, "second", token)
    second.start()
    try:
        eventually(lambda: served(alice))
        cli(server.home, "agent-token", "revoke", token_id)
        revoked_at = time.monotonic()
        eventually(lambda: alice.get(f"{FILES}/ls", params={"path": "."}).status_code == 503, 5)
        assert time.monotonic() - revoked_at < 1.5
        time.sleep(3)  # the agent's reconnects are refused
        assert alice.get(f"{FILES}/ls", params={"path": "."}).status_code == 503
        assert "HTTP 401" in second.log()
    finally:
        second.stop()
        agent.start()


def named(client: httpx.Client, name: str) -> list[dict[str, object]]:
    items = client.get(f"{SYSTEM}/jobs").json()["items"]
    return [job for job in items if job["name"] == name]


def test_kill_9_of_the_agent_mid_submit_makes_exactly_one_job(
    alice: httpx.Client, agent: AgentProcess
) -> None:
    eventually(lambda: served(alice))
    name = f"once-{uuid.uuid4().hex[:8]}"
    spec = {"script": "#!/bin/sh\ntrue\n", "name": name}
    with ThreadPoolExecutor(1) as pool:
        answer = pool.submit(alice.post, f"{SYSTEM}/jobs", json=spec)
        agent.stop(signal.SIGKILL)  # before, while or after the agent runs the submit
        agent.start()
        response = answer.result()
    # Its result kept and re-offered (201), or its outcome unknown (503) and the
    # submit settled by its tag: one job either way, never two.
    assert response.status_code in (201, 503), response.text
    eventually(lambda: len(named(alice, name)) == 1 and ended(named(alice, name)[0]), 60)
    (job,) = named(alice, name)
    assert job["state"] == "COMPLETED", job
    job_ids = {item["id"] for item in alice.get(f"{SYSTEM}/jobs").json()["items"]}
    assert job_ids >= {job["id"]} and len(named(alice, name)) == 1


def test_kill_9_mid_upload_publishes_the_whole_file_or_none(
    alice: httpx.Client, agent: AgentProcess, base: Path
) -> None:
    eventually(lambda: served(alice))
    assert alice.post(f"{FILES}/mkdir", json={"path": "mid", "parents": True}).status_code == 201
    folder, data = base / "alice" / "mid", os.urandom(48 << 20)
    with ThreadPoolExecutor(1) as pool:
        put = pool.submit(alice.put, f"{FILES}/upload", params={"path": "mid/b.bin"}, content=data)
        eventually(lambda: any(path.name.startswith(".b.bin") for path in folder.iterdir()))
        agent.stop(signal.SIGKILL)
        answer = put.result()
    agent.start()
    if answer.status_code == 201:  # it had finished in the meantime: whole
        assert (folder / "b.bin").read_bytes() == data
    else:
        assert answer.status_code == 503, answer.text
        assert not (folder / "b.bin").exists()


def test_kill_9_mid_download_never_passes_for_the_whole_file(
    alice: httpx.Client, agent: AgentProcess, base: Path
) -> None:
    eventually(lambda: served(alice))
    data = os.urandom(48 << 20)
    (base / "alice" / "big.bin").write_bytes(data)
    give(base / "alice" / "big.bin", "alice")
    received = bytearray()
    try:
        with alice.stream("GET", f"{FILES}/download", params={"path": "big.bin"}) as answer:
            assert answer.status_code == 200
            for chunk in answer.iter_bytes():
                if not received:
                    agent.stop(signal.SIGKILL)
                received += chunk
    except httpx.HTTPError:
        pass  # cut, and said so
    else:
        assert bytes(received) == data  # it had all arrived: whole
    finally:
        agent.start()


def test_a_second_agent_takes_over_when_the_first_dies(
    server: GatewayProcess, alice: httpx.Client, agent: AgentProcess, base: Path
) -> None:
    _, token = agent_token(server)
    standby = new_agent(server, base, "standby", token)
    standby.start()
    try:
        eventually(lambda: len(alice.get(SYSTEM).json()["agents"]) == 2)
        agent.stop(signal.SIGKILL)
        eventually(lambda: len(alice.get(SYSTEM).json()["agents"]) == 1)
        assert served(alice)
        job = submit(alice, "edge", script="#!/bin/sh\ntrue\n")
        assert wait_for_job(alice, job["id"], ended, system="edge")["state"] == "COMPLETED"
    finally:
        standby.stop()
        agent.start()


def test_an_admin_makes_lists_and_revokes_agent_tokens_over_the_api(
    server: GatewayProcess, alice: httpx.Client, agent: AgentProcess, base: Path
) -> None:
    admin = (server.home / "admin-token").read_text().strip()
    with server.client(admin) as client:
        made = client.post("/api/v1/agent-tokens", json={"system": "edge", "description": "api"})
        assert made.status_code == 201, made.text
        token = made.json()
        assert token["system"] == "edge" and token["revoked_at"] is None
        listed = {t["id"]: t for t in client.get("/api/v1/agent-tokens").json()}
        assert listed[token["id"]]["description"] == "api" and "token" not in listed[token["id"]]
        agent.stop()
        via_api = new_agent(server, base, "via-api", token["token"])
        via_api.start()
        try:
            eventually(lambda: served(alice))
            assert client.delete(f"/api/v1/agent-tokens/{token['id']}").status_code == 204
            revoked_at = time.monotonic()
            eventually(lambda: alice.get(f"{FILES}/ls", params={"path": "."}).status_code == 503)
            assert time.monotonic() - revoked_at < 1.5
            listed = {t["id"]: t for t in client.get("/api/v1/agent-tokens").json()}
            assert listed[token["id"]]["revoked_at"] is not None
            assert client.delete(f"/api/v1/agent-tokens/{token['id']}").status_code == 404
        finally:
            via_api.stop()
            agent.start()


def test_agent_tokens_over_the_api_are_for_admins_and_checked(
    server: GatewayProcess, alice: httpx.Client
) -> None:
    for answer in (
        alice.post("/api/v1/agent-tokens", json={"system": "edge"}),
        alice.get("/api/v1/agent-tokens"),
        alice.delete("/api/v1/agent-tokens/0123456789ab"),
    ):
        assert answer.status_code == 403, answer.text
        assert answer.headers["content-type"] == "application/problem+json"
    _, agent_secret = agent_token(server)
    with server.client(agent_secret) as client:  # a token never mints a token
        assert client.post("/api/v1/agent-tokens", json={"system": "edge"}).status_code == 401
    admin = (server.home / "admin-token").read_text().strip()
    before = len(cli(server.home, "agent-token", "list").stdout.splitlines())
    with server.client(admin) as client:
        for body in ({"system": "nowhere"}, {"system": "edge", "extra": 1}, {"system": ""}):
            answer = client.post("/api/v1/agent-tokens", json=body)
            assert answer.status_code == 422, answer.text
            assert answer.headers["content-type"] == "application/problem+json"
        assert client.delete("/api/v1/agent-tokens/0123456789ab").status_code == 404
        assert client.delete("/api/v1/agent-tokens/not-an-id").status_code == 422
    assert len(cli(server.home, "agent-token", "list").stdout.splitlines()) == before


def test_a_user_agent_serves_only_its_user_and_the_gateway_refuses_the_others(
    server: GatewayProcess, alice: httpx.Client, agent: AgentProcess, base: Path
) -> None:
    bob = server.client(server.token("bob"))
    made = cli(server.home, "agent-token", "create", "edge", "--user", "alice").stdout
    token = made.strip().splitlines()[-1]
    own = AgentProcess(
        base / "alice" / "agent", server.url, token, (f"{base}/{{user}}",),
        base / "alice" / "agent" / "spool", user="alice",
    )  # fmt: skip
    agent.stop()
    own.start()
    try:
        eventually(lambda: served(alice))
        (shown,) = alice.get(SYSTEM).json()["agents"]
        assert shown["user"] == "alice"
        # (no job here: this agent's engine has a spool of its own, whose job ids would
        # collide with the root agent's in the one system; its files are alice's)
        put = alice.put(f"{FILES}/upload", params={"path": "by-own-agent"}, content=b"mine")
        assert put.status_code == 201, put.text
        mine = base / "alice" / "by-own-agent"
        assert mine.read_bytes() == b"mine" and mine.stat().st_uid == pwd.getpwnam("alice").pw_uid
        refused = bob.get(f"{FILES}/ls", params={"path": "."})
        assert refused.status_code == 403, refused.text
        assert refused.headers["content-type"] == "application/problem+json"
        assert bob.post(f"{SYSTEM}/jobs", json={"script": "#!/bin/sh\ntrue\n"}).status_code == 403
        assert not (base / "bob" / "by-own-agent").exists()
        assert bob.get(f"{SYSTEM}/jobs").json()["items"] == []  # nothing left to settle
    finally:
        bob.close()
        own.stop()
        agent.start()


def held_back(data: bytes, until: threading.Event) -> Iterator[bytes]:
    """``data`` as an upload's body, in 1 MiB pieces at full speed, but for its last MiB,
    sent only once ``until`` is set (or a minute has passed): the upload runs until then."""
    piece = 1 << 20
    for at in range(0, len(data) - piece, piece):
        yield data[at : at + piece]
    until.wait(60)
    yield data[len(data) - piece :]


def test_a_revoke_under_load_fails_the_running_requests_and_publishes_nothing(
    server: GatewayProcess, alice: httpx.Client, agent: AgentProcess, base: Path
) -> None:
    """Three uploads stream through the agent when its token is revoked (each holds back
    its last MiB until the gateway has cut the agent, so all three are still running
    then, however slow the revoking command is): each fails with a 503 problem, none is
    published (their hidden partial files are all the folder holds), and the system is
    503 from then on."""
    agent.stop()
    token_id, token = agent_token(server)
    doomed = new_agent(server, base, "doomed", token)
    doomed.start()
    folder = base / "alice" / "revoked"
    cut = threading.Event()  # the uploads' last MiB waits for it
    try:
        eventually(lambda: served(alice))
        assert alice.post(f"{FILES}/mkdir", json={"path": "revoked"}).status_code == 201
        data = os.urandom(48 << 20)
        with ThreadPoolExecutor(4) as pool:
            puts = [
                pool.submit(alice.put, f"{FILES}/upload", params={"path": f"revoked/{n}"},
                            content=held_back(data, cut))
                for n in range(3)
            ]  # fmt: skip
            try:
                eventually(lambda: len(list(folder.iterdir())) == 3)  # each one's hidden file
                cli(server.home, "agent-token", "revoke", token_id)
                # the gateway polls the store for revokes (the CLI's: another process's)
                eventually(lambda: f"agent token {token_id} was revoked" in server.log())
            finally:
                cut.set()
            answers = [put.result() for put in puts]
        for answer in answers:
            assert answer.status_code == 503, answer.text
            assert answer.headers["content-type"] == "application/problem+json"
        assert [path.name for path in folder.iterdir() if not path.name.startswith(".")] == []
        assert alice.get(f"{FILES}/ls", params={"path": "."}).status_code == 503
    finally:
        doomed.stop()
        agent.start()


def test_a_token_for_one_user_s_agent_is_refused_to_a_root_agent(
    server: GatewayProcess, alice: httpx.Client, agent: AgentProcess, base: Path
) -> None:
    admin = (server.home / "admin-token").read_text().strip()
    with server.client(admin) as client:
        made = client.post("/api/v1/agent-tokens", json={"system": "edge", "user": "alice"})
        assert made.status_code == 201 and made.json()["user"] == "alice", made.text
    agent.stop()
    lying = new_agent(server, base, "lying", made.json()["token"])  # root, says so
    lying.start()
    try:
        eventually(lambda: "for 'alice'" in lying.log())  # its connection, closed at HELLO
        assert alice.get(SYSTEM).json()["agents"] == []
        with server.client(server.token("carol")) as carol:  # her account: never looked up
            shown = carol.get(SYSTEM)  # described still, though nothing can reach the system
            assert shown.status_code == 200, shown.text
            assert shown.json()["agents"] == [] and shown.json()["roots"] is None
        assert alice.get(f"{FILES}/ls", params={"path": "."}).status_code == 503
    finally:
        lying.stop()
        agent.start()
