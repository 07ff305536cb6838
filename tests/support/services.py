"""Helpers of the services tier: the test backend as a service script, waiting for
replicas, and the config of a gateway that declares services."""

from __future__ import annotations

import contextlib
import json
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

from tests.support.gateway_process import GatewayProcess, new_gateway

BACKEND = Path(__file__).with_name("service_backend.py")
SERVICES = "/api/v1/services"


#: The backend needs only the standard library; a job runs as a user's account, which may
#: not reach the project's virtualenv (under root's home when root made it).
SYSTEM_PYTHON = "/usr/bin/python3"


def backend_script(python: str = SYSTEM_PYTHON, env: str = "") -> str:
    """A service script that runs the test backend (``env``: ``NAME=value`` words first)."""
    return f"#!/bin/sh\n{env} exec {python} {BACKEND}\n"


def toml_string(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def bearer(client: httpx.Client) -> str:
    """The token a client sends."""
    return client.headers["Authorization"].removeprefix("Bearer ")


def create_service(client: httpx.Client, **fields: Any) -> str:
    """A service of the client's user on the ``local`` system running the test backend
    (unless ``fields`` say otherwise); its name."""
    name = str(fields.pop("name", f"s{uuid.uuid4().hex[:8]}"))
    body = {"name": name, "system": "local", "script": backend_script(), **fields}
    answer = client.post(SERVICES, json=body)
    assert answer.status_code == 201, answer.text
    return name


def service_table(name: str, system: str = "local", /, **settings: object) -> str:
    """A ``[services.NAME]`` table on ``system`` that runs ``settings["script"]`` (default:
    the test backend), with the other ``settings`` (booleans, numbers, strings and lists of
    them, as TOML)."""
    script = settings.pop("script", None) or backend_script()
    lines = [f"[services.{name}]", f"system = {toml_string(system)}"]
    lines.append(f"script = {toml_string(str(script))}")
    lines += [f"{key} = {json.dumps(value)}" for key, value in settings.items()]
    return "\n".join(["", *lines, ""])


#: Settings of a declared service of one replica for alice, run as the test gateways'
#: fallback account ("services" has no Unix account).
FOR_ALICE: dict[str, object] = {
    "min_replicas": 1,
    "max_replicas": 1,
    "users": ["alice"],
    "run_as": "services",
}


def replicas(client: httpx.Client, name: str) -> list[dict[str, Any]]:
    answer = client.get(f"{SERVICES}/{name}")
    assert answer.status_code == 200, answer.text
    found: list[dict[str, Any]] = answer.json()["replicas"]
    return found


def wait_replicas(
    client: httpx.Client,
    name: str,
    test: Callable[[list[dict[str, Any]]], bool],
    timeout: float = 60,
) -> list[dict[str, Any]]:
    """The service's replicas once ``test`` holds for them."""
    deadline = time.monotonic() + timeout
    while True:
        found = replicas(client, name)
        if test(found):
            return found
        assert time.monotonic() < deadline, f"replicas of {name} never matched: {found}"
        time.sleep(0.2)


States = dict[int, list[tuple[str, str | None]]]


def replica_states(
    client: httpx.Client, name: str, until: Callable[[dict[str, Any]], bool], timeout: float = 60
) -> States:
    """Each replica's changes of state (with their reasons) from the service's event
    stream, from now until a state event for which ``until`` holds."""
    seen: States = {}
    deadline = time.monotonic() + timeout
    with client.stream("GET", f"{SERVICES}/{name}/events") as stream:
        assert stream.status_code == 200, stream.read()
        for line in stream.iter_lines():
            assert time.monotonic() < deadline, f"the awaited state never came: {seen}"
            if not line.startswith("data:"):
                continue
            event = json.loads(line.removeprefix("data:"))
            if event["kind"] == "state":
                seen.setdefault(event["replica"], []).append((event["state"], event["text"]))
                if until(event):
                    return seen
    raise AssertionError(f"the event stream ended: {seen}")


def ended(event: dict[str, Any]) -> bool:
    return event["state"] in ("stopped", "failed")


def in_state(state: str, count: int = 1) -> Callable[[list[dict[str, Any]]], bool]:
    return lambda found: sum(r["state"] == state for r in found) == count


def ready(found: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [r for r in found if r["state"] == "ready"]


def stop_services(base_url: str, admin: str, owners: list[str], timeout: float = 60) -> None:
    """Stop every replica a test gateway started, through its API: the owners' services are
    deleted, the declared ones scaled to 0 (with the admin token), until none is live. A
    replica's job outlives its gateway, so a test that left one would leave a server."""
    with httpx.Client(base_url=base_url, timeout=30) as client:
        for token in owners:
            auth = {"Authorization": f"Bearer {token}"}
            for service in client.get(SERVICES, headers=auth).json():
                if service["owner"] is not None:
                    client.delete(f"{SERVICES}/{service['name']}", headers=auth)
        auth = {"Authorization": f"Bearer {admin}"}
        for service in client.get(SERVICES, headers=auth).json():
            if service["owner"] is None:
                scale = {"min_replicas": 0, "max_replicas": 0}
                client.patch(f"{SERVICES}/{service['name']}", json=scale, headers=auth)
        deadline = time.monotonic() + timeout
        for token in [admin, *owners]:
            auth = {"Authorization": f"Bearer {token}"}
            while any(_live(s) for s in client.get(SERVICES, headers=auth).json()):
                assert time.monotonic() < deadline, "replicas still live"
                time.sleep(0.3)


def _live(service: dict[str, Any]) -> bool:
    return any(r["state"] in ("starting", "ready", "draining") for r in service["replicas"])


@contextmanager
def services_gateway(home: Path, config: str, owner: str = "alice") -> Iterator[GatewayProcess]:
    """A started gateway in ``home`` with ``config``; on the way out, every replica it
    started (the declared services' and ``owner``'s) is stopped through its API, then it
    (after a failed test too: a replica's job would outlive the gateway)."""
    server = new_gateway(home, config)
    try:
        server.start()  # one that does not answer in time is stopped too
        yield server
    except BaseException:
        _stop_quietly(server, owner)
        raise
    else:
        stop_services(server.url, admin_token(server.home), [server.token(owner)])
    finally:
        server.stop()


def _stop_quietly(server: GatewayProcess, owner: str) -> None:
    """After a failure: the gateway's replicas stopped if it still answers; an error
    here would only hide the failure's own."""
    if server.process is None or server.process.poll() is not None:
        return
    with contextlib.suppress(Exception):
        stop_services(server.url, admin_token(server.home), [server.token(owner)], timeout=30)


def admin_token(home: Path) -> str:
    return (home / "admin-token").read_text().strip()
