"""Jobs and tasks through the HTTP API, as every tier that runs a gateway uses them: submit a
job, wait until it reaches a state, check another user cannot see it, wait for a task."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import httpx


def wait_for_job(
    client: httpx.Client,
    job_id: str,
    until: Callable[[dict[str, Any]], bool],
    system: str = "local",
    timeout: float = 30,
) -> dict[str, Any]:
    """Poll the job until ``until(job)`` holds; fail with the last job seen."""
    deadline = time.monotonic() + timeout
    job: dict[str, Any] = {}
    while time.monotonic() < deadline:
        response = client.get(f"/api/v1/systems/{system}/jobs/{job_id}")
        assert response.status_code == 200, response.text
        job = response.json()
        if until(job):
            return job
        time.sleep(0.1)
    raise AssertionError(f"job {job_id} never reached the condition; last seen: {job}")


def ended(job: dict[str, Any]) -> bool:
    return job["state"] not in ("PENDING", "RUNNING", "SUSPENDED")


def hidden_from(other: httpx.Client, jobs: str, job_id: str) -> None:
    """Another user can neither read the job nor its output nor cancel it (404 each), and
    does not find it in a listing of the ``jobs`` collection."""
    for response in (
        other.get(f"{jobs}/{job_id}"),
        other.get(f"{jobs}/{job_id}/output"),
        other.delete(f"{jobs}/{job_id}"),
    ):
        assert response.status_code == 404, response.text
    assert job_id not in {j["id"] for j in other.get(jobs).json()["items"]}


def submit(client: httpx.Client, system: str = "local", **spec: Any) -> dict[str, Any]:
    response = client.post(f"/api/v1/systems/{system}/jobs", json=spec)
    assert response.status_code == 201, response.text
    return dict(response.json())


def finished(client: httpx.Client, answer: httpx.Response, timeout: float = 60) -> dict[str, Any]:
    """The task a 202 answer started, polled until it has ended."""
    assert answer.status_code == 202, answer.text
    task: dict[str, Any] = answer.json()
    deadline = time.monotonic() + timeout
    while task["state"] == "running" and time.monotonic() < deadline:
        time.sleep(0.05)
        task = client.get(f"/api/v1/tasks/{task['id']}").json()
    return task
