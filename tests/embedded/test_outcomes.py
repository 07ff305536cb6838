"""What finished jobs report, on one spool whose jobs all run at once (module fixture)."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.embedded.engine import Engine, Job, alive, engine_in, read_pid

SECRET = "HPCGATE_TEST_CALLER_SECRET"
SCRIPTS: dict[str, tuple[str, dict[str, object]]] = {
    "output": ("#!/bin/sh\necho hello from the job\necho to stderr >&2\n", {}),
    "exit7": ("#!/bin/sh\necho failing\nexit 7\n", {}),
    "kill9": ("#!/bin/bash\nkill -9 $$\n", {}),
    "stdin": ("#!/bin/sh\ncat\necho read all of stdin\n", {}),
    "leftover": ("#!/bin/bash\nsleep 300 &\necho $! > leftover.pid\nexit 0\n", {}),
    "env": (
        f'#!/bin/sh\necho "$JOB_VAR|${{{SECRET}-unset}}|$HPCGATE_JOB_ID|$HPCGATE_JOB_NAME"\n',
        {"env": {"JOB_VAR": "from the job"}, "name": "envjob"},
    ),
    "directives": (
        "#!/bin/sh\n#SBATCH -J from-directive\n#SBATCH --output=%x-%j.log\n#SBATCH -t 2:00\n"
        "#SBATCH -e errors/%j.err\necho directed\n",
        {},
    ),
    "overridden": (
        "#!/bin/sh\n#SBATCH -J from-directive\n#SBATCH -t 10\n#SBATCH -o directive.out\necho ok\n",
        {"name": "from-json", "time_limit": 30, "stdout": "json.out"},
    ),
    "bad_output": ("#!/bin/sh\necho never\n", {"stdout": "missing/dir/out.txt"}),
    "bad_interpreter": ("#!/nonexistent/interpreter\necho never\n", {}),
    "percent": ("#!/bin/sh\necho percent\n", {"stdout": "100%%-%j.out"}),
}


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Engine, dict[str, Job]]]:
    """Submit every script above at once (8 slots), then wait for all of them to end."""
    for engine in engine_in(tmp_path_factory.mktemp("outcomes")):
        (engine.workdir / "errors").mkdir()
        ids = {name: _submit(engine, name) for name in SCRIPTS}
        ids["script_path"] = _submit_path(engine)
        ids["subdir"] = _submit_in_subdir(engine)
        yield engine, {name: engine.wait_final(job_id) for name, job_id in ids.items()}


def _submit(engine: Engine, name: str) -> str:
    script, fields = SCRIPTS[name]
    document = json.dumps(engine.document(script, **fields)).encode()
    # A secret in the caller's environment must not reach the job.
    caller = {**os.environ, SECRET: "leaked"}
    return str(engine.ok("--slots", "8", "submit", stdin=document, env=caller)["id"])


def _submit_path(engine: Engine) -> str:
    path = engine.workdir / "from-file.sh"
    path.write_text("#!/bin/sh\necho copied at submit time\n")
    job_id = engine.submit(None, script_path=str(path))
    path.unlink()  # the spool has its own copy
    return job_id


def _submit_in_subdir(engine: Engine) -> str:
    subdir = engine.workdir / "sub dir"
    subdir.mkdir()
    # No workdir field: the job runs where submit was called.
    document = {**engine.document("#!/bin/sh\npwd\n"), "workdir": None}
    result = engine.ok("submit", stdin=json.dumps(document).encode(), cwd=subdir)
    return str(result["id"])


def test_output_files_hold_stdout_and_stderr(finished: tuple[Engine, dict[str, Job]]) -> None:
    engine, jobs = finished
    job = jobs["output"]
    assert (job["state"], job["exit_code"], job["signal"]) == ("COMPLETED", 0, None)
    assert job["stdout"] == str(engine.workdir / f"hpcgate-{job['id']}.out")
    assert job["stderr"] == str(engine.workdir / f"hpcgate-{job['id']}.err")
    assert Path(job["stdout"]).read_text() == "hello from the job\n"
    assert Path(job["stderr"]).read_text() == "to stderr\n"
    assert job["start_time"] <= job["end_time"] and job["submit_time"] <= job["start_time"]


def test_non_zero_exit_is_failed(finished: tuple[Engine, dict[str, Job]]) -> None:
    job = finished[1]["exit7"]
    assert (job["state"], job["exit_code"], job["signal"]) == ("FAILED", 7, None)
    assert Path(job["stdout"]).read_text() == "failing\n"


def test_killed_by_a_signal_is_failed_with_the_signal(
    finished: tuple[Engine, dict[str, Job]],
) -> None:
    job = finished[1]["kill9"]
    assert (job["state"], job["exit_code"], job["signal"]) == ("FAILED", None, 9)


def test_stdin_is_empty(finished: tuple[Engine, dict[str, Job]]) -> None:
    job = finished[1]["stdin"]
    assert job["state"] == "COMPLETED"
    assert Path(job["stdout"]).read_text() == "read all of stdin\n"


def test_processes_left_behind_are_killed(finished: tuple[Engine, dict[str, Job]]) -> None:
    engine, jobs = finished
    assert jobs["leftover"]["state"] == "COMPLETED"
    assert not alive(read_pid(engine.workdir / "leftover.pid"))


def test_environment_is_clean_plus_the_jobs_own(finished: tuple[Engine, dict[str, Job]]) -> None:
    job = finished[1]["env"]
    output = Path(job["stdout"]).read_text()
    assert output == f"from the job|unset|{job['id']}|envjob\n"


def test_directives_apply(finished: tuple[Engine, dict[str, Job]]) -> None:
    engine, jobs = finished
    job = jobs["directives"]
    assert (job["name"], job["time_limit"], job["state"]) == ("from-directive", 120, "COMPLETED")
    assert job["stdout"] == str(engine.workdir / f"from-directive-{job['id']}.log")
    assert job["stderr"] == str(engine.workdir / "errors" / f"{job['id']}.err")
    assert Path(job["stdout"]).read_text() == "directed\n"


def test_document_fields_override_directives(finished: tuple[Engine, dict[str, Job]]) -> None:
    engine, jobs = finished
    job = jobs["overridden"]
    assert (job["name"], job["time_limit"]) == ("from-json", 30)
    assert job["stdout"] == str(engine.workdir / "json.out")
    assert Path(job["stdout"]).read_text() == "ok\n"


def test_unopenable_output_fails_the_job(finished: tuple[Engine, dict[str, Job]]) -> None:
    job = finished[1]["bad_output"]
    assert job["state"] == "FAILED"
    assert "stdout" in job["reason"] and "missing/dir/out.txt" in job["reason"]


def test_missing_interpreter_fails_the_job(finished: tuple[Engine, dict[str, Job]]) -> None:
    job = finished[1]["bad_interpreter"]
    assert job["state"] == "FAILED" and "cannot start the script" in job["reason"]


def test_percent_patterns(finished: tuple[Engine, dict[str, Job]]) -> None:
    engine, jobs = finished
    job = jobs["percent"]
    assert job["stdout"] == str(engine.workdir / f"100%-{job['id']}.out")
    assert Path(job["stdout"]).read_text() == "percent\n"


def test_script_path_is_copied_and_names_the_job(
    finished: tuple[Engine, dict[str, Job]],
) -> None:
    job = finished[1]["script_path"]
    assert (job["state"], job["name"]) == ("COMPLETED", "from-file.sh")
    assert Path(job["stdout"]).read_text() == "copied at submit time\n"


def test_default_workdir_is_where_submit_ran(finished: tuple[Engine, dict[str, Job]]) -> None:
    engine, jobs = finished
    job = jobs["subdir"]
    subdir = engine.workdir / "sub dir"
    assert job["workdir"] == str(subdir) and job["name"] == "script"
    assert Path(job["stdout"]).read_text() == f"{subdir}\n"


def test_status_lists_every_job_in_id_order(finished: tuple[Engine, dict[str, Job]]) -> None:
    engine, jobs = finished
    listed = list(engine.status())
    assert listed == [str(i) for i in range(1, len(jobs) + 1)]
    some = engine.status("2", "999", "x", "1")
    assert list(some) == ["1", "2"]
    assert set(some["1"]) == {
        "id", "tag", "name", "state", "reason", "exit_code", "signal", "submit_time",
        "start_time", "end_time", "workdir", "stdout", "stderr", "time_limit",
        "dependencies", "pid",
    }  # fmt: skip
