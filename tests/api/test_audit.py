"""The audit log through the real gateway process: real requests appear, with who, what,
the result, where from and the request id; only admins read it; bad filters are refused."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from tests.support.gateway_process import GatewayProcess
from tests.support.jobs import submit

AUDIT = "/api/v1/audit"
JOBS = "/api/v1/systems/local/jobs"


@pytest.fixture(scope="module")
def admin(gateway: GatewayProcess) -> Any:
    with gateway.client(gateway.token("auditor", "admin")) as client:
        yield client


def _records(admin: httpx.Client, **filters: Any) -> list[dict[str, Any]]:
    response = admin.get(AUDIT, params=filters)
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()["items"]
    return items


def test_a_submit_and_a_cancel_are_recorded(
    gateway: GatewayProcess, alice: httpx.Client, admin: httpx.Client
) -> None:
    before = datetime.now(UTC) - timedelta(seconds=1)
    answer = alice.post(JOBS, json={"script": "#!/bin/bash\nsleep 30\n"})
    assert answer.status_code == 201, answer.text
    job = answer.json()["id"]
    cancelled = alice.delete(f"{JOBS}/{job}")
    alice.get(JOBS)  # a read: not recorded
    mine = _records(admin, user="alice", since=before.isoformat())
    assert [(r["method"], r["route"], r["status"]) for r in mine[:2]] == [
        ("DELETE", "/api/v1/systems/{system}/jobs/{job_id}", cancelled.status_code),
        ("POST", "/api/v1/systems/{system}/jobs", 201),
    ]
    cancel, made = mine[0], mine[1]
    assert cancel["resource"] == {"system": "local", "job_id": job}
    assert made["request_id"] == answer.headers["x-request-id"]
    assert made["address"] == "127.0.0.1" and made["token_id"] and made["client"] is None
    assert all(r["method"] != "GET" for r in _records(admin, limit=1000))
    # the same record is a JSON line of the hpcgate.audit logger
    line = _line(gateway.home / "server.log", made["request_id"])
    assert (line["user"], line["method"], line["status"]) == ("alice", "POST", 201)


def _line(log: Path, request_id: str) -> dict[str, Any]:
    for text in log.read_text(errors="replace").splitlines():
        if "hpcgate.audit" in text and request_id in text:
            parsed: dict[str, Any] = json.loads(text[text.index("{") :])
            return parsed
    raise AssertionError(f"no audit line for {request_id}")


def test_refusals_are_recorded_too(gateway: GatewayProcess, admin: httpx.Client) -> None:
    with gateway.client("hpcg_not_a_token") as stranger:
        refused = stranger.post(JOBS, json={"script": "#!/bin/bash\ntrue\n"})
    assert refused.status_code == 401
    found = _records(admin, status=401)
    assert refused.headers["x-request-id"] in {r["request_id"] for r in found}
    assert all(r["user"] is None for r in found)


def test_a_websocket_connect_is_recorded(gateway: GatewayProcess, admin: httpx.Client) -> None:
    url = gateway.url.replace("http://", "ws://") + "/api/v1/agent/connect"
    with pytest.raises(InvalidStatus) as refused:
        connect(url, additional_headers={"Authorization": "Bearer hpcg_forged"}).close()
    assert refused.value.response.status_code == 401
    found = [r for r in _records(admin, status=401) if r["method"] == "WEBSOCKET"]
    assert found and found[0]["route"] == "/api/v1/agent/connect"


def test_pages_follow_the_cursor_newest_first(bob: httpx.Client, admin: httpx.Client) -> None:
    for _ in range(3):
        submit(bob, script="#!/bin/bash\ntrue\n")
    first = admin.get(AUDIT, params={"user": "bob", "limit": 2}).json()
    assert len(first["items"]) == 2 and first["next_cursor"] is not None
    rest = admin.get(AUDIT, params={"user": "bob", "limit": 2, "cursor": first["next_cursor"]})
    ids = [int(r["id"]) for r in first["items"] + rest.json()["items"]]
    assert ids == sorted(ids, reverse=True) and len(set(ids)) == len(ids) >= 3


@pytest.mark.parametrize(
    "moment",
    ["0001-01-01T00:00:00+10:00", "9999-12-31T23:59:59-10:00", "2026-12-04T10:00:00+05:30"],
)
def test_any_moment_with_a_zone_is_a_bound(admin: httpx.Client, moment: str) -> None:
    for name in ("since", "until"):
        assert admin.get(AUDIT, params={name: moment}).status_code == 200


def test_an_empty_span_finds_nothing(admin: httpx.Client) -> None:
    span = {"since": "2026-02-01T00:00:00Z", "until": "2026-01-01T00:00:00Z"}
    assert admin.get(AUDIT, params=span).json() == {"items": [], "next_cursor": None}


def test_a_non_admin_may_not_read_it(alice: httpx.Client) -> None:
    refused = alice.get(AUDIT)
    assert refused.status_code == 403, refused.text
    assert refused.headers["content-type"] == "application/problem+json"


@pytest.mark.parametrize(
    "filters",
    [
        {"limit": 0},
        {"limit": 1001},
        {"status": 99},
        {"status": "ok"},
        {"cursor": "-1"},
        {"cursor": "abc"},
        {"since": "yesterday"},
        {"since": "2026-01-01T00:00:00"},  # no zone
        {"user": "a b"},
    ],
)
def test_bad_filters_are_refused(admin: httpx.Client, filters: dict[str, Any]) -> None:
    refused = admin.get(AUDIT, params=filters)
    assert refused.status_code == 422, refused.text
    assert refused.headers["content-type"] == "application/problem+json"
