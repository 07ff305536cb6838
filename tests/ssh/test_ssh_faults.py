"""sshd restarted under load (issue 6): requests fail cleanly (503/504 problem+json) or
succeed, none hangs, the pool recovers by itself, and no submit is lost or doubled.

A multi-user gateway process reaches the real Slurm (scripts/slurm) through an sshd of the
test's own (the shared one serves other tests meanwhile). Client threads, as alice and
bob, read jobs, list them, read job output (SFTP), ask for partitions (a command) and
submit jobs (SFTP mkdir, then sbatch) with an Idempotency-Key; meanwhile sshd restarts.
"""

from __future__ import annotations

import json
import pwd
import shutil
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.gateway_process import GatewayProcess, new_gateway
from tests.support.jobs import ended, submit, wait_for_job
from tests.support.slurm import ensure_cluster
from tests.support.sshd import Sshd, own_sshd

SYSTEM = "remote"
BASE = f"/api/v1/systems/{SYSTEM}"
JOBS = f"{BASE}/jobs"
WORKDIR = f"hpcgate-faults-{uuid.uuid4().hex[:8]}"
USERS = ("alice", "bob")
CLIENTS = 24  # threads, half alice, half bob
CONNECT_TIMEOUT = 3.0
COMMAND_TIMEOUT = 5.0
# The longest a request may take: it waits at most for its account's connection to be
# opened (connect_timeout; a refused one fails at once) and for a channel on it
# (connect_timeout: sshd's MaxSessions), then its command is killed after command_timeout
# (a submit's mkdir over SFTP before it is one round trip). A request cut off by the
# restart fails at once; one whose channel could not open is tried once more, at once.
BOUND = COMMAND_TIMEOUT + 2 * CONNECT_TIMEOUT
RECOVERY = 5.0  # seconds after sshd is back from which every request must succeed
# A 503 submit is kept and settled by the watcher from its tag after command_timeout + 5 s;
# until then a retry with its key is a 409 (in progress).
SETTLE = COMMAND_TIMEOUT + 5 + 10
PROBLEM = "application/problem+json"


def config(sshd: Sshd) -> str:
    return f"""
[systems.{SYSTEM}]
scheduler = "slurm"
transport = "ssh"
status_interval = 0.5
info_cache = 0
command_timeout = {COMMAND_TIMEOUT}
workdir = "{{home}}/{WORKDIR}"

{sshd.table(SYSTEM, connect_timeout=CONNECT_TIMEOUT)}
[users]
mode = "multi"
"""


@pytest.fixture
def sshd(tmp_path: Path) -> Iterator[Sshd]:
    """An sshd of the test's own: what one test's restart leaves (sessions kept by
    ``--keep-sessions`` outlive the listener) does not reach another."""
    with own_sshd(tmp_path / "sshd") as server:
        yield server


@pytest.fixture
def gateway(sshd: Sshd, tmp_path: Path) -> Iterator[GatewayProcess]:
    ensure_cluster()
    server = new_gateway(tmp_path / "gateway", config(sshd))
    server.start()
    yield server
    server.stop()
    for user in USERS:
        shutil.rmtree(f"{pwd.getpwnam(user).pw_dir}/{WORKDIR}", ignore_errors=True)


@dataclass(frozen=True)
class Outcome:
    """One request of the load and how it went."""

    operation: str
    user: str
    started: float  # time.monotonic()
    seconds: float
    status: int | None  # None: no complete HTTP answer (the client's error is in detail)
    content_type: str
    detail: str
    key: str | None = None  # a submit's Idempotency-Key (also the job's name)
    job_id: str | None = None  # an acknowledged submit's job

    @property
    def ok(self) -> bool:
        return self.status is not None and self.status < 300

    def __str__(self) -> str:
        return f"{self.operation} as {self.user}: {self.status} {self.detail[:200]}"


Operation = Callable[[httpx.Client, str], Outcome]


