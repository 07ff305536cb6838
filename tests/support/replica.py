"""Replica jobs on the test Slurm cluster of scripts/slurm, named as the services core names
them (``hpcgate-<service>-<port>``): an echo server (``echo_job.py``) on its port, run as
a given account, for the streams that reach a node (hpcgate-forced's relay checks the
name, the account and the node against squeue). Needs root (``runuser``)."""

from __future__ import annotations

import contextlib
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

ECHO_JOB = Path(__file__).with_name("echo_job.py")
START_SECONDS = 60.0


@contextlib.contextmanager
def replica_job(account: str, port: int, serve: bool = True, hold: bool = False) -> Iterator[str]:
    """A running job of ``account`` named ``hpcgate-echo-PORT``, whose echo server listens
    on PORT (with ``serve``; else it only sleeps; with ``hold`` it never ends its side of a
    connection); its id, cancelled at the end."""
    server = f"/usr/bin/python3 {ECHO_JOB} {port}" + (" hold" if hold else "")
    command = server if serve else "sleep 600"
    argv = ["runuser", "-u", account, "--", "sbatch", "--parsable", "--time=10"]
    argv += [f"--job-name=hpcgate-echo-{port}", "--output=/dev/null", "--chdir=/tmp"]
    done = subprocess.run(
        argv, input=f"#!/bin/bash\nexec {command}\n", capture_output=True, text=True, check=True
    )
    job = done.stdout.strip().split(";")[0]
    try:
        _wait_running(job)
        if serve:
            _wait_listening(port)
        yield job
    finally:
        subprocess.run(["scancel", job], capture_output=True)


def _wait_running(job: str) -> None:
    deadline = time.monotonic() + START_SECONDS
    while time.monotonic() < deadline:
        argv = ["squeue", "--noheader", "--format=%T", f"--jobs={job}"]
        state = subprocess.run(argv, capture_output=True, text=True).stdout.strip()
        if state == "RUNNING":
            return
        time.sleep(0.2)
    raise AssertionError(f"replica job {job} did not start in {START_SECONDS:g} s")


def _wait_listening(port: int) -> None:
    deadline = time.monotonic() + START_SECONDS
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1):
            return
        time.sleep(0.1)
    raise AssertionError(f"no replica listens on port {port} after {START_SECONDS:g} s")
