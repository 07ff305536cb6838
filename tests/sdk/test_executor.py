"""hpcgate.Executor: batch jobs as concurrent.futures futures, against the real gateway
(embedded scheduler, 4 slots) of the SDK tier, as a user of these tests' own."""

from __future__ import annotations

import concurrent.futures
import logging
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from hpcgate.client import (
    Client,
    Executor,
    GatewayUnreachable,
    JobFailed,
    JobFuture,
    Retry,
    ValidationFailed,
)
from hpcgate.client._executor import as_spec, transient
from hpcgate.model.errors import (
    PROBLEM_BASE,
    BadRequest,
    CommandTimeout,
    IdempotencyInProgress,
    NotFound,
    NotImplementedByScheduler,
    Unauthenticated,
    Unavailable,
)
from hpcgate.model.jobs import Job, JobSpec, JobState
from tests.support.gateway_process import GatewayProcess, free_port, new_gateway

SYSTEM = "local"
POLL = 0.2


def script(body: str) -> str:
    return f"#!/bin/bash\n{body}\n"


def until_sent(future: JobFuture, timeout: float = 15) -> Job:
    """The job of ``future`` once the gateway has accepted it."""
    deadline = time.monotonic() + timeout
    while future.job is None:
        assert time.monotonic() < deadline, "the job was never submitted"
        assert not future.done(), future.exception()
        time.sleep(0.05)
    return future.job


@pytest.fixture(scope="module")
def token(sdk_gateway: GatewayProcess) -> str:
    """A user of its own: no other test's jobs in its listings."""
    return sdk_gateway.token("executor")


@pytest.fixture
def hpc(sdk_gateway: GatewayProcess, token: str) -> Iterator[Client]:
    with Client(sdk_gateway.url, token) as client:
        yield client


class Counting(httpx.BaseTransport):
    """The real HTTP transport, noting each request it sends."""

    def __init__(self) -> None:
        self.inner = httpx.HTTPTransport()
        self.sent: list[tuple[str, str]] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.sent.append((request.method, request.url.path))
        return self.inner.handle_request(request)

    def close(self) -> None:
        self.inner.close()


# Pure parts -----------------------------------------------------------------------------


def test_a_spec_may_be_a_jobspec_a_mapping_or_a_script() -> None:
    spec = JobSpec(script=script("true"), name="x")
    assert as_spec(spec) is spec
    assert as_spec({"script": script("true"), "name": "x"}) == spec
    assert as_spec(script("true")) == JobSpec(script=script("true"))
    with pytest.raises(ValueError, match="memory"):
        as_spec({"script": script("true"), "memory": "lots"})


def test_which_errors_are_waited_out() -> None:
    assert transient(GatewayUnreachable("no route"))
    assert transient(Unavailable("scheduler down"))
    assert transient(CommandTimeout("squeue hung"))
    assert transient(IdempotencyInProgress("same key in progress"))
    assert not transient(NotImplementedByScheduler("no"))
    assert not transient(Unauthenticated("token expired"))
    assert not transient(NotFound("gone"))
    assert not transient(BadRequest("bad"))
    assert not transient(ValueError("a bug"))


def test_submit_takes_a_job_not_a_function() -> None:
    with (
        Client(f"http://127.0.0.1:{free_port()}", "t") as hpc,
        Executor(hpc, SYSTEM) as run,
        pytest.raises(TypeError, match="batch jobs"),
    ):
        run.submit(print)  # type: ignore[arg-type]


def test_bad_settings_are_refused() -> None:
    with Client(f"http://127.0.0.1:{free_port()}", "t") as hpc:
        with pytest.raises(ValueError, match="poll"):
            Executor(hpc, SYSTEM, poll=0)
        with pytest.raises(ValueError, match="max_in_flight"):
            Executor(hpc, SYSTEM, max_in_flight=0)


# Against the gateway --------------------------------------------------------------------


def test_map_yields_the_finished_jobs_in_order(hpc: Client) -> None:
    # The first jobs sleep longest, so they end last: map still yields them first.
    specs = [
        {"script": script(f"sleep 0.{8 - 2 * i}; echo {i}"), "name": f"map-{i}"} for i in range(5)
    ]
    with Executor(hpc, SYSTEM, poll=POLL) as run:
        jobs = list(run.map(specs, timeout=30))
    assert [job.name for job in jobs] == [f"map-{i}" for i in range(5)]
    assert {job.state for job in jobs} == {JobState.COMPLETED}
    assert [hpc.output(SYSTEM, job.id) for job in jobs] == [f"{i}\n" for i in range(5)]


def test_a_map_with_a_bad_spec_submits_nothing(hpc: Client) -> None:
    specs = [{"script": script("true"), "name": "bad-map"}, {"script": "x", "memory": "lots"}]
    with Executor(hpc, SYSTEM, poll=POLL) as run, pytest.raises(ValueError, match="memory"):
        run.map(specs)
    time.sleep(0.5)
    assert hpc.jobs(SYSTEM, name="bad-map") == []


