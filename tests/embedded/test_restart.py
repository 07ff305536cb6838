"""Jobs outlive their callers: lost supervisors, queued jobs started later, no double runs."""

from __future__ import annotations

import os
import signal
from pathlib import Path

from tests.embedded.engine import Engine, alive, parent_of, read_pid
from tests.support.polling import wait_until


def test_a_killed_supervisor_is_node_fail_and_status_starts_the_queue(engine: Engine) -> None:
    pid_file = engine.workdir / "main.pid"
    first = engine.submit(f"#!/bin/sh\necho $$ > {pid_file}\nsleep 300\n", "--slots", "1")
    second = engine.submit("#!/bin/sh\necho second\n")
    main = read_pid(pid_file)
    assert engine.job(first)["pid"] == main
    assert engine.job(second)["reason"] == "Resources"
    os.kill(parent_of(main), signal.SIGKILL)  # the supervisor: nobody will record a result
    lost = engine.wait_final(first)
    assert (lost["state"], lost["reason"]) == ("NODE_FAIL", "supervisor lost")
    assert lost["end_time"] is not None
    assert wait_until(lambda: not alive(main))  # its processes did not stay behind
    # No supervisor is alive any more: the status calls above started the queued job.
    done = engine.wait_final(second)
    assert done["state"] == "COMPLETED"
    assert Path(done["stdout"]).read_text() == "second\n"


def test_a_job_never_runs_twice(engine: Engine) -> None:
    script = "#!/bin/sh\necho run >> runs.txt\nwhile [ ! -e go ]; do sleep 0.05; done\n"
    job_id = engine.submit(script)
    engine.wait_state(job_id, "RUNNING")
    # Supervising a job whose supervisor is alive does nothing (its lock is held)...
    assert engine.ok("run", job_id) == {"id": job_id, "state": None}
    (engine.workdir / "go").touch()
    assert engine.wait_final(job_id)["state"] == "COMPLETED"
    # ... and so does supervising a job that has run already.
    assert engine.ok("run", job_id) == {"id": job_id, "state": None}
    assert (engine.workdir / "runs.txt").read_text() == "run\n"
    assert engine.job(job_id)["state"] == "COMPLETED"


def test_a_job_that_was_never_dispatched_is_not_run(engine: Engine) -> None:
    engine.submit("#!/bin/sh\nwhile [ ! -e go ]; do sleep 0.05; done\n", "--slots", "1")
    queued = engine.submit("#!/bin/sh\necho queued\n")
    result = engine.cli("run", queued)
    assert result.returncode == 2 and b"not dispatched" in result.stderr
    (engine.workdir / "go").touch()
    assert engine.wait_final(queued)["state"] == "COMPLETED"


def test_a_damaged_cache_is_rebuilt(engine: Engine) -> None:
    job_id = engine.submit("#!/bin/sh\nexit 4\n")
    assert engine.wait_final(job_id)["exit_code"] == 4
    (engine.spool / "cache.json").write_text("{not json")
    assert engine.job(job_id)["exit_code"] == 4
    (engine.spool / "cache.json").unlink()
    assert engine.job(job_id)["exit_code"] == 4
