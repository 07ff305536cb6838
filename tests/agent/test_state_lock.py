"""One agent per ``state_dir``: a second real ``hpcgate-agent`` on the same configuration
refuses to start and says why; once the first is gone (even by ``kill -9``), it starts."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

from tests.agent.test_agent_gateway import eventually
from tests.support.agent_process import AgentProcess


def test_a_second_agent_on_one_state_dir_refuses_to_start(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    # no gateway listens there: the agents only dial, and the lock comes before that
    first = AgentProcess(tmp_path / "agent", "http://127.0.0.1:9", "hpcg_x", (str(root),),
                         tmp_path / "spool")  # fmt: skip
    third = AgentProcess(first.directory, first.gateway, first.token, first.roots,
                         first.spool)  # fmt: skip
    first.start()
    try:
        eventually(lambda: "serving" in first.log())
        argv = [sys.executable, "-m", "hpcgate.agent", "--config", str(first.config)]
        second = subprocess.run(argv, capture_output=True, text=True, timeout=60)
        assert second.returncode == 1
        assert "is in use by another hpcgate-agent" in second.stderr, second.stderr
        assert first.process is not None and f"(pid {first.process.pid})" in second.stderr
        assert "serving" not in second.stderr  # it never dialled
        first.stop(signal.SIGKILL)
        third.start()  # the same state_dir, its holder gone
        eventually(lambda: third.log().count("serving") == 2)  # the first's line, and its
        assert third.process is not None and third.process.poll() is None
    finally:
        first.stop()
        third.stop()
