"""The user commands of ``hpcgate`` (login, systems, jobs, files), run as real processes
against a real gateway (the SDK tier's), with the URL and token in the environment as a CI
pipeline has them, and the profile directory in a temporary directory."""

from __future__ import annotations

import json
import os
import re
import stat
import subprocess
import sys
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path
from typing import TypeVar

import pytest

from tests.support.accounts import give
from tests.support.gateway_process import GatewayProcess, free_port

GOOD = "#!/bin/bash\necho started\nsleep 0.3\necho done\n"
BAD = "#!/bin/bash\necho failing >&2\nexit 3\n"
T = TypeVar("T")
FOLLOWED = "#!/bin/bash\nfor i in 1 2 3; do echo line $i; sleep 0.3; done\n"


def hpcgate(
    env: dict[str, str], *args: str, stdin: str | None = None, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "hpcgate", *args],
        env=env,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=cwd,
    )


def together(*runs: Callable[[], T]) -> list[T]:
    """Run several commands at once (each process takes a second to start)."""
    with ThreadPoolExecutor(len(runs)) as pool:
        started = [pool.submit(run) for run in runs]
        return [future.result() for future in started]


def one_line_error(result: subprocess.CompletedProcess[str], code: int) -> str:
    """The result failed with ``code``, one line on stderr and nothing on stdout."""
    assert result.returncode == code, result
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    return lines[0]