def test_as_completed_yields_each_job_as_it_ends(hpc: Client) -> None:
    with Executor(hpc, SYSTEM, poll=POLL) as run:
        slow = run.submit(script("sleep 2"))
        fast = run.submit(JobSpec(script=script("true"), name="fast"))
        failing = run.submit({"script": script("exit 1")})
        order = list(concurrent.futures.as_completed([slow, fast, failing], timeout=30))
    assert set(order) == {slow, fast, failing}
    assert order[-1] is slow
    assert slow.result().state is JobState.COMPLETED
    assert fast.result().name == "fast"
    assert isinstance(failing.exception(), JobFailed)


def test_a_job_that_exits_3_fails_its_future_with_job_failed(hpc: Client) -> None:
    with Executor(hpc, SYSTEM, poll=POLL) as run:
        future = run.submit(script("echo oops >&2; exit 3"))
        error = future.exception(timeout=30)
    assert isinstance(error, JobFailed)
    assert (error.job.state, error.job.exit_code) == (JobState.FAILED, 3)
    assert error.job.id == until_sent(future).id
    with pytest.raises(JobFailed, match="exit code 3"):
        future.result()


def test_what_the_gateway_refuses_is_the_future_s_exception(hpc: Client) -> None:
    with Executor(hpc, SYSTEM, poll=POLL) as run:
        future = run.submit({"script": "no shebang"})
        assert isinstance(future.exception(timeout=15), ValidationFailed | BadRequest)
    assert future.job is None


def test_wait_returns_at_the_first_exception_and_wakes_on_a_cancel(hpc: Client) -> None:
    with Executor(hpc, SYSTEM, poll=POLL) as run:
        sleeper = run.submit(script("sleep 60"))
        failing = run.submit(script("exit 1"))
        done, not_done = concurrent.futures.wait(
            [sleeper, failing], timeout=30, return_when=concurrent.futures.FIRST_EXCEPTION
        )
        assert (done, not_done) == ({failing}, {sleeper})
        job = until_sent(sleeper)
        with concurrent.futures.ThreadPoolExecutor(1) as other:
            waiting = other.submit(concurrent.futures.wait, [sleeper], timeout=20)
            time.sleep(0.3)
            assert sleeper.cancel()
            assert waiting.result(timeout=5).done == {sleeper}
    assert hpc.wait(SYSTEM, job.id, timeout=20).state is JobState.CANCELLED


def test_cancelling_a_future_cancels_its_job_on_the_gateway(hpc: Client) -> None:
    with Executor(hpc, SYSTEM, poll=POLL) as run:
        first = run.submit(script("sleep 60"))
        running = until_sent(first)
        blocked = run.submit({"script": script("true"), "dependencies": [f"afterok:{running.id}"]})
        pending = until_sent(blocked)
        assert hpc.job(SYSTEM, pending.id).state is JobState.PENDING
        assert blocked.cancel()
        assert first.cancel()
        assert blocked.cancelled() and first.cancelled()
        with pytest.raises(concurrent.futures.CancelledError):
            blocked.result()
    assert hpc.wait(SYSTEM, pending.id, timeout=20).state is JobState.CANCELLED
    assert hpc.wait(SYSTEM, running.id, timeout=20).state is JobState.CANCELLED
    assert not first.cancel() or first.cancelled()  # cancelling again changes nothing


def test_a_future_waiting_for_room_is_cancelled_without_a_job(hpc: Client) -> None:
    with Executor(hpc, SYSTEM, poll=POLL, max_in_flight=1) as run:
        first = run.submit(script("sleep 60"))
        running = until_sent(first)
        waiting = run.submit({"script": script("true"), "name": "never-sent"})
        time.sleep(3 * POLL)
        assert waiting.job is None  # one job in flight at most
        assert waiting.cancel()
        assert first.cancel()
    assert hpc.jobs(SYSTEM, name="never-sent") == []
    assert hpc.wait(SYSTEM, running.id, timeout=20).state is JobState.CANCELLED


def test_a_job_that_ended_before_the_cancel_keeps_its_outcome(hpc: Client) -> None:
    with Executor(hpc, SYSTEM, poll=30) as run:  # no poll comes before the cancel
        future = run.submit(script("true"))
        job = until_sent(future)
        hpc.wait(SYSTEM, job.id, timeout=20)
        assert not future.cancel()
        assert future.result(timeout=1).state is JobState.COMPLETED
        run.shutdown(wait=False)


