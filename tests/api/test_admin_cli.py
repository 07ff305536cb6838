"""The gateway's own commands (``hpcgate token ...``, ``hpcgate --version``) as a newcomer
meets them: run as real processes on a data directory of their own, no gateway needed."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from hpcgate import __version__


def run(home: Path, *args: str, columns: int = 80) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HPCGATE_")}
    env.update(HPCGATE_HOME=str(home), COLUMNS=str(columns))
    return subprocess.run(
        [sys.executable, "-m", "hpcgate", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_version_names_the_client_and_the_server(tmp_path: Path) -> None:
    result = run(tmp_path, "--version")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"hpcgate {__version__} (server {__version__})"


def test_token_commands_say_which_home_they_used(tmp_path: Path) -> None:
    created = run(tmp_path, "token", "create", "alice")
    assert created.returncode == 0, created.stderr
    assert f"hpcgate: data in {tmp_path}" in created.stderr
    listed = run(tmp_path, "token", "list")
    assert f"hpcgate: data in {tmp_path}" in listed.stderr


def test_a_listed_id_revokes_even_in_a_narrow_terminal(tmp_path: Path) -> None:
    created = run(tmp_path, "token", "create", "alice", "--description", "a long note " * 5)
    token_id = created.stdout.split()[1]
    listed = run(tmp_path, "token", "list", columns=40)
    assert token_id in listed.stdout
    revoked = run(tmp_path, "token", "revoke", token_id)
    assert revoked.returncode == 0, revoked.stderr


def test_bad_scope_or_lifetime_is_a_usage_error_without_traceback(tmp_path: Path) -> None:
    for args in (("--scope", "jobs:everything"), ("--expires-in", "99999999d")):
        result = run(tmp_path, "token", "create", "alice", *args)
        assert result.returncode == 2, result.stderr
        assert "Traceback" not in result.stderr
        assert args[1] in result.stderr
        assert result.stdout == ""
    assert "alice" not in run(tmp_path, "token", "list").stdout  # nothing was stored
