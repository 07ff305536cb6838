"""End-to-end encryption at the worker: real worker processes seal an invocation's events
for the caller's key (opened here by the SDK's :class:`Opener`), in every concurrency mode;
one whose Python lacks ``cryptography`` runs nothing and says why."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest

from hpcgate.client._sealed import Opener
from tests.worker.support import events, running_worker, spec_for

STEPS = """
def f(n, path=None):
    if path:
        open(path, "w").close()
    for i in range(n):
        yield f"secret-{i}"
    yield b"\\x00bytes"
    raise ValueError("secret failure")
"""
#: Where ``cryptography`` is for the worker (run with ``-S``: the standard library only).
HAS_CRYPTOGRAPHY = {"PYTHONPATH": str(Path(sys.modules["cryptography"].__file__ or "").parents[1])}


def _open_all(opener: Opener, key: str, found: list[dict[str, Any]]) -> list[Any]:
    return [opener.open(key, e["seq"], e["type"], e["data"]) for e in found]


def _post(
    client: httpx.Client, key: str, opener: Opener, tracebacks: bool = False, **arguments: Any
) -> httpx.Response:
    seal = {"public_key": opener.public_key, "tracebacks": tracebacks}
    return client.post("/invocations", json={"id": key, "input": arguments, "seal": seal})


@pytest.mark.parametrize("mode", ["threads", "processes", "async"])
def test_every_event_but_the_key_is_sealed_for_the_caller(tmp_path: Path, mode: str) -> None:
    spec = spec_for(STEPS, "f", concurrency=mode)
    with running_worker(tmp_path, spec, env=HAS_CRYPTOGRAPHY) as worker, worker.client() as c:
        opener = Opener()
        assert _post(c, "inv1", opener, n=2).status_code == 201
        found = events(c, "inv1")
    assert [e["type"] for e in found] == ["key", "output", "output", "output", "error"]
    assert [e["seq"] for e in found] == [1, 2, 3, 4, 5]
    assert "secret" not in json.dumps(found[1:]) and all("sealed" in e["data"] for e in found[1:])
    opened = _open_all(opener, "inv1", found)
    assert opened[:4] == [
        None,
        {"type": "output", "data": "secret-0"},
        {"type": "output", "data": "secret-1"},
        {"type": "output", "data": "AGJ5dGVz", "encoding": "base64"},
    ]
    assert opened[4] == {
        "type": "error",
        "data": {"type": "ValueError", "message": "secret failure"},
    }


def test_a_worker_that_cannot_encrypt_runs_nothing(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    with running_worker(tmp_path, spec_for(STEPS, "f")) as worker, worker.client() as c:
        assert _post(c, "inv1", Opener(), n=1, path=str(marker)).status_code == 201
        (only,) = events(c, "inv1")
    assert (only["type"], only["data"]["type"]) == ("error", "EncryptionUnavailable")
    assert "cryptography" in only["data"]["message"] and "secret" not in json.dumps(only)
    assert not marker.exists()


def test_a_malformed_key_is_refused(tmp_path: Path) -> None:
    with running_worker(tmp_path, spec_for(STEPS, "f")) as worker, worker.client() as c:
        for key in ("short", "A" * 44, 7, None):
            body = {"id": "inv1", "input": {"n": 1}, "seal": {"public_key": key}}
            answer = c.post("/invocations", json=body)
            assert answer.status_code == 400, answer.text
        assert c.get("/invocations/inv1").status_code == 404  # nothing was made


def test_the_traceback_is_sealed_for_the_owner_only(tmp_path: Path) -> None:
    """The gateway cannot cut a traceback out of a sealed error: the worker leaves it out
    unless the gateway says the caller is the function's owner."""
    spec = spec_for(STEPS, "f")
    with running_worker(tmp_path, spec, env=HAS_CRYPTOGRAPHY) as worker, worker.client() as c:
        errors = []
        for key, owner in (("owner", True), ("other", False)):
            opener = Opener()
            assert _post(c, key, opener, owner, n=0).status_code == 201
            errors.append(_open_all(opener, key, events(c, key))[-1]["data"])
    assert "secret failure" in errors[0]["traceback"] and "traceback" not in errors[1]
