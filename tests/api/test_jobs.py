"""The jobs API end to end: real HTTP, real gateway process, real embedded scheduler."""

from __future__ import annotations

import os
from pathlib import Path

import httpx

from tests.support.jobs import ended, submit, wait_for_job

JOBS = "/api/v1/systems/local/jobs"


def test_systems_lists_local_as_healthy(alice: httpx.Client) -> None:
    systems = alice.get("/api/v1/systems").json()
    assert [(s["name"], s["scheduler"], s["healthy"]) for s in systems] == [
        ("local", "embedded", True)
    ]
    assert alice.get("/api/v1/systems/local").json()["transport"] == "local"


def test_submit_runs_the_script_and_returns_its_output(alice: httpx.Client) -> None:
    response = alice.post(JOBS, json={"script": "#!/bin/bash\necho hello", "name": "hello"})
    assert response.status_code == 201
    job = response.json()
    assert job["name"] == "hello" and job["state"] in ("PENDING", "RUNNING")
    assert response.headers["location"].endswith(f"{JOBS}/{job['id']}")
    assert alice.get(response.headers["location"]).status_code == 200  # visible at once
    done = wait_for_job(alice, job["id"], ended)
    assert (done["state"], done["exit_code"]) == ("COMPLETED", 0)
    assert done["start_time"] and done["end_time"] and done["submit_time"]
    assert alice.get(f"{JOBS}/{job['id']}/output").text == "hello\n"


def test_exit_code_makes_the_job_fail_with_that_code(alice: httpx.Client) -> None:
    job = submit(alice, script="#!/bin/bash\necho oops >&2\nexit 7")
    done = wait_for_job(alice, job["id"], ended)
    assert (done["state"], done["exit_code"]) == ("FAILED", 7)
    assert alice.get(f"{JOBS}/{job['id']}/output", params={"stream": "stderr"}).text == "oops\n"


def test_killed_by_a_signal_is_failed_with_the_signal(alice: httpx.Client) -> None:
    job = submit(alice, script="#!/bin/bash\nkill -9 $$")
    done = wait_for_job(alice, job["id"], ended)
    assert (done["state"], done["signal"]) == ("FAILED", 9)


def test_time_limit_ends_the_job_as_timeout(alice: httpx.Client, workdir: Path) -> None:
    job = submit(
        alice,
        script="#!/bin/bash\necho $$ > pid\nsleep 60",
        time_limit=1,
        working_directory=str(workdir),
    )
    done = wait_for_job(alice, job["id"], ended)
    assert done["state"] == "TIMEOUT"


def test_cancel_kills_the_job_and_its_children(alice: httpx.Client, workdir: Path) -> None:
    script = "#!/bin/bash\nsleep 300 &\necho $! > child.pid\nwait"
    job = submit(alice, script=script, working_directory=str(workdir))
    wait_for_job(alice, job["id"], lambda j: j["state"] == "RUNNING")
    wait_for_job(alice, job["id"], lambda j: (workdir / "child.pid").exists())
    child = int((workdir / "child.pid").read_text())
    response = alice.delete(f"{JOBS}/{job['id']}")
    assert response.status_code == 202
    assert wait_for_job(alice, job["id"], ended)["state"] == "CANCELLED"
    try:
        os.kill(child, 0)
        alive = _not_zombie(child)
    except ProcessLookupError:
        alive = False
    assert not alive, "the job's child process survived the cancel"


def _not_zombie(pid: int) -> bool:
    status = Path(f"/proc/{pid}/status").read_text()
    return "\nState:\tZ" not in status


def test_cancel_of_an_ended_job_is_a_conflict_and_changes_nothing(alice: httpx.Client) -> None:
    """As a task's cancel: a job that has already ended is a 409."""
    job = submit(alice, script="#!/bin/bash\ntrue")
    wait_for_job(alice, job["id"], ended)
    response = alice.delete(f"{JOBS}/{job['id']}")
    assert response.status_code == 409
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["detail"] == f"job {job['id']} has already ended (COMPLETED)"
    assert alice.get(f"{JOBS}/{job['id']}").json()["state"] == "COMPLETED"


def test_the_submit_answer_is_the_job_later_reads_show(alice: httpx.Client) -> None:
    """The 201's submit time and name are those of every later read, also where the
    scheduler names the job (from the script's directive, or its default)."""
    scripts = {
        "same": ("#!/bin/bash\ntrue", {"name": "same"}),
        "from-script": ("#!/bin/bash\n#SBATCH -J from-script\ntrue", {}),
        "script": ("#!/bin/bash\ntrue", {}),  # the embedded scheduler's default
    }
    for name, (script, named) in scripts.items():
        job = submit(alice, script=script, **named)
        right_after = alice.get(f"{JOBS}/{job['id']}").json()
        later = wait_for_job(alice, job["id"], ended)
        for read in (right_after, later):
            assert (read["submit_time"], read["name"]) == (job["submit_time"], name), job


