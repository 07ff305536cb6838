"""The SDK's jobs methods, both twins, against a real gateway process and its embedded
scheduler: submit, wait, cancel, listing, output, live output and events, errors."""

from __future__ import annotations

import signal
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from hpcgate.client import AsyncClient, Client, JobFailed, ValidationFailed, WaitTimeout
from hpcgate.client._jobs import Event, EventParser
from hpcgate.model import errors
from hpcgate.model.jobs import JobSpec, JobState
from tests.support.gateway_process import GatewayProcess, new_gateway

SYSTEM = "local"
SLOW = "#!/bin/bash\nfor i in 1 2 3 4 5 6; do echo line $i; sleep 0.5; done\n"
SLOW_OUTPUT = "".join(f"line {i}\n" for i in range(1, 7))


@pytest.fixture
def newcomer(sdk_gateway: GatewayProcess, admin: Client) -> Iterator[Client]:
    """A client for a user of its own, whose job list starts empty."""
    token = admin.create_token(user=f"u{uuid.uuid4().hex[:10]}").token
    with Client(sdk_gateway.url, token) as hpc:
        yield hpc


def test_a_submitted_job_is_waited_for_until_completed(client: Client) -> None:
    job = client.submit(SYSTEM, "#!/bin/bash\necho hello\n", name="hello")
    assert (job.name, job.state) == ("hello", JobState.PENDING)
    done = client.wait(SYSTEM, job.id, timeout=30, check=True)
    assert (done.id, done.state, done.exit_code) == (job.id, JobState.COMPLETED, 0)
    assert client.output(SYSTEM, job.id) == "hello\n"
    assert client.job(SYSTEM, job.id) == done


def test_spec_fields_are_sent_as_given(client: Client, workdir: Path) -> None:
    spec = JobSpec(script='#!/bin/bash\necho "$GREETING" from "$PWD"\n', name="from-spec")
    job = client.submit(
        SYSTEM, spec=spec, working_directory=str(workdir), environment={"GREETING": "hi"}
    )
    done = client.wait(SYSTEM, job.id, timeout=30)
    assert (done.name, done.working_directory) == ("from-spec", str(workdir))
    assert client.output(SYSTEM, job.id) == f"hi from {workdir}\n"


def test_a_resent_submit_with_the_same_key_makes_one_job(client: Client) -> None:
    key = uuid.uuid4().hex
    first = client.submit(SYSTEM, "#!/bin/bash\ntrue\n", idempotency_key=key)
    again = client.submit(SYSTEM, "#!/bin/bash\ntrue\n", idempotency_key=key)
    other = client.submit(SYSTEM, "#!/bin/bash\ntrue\n")
    assert first.id == again.id != other.id


def test_a_failed_job_raises_job_failed_with_its_exit_code(client: Client) -> None:
    job = client.submit(SYSTEM, "#!/bin/bash\necho oops >&2\nexit 7\n")
    with pytest.raises(JobFailed) as failed:
        client.wait(SYSTEM, job.id, timeout=30, check=True)
    assert (failed.value.job.state, failed.value.job.exit_code) == (JobState.FAILED, 7)
    assert "exit code 7" in str(failed.value)
    assert client.wait(SYSTEM, job.id).exit_code == 7  # without check: returned
    assert client.output(SYSTEM, job.id, stream="stderr") == "oops\n"
    assert client.output(SYSTEM, job.id, stream="stderr", offset=2) == "ps\n"


def test_cancel_ends_the_job_cancelled(client: Client) -> None:
    job = client.submit(SYSTEM, "#!/bin/bash\nsleep 300\n")
    client.cancel(SYSTEM, job.id)
    assert client.wait(SYSTEM, job.id, timeout=30).state == JobState.CANCELLED


def test_cancel_of_an_ended_job_raises_conflict(client: Client) -> None:
    job = client.submit(SYSTEM, "#!/bin/bash\ntrue\n")
    client.wait(SYSTEM, job.id, timeout=30)
    with pytest.raises(errors.Conflict, match="has already ended"):
        client.cancel(SYSTEM, job.id)
    assert client.job(SYSTEM, job.id).state == JobState.COMPLETED


def test_wait_gives_up_after_its_timeout(client: Client) -> None:
    job = client.submit(SYSTEM, "#!/bin/bash\nsleep 300\n")
    started = time.monotonic()
    with pytest.raises(WaitTimeout, match=f"job {job.id} is still"):
        client.wait(SYSTEM, job.id, timeout=1)
    assert 1 <= time.monotonic() - started < 3
    client.cancel(SYSTEM, job.id)


def test_the_listing_filters_by_state_and_follows_pages(newcomer: Client) -> None:
    ok = [newcomer.submit(SYSTEM, "#!/bin/bash\ntrue\n", name="ok").id for _ in range(4)]
    bad = newcomer.submit(SYSTEM, "#!/bin/bash\nexit 1\n", name="bad").id
    for job_id in [*ok, bad]:
        newcomer.wait(SYSTEM, job_id, timeout=30)
    newest_first = [bad, *reversed(ok)]
    assert [j.id for j in newcomer.jobs(SYSTEM)] == newest_first
    assert [j.id for j in newcomer.jobs(SYSTEM, page_size=2)] == newest_first
    assert [j.id for j in newcomer.jobs(SYSTEM, limit=3, page_size=2)] == newest_first[:3]
    assert [j.id for j in newcomer.jobs(SYSTEM, state=["FAILED"])] == [bad]
    both = newcomer.jobs(SYSTEM, state=[JobState.FAILED, JobState.COMPLETED], page_size=1)
    assert [j.id for j in both] == newest_first
    assert [j.id for j in newcomer.jobs(SYSTEM, name="ok", limit=2)] == newest_first[1:3]
    assert newcomer.jobs(SYSTEM, state=["RUNNING"]) == []


