"""A submit repeated with the same Idempotency-Key creates one job."""

from __future__ import annotations

import uuid
from concurrent.futures import ThreadPoolExecutor

import httpx

JOBS = "/api/v1/systems/local/jobs"
BODY = {"script": "#!/bin/bash\necho once >> ran", "name": "idem"}


def test_same_key_returns_the_same_job(gateway_user: httpx.Client) -> None:
    body = BODY
    key = {"Idempotency-Key": uuid.uuid4().hex}
    first = gateway_user.post(JOBS, json=body, headers=key)
    again = gateway_user.post(JOBS, json=body, headers=key)
    assert (first.status_code, again.status_code) == (201, 200)
    assert first.json()["id"] == again.json()["id"]
    assert len(gateway_user.get(JOBS).json()["items"]) == 1


def test_concurrent_retries_create_one_job(gateway_user: httpx.Client) -> None:
    key = {"Idempotency-Key": uuid.uuid4().hex}
    with ThreadPoolExecutor(8) as pool:
        responses = list(
            pool.map(lambda _: gateway_user.post(JOBS, json=BODY, headers=key), range(8))
        )
    assert {r.status_code for r in responses} <= {200, 201, 409}
    ids = {r.json()["id"] for r in responses if r.status_code in (200, 201)}
    assert len(ids) == 1
    assert len(gateway_user.get(JOBS).json()["items"]) == 1


def test_same_key_with_another_body_is_refused(gateway_user: httpx.Client) -> None:
    key = {"Idempotency-Key": uuid.uuid4().hex}
    assert gateway_user.post(JOBS, json=BODY, headers=key).status_code == 201
    other = gateway_user.post(JOBS, json={**BODY, "name": "other"}, headers=key)
    assert other.status_code == 400
    assert other.headers["content-type"] == "application/problem+json"
    assert len(gateway_user.get(JOBS).json()["items"]) == 1


def test_keys_are_per_user(alice: httpx.Client, bob: httpx.Client) -> None:
    key = {"Idempotency-Key": uuid.uuid4().hex}
    a = alice.post(JOBS, json=BODY, headers=key)
    b = bob.post(JOBS, json=BODY, headers=key)
    assert (a.status_code, b.status_code) == (201, 201)
    assert a.json()["id"] != b.json()["id"]


def test_invalid_key_is_422(gateway_user: httpx.Client) -> None:
    response = gateway_user.post(JOBS, json=BODY, headers={"Idempotency-Key": "a b"})
    assert response.status_code == 422
