"""The Slurm adapter on recorded command output: no Slurm, no processes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from hpcgate.model.commands import CommandResult
from hpcgate.model.errors import SchedulerRejected, SchedulerUnavailable
from hpcgate.model.jobs import JobSpec, JobState
from hpcgate.model.scheduler import SubmitContext
from hpcgate.schedulers.slurm import (
    SlurmScheduler,
    expand_pattern,
    node_list,
    task_ids,
    wait_status,
)
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
        "--array=0-3%2",
        "--output=o-%j",
        "--error=e-%j",
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


RECORDED = Path(__file__).parent / "recorded" / "slurm"
ARRAY, PLAIN, KILLED, DEPENDENT = (RECORDED / "ids.txt").read_text().split()


def _recorded(name: str) -> CommandResult:
    return CommandResult(0, (RECORDED / name).read_bytes(), b"")


def test_default_output_patterns_are_explicit() -> None:
    plain = SLURM.submit_command(JobSpec(script="#!/bin/sh\n"), CONTEXT).argv
    assert "--output=slurm-%j.out" in plain and "--error=slurm-%j.out" in plain
    array = SLURM.submit_command(JobSpec(script="#!/bin/sh\n", array="1-3"), CONTEXT).argv
    assert "--output=slurm-%A_%a.out" in array and "--error=slurm-%A_%a.out" in array
    split = SLURM.submit_command(JobSpec(script="#!/bin/sh\n", stdout="o.txt"), CONTEXT).argv
    assert "--error=o.txt" in split  # Slurm's default: stderr goes where stdout goes


def test_parse_recorded_squeue() -> None:
    jobs = {job.native_id: job for job in SLURM.parse_status(_recorded("squeue.txt"))}
    array_tasks = {f"{ARRAY}_{task}" for task in range(6)}
    assert set(jobs) == array_tasks | {PLAIN, KILLED, DEPENDENT}
    plain = jobs[PLAIN]
    assert (plain.state, plain.exit_code, plain.signal) == (JobState.FAILED, 7, None)
    assert plain.stdout == f"/home/alice/out-{PLAIN}-plain.log"
    assert plain.node_list is not None and plain.node_list.startswith("node")
    assert (jobs[KILLED].state, jobs[KILLED].signal) == (JobState.FAILED, 9)
    dependent = jobs[DEPENDENT]
    assert (dependent.state, dependent.reason) == (JobState.PENDING, "DependencyNeverSatisfied")
    assert dependent.start_time is None and dependent.exit_code is None
    first, second = jobs[f"{ARRAY}_0"], jobs[f"{ARRAY}_1"]
    assert (first.state, first.exit_code, first.array_job_id) == (JobState.COMPLETED, 0, ARRAY)
    assert (second.state, second.exit_code) == (JobState.FAILED, 1)
    assert first.name == "arr|x y"
    waiting = jobs[f"{ARRAY}_5"]  # from the pending remainder "4-5%2"
    assert (waiting.state, waiting.reason) == (JobState.PENDING, "JobArrayTaskLimit")
    assert waiting.node_list is None
    assert jobs[f"{ARRAY}_2"].state is JobState.RUNNING and jobs[f"{ARRAY}_2"].end_time is None


def test_parse_recorded_sacct() -> None:
    jobs = {job.native_id: job for job in SLURM.parse_history(_recorded("sacct.txt"))}
    assert (jobs[PLAIN].state, jobs[PLAIN].exit_code) == (JobState.FAILED, 7)
    assert (jobs[KILLED].exit_code, jobs[KILLED].signal) == (None, 9)
    assert jobs[DEPENDENT].state is JobState.PENDING and jobs[DEPENDENT].time_limit is None
    assert jobs[DEPENDENT].node_list is None  # "None assigned"
    plain_nodes = jobs[PLAIN].node_list
    assert plain_nodes is not None and "," not in plain_nodes
    tasks = [jobs[f"{ARRAY}_{task}"] for task in range(6)]
    assert [task.exit_code for task in tasks] == [0, 1, 2, 3, 4, 5]
    assert {task.array_job_id for task in tasks} == {ARRAY}
    assert tasks[0].state is JobState.COMPLETED and tasks[5].state is JobState.FAILED


def test_squeue_invalid_job_id_means_none_listed() -> None:
    result = _result(1, err="slurm_load_jobs error: Invalid job id specified")
    assert SLURM.parse_status(result) == []


@pytest.mark.parametrize(
    ("text", "ids"),
    [
        ("7", ["7"]),
        ("[0-3%2]", ["0", "1", "2", "3"]),
        ("4-5%2", ["4", "5"]),
        ("[1,3,5-9:2]", ["1", "3", "5", "7", "9"]),
        ("garbage", []),
        ("[1,2-99999999999999999999]", ["1"]),  # beyond any Slurm array: not expanded
        ("[4000001-4000002]", []),
    ],
)
def test_task_ids(text: str, ids: list[str]) -> None:
    assert task_ids(text) == ids


def test_expand_pattern() -> None:
    values = {"j": "44", "A": "43", "a": "2", "x": "run", "u": "alice"}
    assert expand_pattern("/o/%x-%A_%a.%j.%u.%%.out", values) == "/o/run-43_2.44.alice.%.out"


@pytest.mark.parametrize(
    ("text", "names"),
    [("node[1-3]", "node1,node2,node3"), ("(null)", None), ("None assigned", None), ("", None)],
)
def test_node_list(text: str, names: str | None) -> None:
    assert node_list(text) == names


@pytest.mark.parametrize(
    ("status", "expected"),
    [("0", (0, None)), ("1792", (7, None)), ("9", (None, 9)), ("", (None, None))],
)
def test_wait_status(status: str, expected: tuple[int | None, int | None]) -> None:
    assert wait_status(status) == expected


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


def test_find_by_tag_in_the_accounting_records() -> None:
    line = "sbatch --parsable --export=ALL --comment=hpcgate:{} --chdir=/home/alice"
    out = (
        f"20{SEP}{line.format('abcd')}\n21_3{SEP}{line.format('abc')}\n"
        f"21_4{SEP}{line.format('abc')}\n22{SEP}sbatch --comment=x --job-name=hpcgate:abc\n"
    )
    assert SLURM.parse_find_in_history(_result(0, out), "abc") == "21"  # the array's id
    assert SLURM.parse_find_in_history(_result(0, out), "zzz") is None
    since = datetime.now(UTC) - timedelta(minutes=10)
    command = SLURM.find_in_history_command("abc", since)
    assert command is not None and "--allusers" in command.argv
    start = next(a for a in command.argv if a.startswith("--starttime=now-"))
    assert 600 + 3600 <= int(start.removeprefix("--starttime=now-").removesuffix("seconds")) < 4300
    with pytest.raises(SchedulerUnavailable):
        SLURM.parse_find_in_history(_result(1, err="slurmdbd: Connection refused"), "abc")


def test_find_by_tag() -> None:
    out = f"12{SEP}\n13{SEP}hpcgate:abc\n14{SEP}hpcgate:abcd\n15{SEP}hpcgate:abc\n"
    assert SLURM.parse_find(_result(0, out), "abc") == "13"
    assert SLURM.parse_find(_result(0, out), "zzz") is None
    assert SLURM.recoverable_submit and not SLURM.idempotent_submit
    with pytest.raises(SchedulerUnavailable):
        SLURM.parse_find(_result(1, err="Unable to contact slurm controller"), "abc")
