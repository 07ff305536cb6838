"""The embedded default is per user: each caller's roots and default job directory are its own
directory under the gateway's home (made on first use, mode 0700), so a token reaches its
jobs' files and nothing else of the machine (not the gateway account's home: ``/root`` when
the gateway runs as root)."""

from __future__ import annotations

import stat
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.gateway_process import GatewayProcess
from tests.support.jobs import ended, wait_for_job

SYSTEM = "/api/v1/systems/local"


@pytest.fixture
def newcomer(gateway: GatewayProcess) -> Iterator[tuple[httpx.Client, Path]]:
    """A user never seen before, and the directory it should get."""
    name = f"n{uuid.uuid4().hex[:10]}"
    with gateway.client(gateway.token(name)) as client:
        yield client, gateway.home / "work" / name


def test_the_roots_and_home_are_the_callers_own_directory(
    newcomer: tuple[httpx.Client, Path],
) -> None:
    client, own = newcomer
    info = client.get(SYSTEM).json()
    assert (info["roots"], info["home"]) == ([str(own)], str(own))
    assert stat.S_IMODE(own.stat().st_mode) == 0o700  # made on first use, private
    listing = client.get(f"{SYSTEM}/files/ls", params={"path": "."})
    assert listing.status_code == 200, listing.text


@pytest.mark.parametrize(
    "path", ["/root", "/root/.bashrc", "/etc/hostname", "{home}/hpcgate.db", "{home}/work"]
)
def test_nothing_outside_is_readable(
    newcomer: tuple[httpx.Client, Path], gateway: GatewayProcess, path: str
) -> None:
    client, _ = newcomer
    path = path.format(home=gateway.home)  # the gateway's own database, the others' homes
    answer = client.get(f"{SYSTEM}/files/stat", params={"path": path})
    assert answer.status_code == 403, answer.text
    assert answer.headers["content-type"] == "application/problem+json"


def test_a_jobs_output_is_readable_through_the_files_api(
    newcomer: tuple[httpx.Client, Path],
) -> None:
    client, own = newcomer
    script = '#!/bin/sh\necho "hello from $(pwd)"\n'
    job = client.post(f"{SYSTEM}/jobs", json={"script": script}).json()
    done = wait_for_job(client, job["id"], ended)
    assert (done["state"], done["working_directory"]) == ("COMPLETED", str(own))
    for path in (done["stdout"], Path(done["stdout"]).name):  # absolute, and from home
        head = client.get(f"{SYSTEM}/files/head", params={"path": path})
        assert head.status_code == 200, head.text
        assert head.json()["content"] == f"hello from {own}\n"
