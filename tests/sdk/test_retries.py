"""When the SDK sends a request again: the pure policy (:class:`Retry`, ``retry_after``,
``backoff``, :class:`Waiting`), then the clients driving it.

The clients here talk to a FAKE gateway, an ``httpx.MockTransport`` that answers 503, 429
or 504 on demand: the real gateway cannot be made to send those answers when a test wants
them. Everything else in the SDK is tested against the real gateway.
"""

from __future__ import annotations

import email.utils
import json
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from hpcgate.client import AsyncClient, Client, Retry, WaitTimeout
from hpcgate.client._base import Call, Waiting, _error_of, backoff, retry_after
from hpcgate.client._transfer import Attempts
from hpcgate.model import errors
from hpcgate.model.errors import PROBLEM_BASE

GET = Call("GET", "/x")
POST = Call("POST", "/x")
KEYED_POST = Call("POST", "/x", headers={"Idempotency-Key": "k"})
FAST = Retry(attempts=4, backoff=0.01, max_wait=5)


def answer(status: int, retry_after: str | None = None) -> httpx.Response:
    headers = {} if retry_after is None else {"Retry-After": retry_after}
    return httpx.Response(status, headers=headers)


def test_retry_after_reads_seconds_and_dates() -> None:
    assert retry_after(None) is None
    assert retry_after("7") == retry_after(" 7 ") == 7.0
    soon = email.utils.formatdate(time.time() + 30, usegmt=True)
    assert 28 <= (retry_after(soon) or 0) <= 30
    assert retry_after(email.utils.formatdate(time.time() - 60, usegmt=True)) == 0.0
    assert retry_after("soon") is None
    assert retry_after("-3") is None


def test_a_refusal_keeps_the_gateway_s_retry_after() -> None:
    document = {"type": f"{PROBLEM_BASE}transport-error", "title": "t", "detail": "busy"}
    response = httpx.Response(503, headers={"Retry-After": "4"}, json=document)
    refused = _error_of(response)
    assert isinstance(refused, errors.TransportError) and refused.retry_after == 4.0
    assert _error_of(httpx.Response(503, json=document)).retry_after is None


def test_a_resumed_transfer_waits_as_long_as_the_gateway_asks() -> None:
    document = {"type": f"{PROBLEM_BASE}transport-error", "title": "t", "detail": "busy"}
    busy = _error_of(httpx.Response(503, headers={"Retry-After": "2.5"}, json=document))
    busy.retry_after = 2.5  # "2.5" is no valid Retry-After; the pause is what matters here
    assert Attempts(FAST).pause_after(busy, 0, "http://gateway") == 2.5
    busy.retry_after = 3600
    assert Attempts(FAST).pause_after(busy, 0, "http://gateway") == FAST.max_wait
    busy.retry_after = None
    assert (Attempts(FAST).pause_after(busy, 0, "http://gateway") or 1) <= FAST.backoff


def test_refusals_before_any_work_are_retried_for_every_method() -> None:
    for call in (GET, POST, KEYED_POST):
        assert FAST.delay(0, call, answer(503, "2")) == 2.0
        assert FAST.delay(0, call, answer(429, "3")) == 3.0


def test_a_lost_answer_is_asked_again_only_when_that_is_safe() -> None:
    for status in (502, 504):
        assert FAST.delay(0, POST, answer(status)) is None
        assert FAST.delay(0, GET, answer(status)) is not None
        assert FAST.delay(0, KEYED_POST, answer(status)) is not None
    assert Call("DELETE", "/x").resendable and Call("PUT", "/x").resendable
    assert not POST.resendable and KEYED_POST.resendable


def test_other_answers_are_never_retried() -> None:
    for status in (200, 201, 400, 401, 404, 409, 422, 500, 501):
        assert FAST.delay(0, GET, answer(status, "1")) is None


def test_attempts_run_out_and_waits_are_capped() -> None:
    assert FAST.delay(2, GET, answer(503)) is not None
    assert FAST.delay(3, GET, answer(503)) is None  # the 4th attempt was the last
    assert FAST.delay(0, GET, answer(503, "3600")) == 5.0
    assert Retry(attempts=1).delay(0, GET, None) is None


def test_without_retry_after_the_backoff_grows_with_jitter() -> None:
    policy = Retry(attempts=10, backoff=1.0, max_wait=6)
    for attempt, full in enumerate([1.0, 2.0, 4.0, 6.0, 6.0]):
        pauses = [policy.delay(attempt, GET, None) for _ in range(50)]
        assert all(p is not None and full / 2 <= p <= full for p in pauses)
        assert len(set(pauses)) > 1


