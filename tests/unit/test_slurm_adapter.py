"""The Slurm adapter on recorded command output: no Slurm, no processes."""

from __future__ import annotations

import pytest

from hpcgate.commands import CommandResult
from hpcgate.errors import SchedulerRejected, SchedulerUnavailable
from hpcgate.jobs.models import JobSpec, JobState
from hpcgate.schedulers.base import SubmitContext
from hpcgate.schedulers.slurm import SlurmScheduler
from hpcgate.schedulers.slurm_format import (
    SEP,
    exit_status,
    format_duration,
    parse_duration,
    state_of,
)

SLURM = SlurmScheduler()
CONTEXT = SubmitContext("t1", "/home/alice")


def _result(code: int, out: str = "", err: str = "") -> CommandResult:
    return CommandResult(code, out.encode(), err.encode())


def test_every_field_maps_to_its_sbatch_option() -> None:
    spec = JobSpec(
        script="#!/bin/bash\necho hi",
        name="n x",
        working_directory="/w",
        time_limit=5400,
        partition="batch",
        account="proj",
        nodes=2,
        ntasks=4,
        cpus_per_task=2,
        memory="4G",
        gpus=1,
        stdout="o-%j",
        stderr="e-%j",
        array="0-3%2",
        dependencies=["afterok:1", "afterany:2:3"],
        environment={"A": "1; rm -rf /"},
    )
    command = SLURM.submit_command(spec, CONTEXT)
    assert command.argv == (
        "sbatch",
        "--parsable",
        "--export=ALL",
        "--comment=hpcgate:t1",
        "--chdir=/w",
        "--job-name=n x",
        "--partition=batch",
        "--account=proj",
        "--nodes=2",
        "--ntasks=4",
        "--cpus-per-task=2",
        "--gpus=1",
        "--output=o-%j",
        "--error=e-%j",
        "--array=0-3%2",
        "--time=0-01:30:00",
        "--mem=4096M",
        "--dependency=afterok:1,afterany:2:3",
    )
    assert command.stdin == b"#!/bin/bash\necho hi"
    assert command.env == {"A": "1; rm -rf /"}  # a value, never shell text


def test_script_path_is_the_last_argument_after_a_separator() -> None:
    command = SLURM.submit_command(JobSpec(script_path="/home/a/--help.sh"), CONTEXT)
    assert command.argv[-2:] == ("--", "/home/a/--help.sh")
    assert command.argv[4] == "--chdir=/home/alice"
    assert command.stdin is None


def test_parse_submit() -> None:
    assert SLURM.parse_submit(_result(0, "4242\n")) == "4242"
    assert SLURM.parse_submit(_result(0, "4243;cluster2\n")) == "4243"


@pytest.mark.parametrize(
    ("stderr", "error"),
    [
        (
            "sbatch: error: Batch job submission failed: Invalid partition name specified",
            SchedulerRejected,
        ),
        (
            "sbatch: error: Batch job submission failed: Invalid account or account/partition "
            "combination specified",
            SchedulerRejected,
        ),
        (
            "sbatch: error: Batch job submission failed: Requested time limit is invalid "
            "(missing or exceeds some limit)",
            SchedulerRejected,
        ),
        (
            "sbatch: error: Batch job submission failed: Unable to contact slurm controller "
            "(connect failure)",
            SchedulerUnavailable,
        ),
    ],
)
def test_sbatch_failures(stderr: str, error: type[Exception]) -> None:
    with pytest.raises(error) as caught:
        SLURM.parse_submit(_result(1, err=stderr))
    assert "sbatch: error" not in str(caught.value)


def _line(*fields: str) -> str:
    return SEP.join(fields)


