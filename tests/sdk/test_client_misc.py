"""The SDK's systems, tasks and tokens methods, both twins, against a real gateway process.

Tasks are started with plain httpx (a copy, an archive): the SDK's own files methods are
tested in test_files_sdk.py; here only the task methods that follow them.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import httpx
import pytest

from hpcgate.client import AsyncClient, Client, WaitTimeout
from hpcgate.model import errors
from hpcgate.model.principal import Scope
from hpcgate.model.tasks import Task, TaskState
from tests.support.accounts import give
from tests.support.gateway_process import FALLBACK, GatewayProcess

SYSTEM = "local"
FILES = f"/api/v1/systems/{SYSTEM}/files"


@dataclass
class User:
    """A user of its own (empty task and token lists), its file root, and its token."""

    name: str
    root: Path
    token: str
    raw: httpx.Client
    sdk: Client


@pytest.fixture
def user(sdk_gateway: GatewayProcess, sdk_base: Path, admin: Client) -> Iterator[User]:
    name = f"u{uuid.uuid4().hex[:10]}"
    (sdk_base / name).mkdir()
    give(sdk_base / name, FALLBACK)  # as root, a user with no account runs as the fallback
    token = admin.create_token(user=name).token
    with sdk_gateway.client(token) as raw, Client(sdk_gateway.url, token) as sdk:
        yield User(name, sdk_base / name, token, raw, sdk)


def started(user: User, operation: str, **body: str) -> str:
    """Start a files task with plain httpx; its id."""
    answer = user.raw.post(f"{FILES}/{operation}", json=body)
    assert answer.status_code == 202, answer.text
    return str(answer.json()["id"])


def test_systems_and_what_they_tell(client: Client, sdk_base: Path) -> None:
    systems = client.systems()
    assert [(s.name, s.scheduler, s.healthy) for s in systems] == [(SYSTEM, "embedded", True)]
    local = client.system(SYSTEM)
    assert local.roots == [str(sdk_base / "alice"), str(sdk_base / "shared")]
    assert local.home == str(sdk_base / "alice")
    with pytest.raises(errors.NotFound):
        client.system("nowhere")


def test_the_embedded_scheduler_shows_its_machine(client: Client) -> None:
    [partition] = client.partitions(SYSTEM)
    [node] = client.nodes(SYSTEM)
    assert (partition.name, partition.nodes, node.partitions) == (SYSTEM, [node.name], [SYSTEM])
    assert node.cpus == partition.total_cpus and node.cpus >= 1
    assert client.reservations(SYSTEM) == [] and client.accounts(SYSTEM) == []
    with pytest.raises(errors.NotFound):
        client.partitions("nowhere")


async def test_async_systems(aclient: AsyncClient, sdk_base: Path) -> None:
    assert [s.name for s in await aclient.systems()] == [SYSTEM]
    assert (await aclient.system(SYSTEM)).home == str(sdk_base / "alice")
    assert len(await aclient.nodes(SYSTEM)) == 1


def test_a_copy_task_is_followed_to_its_end(user: User) -> None:
    (user.root / "a.txt").write_text("copied\n")
    task_id = started(user, "cp", source="a.txt", target="b.txt")
    done = user.sdk.wait_task(task_id, timeout=30, check=True)
    assert (done.id, done.kind, done.state) == (task_id, "copy", TaskState.COMPLETED)
    assert (user.root / "b.txt").read_text() == "copied\n"
    assert user.sdk.task(task_id) == done
    assert [t.id for t in user.sdk.tasks()] == [task_id]


def test_a_failed_task_is_raised_as_its_error_when_checked(user: User) -> None:
    (user.root / "not-an-archive.tar").write_text("plain text\n")
    task_id = started(user, "extract", source="not-an-archive.tar", target="out")
    with pytest.raises(errors.BadRequest, match="not a readable tar archive") as failed:
        user.sdk.wait_task(task_id, timeout=30, check=True)
    assert failed.value.http_status == 400
    task = user.sdk.wait_task(task_id)  # without check: returned
    assert task.state == TaskState.FAILED and task.error is not None


def test_a_running_task_is_cancelled_and_an_ended_one_cannot_be(user: User) -> None:
    (user.root / "big.bin").write_bytes(os.urandom(32 << 20))  # xz takes seconds on it
    task_id = started(user, "compress", source="big.bin", target="big.tar.xz", compression="xz")
    with pytest.raises(WaitTimeout, match=f"task {task_id} is still running"):
        user.sdk.wait_task(task_id, timeout=0.2)
    assert user.sdk.cancel_task(task_id).state == TaskState.CANCELLED
    assert user.sdk.wait_task(task_id, check=True).state == TaskState.CANCELLED
    with pytest.raises(errors.Conflict):
        user.sdk.cancel_task(task_id)
    with pytest.raises(errors.NotFound):
        user.sdk.task("0" * 32)
    assert len(user.sdk.tasks(limit=1)) == 1


async def test_async_tasks(user: User, sdk_gateway: GatewayProcess) -> None:
    (user.root / "a.txt").write_text("copied\n")
    task_id = started(user, "cp", source="a.txt", target="c.txt")
    async with AsyncClient(sdk_gateway.url, user.token) as hpc:
        done = await hpc.wait_task(task_id, timeout=30, check=True)
        assert done.state == TaskState.COMPLETED and isinstance(done, Task)
        assert await hpc.task(task_id) == done
        assert [t.id for t in await hpc.tasks(limit=5)] == [task_id]
        with pytest.raises(errors.Conflict):
            await hpc.cancel_task(task_id)


def test_tokens_are_created_listed_used_and_revoked(
    user: User, sdk_gateway: GatewayProcess
) -> None:
    made = user.sdk.create_token(
        scopes=["jobs:read"], expires_in=timedelta(hours=1), description="reader"
    )
    assert (made.user, made.scopes, made.description) == (user.name, [Scope.JOBS_READ], "reader")
    assert made.expires_at is not None and made.token.startswith(f"hpcg_{made.id}_")
    listed = {t.id: t for t in user.sdk.tokens()}
    assert made.id in listed and not hasattr(listed[made.id], "token")  # never the secret
    with Client(sdk_gateway.url, made.token) as reader:
        assert reader.jobs(SYSTEM) == []
        with pytest.raises(errors.Forbidden):
            reader.submit(SYSTEM, "#!/bin/bash\ntrue\n")
        user.sdk.revoke_token(made.id)
        with pytest.raises(errors.Unauthenticated):
            reader.jobs(SYSTEM)
    assert {t.id: t for t in user.sdk.tokens()}[made.id].revoked_at is not None


def test_tokens_beyond_the_callers_rights_are_refused(user: User) -> None:
    with pytest.raises(errors.Forbidden):
        user.sdk.create_token(user="bob")
    with pytest.raises(errors.Forbidden):
        user.sdk.create_token(scopes=[Scope.ADMIN])
    with pytest.raises(errors.Forbidden):
        user.sdk.tokens(user="bob")
    with pytest.raises(errors.NotFound):
        user.sdk.revoke_token("0" * 12)
    default = user.sdk.create_token()
    assert set(default.scopes) == {"jobs:read", "jobs:write", "files:read", "files:write"}
    assert default.expires_at is None


def test_an_admin_makes_tokens_for_others(admin: Client) -> None:
    other = f"u{uuid.uuid4().hex[:10]}"
    made = admin.create_token(user=other, scopes=["jobs:read"])
    assert (made.user, [t.id for t in admin.tokens(user=other)]) == (other, [made.id])
    admin.revoke_token(made.id)
    assert admin.tokens(user=other)[0].revoked_at is not None


async def test_async_tokens(user: User, sdk_gateway: GatewayProcess) -> None:
    async with AsyncClient(sdk_gateway.url, user.token) as hpc:
        made = await hpc.create_token(scopes=["files:read"], expires_in=60)
        assert made.id in {t.id for t in await hpc.tokens()}
        await hpc.revoke_token(made.id)
        revoked = {t.id: t for t in await hpc.tokens()}[made.id]
        assert revoked.revoked_at is not None
