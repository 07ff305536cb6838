"""Helpers of the functions tier: registering a function, invoking it as a stream."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx

from tests.support.services import SYSTEM_PYTHON
from tests.support.sse import Event, _parse

FUNCTIONS = "/api/v1/functions"

#: A function that answers at once, and one that yields until it is cancelled.
ECHO = "def f(x=1):\n    return {'x': x}\n"
FOREVER = """
import time

def f(pause=0.2):
    while True:
        yield "tick"
        time.sleep(pause)
"""
#: A function that yields 0, 1, ... ``count - 1``, ``pause`` seconds apart, then "done".
SLOW = """
import time

def f(count, pause):
    for i in range(count):
        time.sleep(pause)
        yield i
    return "done"
"""


#: As :data:`SLOW`, each output naming the account the worker runs as.
SLOW_WHO = """
import os, time

def f(count, pause):
    for i in range(count):
        time.sleep(pause)
        yield {"i": i, "user": os.environ.get("USER") or os.getlogin()}
    return "done"
"""


def register(client: httpx.Client, source: str, **fields: Any) -> str:
    """A function of the client's user on ``local`` running ``source`` (its callable is
    ``fields["callable"]`` or ``f``); its name."""
    name = str(fields.pop("name", f"f{uuid.uuid4().hex[:8]}"))
    body = {
        "name": name,
        "system": "local",
        "source": source,
        "callable": "f",
        "python": SYSTEM_PYTHON,
        **fields,
    }
    answer = client.post(FUNCTIONS, json=body)
    assert answer.status_code == 201, answer.text
    return name


@contextmanager
def invoked(
    client: httpx.Client, name: str, value: dict[str, Any], **params: str
) -> Iterator[tuple[str, Iterator[Event]]]:
    """Invoke as a stream: the invocation's id and its events as they come."""
    headers = {"Accept": "text/event-stream"}
    url = f"{FUNCTIONS}/{name}/invoke"
    with client.stream("POST", url, json=value, headers=headers, params=params) as answer:
        assert answer.status_code == 200, answer.read()
        assert answer.headers["content-type"].startswith("text/event-stream")
        yield answer.headers["hpcgate-invocation"], _parse(answer.iter_lines())


def data(event: Event) -> Any:
    return json.loads(event.data)


def invocation(client: httpx.Client, name: str, key: str) -> dict[str, Any]:
    answer = client.get(f"{FUNCTIONS}/{name}/invocations/{key}")
    assert answer.status_code == 200, answer.text
    found: dict[str, Any] = answer.json()
    return found


def wait_state(
    client: httpx.Client, name: str, key: str, state: str, timeout: float = 20
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while (found := invocation(client, name, key))["state"] != state:
        assert time.monotonic() < deadline, f"{key} never became {state}: {found}"
        time.sleep(0.1)
    return found


def wait_workers(client: httpx.Client, name: str, timeout: float = 60) -> list[dict[str, Any]]:
    """The function's workers once one is ready."""
    deadline = time.monotonic() + timeout
    while True:
        workers: list[dict[str, Any]] = client.get(f"{FUNCTIONS}/{name}").json()["workers"]
        if any(w["state"] == "ready" for w in workers):
            return workers
        assert time.monotonic() < deadline, f"no worker of {name} became ready: {workers}"
        time.sleep(0.2)


def delete_all(client: httpx.Client, system: str = "local", timeout: float = 60) -> None:
    """Delete the client's user's functions, and wait until their workers' jobs have
    ended (a job outlives its gateway; a pool is not among the services listed)."""
    for function in client.get(FUNCTIONS).json():
        if function.get("source") is not None:  # its own: shown with its source
            client.delete(f"{FUNCTIONS}/{function['name']}")
    deadline = time.monotonic() + timeout
    while _live_workers(client, system):
        assert time.monotonic() < deadline, "function workers still running"
        time.sleep(0.3)


def _live_workers(client: httpx.Client, system: str) -> list[dict[str, Any]]:
    live = [("state", "PENDING"), ("state", "RUNNING"), ("state", "SUSPENDED")]
    answer = client.get(f"/api/v1/systems/{system}/jobs", params=[*live, ("limit", "1000")])
    assert answer.status_code == 200, answer.text
    jobs: list[dict[str, Any]] = answer.json()["items"]
    return [job for job in jobs if str(job.get("name") or "").startswith("hpcgate-fn.")]
