"""Faults the services tiers share, each under streamed requests that keep coming: a
walltime handover, and one of two ready replicas whose Slurm job is cancelled."""

from __future__ import annotations

import socket
import subprocess
import time

import httpx

from tests.support.gateway_process import GatewayProcess
from tests.support.load import streamed_load
from tests.support.services import (
    SERVICES,
    bearer,
    ended,
    in_state,
    replica_states,
    wait_replicas,
)

STREAMS = 4


def handover_under_load(server: GatewayProcess, client: httpx.Client, name: str) -> None:
    """``name`` has one replica, soon within ``handover_seconds`` of its time limit, that
    serves 4 streams of requests (each one after another, a little apart): its successor
    starts and becomes ready, it drains and stops, the successor takes all the traffic,
    and not one request fails or is cut short. The service is deleted after."""
    found = wait_replicas(client, name, in_state("ready"), timeout=120)
    assert len(found) == 1, f"the handover began before the load: {found}"
    first = found[0]
    url = f"{SERVICES}/{name}/proxy/stream"
    with streamed_load(server.url, bearer(client), url, STREAMS, pause=0.1) as load:
        load.wait_for(STREAMS)
        old_pid = load.outcomes[0].pid
        seen = replica_states(client, name, lambda e: e["replica"] == first["id"] and ended(e))
        count = len(load.outcomes)
        load.wait_for(count + 2 * STREAMS)
    assert client.delete(f"{SERVICES}/{name}").status_code == 202
    assert load.failed() == []
    assert seen[first["id"]] == [("draining", "drained by the controller"), ("stopped", "drained")]
    [successor] = [pk for pk in seen if pk != first["id"]]
    assert [state for state, _ in seen[successor]] == ["starting", "ready"]
    assert old_pid is not None and len(load.served_by(old_pid)) >= STREAMS
    assert all(o.pid != old_pid for o in load.outcomes[count:])  # the successor's


def _listens(port: int) -> bool:
    """Whether a server listens on the port (the test nodes' NodeAddr is 127.0.0.1)."""
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def closed(port: int, timeout: float = 60) -> float:
    """The moment the replica's port no longer takes connections."""
    deadline = time.monotonic() + timeout
    while _listens(port):
        assert time.monotonic() < deadline, f"port {port} still listens"
        time.sleep(0.02)
    return time.monotonic()


def cancel_under_load(server: GatewayProcess, client: httpx.Client, name: str) -> None:
    """Two ready replicas of ``name`` share 4 streams of requests; one's job is
    scancelled. A request in flight on it then may fail (its server is gone mid-answer),
    and only such a one, and visibly: its answer is cut off, not ended as if whole. Every
    request that starts after the replica's port has closed succeeds, on the other replica
    until a new one is ready, and the service is back to two."""
    first, killed = wait_replicas(client, name, in_state("ready", 2), timeout=120)
    url = f"{SERVICES}/{name}/proxy/stream"
    with streamed_load(server.url, bearer(client), url, STREAMS) as load:
        load.wait_for(2 * STREAMS)
        subprocess.run(["scancel", killed["job_id"]], check=True, timeout=30)
        died = closed(killed["port"])
        found = wait_replicas(
            client, name, lambda rs: in_state("failed")(rs) and in_state("ready", 2)(rs), 120
        )
        count = len(load.outcomes)
        load.wait_for(count + 2 * STREAMS)
    failed = load.failed()
    assert len(failed) <= STREAMS and all(o.started < died for o in failed), failed
    assert load.unseen() == []  # each one cut off: the caller saw it fail
    assert [o for o in load.outcomes if o.started > died and o.error is None]
    [gone] = [r for r in found if r["state"] == "failed"]
    assert gone["id"] == killed["id"]  # its job's end or its failed health checks, first seen
    assert "CANCELLED" in gone["reason"] or gone["reason"] == "3 failed health checks in a row"
    new = {r["job_id"] for r in found if r["state"] == "ready"} - {first["job_id"]}
    assert len(new) == 1 and new != {killed["job_id"]}
    assert len({o.pid for o in load.outcomes[count:]}) == 2  # both serve again
