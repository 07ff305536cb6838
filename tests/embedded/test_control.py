"""Time limits, cancel, the concurrency limit and dependencies, on real processes."""

from __future__ import annotations

import json
import socket
from pathlib import Path

from tests.embedded.engine import Engine, alive, read_pid

# Runs until the test creates the file "go" in the job's working directory.
GATED = "#!/bin/sh\nwhile [ ! -e go ]; do sleep 0.05; done\necho {word}\n"
BACKGROUND_CHILD = "#!/bin/bash\nsleep 300 &\necho $! > {pid}\nwait\n"


def test_time_limit_ends_the_whole_job_as_timeout(engine: Engine) -> None:
    pid_file = engine.workdir / "sleep.pid"
    job_id = engine.submit(BACKGROUND_CHILD.format(pid=pid_file), "--kill-wait", "1", time_limit=1)
    sleeper = read_pid(pid_file)
    job = engine.wait_state(job_id, "TIMEOUT", "COMPLETED", "FAILED")
    assert (job["state"], job["time_limit"], job["exit_code"]) == ("TIMEOUT", 1, None)
    assert job["end_time"] is not None
    assert not alive(sleeper)


def test_cancel_of_a_running_job_kills_its_children(engine: Engine) -> None:
    pid_file = engine.workdir / "child.pid"
    job_id = engine.submit(BACKGROUND_CHILD.format(pid=pid_file))
    child = read_pid(pid_file)
    assert engine.job(job_id)["state"] == "RUNNING"
    assert engine.ok("cancel", job_id) == {"cancelled": [job_id]}
    job = engine.wait_state(job_id, "CANCELLED", "FAILED", "COMPLETED")
    assert job["state"] == "CANCELLED" and job["end_time"] is not None
    assert not alive(child)
    assert engine.ok("cancel", job_id) == {"cancelled": []}  # already over: a no-op


def test_a_job_ignoring_sigterm_is_killed_after_the_grace_period(engine: Engine) -> None:
    pid_file = engine.workdir / "stubborn.pid"
    script = f"#!/bin/bash\ntrap '' TERM\nsleep 300 &\necho $! > {pid_file}\nwait\n"
    job_id = engine.submit(script, "--kill-wait", "0.5")
    child = read_pid(pid_file)
    engine.ok("cancel", job_id)
    job = engine.wait_state(job_id, "CANCELLED", "FAILED", "COMPLETED")
    assert (job["state"], job["signal"]) == ("CANCELLED", 9)
    assert not alive(child)


def test_cancel_of_a_pending_job_means_it_never_starts(engine: Engine) -> None:
    first = engine.submit(GATED.format(word="first"), "--slots", "1")
    second = engine.submit("#!/bin/sh\necho second\n")
    engine.wait_state(first, "RUNNING")
    assert engine.job(second)["reason"] == "Resources"
    assert engine.ok("cancel", second, second) == {"cancelled": [second]}
    (engine.workdir / "go").touch()
    assert engine.wait_final(first)["state"] == "COMPLETED"
    job = engine.job(second)
    assert (job["state"], job["start_time"], job["pid"]) == ("CANCELLED", None, None)
    assert job["end_time"] is not None
    assert not Path(job["stdout"]).exists()


def test_one_slot_runs_jobs_one_after_the_other(engine: Engine) -> None:
    first = engine.submit(GATED.format(word="first"), "--slots", "1")
    second = engine.submit(GATED.format(word="second"))  # the slot count was persisted
    engine.wait_state(first, "RUNNING")
    waiting = engine.job(second)
    assert (waiting["state"], waiting["reason"], waiting["start_time"]) == (
        "PENDING",
        "Resources",
        None,
    )
    (engine.workdir / "go").touch()
    done = [engine.wait_final(job_id) for job_id in (first, second)]
    assert [job["state"] for job in done] == ["COMPLETED", "COMPLETED"]
    assert done[1]["start_time"] >= done[0]["end_time"]
    assert Path(done[1]["stdout"]).read_text() == "second\n"


