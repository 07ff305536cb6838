"""The PBS adapter on recorded (reconstructed) command output: no PBS, no processes."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from hpcgate.model.commands import CommandResult
from hpcgate.model.errors import SchedulerRejected, SchedulerUnavailable, UnsupportedField
from hpcgate.model.jobs import JobSpec, JobState
from hpcgate.model.scheduler import SchedulerJob, SubmitContext
from hpcgate.schedulers.pbs import (
    PbsScheduler,
    ended,
    exec_hosts,
    outcome,
    path_of,
    variables_of,
)
from hpcgate.schedulers.pbs_format import parse_duration, time_of
from hpcgate.schedulers.pbs_submit import format_duration

PBS = PbsScheduler()
CONTEXT = SubmitContext("t1", "/home/alice")
RECORDED = Path(__file__).parent / "recorded" / "pbs"
SCRIPT = "#!/bin/bash\necho hi"


def _recorded(name: str) -> bytes:
    return (RECORDED / name).read_bytes()


def _result(code: int, out: bytes | str = b"", err: bytes | str = b"") -> CommandResult:
    def raw(value: bytes | str) -> bytes:
        return value.encode() if isinstance(value, str) else value

    return CommandResult(code, raw(out), raw(err))


def _spec(**fields: Any) -> JobSpec:
    return JobSpec(script=SCRIPT, **fields)


def _local(text: str) -> datetime:
    """A wall-clock time as PBS prints it: local to the server (here: to the tests)."""
    return datetime.fromisoformat(text).astimezone(UTC)


def _by_id(jobs: list[SchedulerJob]) -> dict[str, SchedulerJob]:
    return {job.native_id: job for job in jobs}


# --- submission -----------------------------------------------------------------------


def test_every_supported_field_maps_to_its_qsub_option() -> None:
    spec = _spec(
        name="relax.1",
        time_limit=5400,
        partition="workq",
        account="proj42",
        nodes=2,
        ntasks=8,
        cpus_per_task=2,
        memory="4G",
        gpus=2,
        stdout="/scratch/alice/relax.out",
        stderr="/scratch/alice/relax.err",
        array="1-9:2%3",
        dependencies=["afterok:1", "afterany:2:3"],
        environment={"A": "1; rm -rf /", "B": "two words"},
    )
    command = PBS.submit_command(spec, CONTEXT)
    assert command.argv == (
        "qsub",
        "-N",
        "relax.1",
        "-q",
        "workq",
        "-A",
        "proj42",
        "-l",
        "walltime=01:30:00",
        "-l",
        "select=2:ncpus=8:mpiprocs=4:ompthreads=2:mem=4096mb:ngpus=1",
        "-l",
        "place=scatter",
        "-o",
        "/scratch/alice/relax.out",
        "-e",
        "/scratch/alice/relax.err",
        "-J",
        "1-9:2",
        "-W",
        "max_run_subjobs=3",
        "-W",
        "depend=afterok:1,afterany:2:3",
        "-v",
        "HPCGATE_TAG=t1,A=1; rm -rf /,B=two words",
    )
    assert command.stdin == SCRIPT.encode()
    assert command.env == {}  # a clean environment: nothing of the gateway's reaches qsub


def test_a_bare_spec_carries_only_the_tag() -> None:
    command = PBS.submit_command(_spec(), CONTEXT)
    assert command.argv == ("qsub", "-v", "HPCGATE_TAG=t1")


def test_script_path_is_the_last_argument_never_after_a_double_dash() -> None:
    command = PBS.submit_command(JobSpec(script_path="/home/a/run.sh"), CONTEXT)
    assert command.argv[-1] == "/home/a/run.sh"
    assert "--" not in command.argv  # for qsub, "--" means "run this executable"
    assert command.stdin is None
    dashed = PBS.submit_command(JobSpec(script_path="-help.sh"), CONTEXT)
    assert dashed.argv[-1] == "./-help.sh"  # the same file, but not an option


@pytest.mark.parametrize(
    ("fields", "select"),
    [
        ({"nodes": 3}, "3:ncpus=1"),
        ({"nodes": 1, "ntasks": 2}, "1:ncpus=2:mpiprocs=2"),
        ({"ntasks": 4}, "1:ncpus=4:mpiprocs=4"),
        ({"cpus_per_task": 8}, "1:ncpus=8:ompthreads=8"),
        ({"memory": 512}, "1:ncpus=1:mem=512mb"),
        ({"gpus": 4}, "1:ncpus=1:ngpus=4"),
        ({"nodes": 2, "ntasks": 2, "gpus": 0}, "2:ncpus=1:mpiprocs=1"),
    ],
)
def test_resources_become_one_chunk_per_node(fields: dict[str, Any], select: str) -> None:
    argv = PBS.submit_command(_spec(**fields), CONTEXT).argv
    assert argv[argv.index("-l") + 1] == f"select={select}"
    assert ("place=scatter" in argv) == (fields.get("nodes", 1) > 1)


def test_no_gpus_asks_for_nothing() -> None:
    assert "-l" not in PBS.submit_command(_spec(gpus=0), CONTEXT).argv


@pytest.mark.parametrize(
    ("fields", "named"),
    [
        ({"nodes": 2, "ntasks": 5}, ["ntasks", "nodes"]),
        ({"nodes": 3, "gpus": 4}, ["gpus", "nodes"]),
    ],
)
def test_uneven_shares_are_refused(fields: dict[str, Any], named: list[str]) -> None:
    with pytest.raises(UnsupportedField) as caught:
        PBS.check(_spec(**fields))
    assert caught.value.extra["fields"] == named
    assert "multiple of nodes" in caught.value.detail


def test_working_directory_and_qos_are_422s() -> None:
    with pytest.raises(UnsupportedField) as caught:
        PBS.check(_spec(working_directory="/w", qos="high"))
    assert caught.value.extra["fields"] == ["qos", "working_directory"]


@pytest.mark.parametrize(
    "value", ["a,b", "it's", 'say "hi"', "back\\slash", "two\nlines", "tab\there"]
)
def test_environment_values_qsub_would_mangle_are_refused(value: str) -> None:
    spec = _spec(environment={"OK": "fine", "BAD": value})
    for attempt in (lambda: PBS.check(spec), lambda: PBS.submit_command(spec, CONTEXT)):
        with pytest.raises(UnsupportedField) as caught:
            attempt()
        assert "BAD" in caught.value.detail
        assert caught.value.extra["fields"] == ["environment"]


@pytest.mark.parametrize("name", ["PBS_O_WORKDIR", "PBS_JOBID", "HPCGATE_TAG"])
def test_environment_names_pbs_or_the_gateway_set_are_refused(name: str) -> None:
    with pytest.raises(UnsupportedField, match=name):
        PBS.check(_spec(environment={name: "x"}))


def test_environment_values_pass_verbatim() -> None:
    environment = {"CMD": "$HOME; echo `id` | x", "EQ": "a=b", "EMPTY": "", "SP": " x "}
    argv = PBS.submit_command(_spec(environment=environment), CONTEXT).argv
    assert argv[-1] == "HPCGATE_TAG=t1,CMD=$HOME; echo `id` | x,EQ=a=b,EMPTY=,SP= x "


@pytest.mark.parametrize(
    ("array", "options"),
    [
        ("0-9", ["-J", "0-9"]),
        ("1-100:2", ["-J", "1-100:2"]),
        ("1-10%2", ["-J", "1-10", "-W", "max_run_subjobs=2"]),
    ],
)
def test_array_ranges_translate(array: str, options: list[str]) -> None:
    argv = list(PBS.submit_command(_spec(array=array), CONTEXT).argv)
    start = argv.index("-J")
    assert argv[start : start + len(options)] == options


@pytest.mark.parametrize("array", ["5", "1,3,5", "1-3,7-9", "0-9,20%2"])
def test_array_forms_pbs_lacks_are_unsupported(array: str) -> None:
    with pytest.raises(UnsupportedField) as caught:
        PBS.check(_spec(array=array))
    assert caught.value.extra["fields"] == ["array"]
    assert array in caught.value.detail


@pytest.mark.parametrize("array", ["5-5", "9-1", "1-9:0", "1-9%0"])
def test_array_ranges_pbs_refuses_are_rejected(array: str) -> None:
    with pytest.raises(SchedulerRejected, match="end above its start"):
        PBS.check(_spec(array=array))


def test_a_dependency_on_an_array_task_is_unsupported() -> None:
    with pytest.raises(UnsupportedField) as caught:
        PBS.check(_spec(dependencies=["afterok:1", "afterok:12_3"]))
    assert caught.value.extra["fields"] == ["dependencies"]


@pytest.mark.parametrize("name", ["n x", "_lead", "-x", "é", "end "])
def test_names_pbs_refuses_are_rejected(name: str) -> None:
    with pytest.raises(SchedulerRejected, match="PBS job names"):
        PBS.check(_spec(name=name))


def test_a_long_printable_name_passes() -> None:
    name = "9" + "x-._+@=" * 28 + "z" * 3
    assert len(name) == 200  # JobSpec's limit, below PBS's 236
    assert PBS.submit_command(_spec(name=name), CONTEXT).argv[1:3] == ("-N", name)


@pytest.mark.parametrize(
    ("path", "problem"),
    [
        ("out.txt", "absolute"),
        ("/runs/%j.out", "'%'"),
        ("/runs/a:b.out", "':'"),
    ],
)
@pytest.mark.parametrize("field", ["stdout", "stderr"])
def test_output_paths_pbs_would_misread_are_refused(field: str, path: str, problem: str) -> None:
    with pytest.raises(UnsupportedField) as caught:
        PBS.check(_spec(**{field: path}))
    assert caught.value.extra["fields"] == [field]
    assert problem in caught.value.detail


def test_parse_submit() -> None:
    assert PBS.parse_submit(_result(0, _recorded("qsub.txt"))) == "4242.pbs01"
    assert PBS.parse_submit(_result(0, _recorded("qsub_array.txt"))) == "4300[].pbs01"
    warned = _result(0, "4243.pbs01\n", "qsub (Warning): Interactive jobs will be ...\n")
    assert PBS.parse_submit(warned) == "4243.pbs01"


def test_a_submit_that_prints_no_job_id_is_not_taken_for_one() -> None:
    with pytest.raises(SchedulerUnavailable, match="no job id"):
        PBS.parse_submit(_result(0, "Job submitted\n"))


@pytest.mark.parametrize(
    ("recording", "error", "message"),
    [
        ("qsub_unknown_queue.txt", SchedulerRejected, "Unknown queue"),
        ("qsub_limits.txt", SchedulerRejected, "Job violates queue and/or server resource"),
        ("qsub_select.txt", SchedulerRejected, 'Resource invalid in "select"'),
        ("qsub_queue_denied.txt", SchedulerRejected, "Access to queue is denied"),
        ("qsub_connection_refused.txt", SchedulerUnavailable, "cannot connect to server pbs01"),
    ],
)
def test_qsub_failures(recording: str, error: type[Exception], message: str) -> None:
    with pytest.raises(error) as caught:
        PBS.parse_submit(_result(172, err=_recorded(recording)))
    assert message in str(caught.value)
    assert "qsub:" not in str(caught.value)


# --- status ---------------------------------------------------------------------------


def test_status_command() -> None:
    assert PBS.status_command(["4242.pbs01", "4300[].pbs01"]).argv == (
        "qstat",
        "-f",
        "-F",
        "json",
        "-x",
        "-t",
        "4242.pbs01",
        "4300[].pbs01",
    )
    assert PBS.history_command(["4242.pbs01"]) is None  # -x already lists finished jobs


def test_parse_status_states_exit_codes_and_signals() -> None:
    jobs = PBS.parse_status(_result(0, _recorded("qstat_jobs.json")))
    assert [(j.native_id, j.state, j.exit_code, j.signal) for j in jobs] == [
        ("4242.pbs01", JobState.RUNNING, None, None),
        ("4243.pbs01", JobState.PENDING, None, None),
        ("4244.pbs01", JobState.PENDING, None, None),
        ("4245.pbs01", JobState.COMPLETED, 0, None),
        ("4246.pbs01", JobState.FAILED, 3, None),
        ("4247.pbs01", JobState.TIMEOUT, None, None),
        ("4248.pbs01", JobState.OUT_OF_MEMORY, None, None),
        ("4249.pbs01", JobState.CANCELLED, None, 15),
        ("4250.pbs01", JobState.CANCELLED, None, None),
        ("4251.pbs01", JobState.FAILED, None, 9),
        ("4252.pbs01", JobState.SUSPENDED, None, None),
        ("4253.pbs01", JobState.PENDING, None, None),
        ("4254.pbs01", JobState.RUNNING, None, None),  # exiting: its status is not final yet
        ("4255.pbs01", JobState.PENDING, None, None),
    ]


def test_parse_status_reasons() -> None:
    jobs = _by_id(PBS.parse_status(_result(0, _recorded("qstat_jobs.json"))))
    assert jobs["4242.pbs01"].reason is None  # "Job run at ..." is no reason
    assert jobs["4243.pbs01"].reason == (
        "Not Running: Insufficient amount of resource: ncpus (R: 64 A: 32 T: 64)"
    )
    assert jobs["4245.pbs01"].reason is not None
    assert jobs["4245.pbs01"].reason.endswith("and finished")
    assert jobs["4247.pbs01"].reason == "walltime limit exceeded (JOB_EXEC_KILL_WALLTIME)"
    assert jobs["4248.pbs01"].reason == "mem limit exceeded (JOB_EXEC_KILL_MEM)"
    assert jobs["4255.pbs01"].reason == "Job moved to pbs02"
    assert jobs["4244.pbs01"].reason == "waiting for the jobs it depends on"  # no comment
    assert jobs["4253.pbs01"].reason == "waiting for the start time it was given"
    assert jobs["4252.pbs01"].reason == "Job run at Sun Nov 22 at 09:30 on (node06:ncpus=1)"


def test_parse_status_details_of_a_running_job() -> None:
    job = _by_id(PBS.parse_status(_result(0, _recorded("qstat_jobs.json"))))["4242.pbs01"]
    assert job.name == "relax"
    assert job.tag == "9f1c2e7d4b3a48c1a2b0e6d5c4f3a291"
    assert job.submit_time == _local("2026-11-22T09:58:01")
    assert job.start_time == _local("2026-11-22T09:58:03")
    assert job.end_time is None
    assert job.stdout == "/scratch/alice/runs/relax.out"  # without "host:"
    assert job.stderr == "/scratch/alice/runs/relax.err"
    assert job.time_limit == 7200
    assert job.working_directory == "/home/alice"  # jobdir: where PBS started it
    assert job.array_job_id is None


def test_parse_status_times_of_queued_and_finished_jobs() -> None:
    jobs = _by_id(PBS.parse_status(_result(0, _recorded("qstat_jobs.json"))))
    queued = jobs["4243.pbs01"]
    assert (queued.start_time, queued.end_time, queued.working_directory) == (None, None, None)
    assert queued.time_limit == 12 * 3600
    done = jobs["4245.pbs01"]
    assert done.end_time == _local("2026-11-22T08:05:00")  # obittime, not mtime
    assert done.stdout == "/home/alice/prep.o4245"
    assert jobs["4250.pbs01"].end_time == _local("2026-11-22T09:12:31")  # no obit: mtime


def test_an_array_and_its_subjobs() -> None:
    jobs = _by_id(PBS.parse_status(_result(0, _recorded("qstat_array.json"))))
    assert {i: (j.state, j.exit_code, j.array_job_id) for i, j in jobs.items()} == {
        "4300[].pbs01": (JobState.RUNNING, None, None),
        "4300[1].pbs01": (JobState.COMPLETED, 0, "4300[].pbs01"),
        "4300[2].pbs01": (JobState.FAILED, 1, "4300[].pbs01"),
        "4300[3].pbs01": (JobState.RUNNING, None, "4300[].pbs01"),
        "4300[4].pbs01": (JobState.PENDING, None, "4300[].pbs01"),
    }
    assert jobs["4300[4].pbs01"].reason == (
        "Not Running: Number of concurrent running subjobs limit reached"
    )
    assert jobs["4300[2].pbs01"].stdout == "/home/alice/sweep.o4300.2"
    assert jobs["4300[].pbs01"].stdout == "/home/alice/sweep.o4300.^array_index^"
    assert jobs["4300[3].pbs01"].tag == "0d9e8f7a6b5c4d3e2f1a0b9c8d7e6f5a"


def test_a_finished_array_reports_whether_any_subjob_failed() -> None:
    (job,) = PBS.parse_status(_result(0, _recorded("qstat_array_finished.json")))
    assert (job.native_id, job.state, job.exit_code) == ("4301[].pbs01", JobState.FAILED, 1)
    assert job.end_time == _local("2026-11-22T07:03:30")


def test_unknown_ids_are_left_out() -> None:
    partial = _result(153, _recorded("qstat_partial.json"), _recorded("qstat_partial.stderr.txt"))
    assert [job.native_id for job in PBS.parse_status(partial)] == ["4242.pbs01"]
    gone = _result(153, _recorded("qstat_unknown.json"), _recorded("qstat_unknown.stderr.txt"))
    assert PBS.parse_status(gone) == []
    silent = _result(153, b"", _recorded("qstat_unknown.stderr.txt"))
    assert PBS.parse_status(silent) == []


@pytest.mark.parametrize(
    ("stderr", "error"),
    [
        (_recorded("qstat_connection_refused.txt"), SchedulerUnavailable),
        (_recorded("qstat_unauthorized.txt"), SchedulerRejected),
        (_recorded("qstat_partial.stderr.txt") + b"Communication failure.\n", SchedulerUnavailable),
        (b"", SchedulerRejected),
    ],
)
def test_status_failures(stderr: bytes, error: type[Exception]) -> None:
    with pytest.raises(error) as caught:
        PBS.parse_status(_result(1, b"", stderr))
    assert "Unknown Job Id" not in str(caught.value)


def test_qstat_json_flaws_are_mended() -> None:
    (job,) = PBS.parse_status(_result(0, _recorded("qstat_quirks.json")))
    assert (job.native_id, job.state, job.exit_code) == ("4260.pbs01", JobState.COMPLETED, 0)
    assert job.name == "20261122"  # printed as a number
    assert job.time_limit == 300


def test_unreadable_json_is_unavailable_not_a_crash() -> None:
    with pytest.raises(SchedulerUnavailable, match="unreadable JSON"):
        PBS.parse_status(_result(0, b'{"Jobs": {"1.pbs01": {"job_state": R}}}'))
    with pytest.raises(SchedulerUnavailable, match="not an object"):
        PBS.parse_status(_result(0, b"[]"))


@pytest.mark.parametrize(
    ("letter", "state"),
    [
        ("Q", JobState.PENDING),
        ("H", JobState.PENDING),
        ("W", JobState.PENDING),
        ("T", JobState.PENDING),
        ("M", JobState.PENDING),
        ("R", JobState.RUNNING),
        ("E", JobState.RUNNING),
        ("B", JobState.RUNNING),
        ("S", JobState.SUSPENDED),
        ("U", JobState.SUSPENDED),
        ("F", JobState.COMPLETED),
        ("X", JobState.COMPLETED),
    ],
)
def test_state_letters(letter: str, state: JobState) -> None:
    assert outcome({"job_state": letter, "Exit_status": 0, "substate": 92})[0] is state


@pytest.mark.parametrize(
    ("status", "substate", "expected"),
    [
        (0, 92, (JobState.COMPLETED, 0, None)),
        (2, 93, (JobState.FAILED, 2, None)),
        (137, 93, (JobState.FAILED, 137, None)),  # a shell's 128+9: kept as an exit code
        (271, 91, (JobState.CANCELLED, None, 15)),
        (265, 93, (JobState.FAILED, None, 9)),
        (None, 91, (JobState.CANCELLED, None, None)),
        (None, 92, (JobState.FAILED, None, None)),
        (-29, 93, (JobState.TIMEOUT, None, None)),
        (-27, 93, (JobState.OUT_OF_MEMORY, None, None)),
        (-26, 93, (JobState.OUT_OF_MEMORY, None, None)),
        (-20, 93, (JobState.NODE_FAIL, None, None)),
        (-4, 93, (JobState.NODE_FAIL, None, None)),
        (-1, 93, (JobState.FAILED, None, None)),
        (-29, 91, (JobState.TIMEOUT, None, None)),
        (-99, 93, (JobState.FAILED, None, None)),
    ],
)
def test_exit_statuses(
    status: int | None, substate: int, expected: tuple[JobState, int | None, int | None]
) -> None:
    state, reason, exit_code, signal = ended(status, substate, "a comment")
    assert (state, exit_code, signal) == expected
    assert reason is not None


def test_exit_status_reasons() -> None:
    assert ended(-99, 93, None)[1] == "PBS exit status -99"
    assert ended(None, 92, None)[1] == "the job ended without an exit status"
    assert ended(-1, 93, "comment")[1] == "the job could not start (JOB_EXEC_FAIL1)"


def test_formats() -> None:
    for seconds in (1, 59, 60, 3599, 86400, 176400):
        assert parse_duration(format_duration(seconds)) == seconds
    assert format_duration(176400) == "49:00:00"
    assert parse_duration("5:00") == 300
    assert parse_duration(90) == 90
    assert parse_duration("1:2:3:4") is None
    assert parse_duration("soon") is None
    assert parse_duration(None) is None
    assert time_of("Mon Nov  2 06:00:05 2026") == _local("2026-11-02T06:00:05")
    assert time_of(1795341300) == datetime.fromtimestamp(1795341300, UTC)
    assert time_of("2026-11-02 06:00:05") is None
    assert time_of("Mon Nov 31 06:00:05 2026") is None
    assert path_of("host.example:/a/b") == "/a/b"
    assert path_of("/a/b:c") == "/a/b:c"
    assert path_of("") is None
    assert variables_of("A=1,B=x\\,y,C=") == {"A": "1", "B": "x,y", "C": ""}
    assert variables_of(None) == {}


# --- health, cancel -------------------------------------------------------------------


def test_ping() -> None:
    command = PBS.ping_command()
    assert command is not None and command.argv == ("qstat", "-B", "-f", "-F", "json")
    PBS.parse_ping(_result(0, _recorded("qstat_server.json")))
    idle = _recorded("qstat_server.json").replace(b'"Active"', b'"Idle"')
    PBS.parse_ping(_result(0, idle))


@pytest.mark.parametrize(
    ("result", "message"),
    [
        (
            _result(0, _recorded("qstat_server.json").replace(b'"Active"', b'"Terminating"')),
            "is Terminating",
        ),
        (_result(0, b'{"timestamp": 1, "pbs_server": "pbs01"}'), "not listed"),
        (_result(1, b"", _recorded("qstat_connection_refused.txt")), "Connection refused"),
        (_result(0, b"qstat: garbage"), "unreadable JSON"),
    ],
)
def test_ping_failures(result: CommandResult, message: str) -> None:
    with pytest.raises(SchedulerUnavailable, match=message):
        PBS.parse_ping(result)


def test_cancel_command() -> None:
    assert PBS.cancel_command("4300[].pbs01").argv == ("qdel", "4300[].pbs01")


@pytest.mark.parametrize(
    "recording", ["qdel_unknown.txt", "qdel_finished.txt", "qdel_bad_state.txt"]
)
def test_cancelling_a_job_that_is_over_is_fine(recording: str) -> None:
    PBS.parse_cancel(_result(35, err=_recorded(recording)))
    PBS.parse_cancel(_result(0))


@pytest.mark.parametrize(
    ("recording", "error"),
    [
        ("qdel_connection_refused.txt", SchedulerUnavailable),
        ("qdel_unauthorized.txt", SchedulerRejected),
    ],
)
def test_cancel_failures(recording: str, error: type[Exception]) -> None:
    with pytest.raises(error):
        PBS.parse_cancel(_result(15, err=_recorded(recording)))


def test_exec_hosts_become_the_node_list() -> None:
    assert exec_hosts("node01/0*2+node02/1+node01/3") == "node01,node02"
    assert exec_hosts(None) is None and exec_hosts("") is None
