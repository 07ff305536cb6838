"""A function whose pool never becomes ready: an invocation waits the services' bound, then
is a 503 with Retry-After, and is recorded as ended NoWorker (never left hanging)."""

from __future__ import annotations

import time
from pathlib import Path

from tests.functions.conftest import CONFIG
from tests.support.functions import FUNCTIONS, delete_all, register
from tests.support.gateway_process import new_gateway
from tests.support.services import admin_token, stop_services


def test_no_worker_in_time_is_a_503_and_the_invocation_ends_no_worker(tmp_path: Path) -> None:
    config = CONFIG.replace("service_wait_seconds = 30", "service_wait_seconds = 2")
    server = new_gateway(tmp_path / "home", config)
    server.start()
    token = server.token("alice")
    try:
        with server.client(token) as client:
            # its interpreter does not exist: the worker job fails at once, again and again
            name = register(client, "def f():\n    return 1\n", python="/nonexistent/python3")
            started = time.monotonic()
            answer = client.post(f"{FUNCTIONS}/{name}/invoke", json={})
            assert time.monotonic() - started >= 2  # it waited for a worker
            assert answer.status_code == 503
            assert answer.headers["retry-after"] == "10"
            key = answer.json()["invocation"]
            [row] = client.get(f"{FUNCTIONS}/{name}/invocations").json()
            assert (row["id"], row["state"]) == (key, "failed")
            assert row["error"]["type"] == "NoWorker"
            delete_all(client)
        stop_services(server.url, admin_token(server.home), [token])
    finally:
        server.stop()
