"""Job files as commands, for a functional account behind hpcgate-forced.

sshd runs an account's forced command for the ``sftp`` subsystem too, and a site may turn
hpcgate-forced's SFTP off (``--no-sftp``; the files API then fails). So that jobs work
either way, with identity = 'forced' the SSH transport reads job output, sizes files and
makes job directories by running coreutils programs that hpcgate-forced allows, none of
which writes a file:

- ``tail -c +N -- PATH``: the file from byte N-1 on (the transport stops reading, and kills
  it, once it has the bytes it wants);
- ``stat -L -c %s -- PATH``: the size;
- ``mkdir -p -- PATH``: a directory and its parents.

Each runs with ``LC_ALL=C``, so the reason on its stderr reads the same on every host;
:func:`~hpcgate.transports.files.complaint_kind` turns that reason (a strerror text) into
the hpcgate error, by the same table as the local file helpers' errno numbers.
"""

from __future__ import annotations

from hpcgate.forced import REFUSED
from hpcgate.model.commands import Command, CommandResult
from hpcgate.model.errors import (
    HpcgateError,
    TransportError,
)
from hpcgate.transports.files import complaint_kind

C_LOCALE = {"LC_ALL": "C"}


def read_command(path: str, offset: int) -> Command:
    """Everything in ``path`` from byte ``offset`` on."""
    return Command(("tail", "-c", f"+{offset + 1}", "--", path), env=C_LOCALE)


def size_command(path: str) -> Command:
    """The size of ``path`` (of what a symbolic link points to), in bytes."""
    return Command(("stat", "-L", "-c", "%s", "--", path), env=C_LOCALE)


def mkdir_command(path: str) -> Command:
    """Make ``path`` and its parents; fine if it is a directory already."""
    return Command(("mkdir", "-p", "--", path), env=C_LOCALE)


def parse_size(result: CommandResult, path: str) -> int:
    """The size ``stat`` printed; raises the error its failure means."""
    if not result.ok:
        raise failure(result, "stat", path)
    try:
        return int(result.stdout)
    except ValueError:
        raise TransportError(f"stat printed no size for {path}: {result.stdout[:80]!r}") from None


def failure(result: CommandResult, program: str, path: str) -> HpcgateError:
    """The error a failed file command means: by the reason ending its stderr, or a
    TransportError naming what it said (hpcgate-forced's refusal among them)."""
    text = result.stderr.decode(errors="replace").strip()
    if result.returncode == REFUSED and text.startswith("hpcgate-forced:"):
        return TransportError(
            f"the host's forced command refused '{program}' ({text}): allow it there"
            " (see hpcgate.forced)"
        )
    reason = text.splitlines()[-1].rpartition(": ")[2] if text else ""
    kind = complaint_kind(reason) if reason else None
    if kind is not None:
        return kind(f"{reason}: {path}")
    return TransportError(
        f"'{program}' failed on {path} (exit status {result.returncode}): {text or 'no message'}"
    )
