"""The jobs API against a real Slurm cluster, as alice and bob (multi-user mode)."""

from __future__ import annotations

import json
import os
import pwd
from typing import Any

import httpx

from tests.support.jobs import ended, submit, wait_for_job
from tests.support.slurm import SYSTEM
from tests.support.sse import read_events

JOBS = f"/api/v1/systems/{SYSTEM}/jobs"


def run(client: httpx.Client, script: str, **spec: Any) -> dict[str, Any]:
    return submit(client, SYSTEM, script=f"#!/bin/bash\n{script}\n", **spec)


def finish(client: httpx.Client, job: dict[str, Any], timeout: float = 60) -> dict[str, Any]:
    return wait_for_job(client, job["id"], ended, system=SYSTEM, timeout=timeout)


def test_hello_runs_as_alice_in_her_home(alice: httpx.Client) -> None:
    job = finish(alice, run(alice, "id -un; pwd; echo $GREETING", environment={"GREETING": "hi"}))
    assert (job["state"], job["exit_code"]) == ("COMPLETED", 0)
    assert job["working_directory"] == "/home/alice"
    assert job["stdout"] == f"/home/alice/slurm-{job['id']}.out"
    assert os.stat(job["stdout"]).st_uid == pwd.getpwnam("alice").pw_uid
    output = alice.get(f"{JOBS}/{job['id']}/output")
    assert output.text == "alice\n/home/alice\nhi\n"
    assert job["start_time"] and job["end_time"] and job["submit_time"]


def test_exit_code_and_signal(alice: httpx.Client) -> None:
    failed = run(alice, "exit 7")
    killed = run(alice, "kill -9 $$")
    failed, killed = finish(alice, failed), finish(alice, killed)
    assert (failed["state"], failed["exit_code"], failed["signal"]) == ("FAILED", 7, None)
    assert (killed["state"], killed["signal"]) == ("FAILED", 9)


def test_cancel(alice: httpx.Client) -> None:
    job = run(alice, "sleep 300")
    wait_for_job(alice, job["id"], lambda j: j["state"] == "RUNNING", system=SYSTEM)
    assert alice.delete(f"{JOBS}/{job['id']}").status_code == 202
    assert finish(alice, job)["state"] == "CANCELLED"


def test_dependency_that_can_never_be_satisfied(alice: httpx.Client) -> None:
    first = run(alice, "exit 1")
    second = run(alice, "true", dependencies=[f"afterok:{first['id']}"])
    assert finish(alice, first)["state"] == "FAILED"
    waiting = wait_for_job(
        alice,
        second["id"],
        lambda j: j["reason"] == "DependencyNeverSatisfied",
        system=SYSTEM,
    )
    assert waiting["state"] == "PENDING"
    alice.delete(f"{JOBS}/{second['id']}")
    assert finish(alice, second)["state"] == "CANCELLED"


def alices_script(name: str, text: str) -> str:
    """A script file of alice's in her home, by its path."""
    path = f"/home/alice/{name}"
    with open(path, "w") as handle:
        handle.write(text)
    os.chown(path, pwd.getpwnam("alice").pw_uid, -1)
    return path


def test_the_submit_answer_shows_the_name_slurm_gives(alice: httpx.Client) -> None:
    """The 201 of a job given no name shows the name Slurm gave it (the script's -J, or
    its default), and the submit time of every later read."""
    cases = {
        "from-script": {"script": "#!/bin/bash\n#SBATCH -J from-script\ntrue\n"},
        "sbatch": {"script": "#!/bin/bash\ntrue\n"},  # Slurm's name for a script on stdin
        "named-by-file.sh": {"script_path": alices_script("named-by-file.sh", "#!/bin/bash\n")},
    }
    for name, spec in cases.items():
        job = submit(alice, SYSTEM, **spec)
        right_after = alice.get(f"{JOBS}/{job['id']}").json()
        for read in (job, right_after, finish(alice, job)):
            assert (read["submit_time"], read["name"]) == (job["submit_time"], name), read


def test_a_script_file_s_dependency_on_bob_s_job_is_one_on_no_job(
    alice: httpx.Client, bob: httpx.Client
) -> None:
    """A script_path script's dependency directive is refused as an inline one's is: bob's
    job is indistinguishable from a job that does not exist."""
    theirs = run(bob, "sleep 30")["id"]
    details = []
    for job_id in (theirs, str(int(theirs) + 100_000)):
        text = f"#!/bin/bash\n#SBATCH --dependency=afterok:{job_id}\ntrue\n"
        path = alices_script(f"after-{job_id}.sh", text)
        for body in ({"script_path": path}, {"script": text}):
            answer = alice.post(JOBS, json=body)
            assert answer.status_code == 422, answer.text
            details.append(answer.json()["detail"])
    assert len(set(details)) == 1, details
    bob.delete(f"{JOBS}/{theirs}")