def test_shutdown_cancel_futures_cancels_their_jobs(hpc: Client) -> None:
    run = Executor(hpc, SYSTEM, poll=POLL, max_in_flight=2)
    futures = [run.submit({"script": script("sleep 60"), "name": "shut"}) for _ in range(3)]
    sent = [until_sent(future) for future in futures[:2]]
    run.shutdown(wait=True, cancel_futures=True)
    assert all(future.cancelled() for future in futures)
    assert futures[2].job is None
    for job in sent:
        assert hpc.wait(SYSTEM, job.id, timeout=20).state is JobState.CANCELLED
    assert len(hpc.jobs(SYSTEM, name="shut")) == 2
    with pytest.raises(RuntimeError, match="shut down"):
        run.submit(script("true"))


def test_leaving_the_with_block_waits_for_the_jobs(hpc: Client) -> None:
    with Executor(hpc, SYSTEM, poll=POLL) as run:
        future = run.submit(script("sleep 1"))
    assert future.done()
    assert future.result().state is JobState.COMPLETED
    with pytest.raises(RuntimeError):
        run.submit(script("true"))


def test_a_map_that_times_out_cancels_its_jobs(hpc: Client) -> None:
    with Executor(hpc, SYSTEM, poll=POLL) as run:
        results = run.map([{"script": script("sleep 60"), "name": "late"}] * 2, timeout=1)
        with pytest.raises(TimeoutError):
            next(results)
    late = hpc.jobs(SYSTEM, name="late")
    assert len(late) <= 2
    assert {hpc.wait(SYSTEM, job.id, timeout=20).state for job in late} <= {JobState.CANCELLED}


def test_many_jobs_cost_one_listing_per_poll(sdk_gateway: GatewayProcess, token: str) -> None:
    counting = Counting()
    poll = 0.25
    with (
        Client(sdk_gateway.url, token, transport=counting) as hpc,
        Executor(hpc, SYSTEM, poll=poll) as run,
    ):
        started = time.monotonic()
        jobs = list(run.map([script("sleep 1")] * 12, timeout=60))
        elapsed = time.monotonic() - started
    assert {job.state for job in jobs} == {JobState.COMPLETED}
    gets = [path for method, path in counting.sent if method == "GET"]
    listings = [path for path in gets if path.endswith("/jobs")]
    reads = [path for path in gets if "/jobs/" in path]
    submits = [path for method, path in counting.sent if method == "POST"]
    assert len(submits) == 12
    assert len(reads) == 12  # one final read of each job, once it has left the listing
    # 12 jobs on 4 slots take 3 rounds of 1 s: each poll is one listing of them all.
    assert 3 <= len(listings) <= elapsed / poll + 1


def test_an_unreachable_gateway_fails_the_futures_after_give_up_after() -> None:
    closed = f"http://127.0.0.1:{free_port()}"
    with (
        Client(closed, "t", retry=Retry(attempts=1)) as hpc,
        Executor(hpc, SYSTEM, poll=0.1, give_up_after=1.0) as run,
    ):
        started = time.monotonic()
        future = run.submit(script("true"))
        error = future.exception(timeout=20)
        assert isinstance(error, GatewayUnreachable)
        assert time.monotonic() - started >= 1.0  # waited out first


def test_a_gateway_restart_is_waited_out(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    server = new_gateway(tmp_path / "home")
    server.start()
    try:
        with (
            Client(server.url, server.token("alice"), retry=Retry(attempts=1)) as hpc,
            Executor(hpc, "local", poll=POLL) as run,
            caplog.at_level(logging.WARNING, logger="hpcgate.client"),
        ):
            future = run.submit(script("sleep 2; echo survived"))
            job = until_sent(future)
            server.stop()
            time.sleep(4 * POLL)
            server.start()
            assert future.result(timeout=30).state is JobState.COMPLETED
            assert hpc.output("local", job.id) == "survived\n"
        assert any("gateway trouble" in record.message for record in caplog.records)
    finally:
        server.stop()


def vanishing_gateway(request: httpx.Request) -> httpx.Response:
    """A fake gateway on which a job is gone once submitted (not reproducible for real: the
    gateway never deletes a job)."""
    job = {"id": "7", "system": SYSTEM, "owner": "alice", "name": None, "state": "PENDING"}
    if request.method == "POST":
        return httpx.Response(201, json=job)
    if request.url.path.endswith("/jobs"):
        return httpx.Response(200, json={"items": [], "next_cursor": None})
    problem = {"type": f"{PROBLEM_BASE}not-found", "title": "Not found", "detail": "no job 7"}
    return httpx.Response(404, json=problem, headers={"Content-Type": "application/problem+json"})


def test_a_job_that_disappears_fails_its_future() -> None:
    fake = httpx.MockTransport(vanishing_gateway)
    with (
        Client("http://gateway.invalid", "t", transport=fake) as hpc,
        Executor(hpc, SYSTEM, poll=0.05) as run,
    ):
        error = run.submit(script("true")).exception(timeout=10)
    assert isinstance(error, NotFound)
    assert "no job 7" in str(error)
