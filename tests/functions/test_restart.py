"""A gateway restarted mid-invocation: the running invocation is kept (its worker, a job,
outlives the gateway; the new gateway records how it ends with no reader) and a client
resumes it for exactly the rest."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

from tests.functions.conftest import CONFIG
from tests.support.functions import FUNCTIONS, SLOW, data, delete_all, invoked, register, wait_state
from tests.support.gateway_process import new_gateway
from tests.support.services import admin_token, stop_services
from tests.support.sse import read_events


@pytest.mark.parametrize("how", [signal.SIGTERM, signal.SIGKILL])
def test_an_invocation_resumes_across_a_gateway_restart(tmp_path: Path, how: int) -> None:
    server = new_gateway(tmp_path / "home", CONFIG)
    server.start()
    token = server.token("alice")
    try:
        with server.client(token) as client:
            name = register(client, SLOW)
            value = {"count": 60, "pause": 0.05}
            with invoked(client, name, value, detach="true") as (key, events):
                assert [next(events).id for _ in range(2)] == ["1", "2"]
        server.stop(how)
        server.start()
        with server.client(token) as client:  # kept by the new gateway: it sees the end
            assert wait_state(client, name, key, "succeeded")["events"] == 61
            url = f"{FUNCTIONS}/{name}/invocations/{key}/events"
            rest = list(read_events(client, url, {"Last-Event-ID": "2"}))
            assert [e.id for e in rest] == [str(seq) for seq in range(3, 62)]
            assert [data(e) for e in rest[:-1]] == list(range(2, 60))
            assert (rest[-1].event, data(rest[-1])) == ("result", "done")
            delete_all(client)
        stop_services(server.url, admin_token(server.home), [token])
    finally:
        server.stop()