@dataclass
class Load:
    """Client threads that repeat a mix of requests until stopped."""

    gateway: GatewayProcess
    tokens: dict[str, str]
    outputs: dict[str, tuple[str, str]]  # user -> (a finished job of theirs, its output)
    prefix: str  # of the names (and Idempotency-Keys) of the jobs submitted here

    def __post_init__(self) -> None:
        self.outcomes: list[Outcome] = []
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._count = 0
        self._threads = [
            threading.Thread(target=self._client, args=(USERS[n % 2], n), daemon=True)
            for n in range(CLIENTS)
        ]

    def __enter__(self) -> Load:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=90)
        assert not any(thread.is_alive() for thread in self._threads), "a client hangs"

    def _client(self, user: str, n: int) -> None:
        operations: list[Operation] = [self._get, self._list, self._output, self._partitions]
        if n % 3 == 0:
            operations.append(self._submit)
        with self.gateway.client(self.tokens[user]) as client:
            client.timeout = httpx.Timeout(60)
            step = n
            while not self._stop.is_set():
                self._record(operations[step % len(operations)], client, user)
                step += 1
                time.sleep(0.02)

    def _record(self, operation: Operation, client: httpx.Client, user: str) -> None:
        started = time.monotonic()
        try:
            outcome = operation(client, user)
        except httpx.HTTPError as exc:  # a timeout, or an answer cut off
            outcome = Outcome(operation.__name__.lstrip("_"), user, 0, 0, None, "", repr(exc))
        outcome = replace(outcome, started=started, seconds=time.monotonic() - started)
        with self._lock:
            self.outcomes.append(outcome)

    def _get(self, client: httpx.Client, user: str) -> Outcome:
        job_id = self.outputs[user][0]
        return _outcome("get", user, client.get(f"{JOBS}/{job_id}"))

    def _list(self, client: httpx.Client, user: str) -> Outcome:
        return _outcome("list", user, client.get(JOBS, params={"limit": 20}))

    def _partitions(self, client: httpx.Client, user: str) -> Outcome:
        return _outcome("partitions", user, client.get(f"{BASE}/partitions"))

    def _output(self, client: httpx.Client, user: str) -> Outcome:
        job_id, text = self.outputs[user]
        response = client.get(f"{JOBS}/{job_id}/output")
        outcome = _outcome("output", user, response)
        if outcome.ok and response.text != text:
            return Outcome("output", user, 0, 0, None, "", f"wrong output {response.text!r}")
        return outcome

    def _submit(self, client: httpx.Client, user: str) -> Outcome:
        with self._lock:
            self._count += 1
            key = f"{self.prefix}-{self._count}"
        response = client.post(JOBS, json=job(key), headers={"Idempotency-Key": key})
        outcome = _outcome("submit", user, response)
        return replace(outcome, key=key, job_id=response.json()["id"] if outcome.ok else None)


def _outcome(operation: str, user: str, response: httpx.Response) -> Outcome:
    content_type = response.headers.get("content-type", "")
    detail = response.text if response.status_code >= 300 else ""
    return Outcome(operation, user, 0, 0, response.status_code, content_type, detail)


def job(name: str) -> dict[str, Any]:
    return {"script": "#!/bin/bash\ntrue\n", "name": name}


def slurm_jobs(prefix: str) -> dict[str, set[str]]:
    """The ids of the jobs Slurm has (live, or in its accounting) by name, for the names
    starting with ``prefix``."""
    live = ["squeue", "--all", "--noheader", "--states=all", "--format=%i|%j"]
    past = ["sacct", "--allusers", "-X", "-n", "-P", "--starttime=now-1hours"]
    found: dict[str, set[str]] = {}
    for argv in (live, [*past, "--format=JobID,JobName"]):
        lines = subprocess.run(argv, capture_output=True, text=True, check=True).stdout
        for line in lines.splitlines():
            job_id, _, name = line.partition("|")
            if name.startswith(f"{prefix}-"):
                found.setdefault(name, set()).add(job_id)
    return found


def retry(client: httpx.Client, key: str) -> Outcome:
    """Submit ``key``'s job again with its key until the answer is no longer 'in progress'
    (the watcher settles a submit whose outcome was unknown)."""
    deadline = time.monotonic() + SETTLE
    while True:
        response = client.post(JOBS, json=job(key), headers={"Idempotency-Key": key})
        if response.status_code != 409 or time.monotonic() > deadline:
            break
        assert response.json()["type"].endswith("/idempotency-in-progress"), response.text
        time.sleep(0.5)
    outcome = _outcome("retry", "", response)
    return replace(outcome, key=key, job_id=response.json()["id"] if outcome.ok else None)


def finished_output(client: httpx.Client, user: str) -> tuple[str, str]:
    spec = job(f"faults-output-{user}") | {"script": "#!/bin/bash\necho hello from $(id -un)\n"}
    done = wait_for_job(client, submit(client, SYSTEM, **spec)["id"], ended, SYSTEM, 60)
    assert done["state"] == "COMPLETED", done
    return done["id"], f"hello from {user}\n"


def logins_after(log: Path, offset: int) -> set[str]:
    """The accounts whose certificates logged in to sshd after ``offset`` of its log."""
    text = log.read_bytes()[offset:].decode(errors="replace")
    return {user for user in USERS if f"ID hpcgate:{SYSTEM}:{user}" in text}


