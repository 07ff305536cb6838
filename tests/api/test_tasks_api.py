"""``/api/v1/tasks`` through the real gateway process: listing, lookups, refusals.

Tasks are started by other routes (file copies, archives); tests/api/test_files.py follows
them from start to end. Here: what any caller sees of the task routes themselves.
"""

from __future__ import annotations

import uuid
from typing import Any

import httpx

from tests.support.gateway_process import GatewayProcess

TASKS = "/api/v1/tasks"
UNKNOWN = uuid.uuid4().hex


def problem(response: httpx.Response, status: int, slug: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body: dict[str, Any] = response.json()
    assert (body["status"], body["type"]) == (status, f"https://hpcgate.dev/problems/{slug}")
    return body


def test_a_new_user_has_no_tasks(gateway_user: httpx.Client) -> None:
    response = gateway_user.get(TASKS)
    assert response.status_code == 200 and response.json() == []
    assert gateway_user.get(TASKS, params={"limit": 1000}).json() == []


def test_an_unknown_task_is_not_found(gateway_user: httpx.Client) -> None:
    assert UNKNOWN in problem(gateway_user.get(f"{TASKS}/{UNKNOWN}"), 404, "not-found")["detail"]
    problem(gateway_user.delete(f"{TASKS}/{UNKNOWN}"), 404, "not-found")


def test_malformed_ids_and_limits_are_refused(gateway_user: httpx.Client) -> None:
    for bad in ("not-an-id", UNKNOWN.upper(), UNKNOWN[:-1], UNKNOWN + "0"):
        problem(gateway_user.get(f"{TASKS}/{bad}"), 422, "validation-error")
        problem(gateway_user.delete(f"{TASKS}/{bad}"), 422, "validation-error")
    for limit in (0, 1001, "many"):
        problem(gateway_user.get(TASKS, params={"limit": limit}), 422, "validation-error")


def test_tasks_need_a_valid_token(gateway: GatewayProcess) -> None:
    for token in (None, "hg_not-a-real-token"):
        with gateway.client(token) as anonymous:
            problem(anonymous.get(TASKS), 401, "unauthenticated")
            problem(anonymous.get(f"{TASKS}/{UNKNOWN}"), 401, "unauthenticated")
            problem(anonymous.delete(f"{TASKS}/{UNKNOWN}"), 401, "unauthenticated")


def test_reading_needs_no_scope_but_cancelling_needs_files_write(gateway: GatewayProcess) -> None:
    user = f"u{uuid.uuid4().hex[:10]}"
    with gateway.client(gateway.token(user, "jobs:read")) as reader:
        assert reader.get(TASKS).json() == []
        problem(reader.get(f"{TASKS}/{UNKNOWN}"), 404, "not-found")
        problem(reader.delete(f"{TASKS}/{UNKNOWN}"), 403, "forbidden")
