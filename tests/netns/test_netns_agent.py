"""The Slurm tier's main scenarios through an agent that can only dial out: submit, watch
to completion, output, cancel; upload, download, list; health and partitions. Every
command and file operation crosses the namespace's one-way door inside the agent's one
WebSocket."""

from __future__ import annotations

import hashlib
import os
import pwd
import shutil
import socket
import subprocess
import time
from typing import Any

import httpx
import pytest

from tests.netns.conftest import HOST_ADDR, NAME, SYSTEM
from tests.support.agent_process import AgentProcess
from tests.support.gateway_process import GatewayProcess
from tests.support.jobs import ended, finished, submit, wait_for_job

BASE = f"/api/v1/systems/{SYSTEM}"
JOBS = f"{BASE}/jobs"
FILES = f"{BASE}/files"
pytestmark = pytest.mark.usefixtures("netns_agent")


def run(client: httpx.Client, script: str, **spec: Any) -> dict[str, Any]:
    return submit(client, SYSTEM, script=f"#!/bin/bash\n{script}\n", **spec)


def finish(client: httpx.Client, job: dict[str, Any]) -> dict[str, Any]:
    return wait_for_job(client, job["id"], ended, system=SYSTEM, timeout=60)


def test_the_agent_is_inside_and_nothing_reaches_it(
    alice: httpx.Client, netns_agent: AgentProcess
) -> None:
    (agent,) = alice.get(BASE).json()["agents"]
    assert agent["user"] is None  # a root agent
    with socket.socket() as probe:  # the door drops what this side starts
        probe.settimeout(1.5)
        with pytest.raises((TimeoutError, ConnectionRefusedError)):
            probe.connect(("10.213.0.2", 22))


def test_a_job_runs_as_alice_and_its_output_is_read(alice: httpx.Client) -> None:
    job = finish(alice, run(alice, "id -un; pwd; echo $GREETING", environment={"GREETING": "hi"}))
    assert (job["state"], job["exit_code"]) == ("COMPLETED", 0)
    home = pwd.getpwnam("alice").pw_dir
    assert job["working_directory"] == home
    assert alice.get(f"{JOBS}/{job['id']}/output").text == f"alice\n{home}\nhi\n"


def test_cancel(alice: httpx.Client) -> None:
    job = run(alice, "sleep 300")
    wait_for_job(alice, job["id"], lambda j: j["state"] == "RUNNING", system=SYSTEM)
    assert alice.delete(f"{JOBS}/{job['id']}").status_code == 202
    assert finish(alice, job)["state"] == "CANCELLED"


def test_files_upload_list_download(alice: httpx.Client) -> None:
    folder = f"netns-{os.urandom(4).hex()}"
    assert alice.post(f"{FILES}/mkdir", json={"path": folder}).status_code == 201
    data = os.urandom(1 << 20) + b"end"
    put = alice.put(f"{FILES}/upload", params={"path": f"{folder}/blob"}, content=data)
    assert put.status_code == 201, put.text
    on_disk = os.path.join(pwd.getpwnam("alice").pw_dir, folder, "blob")
    assert os.stat(on_disk).st_uid == pwd.getpwnam("alice").pw_uid
    listing = alice.get(f"{FILES}/ls", params={"path": folder}).json()
    assert [(e["name"], e["size"]) for e in listing["entries"]] == [("blob", len(data))]
    got = alice.get(f"{FILES}/download", params={"path": f"{folder}/blob"})
    assert got.status_code == 200
    assert hashlib.sha256(got.content).digest() == hashlib.sha256(data).digest()
    removed = alice.delete(f"{FILES}/rm", params={"path": folder, "recursive": True})
    assert removed.status_code == 204, removed.text
    assert not os.path.exists(on_disk)


def test_health_and_partitions(alice: httpx.Client) -> None:
    system = alice.get(BASE).json()
    assert (system["scheduler"], system["healthy"]) == ("slurm", True)
    partitions = {p["name"]: p for p in alice.get(f"{BASE}/partitions").json()}
    assert set(partitions) == {"debug", "batch"} and partitions["debug"]["default"]


def test_a_copy_running_when_the_connection_is_cut_completes_after_the_reconnect(
    alice: httpx.Client, netns_agent: AgentProcess, netns_gateway: GatewayProcess
) -> None:
    entry = pwd.getpwnam("alice")
    folder = f"cut-{os.urandom(4).hex()}"
    assert alice.post(f"{FILES}/mkdir", json={"path": folder}).status_code == 201
    source = os.path.join(entry.pw_dir, folder, "big")
    with open(source, "wb") as out:
        for _ in range(256):
            out.write(os.urandom(1 << 20))
    os.chown(source, entry.pw_uid, entry.pw_gid)
    copy = {"source": f"{folder}/big", "target": f"{folder}/copy"}
    started = alice.post(f"{FILES}/cp", json=copy)
    target = os.path.join(entry.pw_dir, folder, "copy")
    deadline = time.monotonic() + 60
    while not os.path.exists(target):  # cp runs in the agent
        assert time.monotonic() < deadline, "the copy never started"
        time.sleep(0.02)
    port = f"{netns_gateway.port}"
    cut = ["ip", "netns", "exec", NAME, "ss", "-K", "dst", HOST_ADDR, "dport", "=", port]
    subprocess.run(cut, check=True, capture_output=True)  # the agent's socket, destroyed
    task = finished(alice, started, timeout=120)
    assert task["state"] == "completed", task
    with open(source, "rb") as one, open(target, "rb") as other:
        assert _digest(one) == _digest(other)
    assert "connection to the gateway ended" in netns_agent.log()
    shutil.rmtree(os.path.join(entry.pw_dir, folder))


def _digest(stream: Any) -> bytes:
    digest = hashlib.sha256()
    while chunk := stream.read(1 << 20):
        digest.update(chunk)
    return digest.digest()
