"""Drive the embedded scheduler's real command line, and look at real processes."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from tests.support.polling import wait_until

# Every test job carries this variable (value: its spool), so leftover processes are found.
MARKER = "HPCGATE_TEST_SPOOL"
FINAL = frozenset({"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL"})
DEADLINE = 20.0

Job = dict[str, Any]


class Engine:
    """One spool, driven through ``python -m hpcgate.embedded``."""

    def __init__(self, spool: Path, workdir: Path) -> None:
        self.spool = spool
        self.workdir = workdir

    def cli(
        self,
        *args: str,
        stdin: bytes = b"",
        env: dict[str, str] | None = None,
        cwd: Path | None = None,
    ) -> subprocess.CompletedProcess[bytes]:
        """Run one command; never raises on a non-zero exit status."""
        argv = [sys.executable, "-m", "hpcgate.embedded", "--spool", str(self.spool), *args]
        return subprocess.run(
            argv, input=stdin, capture_output=True, env=env, cwd=cwd, timeout=60, check=False
        )

    def ok(self, *args: str, stdin: bytes = b"", **kwargs: Any) -> Any:
        """Run one command that must succeed; its JSON output."""
        result = self.cli(*args, stdin=stdin, **kwargs)
        assert result.returncode == 0, result.stderr.decode()
        return json.loads(result.stdout)

    def document(self, script: str | None, /, **fields: Any) -> dict[str, Any]:
        """A job document for ``script`` in this engine's workdir, ``fields`` overriding."""
        env = {MARKER: str(self.spool), **fields.pop("env", {})}
        return {"script": script, "workdir": str(self.workdir), "env": env, **fields}

    def submit(self, script: str | None, /, *options: str, **fields: Any) -> str:
        """Submit ``script``; its job id. ``options`` go before the command (e.g. --slots)."""
        document = json.dumps(self.document(script, **fields)).encode()
        return str(self.ok(*options, "submit", stdin=document)["id"])

    def status(self, *ids: str) -> dict[str, Job]:
        """The jobs by id (all, or those listed)."""
        args = ["status", "--ids", ",".join(ids)] if ids else ["status"]
        return {job["id"]: job for job in self.ok(*args)["jobs"]}

    def job(self, job_id: str) -> Job:
        """One job's status record."""
        return self.status(job_id)[job_id]

    def wait(self, job_id: str, until: Callable[[Job], bool], timeout: float = DEADLINE) -> Job:
        """Poll the job until ``until(job)`` holds; fail with the last record seen."""
        deadline = time.monotonic() + timeout
        job = self.job(job_id)
        while not until(job):
            assert time.monotonic() < deadline, f"job {job_id} stuck: {job}"
            time.sleep(0.05)
            job = self.job(job_id)
        return job

    def wait_state(self, job_id: str, *states: str) -> Job:
        """Poll the job until it is in one of ``states``."""
        return self.wait(job_id, lambda job: job["state"] in states)

    def wait_final(self, job_id: str) -> Job:
        """Poll the job until it has ended."""
        return self.wait(job_id, lambda job: job["state"] in FINAL)

    def shut_down(self) -> list[int]:
        """Cancel what still runs, wait for it; return (and kill) leftover processes."""
        unfinished = [i for i, job in self.status().items() if job["state"] not in FINAL]
        if unfinished:
            self.ok("cancel", *unfinished)
        for job_id in unfinished:
            self.wait_final(job_id)
        wait_until(lambda: not processes_of(self.spool), timeout=10)
        strays = processes_of(self.spool)
        for pid in strays:
            kill(pid)
        return strays


def read_pid(path: Path) -> int:
    """The pid a job wrote to ``path`` (waiting for the file to be complete)."""
    assert wait_until(lambda: path.is_file() and path.read_text().endswith("\n")), path
    return int(path.read_text())


def _stat(pid: int) -> str | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text[text.rfind(")") + 2 :]


def alive(pid: int) -> bool:
    """Whether ``pid`` is a live process (a zombie is not: it has ended)."""
    stat = _stat(pid)
    return stat is not None and not stat.startswith(("Z", "X"))


def parent_of(pid: int) -> int:
    """The parent pid of ``pid``."""
    stat = _stat(pid)
    assert stat is not None, f"process {pid} is gone"
    return int(stat.split()[1])


def _proc_bytes(pid: str, name: str) -> list[bytes]:
    try:
        return Path(f"/proc/{pid}/{name}").read_bytes().split(b"\0")
    except OSError:
        return []


def processes_of(spool: Path) -> list[int]:
    """Live supervisors (spool on their command line) and job processes (marker) of a spool."""
    marker = f"{MARKER}={spool}".encode()
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid() or not alive(int(entry)):
            continue
        if str(spool).encode() in _proc_bytes(entry, "cmdline") or marker in _proc_bytes(
            entry, "environ"
        ):
            found.append(int(entry))
    return found


def kill(pid: int) -> None:
    """SIGKILL ``pid`` if it still exists."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


def engine_in(base: Path) -> Iterator[Engine]:
    """An engine on a new spool under ``base``; fails if its processes outlive the test."""
    workdir = base / "work"
    workdir.mkdir()
    engine = Engine(base / "spool", workdir)
    yield engine
    strays = engine.shut_down()
    assert not strays, f"processes left behind (killed now): {strays}"
