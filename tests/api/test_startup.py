"""Start-up refusals: a root gateway never runs users' jobs as root; a home is one gateway's."""

from __future__ import annotations

import os
import signal
import sqlite3
import uuid
from dataclasses import replace
from pathlib import Path

import pytest

from tests.support.gateway_process import cli, free_port, new_gateway


@pytest.mark.skipif(os.geteuid() != 0, reason="about a gateway that runs as root")
def test_root_gateway_in_single_user_mode_with_embedded_refuses_to_start(tmp_path: Path) -> None:
    """Its embedded jobs would run as root."""
    config = tmp_path / "single.toml"
    config.write_text('[systems.local]\nscheduler = "embedded"\n[users]\nmode = "single"\n')
    done = cli(tmp_path, "serve", "--config", str(config), "--port", "1", check=False)
    assert done.returncode == 2
    text = " ".join(done.stderr.split())
    assert "configuration error" in text and "would run as root" in text
    assert "[users] mode = 'multi'" in text


def _running_task(home: Path) -> str:
    """A task recorded as running, as a live gateway's copy or archive would be."""
    task_id = uuid.uuid4().hex
    with sqlite3.connect(home / "hpcgate.db") as db:
        db.execute(
            "INSERT INTO tasks (id, owner, system, kind, state, progress, request, created_at,"
            " updated_at) VALUES (?, 'alice', 'local', 'copy', 'running', '{}', '{}',"
            " '2026-01-01 00:00:00', '2026-01-01 00:00:00')",
            (task_id,),
        )
    return task_id


def _task_state(home: Path, task_id: str) -> str:
    with sqlite3.connect(home / "hpcgate.db") as db:
        return str(db.execute("SELECT state FROM tasks WHERE id = ?", (task_id,)).fetchone()[0])


def test_a_second_gateway_on_the_same_home_refuses_at_once(tmp_path: Path) -> None:
    first = new_gateway(tmp_path / "home")
    first.start()
    try:
        task_id = _running_task(first.home)
        second = replace(first, port=free_port(), process=None)
        done = cli(first.home, "serve", "--config", str(first.config), "--port", str(second.port),
                   check=False)  # fmt: skip
        assert done.returncode == 1, done.stderr
        assert "startup" not in done.stderr  # refused before the application starts
        assert f"PID {first.process.pid}" in " ".join(done.stderr.split())  # type: ignore[union-attr]
        assert _task_state(first.home, task_id) == "running"  # the first one's, untouched
        with first.client(None) as anyone:
            assert anyone.get("/api/v1/health").status_code == 200
        token = cli(first.home, "token", "create", "carol").stdout.split()[-1]
        with first.client(token) as carol:  # the CLI opens the database while it runs
            assert carol.get("/api/v1/systems").status_code == 200
    finally:
        first.stop()


def test_a_gateway_killed_hard_leaves_no_stale_lock(tmp_path: Path) -> None:
    first = new_gateway(tmp_path / "home")
    first.start()
    first.stop(signal.SIGKILL)
    again = replace(first, port=free_port(), process=None)
    again.start()  # the kernel released the dead process's lock
    try:
        with again.client(None) as anyone:
            assert anyone.get("/api/v1/health").status_code == 200
        assert (first.home / "gateway.lock").read_text().strip() == str(again.process.pid)  # type: ignore[union-attr]
    finally:
        again.stop()


def _open_files_limits(pid: int) -> tuple[int, int]:
    line = next(
        x for x in Path(f"/proc/{pid}/limits").read_text().splitlines() if "open files" in x
    )
    soft, hard = line.split()[3:5]
    return int(soft), int(hard)


def test_the_gateway_raises_its_open_files_limit_to_the_hard_one(tmp_path: Path) -> None:
    """Each open stream holds two descriptors: a soft limit of 1,024 would stop the
    gateway at some 500 streams."""
    server = new_gateway(tmp_path / "home")
    server.wrapper = ("prlimit", "--nofile=1024:8192", "--")
    server.start()
    try:
        assert server.process is not None
        assert _open_files_limits(server.process.pid) == (8192, 8192)
        assert "8192 open files" in " ".join(server.log().split())
    finally:
        server.stop()
