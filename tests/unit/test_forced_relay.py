"""hpcgate-forced's relay: its request's shape, and which replica jobs it reads from the
scheduler's answers (recorded from the test cluster of scripts/slurm; PBS's reconstructed
in the shape of tests/unit/recorded/pbs)."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import select
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from hpcgate.forced import (
    RELAY_READY,
    Options,
    Refused,
    argv_of,
    is_relay_request,
    is_service_job,
    parse_options,
    pbs_service_hosts,
    relay_target,
    slurm_node_names,
    slurm_service_nodes,
)

RECORDED = Path(__file__).parent / "recorded"
SQUEUE = "\n".join(
    [
        "node1|hpcgate-echo-31555",
        "node[2-3]|hpcgate-llama-8-40000",
        "node4|hpcgate--31555",  # no service name
        "node4|hpcgate-echo-131555",  # another port, ending in this one's digits
        "node4|echo-31555",
        "node2|a|b hpcgate-x-31555",  # a name with the separator in it
        "",
    ]
)
SCONTROL = (
    "NodeName=node2 Arch=x86_64 CoresPerSocket=1  CPUAlloc=1 State=MIXED NodeAddr=10.0.0.2"
    " NodeHostName=n2.cluster Port=17002 Version=22.05.8 OS=Linux 6.1 #1 SMP Reason=x NodeAddr=y\n"
    "NodeName=node3 Arch=x86_64 NodeAddr=10.0.0.3 NodeHostName=n3.cluster Port=17003\n"
)


@pytest.mark.parametrize(
    "request_",
    ["relay node1 31555", "relay 127.0.0.1 1024", "relay fe80::1 65535", "relay a-b.c 40000"],
)
def test_a_relay_request_names_a_host_and_a_port(request_: str) -> None:
    assert is_relay_request(request_)
    _, host, port = request_.split()
    assert relay_target(request_, Options()) == (host, int(port))


@pytest.mark.parametrize(
    ("request_", "why"),
    [
        ("relay", "only as 'relay HOST PORT'"),
        ("relay node1", "only as 'relay HOST PORT'"),
        ("relay node1 31555 more", "only as 'relay HOST PORT'"),
        ("relay  node1 31555", "only as 'relay HOST PORT'"),  # not shlex.join's form
        ("relay node1 31555; id", "only as 'relay HOST PORT'"),
        ("relay 'node1' 31555", "only as 'relay HOST PORT'"),
        ("relay 'node1 x' 31555", "node's name or address"),
        ("relay -oProxyCommand=x 31555", "node's name or address"),
        ("relay '$(id)' 31555", "node's name or address"),
        ("relay node1/x 31555", "node's name or address"),
        ("relay " + "a" * 254 + " 31555", "node's name or address"),
        ("relay node1 22", "ports 1024 to 65535 only"),
        ("relay node1 1023", "ports 1024 to 65535 only"),
        ("relay node1 0", "ports 1024 to 65535 only"),
        ("relay node1 65536", "ports 1024 to 65535 only"),
        ("relay node1 031555", "must be a number"),
        ("relay node1 -1", "must be a number"),
        ("relay node1 3e4", "must be a number"),
        ("relay node1 '٣١٥٥٥'", "must be a number"),  # Arabic-Indic digits
        ("relay node1 \"31555'", "unparseable"),
    ],
)
def test_junk_relay_requests_are_refused(request_: str, why: str) -> None:
    assert is_relay_request(request_)
    with pytest.raises(Refused, match=why):
        relay_target(request_, Options())


def test_the_relay_is_a_default_program_and_can_be_left_out() -> None:
    assert relay_target("relay node1 31555", parse_options([])) == ("node1", 31555)
    with pytest.raises(Refused, match="'relay' is not allowed here"):
        relay_target("relay node1 31555", parse_options(["--allow", "squeue"]))
    allowed = parse_options(["--allow", "relay"])
    assert relay_target("relay node1 31555", allowed) == ("node1", 31555)


@pytest.mark.parametrize(
    "request_", ["timeout -s KILL 5 relay node1 31555", "env -- A=1 relay node1 31555"]
)
def test_the_relay_runs_only_alone(request_: str) -> None:
    """Not behind the wrappers of commands, where it would be a program on PATH."""
    assert not is_relay_request(request_)
    with pytest.raises(Refused, match="relay runs only alone"):
        argv_of(request_, Options().allowed)


def test_other_requests_are_not_the_relay() -> None:
    assert not any(map(is_relay_request, [None, "", "relayd x", "squeue", " relay a 1024"]))


def test_a_replica_job_is_named_after_its_port() -> None:
    assert is_service_job("hpcgate-echo-31555", 31555)
    assert is_service_job("hpcgate-a-b-31555", 31555)
    for name in ("hpcgate--31555", "hpcgate-echo-131555", "echo-31555", "hpcgate-echo-3155"):
        assert not is_service_job(name, 31555), name


def test_slurm_replicas_are_read_from_squeue() -> None:
    assert slurm_service_nodes(SQUEUE, 31555) == ["node1"]
    assert slurm_service_nodes(SQUEUE, 40000) == ["node[2-3]"]
    assert slurm_service_nodes(SQUEUE, 40001) == []


def test_slurm_nodes_are_named_by_name_address_and_host_name() -> None:
    names = slurm_node_names(SCONTROL)
    assert names == {"node2", "node3", "10.0.0.2", "10.0.0.3", "n2.cluster", "n3.cluster"}


def qstat(*jobs: dict[str, object]) -> str:
    listed = {f"{n}.pbs01": job for n, job in enumerate(jobs)}
    return json.dumps({"pbs_version": "23.06.06", "Jobs": listed})


def pbs_job(
    name: str, state: str = "R", owner: str = "svc", host: str = "node07/0*4"
) -> dict[str, object]:
    return {
        "Job_Name": name,
        "Job_Owner": f"{owner}@login01",
        "job_state": state,
        "exec_host": host,
    }


def test_pbs_replicas_are_read_from_qstat() -> None:
    listed = qstat(
        pbs_job("hpcgate-echo-31555", host="node07/0*2+node08/1"),
        pbs_job("hpcgate-echo-31555", state="Q", host="node09/0"),
        pbs_job("hpcgate-echo-31555", owner="alice", host="node10/0"),
        pbs_job("hpcgate-other-31556", host="node11/0"),
    )
    assert pbs_service_hosts(listed, "svc", 31555) == {"node07", "node08"}
    assert pbs_service_hosts(listed, "svc", 40000) == set()


def test_the_recorded_pbs_jobs_are_no_replicas() -> None:
    listed = (RECORDED / "pbs" / "qstat_jobs.json").read_text()
    assert pbs_service_hosts(listed, "alice", 31555) == set()


def test_an_unreadable_qstat_answer_refuses() -> None:
    with pytest.raises(Refused, match="not the JSON expected"):
        pbs_service_hosts("qstat: garbage", "svc", 31555)


# ---------------------------------------------------------------- the pump, as a process

PUMP = (
    "import socket, sys\n"
    "from hpcgate.forced import pump\n"
    "sys.exit(pump(socket.create_connection(('127.0.0.1', int(sys.argv[1])))))\n"
)


@contextlib.contextmanager
def server(handle: Callable[[socket.socket], None]) -> Iterator[int]:
    """A TCP server on 127.0.0.1 whose one connection ``handle`` serves; its port."""
    listener = socket.create_server(("127.0.0.1", 0))
    thread = threading.Thread(target=lambda: handle(listener.accept()[0]), daemon=True)
    thread.start()
    with listener:
        yield listener.getsockname()[1]
    thread.join(10)


def echo(connection: socket.socket) -> None:
    with connection:
        while chunk := connection.recv(1 << 16):
            connection.sendall(chunk)
        connection.shutdown(socket.SHUT_WR)


def pump(port: int) -> subprocess.Popen[bytes]:
    argv = [sys.executable, "-c", PUMP, str(port)]
    return subprocess.Popen(
        argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )


def read_to_end(fd: int, seconds: float = 10) -> bytes:
    """All that comes from ``fd`` until its end, which must come within ``seconds``."""
    got = b""
    deadline = time.monotonic() + seconds
    while select.select([fd], [], [], max(0, deadline - time.monotonic()))[0]:
        chunk = os.read(fd, 1 << 16)
        if not chunk:
            return got
        got += chunk
    raise AssertionError(f"no end after {seconds:g} s, only {got!r}")


def test_the_pump_copies_both_ways_and_passes_on_each_end() -> None:
    """stdin's end reaches the server as a half-close; the server's end closes stdout."""
    data = os.urandom(3 << 20)
    with server(echo) as port:
        process = pump(port)
        out, err = process.communicate(data, timeout=60)
    assert hashlib.sha256(out).digest() == hashlib.sha256(data).digest()
    assert (process.returncode, err) == (0, RELAY_READY)


def test_the_servers_end_reaches_stdout_while_stdin_is_open() -> None:
    """A server that answers and closes first: the output ends (sshd sends the EOF once
    stdout and stderr are closed), and the relay still takes stdin until its end."""

    def greet(connection: socket.socket) -> None:
        with connection:
            connection.sendall(b"hello")
            connection.shutdown(socket.SHUT_WR)
            connection.recv(10)

    with server(greet) as port:
        process = pump(port)
        assert process.stdout is not None and process.stderr is not None
        assert read_to_end(process.stdout.fileno()) == b"hello"
        assert read_to_end(process.stderr.fileno()) == RELAY_READY
        assert process.poll() is None
        process.communicate(b"bye", timeout=10)
    assert process.returncode == 0


def test_the_pump_ends_when_its_reader_goes_away() -> None:
    """Both ends open, then stdout's reader closes (sshd's channel closed): it exits."""
    with server(echo) as port:
        process = pump(port)
        assert process.stdin is not None and process.stdout is not None
        process.stdin.write(b"x")
        process.stdin.flush()
        assert process.stdout.read(1) == b"x"
        process.stdout.close()
        assert process.wait(timeout=10) == 0
        process.stdin.close()
        process.stderr.close()  # type: ignore[union-attr]
