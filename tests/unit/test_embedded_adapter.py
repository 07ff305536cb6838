"""The embedded adapter on recorded engine output: no processes run here."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hpcgate.model.commands import CommandResult
from hpcgate.model.errors import NotFound, SchedulerRejected, SchedulerUnavailable
from hpcgate.model.jobs import JobSpec, JobState
from hpcgate.model.scheduler import SubmitContext
from hpcgate.schedulers.embedded import EmbeddedScheduler

SCHEDULER = EmbeddedScheduler(Path("/spool"), slots=3, python="/py")
STATUS = {
    "jobs": [
        {
            "id": "4",
            "tag": "t4",
            "name": "a",
            "state": "FAILED",
            "reason": None,
            "exit_code": 7,
            "signal": None,
            "submit_time": 1.5e9,
            "start_time": 1.5e9 + 1,
            "end_time": 1.5e9 + 2,
            "workdir": "/w",
            "stdout": "/w/o",
            "stderr": "/w/e",
            "time_limit": None,
            "dependencies": [],
            "pid": 12,
        },
        {
            "id": "5",
            "tag": None,
            "name": "b",
            "state": "PENDING",
            "reason": "Resources",
            "exit_code": None,
            "signal": None,
            "submit_time": 1.5e9,
            "start_time": None,
            "end_time": None,
            "workdir": "/w",
            "stdout": "/w/o5",
            "stderr": "/w/e5",
            "time_limit": 60,
            "dependencies": ["afterok:4"],
            "pid": None,
        },
    ]
}


def _result(code: int, out: object = "", err: str = "") -> CommandResult:
    text = out if isinstance(out, str) else json.dumps(out)
    return CommandResult(code, text.encode(), err.encode())


def test_submit_sends_a_json_document_not_a_shell_line() -> None:
    spec = JobSpec(script="#!/bin/sh\necho $(x)", name="n; rm -rf /", environment={"A": "1"})
    command = SCHEDULER.submit_command(spec, SubmitContext("tag1", "/home/a"))
    assert command.argv == (
        "/py",
        "-m",
        "hpcgate.embedded",
        "--spool",
        "/spool",
        "--slots",
        "3",
        "submit",
    )
    document = json.loads(command.stdin or b"")
    assert document["name"] == "n; rm -rf /" and document["workdir"] == "/home/a"
    assert document["tag"] == "tag1" and document["env"] == {"A": "1"}


def test_parse_submit_and_status() -> None:
    assert SCHEDULER.parse_submit(_result(0, {"id": "17"})) == "17"
    jobs = SCHEDULER.parse_status(_result(0, STATUS))
    assert [(j.native_id, j.state, j.exit_code, j.reason) for j in jobs] == [
        ("4", JobState.FAILED, 7, None),
        ("5", JobState.PENDING, None, "Resources"),
    ]
    assert jobs[0].end_time is not None and jobs[0].end_time.tzinfo is not None
    assert SCHEDULER.status_command(["4", "5"]).argv[-2:] == ("--ids", "4,5")


@pytest.mark.parametrize(
    ("code", "error"),
    [(2, SchedulerRejected), (3, NotFound), (1, SchedulerUnavailable)],
)
def test_engine_exit_codes_map_to_errors(code: int, error: type[Exception]) -> None:
    with pytest.raises(error, match="the engine said"):
        SCHEDULER.parse_cancel(_result(code, err="the engine said so"))


def test_numbers_out_of_range_are_reported_as_unknown() -> None:
    """No number the engine prints can make the status query fail or reach the store
    unbounded: each one out of range is unknown, and the other jobs read as usual."""
    good: list[dict[str, object]] = STATUS["jobs"]  # type: ignore[assignment]
    bad = {
        **good[0],
        "time_limit": 10**20,
        "exit_code": 2**63,
        "signal": 10**30,
        "submit_time": 1e20,
        "start_time": -1e18,
    }
    jobs = SCHEDULER.parse_status(_result(0, {"jobs": [bad, good[1]]}))
    assert [job.native_id for job in jobs] == ["4", "5"]
    first = jobs[0]
    assert (first.time_limit, first.exit_code, first.signal) == (None, None, None)
    assert (first.submit_time, first.start_time) == (None, None)
    assert first.end_time is not None and first.state is JobState.FAILED
    assert jobs[1].time_limit == 60


def _machine(running: int) -> CommandResult:
    document = {"host": "box", "slots": 3, "running": running, "pending": 0, "memory_mib": 512}
    return CommandResult(0, json.dumps(document).encode(), b"")


@pytest.mark.parametrize(("running", "state"), [(0, "IDLE"), (2, "MIXED"), (3, "ALLOCATED")])
def test_the_machine_is_one_node_whose_cpus_are_the_slots(running: int, state: str) -> None:
    info = SCHEDULER.info
    assert info is not None
    assert info.nodes_command().argv == ("/py", "-m", "hpcgate.embedded", "--spool", "/spool",
                                         "--slots", "3", "info")  # fmt: skip
    [node] = info.parse_nodes(_machine(running))
    assert (node.name, node.state, node.cpus, node.cpus_allocated) == ("box", state, 3, running)
    assert (node.partitions, node.memory, node.address) == (["local"], 512, "127.0.0.1")
    [partition] = info.parse_partitions(_machine(running))
    assert (partition.name, partition.nodes, partition.total_cpus) == ("local", ["box"], 3)


def test_no_reservations_or_associations_and_nothing_runs_for_them() -> None:
    info = SCHEDULER.info
    assert info is not None
    assert info.reservations_command() is None and info.associations_command("alice") is None


@pytest.mark.parametrize("output", [b"", b"{}", b'{"host": "box", "slots": "many"}'])
def test_unreadable_machine_info_is_unavailable(output: bytes) -> None:
    assert SCHEDULER.info is not None
    with pytest.raises(SchedulerUnavailable):
        SCHEDULER.info.parse_nodes(CommandResult(0, output, b""))