def test_two_slots_run_two_jobs_at_once(engine: Engine) -> None:
    jobs = [engine.submit(GATED.format(word=i), "--slots", "2") for i in range(3)]
    for job_id in jobs[:2]:
        engine.wait_state(job_id, "RUNNING")
    assert engine.job(jobs[2])["reason"] == "Resources"
    (engine.workdir / "go").touch()
    assert {engine.wait_final(job_id)["state"] for job_id in jobs} == {"COMPLETED"}


def test_dependencies(engine: Engine) -> None:
    gate = engine.submit(GATED.format(word="gate"), "--slots", "6")
    failed = engine.submit("#!/bin/sh\nexit 3\n")
    assert engine.wait_final(failed)["state"] == "FAILED"
    engine.wait_state(gate, "RUNNING")
    echo = "#!/bin/sh\necho ran\n"
    ids = {
        "after_gate": engine.submit(echo, dependencies=[f"after:{gate}"]),
        "afterok_gate": engine.submit(echo, dependencies=[f"afterok:{gate}"]),
        "afternotok_gate": engine.submit(echo, dependencies=[f"afternotok:{gate}"]),
        "afterok_failed": engine.submit(echo, dependencies=[f"afterok:{failed}"]),
        "afternotok_failed": engine.submit(echo, dependencies=[f"afternotok:{failed}"]),
        "afterany_failed": engine.submit(echo, dependencies=[f"afterany:{failed}"]),
        "all_of": engine.submit(echo, dependencies=[f"afterok:{gate},afternotok:{failed}"]),
        "directive": engine.submit(f"#!/bin/sh\n#SBATCH -d afterok:{gate}\necho ran\n"),
    }
    # While the gate job runs: "after" is met, the rest depending on it waits.
    for name in ("after_gate", "afternotok_failed", "afterany_failed"):
        assert engine.wait_final(ids[name])["state"] == "COMPLETED", name
    jobs = engine.status()
    for name in ("afterok_gate", "afternotok_gate", "all_of", "directive"):
        assert (jobs[ids[name]]["state"], jobs[ids[name]]["reason"]) == ("PENDING", "Dependency")
    assert jobs[ids["afterok_failed"]]["reason"] == "DependencyNeverSatisfied"
    assert jobs[ids["directive"]]["dependencies"] == [f"afterok:{gate}"]
    (engine.workdir / "go").touch()
    for name in ("afterok_gate", "all_of", "directive"):
        assert engine.wait_final(ids[name])["state"] == "COMPLETED", name
    # Like Slurm: a dependency that can never be met leaves the job PENDING, not cancelled.
    never = engine.wait(ids["afternotok_gate"], lambda job: job["reason"] != "Dependency")
    assert (never["state"], never["reason"]) == ("PENDING", "DependencyNeverSatisfied")
    assert engine.job(ids["afterok_failed"])["state"] == "PENDING"


def test_unknown_or_malformed_dependencies_are_refused(engine: Engine) -> None:
    refused = ((["afterok:42"], "Job dependency problem"), (["soon:1"], "invalid dependency"))
    for dependencies, message in refused:
        document = engine.document("#!/bin/sh\n", dependencies=dependencies)
        result = engine.cli("submit", stdin=json.dumps(document).encode())
        assert result.returncode == 2 and message in result.stderr.decode()
    assert engine.status() == {}


def test_info_counts_the_slots_and_the_jobs_running_and_waiting(engine: Engine) -> None:
    assert engine.ok("--slots", "1", "info")["running"] == 0
    first = engine.submit("#!/bin/sh\nsleep 30\n")
    engine.submit("#!/bin/sh\ntrue\n")
    engine.wait_state(first, "RUNNING")
    machine = engine.ok("info")
    assert (machine["slots"], machine["running"], machine["pending"]) == (1, 1, 1)
    assert machine["host"] == socket.gethostname() and machine["memory_mib"] > 0
