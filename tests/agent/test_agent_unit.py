"""The systemd unit shipped in ``agent/hpcgate-agent.service`` is one systemd accepts
(``systemd-analyze verify`` where it is installed), and it starts the agent the way its own
command line accepts."""

from __future__ import annotations

import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from hpcgate.agent.__main__ import parser
from hpcgate.agent.bulk import BulkSender

UNIT = Path(__file__).resolve().parents[2] / "agent" / "hpcgate-agent.service"


def sections(text: str) -> dict[str, dict[str, list[str]]]:
    """The unit's keys by section (a key may repeat); a line outside a section fails."""
    found: dict[str, dict[str, list[str]]] = {}
    current: dict[str, list[str]] | None = None
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            current = found.setdefault(line[1:-1], {})
            continue
        key, equals, value = line.partition("=")
        assert current is not None and equals and key.strip().isalnum(), line
        current.setdefault(key.strip(), []).append(value.strip())
    return found


def test_the_unit_runs_the_agent_as_root_restarting_always_with_a_private_state() -> None:
    service = sections(UNIT.read_text())["Service"]
    assert service["User"] == ["root"] and service["Restart"] == ["always"]
    assert service["StateDirectory"] == ["hpcgate-agent"]  # its default state_dir
    assert service["StateDirectoryMode"] == ["0700"] and service["UMask"] == ["0077"]
    # what would break the privilege drop of a root agent is not there
    assert not {"PrivateUsers", "CapabilityBoundingSet", "ProtectHome"} & service.keys()


def test_the_unit_s_exec_start_is_a_command_line_the_agent_accepts() -> None:
    (exec_start,) = sections(UNIT.read_text())["Service"]["ExecStart"]
    program, *args = shlex.split(exec_start)
    assert Path(program).name == "hpcgate-agent"
    parsed = parser().parse_args(args)  # an option it lacks: SystemExit
    assert parsed.config == Path("/etc/hpcgate/agent.toml")
    shown = subprocess.run(
        [sys.executable, "-m", "hpcgate.agent", "--help"], capture_output=True, text=True
    )
    assert shown.returncode == 0
    assert all(word in shown.stdout for word in args if word.startswith("--"))


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="no systemd-analyze")
def test_systemd_verifies_the_unit(tmp_path: Path) -> None:
    """Verified as installed here: its program, this checkout's agent (systemd checks that
    it exists); an unknown or misspelt key is a warning, so any output fails."""
    agent = Path(sys.executable).parent / "hpcgate-agent"
    assert agent.exists(), agent
    text = UNIT.read_text().replace("/usr/local/bin/hpcgate-agent", str(agent))
    (tmp_path / UNIT.name).write_text(text)
    checked = subprocess.run(
        ["systemd-analyze", "verify", f"./{UNIT.name}"],
        cwd=tmp_path, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert checked.returncode == 0 and not checked.stderr.strip(), checked.stderr


def test_the_data_connection_posts_beside_the_connect_route() -> None:
    sender = BulkSender("wss://gw.example.org:8443/prefix/api/v1/agent/connect", "t", None)
    head = sender._head("a" * 43).decode()
    assert head.startswith("POST /prefix/api/v1/agent/streams/" + "a" * 43 + " HTTP/1.1\r\n")
    assert "Host: gw.example.org:8443\r\n" in head and "Transfer-Encoding: chunked" in head
