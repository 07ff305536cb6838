"""Services on the embedded scheduler, through a real gateway: real backends started as
real jobs, reached through the proxy."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.services.conftest import CONFIG
from tests.support.gateway_process import new_gateway
from tests.support.jobs import ended, wait_for_job
from tests.support.services import (
    BACKEND,
    SERVICES,
    SYSTEM_PYTHON,
    admin_token,
    backend_script,
    create_service,
    in_state,
    ready,
    replicas,
    stop_services,
    wait_replicas,
)

PROXY = f"{SERVICES}/echo/proxy"


def test_a_declared_service_starts_and_answers_through_the_proxy(alice: httpx.Client) -> None:
    [replica] = wait_replicas(alice, "echo", in_state("ready"))
    assert replica["job_id"] and replica["address"] == "127.0.0.1"
    answer = alice.get(f"{PROXY}/pid", params={"q": "a b"})
    assert answer.status_code == 200
    seen = answer.json()
    assert seen["port"] == replica["port"]
    assert "authorization" not in {name.lower() for name in seen["headers"]}  # never passed on
    job = alice.get(f"/api/v1/systems/local/jobs/{replica['job_id']}")
    assert job.status_code == 404  # the declared service's job is not alice's


def test_a_streamed_body_goes_to_the_replica_and_comes_back(alice: httpx.Client) -> None:
    wait_replicas(alice, "echo", lambda found: bool(ready(found)))
    pieces = [f"piece {i}\n".encode() * 1000 for i in range(20)]

    def body() -> Iterator[bytes]:
        yield from pieces

    answer = alice.post(f"{PROXY}/echo", content=body())  # chunked: no length known
    assert answer.status_code == 200
    assert answer.content == b"".join(pieces)
    assert alice.post(f"{PROXY}/echo", content=b"x" * 100_000).content == b"x" * 100_000


def test_the_path_and_query_reach_the_replica_as_sent(alice: httpx.Client) -> None:
    wait_replicas(alice, "echo", lambda found: bool(ready(found)))
    answer = alice.get(f"{PROXY}/path/a%2Fb%20c/%C3%A9?q=%C3%A9&x=1&x=2")
    assert answer.text == "/path/a%2Fb%20c/%C3%A9?q=%C3%A9&x=1&x=2"
    assert alice.get(f"{PROXY}").status_code == 404  # the replica's own answer for /


def test_a_body_over_the_limit_is_a_413(alice: httpx.Client) -> None:
    wait_replicas(alice, "echo", lambda found: bool(ready(found)))
    answer = alice.post(f"{PROXY}/echo", content=b"x" * (2 << 20))
    assert answer.status_code == 413
    assert answer.headers["content-type"] == "application/problem+json"


def test_an_answer_streams_back_as_the_replica_sends_it(alice: httpx.Client) -> None:
    wait_replicas(alice, "echo", lambda found: bool(ready(found)))
    arrived = []
    with alice.stream("GET", f"{PROXY}/stream", params={"n": 5, "delay": 0.3}) as answer:
        assert answer.status_code == 200
        for _line in answer.iter_lines():
            arrived.append(time.monotonic())
    assert len(arrived) == 5
    assert arrived[-1] - arrived[0] > 0.9  # each chunk came when sent, not all at the end


def test_a_service_not_shared_with_a_user_does_not_exist_for_it(
    alice: httpx.Client, bob: httpx.Client
) -> None:
    own = create_service(alice)
    for name in ("echo", own):
        for answer in (
            bob.get(f"{SERVICES}/{name}"),
            bob.get(f"{SERVICES}/{name}/proxy/pid"),
            bob.patch(f"{SERVICES}/{name}", json={"max_replicas": 1}),
            bob.delete(f"{SERVICES}/{name}"),
            bob.get(f"{SERVICES}/{name}/events"),
        ):
            assert answer.status_code == 404, answer.text
            assert answer.json()["detail"] == f"no service {name!r}"
    assert bob.get(SERVICES).json() == []
    assert {s["name"] for s in alice.get(SERVICES).json()} >= {"echo", own}


def test_bad_specs_are_refused_and_create_nothing(alice: httpx.Client) -> None:
    before = alice.get(SERVICES).json()
    name = f"bad{uuid.uuid4().hex[:6]}"
    good = {"name": name, "system": "local", "script": backend_script()}
    for bad in (
        {"min_replicas": 3, "max_replicas": 2},
        {"script": "python server.py"},
        {"name": "Upper"},
        {"name": "x" * 41},
        {"max_replicas": 65},
        {"max_replicas": True},
        {"ready_timeout": 0},
        {"health_path": "health"},
        {"script_path": "/srv/x.sh"},
    ):
        answer = alice.post(SERVICES, json={**good, **bad})
        assert answer.status_code == 422, (bad, answer.text)
        assert answer.headers["content-type"] == "application/problem+json"
    assert alice.post(SERVICES, json={**good, "system": "nope"}).status_code == 404
    too_long = "#!/bin/sh\n" + "#" * 5000  # over the tier's max_script_bytes
    assert alice.post(SERVICES, json={**good, "script": too_long}).status_code == 413
    assert alice.get(SERVICES).json() == before
    assert alice.patch(f"{SERVICES}/echo", json={"max_replicas": 1}).status_code == 403


def test_scaled_to_zero_a_request_waits_for_a_replica_then_it_idles_away(
    alice: httpx.Client,
) -> None:
    name = create_service(alice, min_replicas=0, max_replicas=1, idle_seconds=2)
    time.sleep(1)
    assert replicas(alice, name) == []
    answer = alice.get(f"{SERVICES}/{name}/proxy/pid")
    assert answer.status_code == 200, answer.text
    [replica] = replicas(alice, name)
    assert replica["state"] == "ready" and replica["port"] == answer.json()["port"]
    stopped = wait_replicas(alice, name, in_state("stopped"), timeout=30)
    assert stopped[0]["reason"] == "drained"
    wait_for_job(alice, replica["job_id"], ended)


def test_requests_go_to_the_replica_serving_the_fewest(alice: httpx.Client) -> None:
    name = create_service(alice, min_replicas=1, max_replicas=2)
    wait_replicas(alice, name, in_state("ready"))
    answer = alice.patch(f"{SERVICES}/{name}", json={"min_replicas": 2})
    assert answer.status_code == 200, answer.text
    both = wait_replicas(alice, name, in_state("ready", 2))
    first_line: list[str] = []
    started = threading.Event()

    def long_request() -> None:
        params = {"n": 30, "delay": 0.1}
        with alice.stream("GET", f"{SERVICES}/{name}/proxy/stream", params=params) as streamed:
            for line in streamed.iter_lines():
                first_line.append(line)
                started.set()

    worker = threading.Thread(target=long_request)
    worker.start()
    try:
        assert started.wait(10)
        busy_pid = int(first_line[0].split()[3])
        others = {alice.get(f"{SERVICES}/{name}/proxy/pid").json()["pid"] for _ in range(5)}
        assert busy_pid not in others and len(others) == 1
        counts = sorted(r["in_flight"] for r in ready(replicas(alice, name)))
        assert counts == [0, 1]
    finally:
        worker.join()
    assert {r["port"] for r in both} == {r["port"] for r in ready(replicas(alice, name))}


def test_a_replica_whose_job_is_killed_is_replaced(alice: httpx.Client) -> None:
    name = create_service(alice, min_replicas=1, max_replicas=1)
    [first] = wait_replicas(alice, name, in_state("ready"))
    cancel = alice.delete(f"/api/v1/systems/local/jobs/{first['job_id']}")
    assert cancel.status_code == 202
    found = wait_replicas(alice, name, lambda rs: in_state("failed")(rs) and in_state("ready")(rs))
    failed = next(r for r in found if r["state"] == "failed")
    assert failed["id"] == first["id"] and "CANCELLED" in failed["reason"]
    assert alice.get(f"{SERVICES}/{name}/proxy/pid").status_code == 200


def test_a_backend_that_never_opens_its_port_fails_and_says_why(alice: httpx.Client) -> None:
    script = backend_script(env="NEVER_LISTEN=1")
    name = create_service(alice, script=script, min_replicas=1, max_replicas=1, ready_timeout=2)
    found = wait_replicas(alice, name, lambda rs: any(r["state"] == "failed" for r in rs))
    failed = next(r for r in found if r["state"] == "failed")
    assert failed["reason"] == "no 2xx from GET /health within 2 s"
    assert failed["last_health_ok"] is False
    wait_for_job(alice, failed["job_id"], ended)  # its job was cancelled


def test_garbage_is_a_502_and_a_hang_a_504(alice: httpx.Client) -> None:
    name = create_service(alice, min_replicas=1, max_replicas=1, request_timeout=2)
    wait_replicas(alice, name, in_state("ready"))
    garbage = alice.get(f"{SERVICES}/{name}/proxy/garbage")
    assert garbage.status_code == 502
    assert garbage.json()["detail"] == "the replica's answer is not HTTP"
    wait_replicas(alice, name, in_state("ready"))  # its health check is good again
    time.sleep(0.5)
    hang = alice.get(f"{SERVICES}/{name}/proxy/hang")
    assert hang.status_code == 504, hang.text
    assert hang.headers["content-type"] == "application/problem+json"


def test_a_replica_that_stops_answering_is_a_502_then_replaced(alice: httpx.Client) -> None:
    script = f"#!/bin/sh\n{SYSTEM_PYTHON} {BACKEND} &\nexec sleep 3600\n"  # the job outlives it
    name = create_service(alice, script=script, min_replicas=1, max_replicas=1)
    [first] = wait_replicas(alice, name, in_state("ready"))
    os.kill(alice.get(f"{SERVICES}/{name}/proxy/pid").json()["pid"], signal.SIGKILL)
    time.sleep(0.5)  # its end reaches the pooled connection, which is then not reused
    refused = alice.get(f"{SERVICES}/{name}/proxy/pid")
    assert refused.status_code == 502
    assert refused.json()["detail"].startswith("the replica refused the connection")
    found = wait_replicas(alice, name, lambda rs: in_state("failed")(rs) and in_state("ready")(rs))
    failed = next(r for r in found if r["state"] == "failed")
    assert (failed["id"], failed["reason"]) == (first["id"], "3 failed health checks in a row")
    assert failed["last_health_ok"] is False
    wait_for_job(alice, first["job_id"], ended)  # its job was cancelled
    assert alice.get(f"{SERVICES}/{name}/proxy/pid").status_code == 200


def test_delete_drains_the_replicas_cancels_their_jobs_and_removes_it(
    alice: httpx.Client,
) -> None:
    name = create_service(alice, min_replicas=1, max_replicas=1)
    [replica] = wait_replicas(alice, name, in_state("ready"))
    answer = alice.delete(f"{SERVICES}/{name}")
    assert answer.status_code == 202 and answer.json()["stopping"] is True
    deadline = time.monotonic() + 30
    while alice.get(f"{SERVICES}/{name}").status_code != 404:
        assert time.monotonic() < deadline
        time.sleep(0.2)
    job = wait_for_job(alice, replica["job_id"], ended)
    assert job["state"] == "CANCELLED"
    assert alice.delete(f"{SERVICES}/echo").status_code == 403  # declared: not alice's


def test_the_owner_follows_the_replicas_states(alice: httpx.Client) -> None:
    name = create_service(alice, min_replicas=0, max_replicas=1)
    events: list[dict[str, Any]] = []
    answers: list[int] = []
    request = threading.Thread(
        target=lambda: answers.append(alice.get(f"{SERVICES}/{name}/proxy/pid").status_code)
    )
    with alice.stream("GET", f"{SERVICES}/{name}/events") as stream:
        assert stream.status_code == 200
        request.start()
        for line in stream.iter_lines():
            if line.startswith("data:"):
                events.append(json.loads(line.removeprefix("data:")))
            kinds = {(e["kind"], e["state"]) for e in events}
            if {("state", "ready"), ("stderr", None)} <= kinds:
                break
    request.join()
    states = [e["state"] for e in events if e["kind"] == "state"]
    assert states == ["starting", "ready"]
    [replica] = replicas(alice, name)
    stderr = [e["text"] for e in events if e["kind"] == "stderr"]
    assert f"on port {replica['port']}" in stderr[0]  # the backend's first line
    assert answers == [200]


@pytest.mark.parametrize("how", [signal.SIGTERM, signal.SIGKILL])
def test_a_restarted_gateway_finds_its_running_replicas(tmp_path: Path, how: int) -> None:
    server = new_gateway(tmp_path / "home", CONFIG)
    server.start()
    token = server.token("alice")
    try:
        with server.client(token) as client:
            [before] = wait_replicas(client, "echo", in_state("ready"))
            pid = client.get(f"{PROXY}/pid").json()["pid"]
        server.stop(how)
        server.start()
        with server.client(token) as client:
            assert client.get(f"{PROXY}/pid").json()["pid"] == pid  # the same server
            [after] = replicas(client, "echo")
            assert (after["id"], after["job_id"], after["state"]) == (
                before["id"],
                before["job_id"],
                "ready",
            )
        stop_services(server.url, admin_token(server.home), [])
    finally:
        server.stop()


def test_with_no_replica_in_time_a_request_gets_a_503_with_retry_after(tmp_path: Path) -> None:
    config = CONFIG.replace("service_wait_seconds = 30", "service_wait_seconds = 1")
    server = new_gateway(tmp_path / "home", config)
    server.start()
    try:
        with server.client(server.token("carol")) as client:
            name = create_service(client, min_replicas=0, max_replicas=0)  # it never gets one
            started = time.monotonic()
            answer = client.get(f"{SERVICES}/{name}/proxy/pid")
            assert time.monotonic() - started >= 1  # it waited
            assert answer.status_code == 503
            assert answer.headers["retry-after"] == "10"
            assert answer.json()["type"].endswith("/no-replica")
        stop_services(server.url, admin_token(server.home), [])
    finally:
        server.stop()