def test_parse_squeue() -> None:
    out = "\n".join(
        [
            _line(
                "101",
                "RUNNING",
                "None",
                "2026-11-22T08:00:00",
                "2026-11-22T08:00:01",
                "2027-11-22T08:00:01",
                "/home/alice",
                "1:00:00",
                "with|bar and spaces",
            ),
            _line(
                "102",
                "PENDING",
                "Dependency",
                "2026-11-22T08:00:00",
                "N/A",
                "N/A",
                "/w",
                "UNLIMITED",
                "b",
            ),
            _line(
                "103",
                "COMPLETED",
                "None",
                "2026-11-22T08:00:00",
                "2026-11-22T08:00:01",
                "2026-11-22T08:00:02",
                "/w",
                "5:00",
                "c",
            ),
        ]
    )
    jobs = SLURM.parse_status(_result(0, out + "\n"))
    assert [(j.native_id, j.state, j.reason, j.time_limit) for j in jobs] == [
        ("101", JobState.RUNNING, None, 3600),
        ("102", JobState.PENDING, "Dependency", None),
        ("103", JobState.COMPLETED, None, 300),
    ]
    assert jobs[0].name == "with|bar and spaces"
    assert jobs[0].end_time is None  # a running job's "end" is its time-limit deadline
    assert jobs[2].end_time is not None and jobs[1].start_time is None


def test_squeue_invalid_job_id_means_none_listed() -> None:
    result = _result(1, err="slurm_load_jobs error: Invalid job id specified")
    assert SLURM.parse_status(result) == []


def test_parse_sacct_exit_codes_and_signals() -> None:
    out = "\n".join(
        [
            _line(
                "201",
                "FAILED",
                "7:0",
                "2026-11-22T08:00:00",
                "2026-11-22T08:00:01",
                "2026-11-22T08:00:02",
                "/w",
                "00:10:00",
                "a",
            ),
            _line(
                "202",
                "FAILED",
                "0:9",
                "2026-11-22T08:00:00",
                "2026-11-22T08:00:01",
                "2026-11-22T08:00:02",
                "/w",
                "00:10:00",
                "b",
            ),
            _line(
                "203",
                "CANCELLED by 1000",
                "0:15",
                "2026-11-22T08:00:00",
                "Unknown",
                "2026-11-22T08:00:02",
                "/w",
                "UNLIMITED",
                "c",
            ),
            _line(
                "204",
                "TIMEOUT",
                "0:0",
                "2026-11-22T08:00:00",
                "2026-11-22T08:00:01",
                "2026-11-22T08:01:20",
                "/w",
                "00:01:00",
                "d",
            ),
        ]
    )
    jobs = SLURM.parse_history(_result(0, out))
    assert [(j.native_id, j.state, j.exit_code, j.signal) for j in jobs] == [
        ("201", JobState.FAILED, 7, None),
        ("202", JobState.FAILED, None, 9),
        ("203", JobState.CANCELLED, None, 15),
        ("204", JobState.TIMEOUT, 0, None),
    ]


@pytest.mark.parametrize(
    ("text", "state"),
    [
        ("RUNNING", JobState.RUNNING),
        ("CANCELLED by 0", JobState.CANCELLED),
        ("OUT_OF_MEMORY", JobState.OUT_OF_MEMORY),
        ("NODE_FAIL", JobState.NODE_FAIL),
        ("COMPLETING", JobState.RUNNING),
        ("PREEMPTED", JobState.PREEMPTED),
        ("REQUEUED", JobState.PENDING),
        ("DEADLINE", JobState.TIMEOUT),
    ],
)
def test_state_table(text: str, state: JobState) -> None:
    assert state_of(text) is state


def test_durations_round_trip() -> None:
    for seconds in (1, 59, 60, 3599, 86400, 93784):
        assert parse_duration(format_duration(seconds)) == seconds
    assert parse_duration("5:00") == 300
    assert parse_duration("UNLIMITED") is None
    assert exit_status("garbage") == (None, None)


def test_ping() -> None:
    SLURM.parse_ping(_result(0, "Slurmctld(primary) at localhost is UP\n"))
    with pytest.raises(SchedulerUnavailable):
        SLURM.parse_ping(_result(1, "Slurmctld(primary) at localhost is DOWN\n"))