@pytest.mark.parametrize("restart", [(), ("--keep-sessions",)], ids=["cut", "keep-sessions"])
def test_sshd_restarted_under_load(
    gateway: GatewayProcess, sshd: Sshd, restart: tuple[str, ...]
) -> None:
    tokens = {user: gateway.token(user) for user in USERS}
    outputs = {}
    for user in USERS:
        with gateway.client(tokens[user]) as client:
            outputs[user] = finished_output(client, user)
    prefix = f"faults-{uuid.uuid4().hex[:8]}"
    with Load(gateway, tokens, outputs, prefix) as load:
        time.sleep(2)
        log_offset = sshd.log.stat().st_size
        restarted = time.monotonic()
        done = sshd.run("restart", *restart)
        back = time.monotonic()
        assert done.returncode == 0, done.stderr
        time.sleep(RECOVERY + 2)
    outcomes = list(load.outcomes)

    broken = [o for o in outcomes if o.status is None]
    assert not broken, "requests without a complete answer:\n" + "\n".join(map(str, broken))
    failed = [o for o in outcomes if not o.ok]
    unclean = [o for o in failed if o.status not in (503, 504) or o.content_type != PROBLEM]
    assert not unclean, "answers neither success nor 503/504 problem+json:\n" + "\n".join(
        map(str, unclean)
    )
    slow = max(outcomes, key=lambda o: o.seconds)
    assert slow.seconds < BOUND, f"{slow} took {slow.seconds:.1f} s"
    late = [o for o in failed if o.started > back + RECOVERY]
    assert not late, f"failures {RECOVERY:g} s after sshd was back:\n" + "\n".join(map(str, late))
    for operation in ("output", "partitions", "submit"):  # the ones that need SSH
        assert any(o.ok and o.started > back for o in outcomes if o.operation == operation)
    # Cut connections are replaced by the pool; kept ones are used on, at no cost.
    assert logins_after(sshd.log, log_offset) == (set() if restart else set(USERS))
    assert not (restart and failed)
    log = (gateway.home / "server.log").read_text(errors="replace")
    assert "Exception in ASGI application" not in log  # an error after the answer began
    assert "unexpected error" not in log  # a 500

    submits = [o for o in outcomes if o.operation == "submit"]
    with gateway.client(tokens["alice"]) as alice, gateway.client(tokens["bob"]) as bob:
        clients = {"alice": alice, "bob": bob}
        retried = [retry(clients[o.user], o.key or "") for o in submits if not o.ok]
    acknowledged = [o for o in (*submits, *retried) if o.ok]
    unsettled = [o for o in retried if not o.ok]
    assert not unsettled, "retries that never succeeded:\n" + "\n".join(map(str, unsettled))
    time.sleep(1)  # sacct hears of a job a moment after sbatch
    in_slurm = slurm_jobs(prefix)
    doubled = {name: ids for name, ids in in_slurm.items() if len(ids) > 1}
    assert not doubled, f"jobs submitted twice: {doubled}"
    for outcome in acknowledged:
        assert in_slurm.get(outcome.key or "") == {outcome.job_id}, outcome
    assert len(in_slurm) == len({o.key for o in submits})  # every submit, once
    print(
        f"{len(outcomes)} requests, {len(failed)} failed cleanly"
        f" ({sum(o.operation == 'submit' for o in failed)} submits, retried),"
        f" slowest {slow.seconds:.2f} s ({slow.operation}), restart {back - restarted:.2f} s,"
        f" {len(submits)} submits"
    )


def test_job_output_while_sshd_is_down_is_a_503_problem(
    gateway: GatewayProcess, sshd: Sshd
) -> None:
    """The output's size and first chunk are read before the answer starts: a system out of
    reach is a 503 problem, not a 200 whose body breaks off."""
    with gateway.client(gateway.token("alice")) as alice:
        job_id, text = finished_output(alice, "alice")
        assert alice.get(f"{JOBS}/{job_id}/output").text == text
        assert sshd.run("down").returncode == 0
        try:
            response = alice.get(f"{JOBS}/{job_id}/output")
        finally:
            assert sshd.run("up").returncode == 0
        assert response.status_code == 503, response.text
        assert response.headers["content-type"] == PROBLEM
        assert response.json()["type"].endswith("/transport-error")
        assert alice.get(f"{JOBS}/{job_id}/output").text == text


def test_following_output_outlives_an_sshd_restart(gateway: GatewayProcess, sshd: Sshd) -> None:
    """A job writes a numbered line every 0.2 s; its output is followed as SSE while sshd is
    down for two seconds (connections cut, new ones refused): the stream goes on, every line
    arrives once, in order."""
    script = "#!/bin/bash\nfor i in $(seq 1 40); do echo line $i; sleep 0.2; done\n"
    with gateway.client(gateway.token("alice")) as alice:
        job = submit(alice, SYSTEM, script=script, name="follow-through-restart")
        wait_for_job(alice, job["id"], lambda j: j["state"] != "PENDING", system=SYSTEM)
        texts, events = [], []
        headers = {"Accept": "text/event-stream"}
        url = f"{JOBS}/{job['id']}/output"
        restarted = False
        with alice.stream("GET", url, params={"follow": "true"}, headers=headers) as response:
            assert response.status_code == 200
            for line in response.iter_lines():
                if line.startswith("event: "):
                    events.append(line.removeprefix("event: "))
                elif line.startswith("data: ") and events[-1] == "output":
                    texts.append(json.loads(line.removeprefix("data: "))["text"])
                if not restarted and "line 5\n" in "".join(texts):
                    assert sshd.run("down").returncode == 0
                    time.sleep(2)
                    assert sshd.run("up").returncode == 0
                    restarted = True
        assert restarted and events[-1] == "end", events[-3:]
        assert "".join(texts) == "".join(f"line {i}\n" for i in range(1, 41))