def test_array_tasks_and_the_array_as_a_whole(alice: httpx.Client) -> None:
    array = run(alice, "echo task $SLURM_ARRAY_TASK_ID; exit $SLURM_ARRAY_TASK_ID", array="0-3")
    whole = finish(alice, array)
    assert (whole["state"], whole["exit_code"]) == ("FAILED", 3)
    tasks = {}
    for index in range(4):
        task_id = f"{array['id']}_{index}"
        tasks[index] = wait_for_job(alice, task_id, ended, system=SYSTEM)
        assert tasks[index]["array_job_id"] == array["id"]
    assert tasks[0]["state"] == "COMPLETED"
    assert [tasks[i]["exit_code"] for i in range(4)] == [0, 1, 2, 3]
    assert tasks[2]["stdout"] == f"/home/alice/slurm-{array['id']}_2.out"
    assert alice.get(f"{JOBS}/{array['id']}_2/output").text == "task 2\n"
    listed = {job["id"] for job in alice.get(JOBS, params={"limit": 100}).json()["items"]}
    assert {array["id"], f"{array['id']}_1"} <= listed


def test_all_first_class_fields_reach_slurm(alice: httpx.Client) -> None:
    job = run(
        alice,
        'echo "$SLURM_JOB_PARTITION $SLURM_JOB_ACCOUNT $SLURM_NTASKS $SLURM_CPUS_PER_TASK"',
        name="fields",
        partition="batch",
        account="alphaacct",
        qos="normal",
        nodes=1,
        ntasks=1,
        cpus_per_task=2,
        memory=100,
        time_limit="2",
        working_directory="/tmp",
        stdout="fields-%j.out",
        stderr="fields-%j.err",
    )
    job = finish(alice, job)
    assert (job["state"], job["name"], job["time_limit"]) == ("COMPLETED", "fields", 120)
    assert job["stdout"] == f"/tmp/fields-{job['id']}.out"
    assert job["stderr"] == f"/tmp/fields-{job['id']}.err"
    assert alice.get(f"{JOBS}/{job['id']}/output").text == "batch alphaacct 1 2\n"


def test_script_path(alice: httpx.Client) -> None:
    path = "/home/alice/hpcgate-script-path.sh"
    with open(path, "w") as handle:
        handle.write("#!/bin/bash\necho from a file\n")
    os.chown(path, pwd.getpwnam("alice").pw_uid, -1)
    job = finish(alice, submit(alice, SYSTEM, script_path=path))
    assert alice.get(f"{JOBS}/{job['id']}/output").text == "from a file\n"


def test_output_follow_streams_until_the_end(alice: httpx.Client) -> None:
    job = run(alice, "for i in 1 2 3; do echo line $i; sleep 0.5; done")
    with alice.stream("GET", f"{JOBS}/{job['id']}/output", params={"follow": "true"}) as reply:
        assert reply.status_code == 200
        text = "".join(reply.iter_text())
    assert text == "line 1\nline 2\nline 3\n"


def test_timeout(alice: httpx.Client, timeout_job: dict[str, Any]) -> None:
    """The job of the tier's conftest (started with the tier's first test) ends TIMEOUT."""
    job = finish(alice, timeout_job, timeout=240)
    assert job["state"] == "TIMEOUT"
    assert job["time_limit"] == 60


def test_state_events(alice: httpx.Client) -> None:
    job = run(alice, "sleep 2\nexit 4")
    events = list(read_events(alice, f"{JOBS}/{job['id']}/events"))
    states = [json.loads(event.data)["state"] for event in events]
    assert states[0] == "PENDING" and states[-1] == "FAILED" and "RUNNING" in states
    assert json.loads(events[-1].data)["exit_code"] == 4


def test_cancel_an_array_cancels_every_task(alice: httpx.Client) -> None:
    array = run(alice, "sleep 300", array="0-2")
    wait_for_job(alice, array["id"], lambda j: j["state"] == "RUNNING", system=SYSTEM)
    assert alice.delete(f"{JOBS}/{array['id']}").status_code == 202
    assert finish(alice, array)["state"] == "CANCELLED"
    for index in range(3):
        task = wait_for_job(alice, f"{array['id']}_{index}", ended, system=SYSTEM)
        assert task["state"] == "CANCELLED"


def test_nodes_of_a_job(alice: httpx.Client) -> None:
    job = finish(alice, run(alice, "hostname", nodes=2, ntasks=2))
    assert job["state"] == "COMPLETED"
    assert len(job["nodes"]) == 2
    assert set(job["nodes"]) <= {"node1", "node2", "node3", "node4"}


def test_time_limits_slurm_cannot_hold_never_stop_the_watcher(alice: httpx.Client) -> None:
    """Slurm takes ``-t 99999999999999999999`` as UNLIMITED, and wraps a limit of 2^31
    seconds or more (``-t 9999999999`` reads back as 2967622 days): the first is no limit,
    the second is unknown, and neither stops this job or the others from being followed.
    The longest limit the API takes is one Slurm keeps as it is."""
    longest = 2**31 // 60 * 60  # 35791394 minutes
    jobs = [
        run(alice, "#SBATCH -t 99999999999999999999\ntrue"),
        run(alice, "#SBATCH -t 9999999999\ntrue"),
        run(alice, "true", time_limit=longest),
    ]
    done = [finish(alice, job) for job in jobs]
    assert [job["state"] for job in done] == ["COMPLETED"] * 3
    assert [job["time_limit"] for job in done] == [None, None, longest]
    too_long = {"script": "#!/bin/bash\ntrue\n", "time_limit": longest + 60}
    assert alice.post(JOBS, json=too_long).status_code == 422