@pytest.fixture
def env(sdk_gateway: GatewayProcess, alice_token: str, tmp_path: Path) -> dict[str, str]:
    """A CI job's environment: URL and token set, no profile saved."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("HPCGATE_")}
    return {
        **clean,
        "HPCGATE_URL": sdk_gateway.url,
        "HPCGATE_TOKEN": alice_token,
        "HPCGATE_CONFIG_DIR": str(tmp_path / "config"),
    }


@pytest.fixture
def scripts(tmp_path: Path) -> Path:
    for name, text in (("good.sh", GOOD), ("bad.sh", BAD), ("followed.sh", FOLLOWED)):
        (tmp_path / name).write_text(text)
    return tmp_path


def test_login_saves_a_0600_profile_that_later_commands_use(
    env: dict[str, str], tmp_path: Path
) -> None:
    url, token = env.pop("HPCGATE_URL"), env.pop("HPCGATE_TOKEN")
    logged_in = hpcgate(env, "login", url, "--profile", "ci", stdin=token + "\n")

    assert logged_in.returncode == 0, logged_in.stderr
    profiles = tmp_path / "config" / "profiles.json"
    assert stat.S_IMODE(profiles.stat().st_mode) == 0o600
    assert stat.S_IMODE(profiles.parent.stat().st_mode) == 0o700
    saved = json.loads(profiles.read_text())
    assert saved["current"] == "ci"
    assert saved["profiles"]["ci"] == {"url": url, "token": token}

    systems = hpcgate(env, "systems", "--json")  # no URL or token in the environment
    assert systems.returncode == 0, systems.stderr
    assert [system["name"] for system in json.loads(systems.stdout)] == ["local"]
    logout = hpcgate(env, "logout")
    assert logout.returncode == 0, logout.stderr
    assert json.loads(profiles.read_text())["profiles"] == {}


def test_submit_wait_exits_with_the_jobs_outcome(env: dict[str, str], scripts: Path) -> None:
    submit = partial(hpcgate, env, "jobs", "submit")
    good, bad, followed = together(
        partial(submit, str(scripts / "good.sh"), "--wait", "--json", "--name", "cli-good"),
        partial(submit, str(scripts / "bad.sh"), "--wait", "--system", "local"),
        partial(submit, str(scripts / "followed.sh"), "--follow"),
    )

    assert good.returncode == 0, good.stderr
    job = json.loads(good.stdout)  # --json: the job, nothing else
    assert (job["state"], job["exit_code"], job["name"]) == ("COMPLETED", 0, "cli-good")

    assert bad.returncode == 1, bad
    assert "FAILED, exit code 3" in bad.stdout

    assert followed.returncode == 0, followed.stderr
    assert followed.stdout == "line 1\nline 2\nline 3\n"  # the job's output, as it came
    assert "COMPLETED" in followed.stderr

    listed = hpcgate(env, "jobs", "ls", "--json", "--limit", "1000")
    assert listed.returncode == 0, listed.stderr
    jobs = {item["id"]: item for item in json.loads(listed.stdout)}
    assert jobs[job["id"]]["state"] == "COMPLETED"


def test_a_script_from_stdin_and_a_job_that_was_cancelled(env: dict[str, str]) -> None:
    sleeper = "#!/bin/bash\nsleep 30\n"
    submitted = hpcgate(env, "jobs", "submit", "-", "--json", stdin=sleeper)
    assert submitted.returncode == 0, submitted.stderr
    job_id = json.loads(submitted.stdout)["id"]

    waited, cancelled = together(
        partial(hpcgate, env, "jobs", "wait", job_id, "--timeout", "60"),
        partial(hpcgate, env, "jobs", "cancel", job_id),
    )

    assert cancelled.returncode == 0, cancelled.stderr
    assert waited.returncode == 8, waited  # the documented code of a cancelled job
    assert "CANCELLED" in waited.stdout


def test_files_put_get_round_trip_listing_and_a_copy(env: dict[str, str], tmp_path: Path) -> None:
    data = os.urandom(3 * 1024 * 1024 + 12345)
    (tmp_path / "data.bin").write_bytes(data)
    remote = f"cli-{uuid.uuid4().hex[:8]}.bin"

    put = hpcgate(env, "files", "put", str(tmp_path / "data.bin"), remote, "--json")
    assert put.returncode == 0, put.stderr
    assert json.loads(put.stdout)["entry"]["size"] == len(data)

    got, listed, again, copied = together(
        partial(hpcgate, env, "files", "get", remote, str(tmp_path / "back.bin")),
        partial(hpcgate, env, "files", "ls", "--json"),
        partial(hpcgate, env, "files", "put", str(tmp_path / "data.bin"), remote),
        partial(hpcgate, env, "files", "cp", remote, f"{remote}.copy", "--json"),
    )

    assert got.returncode == 0, got.stderr
    assert (tmp_path / "back.bin").read_bytes() == data
    assert listed.returncode == 0, listed.stderr
    sizes = {entry["name"]: entry["size"] for entry in json.loads(listed.stdout)["entries"]}
    assert sizes[remote] == len(data)
    assert "Conflict" in one_line_error(again, 7)  # no --overwrite
    assert copied.returncode == 0, copied.stderr
    task = json.loads(copied.stdout)  # the task, waited for until it ended
    assert (task["kind"], task["state"]) == ("copy", "completed")
    assert task["progress"]["done"] == len(data)


def test_errors_are_one_line_with_their_exit_code(env: dict[str, str], tmp_path: Path) -> None:
    closed = f"http://127.0.0.1:{free_port()}"
    unknown_system, unknown_path, bad_token, bad_login, unreachable = together(
        partial(hpcgate, env, "jobs", "ls", "--system", "nowhere"),
        partial(hpcgate, {**env, "HPCGATE_SYSTEM": "local"}, "files", "stat", "no/such/file"),
        partial(hpcgate, {**env, "HPCGATE_TOKEN": "hpcg_bad"}, "systems"),
        partial(hpcgate, env, "login", env["HPCGATE_URL"], "--token", "hpcg_bad"),
        partial(hpcgate, {**env, "HPCGATE_URL": closed}, "systems"),
    )

    assert "nowhere" in one_line_error(unknown_system, 3)
    assert "no/such/file" in one_line_error(unknown_path, 3)
    assert one_line_error(bad_token, 4).startswith("error: Authentication required")
    one_line_error(bad_login, 4)
    assert not (tmp_path / "config").exists()  # nothing saved
    assert closed in one_line_error(unreachable, 6)


def test_files_and_tasks_print_for_people(
    env: dict[str, str], sdk_base: Path, tmp_path: Path
) -> None:
    """``files stat`` prints dates, not epoch seconds; ``tasks show`` prints its progress as
    JSON, not a Python repr; ``compress x.tar.xz`` makes an xz archive; a 409 names the
    option that would have avoided it."""
    folder = f"cli-{uuid.uuid4().hex[:8]}"
    (sdk_base / "alice" / folder / "sub").mkdir(parents=True)
    (sdk_base / "alice" / folder / "sub" / "a.txt").write_text("hello\n" * 1000)
    give(sdk_base / "alice" / folder, "alice")  # made by other means, as alice's own
    (tmp_path / "a.txt").write_text("local\n")

    stat_out = hpcgate(env, "files", "stat", f"{folder}/sub/a.txt")
    assert stat_out.returncode == 0, stat_out.stderr
    modified = next(line for line in stat_out.stdout.splitlines() if line.startswith("modified"))
    assert re.search(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", modified), modified

    archive = f"{folder}/sub.tar.xz"
    made = hpcgate(env, "files", "compress", f"{folder}/sub", archive, "--json")
    assert made.returncode == 0, made.stderr
    assert (sdk_base / "alice" / archive).read_bytes().startswith(b"\xfd7zXZ\x00")
    shown = hpcgate(env, "tasks", "show", json.loads(made.stdout)["id"])
    assert shown.returncode == 0, shown.stderr
    progress = next(line for line in shown.stdout.splitlines() if line.startswith("progress"))
    assert json.loads(progress.split(None, 1)[1])["unit"], progress
    assert "TaskProgress(" not in shown.stdout and "done=" not in shown.stdout

    again = hpcgate(env, "files", "compress", f"{folder}/sub", archive)
    assert one_line_error(again, 7).endswith("(pass --overwrite to replace it)")
    put = hpcgate(env, "files", "put", str(tmp_path / "a.txt"), f"{folder}/sub/a.txt")
    assert one_line_error(put, 7).endswith("(pass --overwrite to replace it)")
    rm = hpcgate(env, "files", "rm", f"{folder}/sub")
    assert one_line_error(rm, 7).endswith("(pass -r to remove a directory and all in it)")
