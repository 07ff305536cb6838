"""The spool: on-disk layout, atomic writes, locks and the persisted configuration.

Everything the engine knows lives here, so any process (the gateway, a later ``status``,
a job's supervisor) can pick up where another one stopped::

    SPOOL/                    mode 0700, created on first use
      config.json             {"slots": N, "kill_wait": S}
      lock                    spool-wide flock: submit, dispatch and cancel take it
      cache.json              derived data (job documents, finished results): any copy is valid
      tags/<sha256>.json      {"tag": ..., "id": ...}: the idempotency index
      jobs/<id>/
        job.json              the job as submitted, never changed afterwards
        script                the batch script (mode 0700)
        lock                  flock held by the job's supervisor for its whole life
        launched.json         dispatch spawned a supervisor: {"time", "attempts"}
        started.json          the supervisor took the job: {"supervisor_pid", "start_time",
                              "pid", "pid_start"} (pid once the script runs)
        cancel                a cancel was requested
        result.json           the outcome, written once while holding the job's lock
        supervisor.log        the supervisor's own stdout/stderr

Every file is written atomically (temporary file, fsync, rename, fsync of the directory), so
a crash leaves either the old or the new content, never a torn file.
"""

from __future__ import annotations

import fcntl
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

DEFAULT_SLOTS = 2
DEFAULT_KILL_WAIT = 5.0


@dataclass(frozen=True)
class Config:
    """Engine settings persisted in the spool so that every later process uses them."""

    slots: int = DEFAULT_SLOTS
    kill_wait: float = DEFAULT_KILL_WAIT


class Spool:
    """Paths inside one spool directory."""

    def __init__(self, root: str) -> None:
        self.root = os.path.abspath(root)
        self.jobs = os.path.join(self.root, "jobs")
        self.tags = os.path.join(self.root, "tags")

    def path(self, name: str) -> str:
        """A file directly under the spool root."""
        return os.path.join(self.root, name)

    def job_dir(self, job_id: str) -> str:
        """The directory of one job."""
        return os.path.join(self.jobs, job_id)

    def job_file(self, job_id: str, name: str) -> str:
        """A file in one job's directory."""
        return os.path.join(self.jobs, job_id, name)

    def ensure(self) -> None:
        """Create the spool (mode 0700) and its sub-directories if they are missing."""
        for directory in (self.root, self.jobs, self.tags):
            if not os.path.isdir(directory):
                os.makedirs(directory, mode=0o700, exist_ok=True)
                os.chmod(directory, 0o700)  # makedirs' mode is filtered by the umask

    def job_ids(self) -> list[str]:
        """The ids of all jobs, in submission order."""
        return sorted((name for name in os.listdir(self.jobs) if name.isdigit()), key=int)


def write_bytes(path: str, data: bytes, mode: int = 0o600) -> None:
    """Replace ``path`` atomically with ``data``."""
    temporary = f"{path}.tmp{os.getpid()}"
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(temporary, path)
    fsync_dir(os.path.dirname(path))


def write_json(path: str, document: Any) -> None:
    """Replace ``path`` atomically with ``document`` as JSON."""
    write_bytes(path, json.dumps(document, separators=(",", ":")).encode())


def read_json(path: str) -> Any:
    """The JSON document in ``path``, or None if there is no such file."""
    try:
        with open(path, "rb") as stream:
            return json.loads(stream.read())
    except FileNotFoundError:
        return None


def fsync_dir(path: str) -> None:
    """Make a rename or a new entry in directory ``path`` durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def try_lock(path: str) -> int | None:
    """An fd holding an exclusive flock on ``path``, or None if someone else holds it.

    The lock lives as long as the fd: close it to release the lock. Like every fd Python
    opens it is close-on-exec, so child processes never inherit the lock.
    """
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    return fd


@contextmanager
def spool_lock(spool: Spool) -> Iterator[None]:
    """Hold the spool-wide lock (blocking until it is free)."""
    fd = os.open(spool.path("lock"), os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def load_config(spool: Spool) -> Config:
    """The persisted configuration, defaults where nothing was persisted."""
    document = read_json(spool.path("config.json")) or {}
    return Config(
        slots=int(document.get("slots", DEFAULT_SLOTS)),
        kill_wait=float(document.get("kill_wait", DEFAULT_KILL_WAIT)),
    )


def update_config(spool: Spool, slots: int | None, kill_wait: float | None) -> None:
    """Persist the given settings; the file is only rewritten when something changes."""
    current = load_config(spool)
    wanted = Config(
        slots=current.slots if slots is None else slots,
        kill_wait=current.kill_wait if kill_wait is None else kill_wait,
    )
    if wanted != current:
        write_json(
            spool.path("config.json"), {"slots": wanted.slots, "kill_wait": wanted.kill_wait}
        )