def test_spec_fields_reach_the_job(alice: httpx.Client, workdir: Path) -> None:
    script = '#!/bin/bash\necho "$GREETING from $(pwd)"\necho "leak=${HPCGATE_HOME:-none}"'
    job = submit(
        alice,
        script=script,
        working_directory=str(workdir),
        environment={"GREETING": "hi"},
        stdout=str(workdir / "out-%j.txt"),
        name="fields",
    )
    done = wait_for_job(alice, job["id"], ended)
    assert done["stdout"] == str(workdir / f"out-{job['id']}.txt")
    assert done["working_directory"] == str(workdir)
    assert (workdir / f"out-{job['id']}.txt").read_text() == f"hi from {workdir}\nleak=none\n"


def test_sbatch_directives_in_the_script_are_honoured(alice: httpx.Client) -> None:
    script = "#!/bin/bash\n#SBATCH --job-name=from-directive\n#SBATCH -t 0:01\nsleep 30"
    job = submit(alice, script=script)
    done = wait_for_job(alice, job["id"], ended)
    assert (done["name"], done["state"]) == ("from-directive", "TIMEOUT")
    assert done["time_limit"] == 1


def test_dependency_that_can_never_be_met_keeps_the_job_pending(alice: httpx.Client) -> None:
    failed = submit(alice, script="#!/bin/bash\nexit 1")
    wait_for_job(alice, failed["id"], ended)
    job = submit(alice, script="#!/bin/bash\ntrue", dependencies=[f"afterok:{failed['id']}"])
    pending = wait_for_job(alice, job["id"], lambda j: j["reason"] == "DependencyNeverSatisfied")
    assert pending["state"] == "PENDING"
    alice.delete(f"{JOBS}/{job['id']}")
    assert wait_for_job(alice, job["id"], ended)["state"] == "CANCELLED"


def test_dependency_afterok_runs_after_success(alice: httpx.Client, workdir: Path) -> None:
    first = submit(
        alice, script="#!/bin/bash\nsleep 1\necho first >> order", working_directory=str(workdir)
    )
    second = submit(
        alice,
        script="#!/bin/bash\necho second >> order",
        working_directory=str(workdir),
        dependencies=[f"afterok:{first['id']}"],
    )
    assert wait_for_job(alice, second["id"], ended)["state"] == "COMPLETED"
    assert (workdir / "order").read_text() == "first\nsecond\n"


def test_list_is_newest_first_filtered_and_paginated(gateway_user: httpx.Client) -> None:
    ids = [
        submit(gateway_user, script="#!/bin/bash\ntrue", name=f"batch{i % 2}")["id"]
        for i in range(5)
    ]
    for job_id in ids:
        wait_for_job(gateway_user, job_id, ended)
    page = gateway_user.get(JOBS, params={"limit": 2}).json()
    assert [j["id"] for j in page["items"]] == ids[::-1][:2]
    rest = gateway_user.get(JOBS, params={"limit": 10, "cursor": page["next_cursor"]}).json()
    assert [j["id"] for j in rest["items"]] == ids[::-1][2:]
    assert rest["next_cursor"] is None
    named = gateway_user.get(JOBS, params={"name": "batch0"}).json()["items"]
    assert sorted(j["id"] for j in named) == sorted(ids[0::2])
    assert gateway_user.get(JOBS, params={"state": "FAILED"}).json()["items"] == []
    both = gateway_user.get(JOBS, params=[("state", "FAILED"), ("state", "COMPLETED")]).json()
    assert len(both["items"]) == 5


def test_users_never_see_each_others_jobs(alice: httpx.Client, bob: httpx.Client) -> None:
    job = submit(alice, script="#!/bin/bash\nsleep 30")
    for response in (
        bob.get(f"{JOBS}/{job['id']}"),
        bob.delete(f"{JOBS}/{job['id']}"),
        bob.get(f"{JOBS}/{job['id']}/output"),
        bob.get(f"{JOBS}/{job['id']}/events"),
    ):
        assert response.status_code == 404
        assert response.headers["content-type"] == "application/problem+json"
    assert job["id"] not in [j["id"] for j in bob.get(JOBS).json()["items"]]
    assert alice.get(f"{JOBS}/{job['id']}").json()["state"] in ("PENDING", "RUNNING")
    alice.delete(f"{JOBS}/{job['id']}")


def test_script_path_runs_a_script_file_on_the_system(alice: httpx.Client, workdir: Path) -> None:
    script = workdir / "job.sh"
    script.write_text("#!/bin/bash\necho from a file\n")
    job = submit(alice, script_path=str(script), working_directory=str(workdir))
    done = wait_for_job(alice, job["id"], ended)
    assert done["state"] == "COMPLETED"
    assert alice.get(f"{JOBS}/{job['id']}/output").text == "from a file\n"


def test_a_script_path_that_is_a_symlink_runs_the_script_it_names(
    alice: httpx.Client, workdir: Path
) -> None:
    (workdir / "real.sh").write_text("#!/bin/bash\necho through a link\n")
    (workdir / "linked.sh").symlink_to(workdir / "real.sh")
    job = submit(alice, script_path=str(workdir / "linked.sh"), working_directory=str(workdir))
    assert wait_for_job(alice, job["id"], ended)["state"] == "COMPLETED"
    assert alice.get(f"{JOBS}/{job['id']}/output").text == "through a link\n"


def test_missing_script_path_is_refused(alice: httpx.Client, workdir: Path) -> None:
    response = alice.post(JOBS, json={"script_path": str(workdir / "absent.sh")})
    assert response.status_code == 422
    assert response.json()["type"].endswith("/scheduler-rejected")