def test_polling_pauses_grow_to_a_cap() -> None:
    pauses = backoff()
    assert [next(pauses) for _ in range(3)] == [0.5, 0.75, 1.125]
    assert max(next(pauses) for _ in range(20)) == 10.0


def test_waiting_ends_at_its_timeout() -> None:
    assert Waiting(None).pause("x") == 0.5
    waiting = Waiting(0.6)
    assert waiting.pause("x") == 0.5
    assert 0 < waiting.pause("x") <= 0.6
    time.sleep(0.6)
    with pytest.raises(WaitTimeout, match=r"job 1 is running after 0\.6 s"):
        waiting.pause("job 1 is running")


class FakeGateway:
    """A FAKE gateway (see the module docstring): it answers each request with the next
    status of ``script``, and records what it was sent."""

    def __init__(self, *script: tuple[int, str | None]) -> None:
        self.script = list(script)
        self.sent: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.sent.append(request)
        status, retry_after = self.script.pop(0) if self.script else (200, None)
        headers = {} if retry_after is None else {"Retry-After": retry_after}
        if status >= 400:
            return httpx.Response(status, headers=headers, json=_problem(status))
        return httpx.Response(status, json=_ok(request))

    def sync(self, retry: Retry = FAST) -> Client:
        return Client("http://fake", "t", retry=retry, transport=httpx.MockTransport(self))

    def asyncio(self, retry: Retry = FAST) -> AsyncClient:
        return AsyncClient("http://fake", "t", retry=retry, transport=httpx.MockTransport(self))


def _problem(status: int) -> dict[str, Any]:
    slug = {503: "unavailable", 504: "command-timeout", 429: "too-many-requests"}[status]
    detail = f"fake {status}"
    return {"type": PROBLEM_BASE + slug, "title": slug, "status": status, "detail": detail}


JOB = {"id": "1", "system": "local", "owner": "alice", "name": None, "state": "PENDING"}
TOKEN = {
    "id": "0123456789ab",
    "user": "alice",
    "scopes": ["jobs:read"],
    "description": "",
    "created_at": "2026-01-01T00:00:00Z",
    "expires_at": None,
    "revoked_at": None,
    "token": "hpcg_secret",
}


def _ok(request: httpx.Request) -> Any:
    if request.url.path.endswith("/tokens"):
        return TOKEN
    return JOB if "/jobs" in request.url.path else []


def timed(action: Callable[[], object]) -> float:
    started = time.monotonic()
    action()
    return time.monotonic() - started


def test_503_and_429_are_retried_after_the_time_the_gateway_asks() -> None:
    fake = FakeGateway((503, "1"), (429, "0"))
    with fake.sync() as hpc:
        assert 1.0 <= timed(hpc.systems) < 2.5
    assert [r.url.path for r in fake.sent] == ["/api/v1/systems"] * 3


def test_a_retried_submit_resends_its_idempotency_key() -> None:
    fake = FakeGateway((503, "0"), (504, None))
    with fake.sync() as hpc:
        assert hpc.submit("local", "#!/bin/bash\ntrue\n").id == "1"
    keys = {r.headers["Idempotency-Key"] for r in fake.sent}
    assert len(fake.sent) == 3 and len(keys) == 1
    assert all(json.loads(r.content) == {"script": "#!/bin/bash\ntrue\n"} for r in fake.sent)


def test_a_504_to_a_post_without_a_key_is_not_retried() -> None:
    fake = FakeGateway((504, None))
    with fake.sync() as hpc, pytest.raises(errors.CommandTimeout, match="fake 504") as raised:
        hpc.create_token(scopes=["jobs:read"])
    assert len(fake.sent) == 1 and raised.value.http_status == 504


def test_retries_run_out_with_the_last_answer_raised() -> None:
    fake = FakeGateway(*[(503, "0")] * 4)
    with fake.sync() as hpc, pytest.raises(errors.Unavailable, match="fake 503"):
        hpc.job("local", "1")
    assert len(fake.sent) == FAST.attempts


async def test_the_async_client_retries_alike() -> None:
    fake = FakeGateway((429, "1"), (504, None))
    async with fake.asyncio() as hpc:
        started = time.monotonic()
        assert (await hpc.job("local", "1")).id == "1"
        assert time.monotonic() - started >= 1.0
        fake.script = [(504, None)]
        with pytest.raises(errors.CommandTimeout):
            await hpc.create_token()
    assert len(fake.sent) == 4