def test_follow_yields_the_output_while_the_job_runs(client: Client) -> None:
    job = client.submit(SYSTEM, SLOW)
    pieces, states = [], []
    for piece in client.follow(SYSTEM, job.id):
        pieces.append(piece)
        states.append(client.job(SYSTEM, job.id).state)
    assert "".join(pieces) == SLOW_OUTPUT
    # live, not at the end (the first piece may come before the watcher's next round has
    # seen the job start: its state then still says PENDING)
    assert len(pieces) >= 3 and JobState.RUNNING in states
    assert client.job(SYSTEM, job.id).state == JobState.COMPLETED


def test_events_run_from_the_submit_to_the_final_state(client: Client) -> None:
    job = client.submit(SYSTEM, "#!/bin/bash\nsleep 0.5\nexit 3\n")
    events = list(client.events(SYSTEM, job.id))
    assert [e.state for e in events] == [JobState.PENDING, JobState.RUNNING, JobState.FAILED]
    assert events[-1].exit_code == 3 and {e.job_id for e in events} == {job.id}
    assert [e.id for e in events] == sorted({e.id for e in events})


def test_errors_are_the_servers_exception_classes(
    client: Client, sdk_gateway: GatewayProcess
) -> None:
    with pytest.raises(errors.NotFound, match="nowhere"):
        client.submit("nowhere", "#!/bin/bash\ntrue\n")
    with pytest.raises(errors.NotFound):
        client.job(SYSTEM, "999999")
    with pytest.raises(ValidationFailed) as invalid:
        client.submit(SYSTEM, "#!/bin/bash\ntrue\n", time_limit=-5)
    assert invalid.value.http_status == 422
    assert [e["loc"] for e in invalid.value.extra["errors"]] == [["body", "time_limit"]]
    with pytest.raises(errors.BadRequest, match="must start with an interpreter line"):
        client.submit(SYSTEM, "echo no interpreter\n")
    with (
        Client(sdk_gateway.url, "hpcg_not-a-real-token") as stranger,
        pytest.raises(errors.Unauthenticated),
    ):
        stranger.jobs(SYSTEM)


def test_the_event_parser_follows_the_sse_framing_rules() -> None:
    parser = EventParser()
    lines = [": ping", "event: output", "id: 5", "data: a", "data:b", "", "", "data: x", ""]
    events = [event for line in lines if (event := parser.feed(line)) is not None]
    assert events == [Event("output", "a\nb", "5"), Event("message", "x", "5")]


def test_follow_resumes_where_it_stopped_after_a_gateway_restart(tmp_path: Path) -> None:
    """A real broken stream: the gateway is killed while a follow reads; the SDK opens the
    stream again with Last-Event-ID once the gateway is back, so no line is lost or twice."""
    server = new_gateway(tmp_path / "home")
    server.start()
    try:
        with Client(server.url, server.token("alice")) as hpc:
            job = hpc.submit(SYSTEM, SLOW)
            pieces = hpc.follow(SYSTEM, job.id)
            first = next(pieces)
            server.stop(signal.SIGKILL)
            server.start()
            assert first + "".join(pieces) == SLOW_OUTPUT
    finally:
        server.stop()


async def test_async_submit_wait_output_and_listing(aclient: AsyncClient) -> None:
    job = await aclient.submit(SYSTEM, "#!/bin/bash\necho async\n", name="async")
    done = await aclient.wait(SYSTEM, job.id, timeout=30, check=True)
    assert (done.state, done.exit_code) == (JobState.COMPLETED, 0)
    assert await aclient.output(SYSTEM, job.id) == "async\n"
    assert (await aclient.job(SYSTEM, job.id)).id == job.id
    listed = await aclient.jobs(SYSTEM, name="async", state=["COMPLETED"], limit=1)
    assert [j.id for j in listed] == [job.id]


async def test_async_failure_cancel_and_timeout(aclient: AsyncClient) -> None:
    failing = await aclient.submit(SYSTEM, "#!/bin/bash\nexit 7\n")
    sleeper = await aclient.submit(SYSTEM, "#!/bin/bash\nsleep 300\n")
    with pytest.raises(JobFailed) as failed:
        await aclient.wait(SYSTEM, failing.id, timeout=30, check=True)
    assert failed.value.job.exit_code == 7
    with pytest.raises(WaitTimeout):
        await aclient.wait(SYSTEM, sleeper.id, timeout=0.5)
    await aclient.cancel(SYSTEM, sleeper.id)
    assert (await aclient.wait(SYSTEM, sleeper.id, timeout=30)).state == JobState.CANCELLED


async def test_async_follow_and_events(aclient: AsyncClient) -> None:
    job = await aclient.submit(SYSTEM, SLOW)
    pieces = [piece async for piece in aclient.follow(SYSTEM, job.id)]
    assert "".join(pieces) == SLOW_OUTPUT and len(pieces) >= 3
    states = [event.state async for event in aclient.events(SYSTEM, job.id)]
    assert states == [JobState.PENDING, JobState.RUNNING, JobState.COMPLETED]


async def test_async_errors(aclient: AsyncClient, sdk_gateway: GatewayProcess) -> None:
    with pytest.raises(errors.NotFound):
        await aclient.job("nowhere", "1")
    with pytest.raises(ValidationFailed):
        await aclient.submit(SYSTEM, "#!/bin/bash\ntrue\n", nodes=0)
    async with AsyncClient(sdk_gateway.url, "hpcg_not-a-real-token") as stranger:
        with pytest.raises(errors.Unauthenticated):
            await stranger.jobs(SYSTEM)
