"""The README's shell examples run as written, against a real gateway: the quickstart with
curl, then the resumable upload, in one bash (the second uses the first's variables)."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from tests.support.accounts import give
from tests.support.gateway_process import GatewayProcess, new_gateway, roots_config

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = ("## Quickstart with curl", "this sends a 3 MB file in three chunks")


def shell_block_after(text: str, marker: str) -> str:
    """The first fenced ``sh`` block after ``marker``."""
    found = re.search(r"```sh\n(.*?)```", text[text.index(marker) :], re.DOTALL)
    assert found, marker
    return found.group(1)


@pytest.fixture
def readme_gateway(tmp_path: Path) -> GatewayProcess:
    (tmp_path / "alice").mkdir()
    give(tmp_path / "alice", "alice")  # a root gateway acts as alice's account
    config = roots_config(f"{tmp_path}/{{user}}")
    gateway = new_gateway(tmp_path / "home", config)
    gateway.start()
    return gateway


def test_the_readme_shell_examples_run_as_written(
    readme_gateway: GatewayProcess, tmp_path: Path
) -> None:
    readme = (REPO / "README.md").read_text()
    script = "\n".join(shell_block_after(readme, marker) for marker in EXAMPLES)
    script = script.replace("http://127.0.0.1:8000", readme_gateway.url)
    work = tmp_path / "shell"
    work.mkdir()
    (work / ".venv").symlink_to(REPO / ".venv")  # the README runs from a clone
    try:
        ran = subprocess.run(
            ["bash", "-e", "-o", "pipefail", "-c", script],
            cwd=work,
            env={"PATH": "/usr/bin:/bin", "HPCGATE_HOME": str(readme_gateway.home)},
            capture_output=True,
            text=True,
            timeout=120,
        )
    finally:
        readme_gateway.stop()
    assert ran.returncode == 0, ran.stderr
    assert '"name":"hello"' in ran.stdout and "step 3" in ran.stdout
    assert "event: state" in ran.stdout and '"complete":true' in ran.stdout
    assert (tmp_path / "alice" / "big.bin").read_bytes() == (work / "big.bin").read_bytes()
