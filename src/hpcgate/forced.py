"""The restricted entry point for a functional account behind an SSH forced command.

An administrator who gives hpcgate one account on the cluster (as SAIA does) copies this
one file of standard-library code there (say to ``/opt/hpcgate/forced.py``; nothing else
of hpcgate is needed) and puts the gateway's public key in that account's
``authorized_keys`` as::

    restrict,command="/usr/bin/python3 -I /opt/hpcgate/forced.py" ssh-ed25519 AAAA... hpcgate

sshd then runs this program for every connection, whatever the client asked, with the
client's request in ``SSH_ORIGINAL_COMMAND``; ``restrict`` turns off port, agent and X11
forwarding and pty allocation. This program runs the request only if it is one argv of
an allowed program, written exactly as the gateway writes it (``shlex.join``), and
``exec``s it directly: no shell ever sees it, so ``;``, ``&&``, ``$(...)``, redirections
and globs are refused as such, not interpreted. Anything else (no command, an interactive
session, another program, a path to a program, a command not in the canonical form) is
refused with exit status 126 and one line on stderr. The wrappers the gateway's SSH
transport puts in front are allowed: ``timeout -s KILL SECONDS`` and
``env [-i] [--] NAME=VALUE...``.

The allowed programs, by default, are exactly what the gateway runs:

- Slurm's ``sbatch squeue sacct scancel scontrol sacctmgr`` and PBS's ``qsub qstat qdel
  pbsnodes pbs_rstat``;
- three coreutils programs for job files, since sshd runs this program for the ``sftp``
  subsystem too, so the account has no SFTP: ``tail`` (reads job output: ``tail -c +N --
  PATH``), ``stat`` (a file's size: ``stat -L -c %s -- PATH``) and ``mkdir`` (a job's
  directory: ``mkdir -p -- PATH``). None of them writes a file; they reach whatever paths the
  account itself may read or create, as any job of the account can.

The administrator may narrow or widen the list in the ``command=`` string, e.g.
``forced.py --allow sbatch --allow squeue`` (then only those). Programs are found on
``PATH``. Note that ``sbatch``/``qsub`` run any script the key's holder sends, as the
account, on the compute nodes: the forced command keeps the key from a login shell, from
forwarding and from other programs on the login node, not from the account's own rights.
"""

from __future__ import annotations

import os
import shlex
import sys
from collections.abc import Sequence

DEFAULT_ALLOWED = frozenset(
    {
        "sbatch", "squeue", "sacct", "scancel", "scontrol", "sacctmgr",
        "qsub", "qstat", "qdel", "pbsnodes", "pbs_rstat",
        "tail", "stat", "mkdir",
    }
)  # fmt: skip
REFUSED = 126


class Refused(Exception):
    """The request is not one this entry point runs."""


def parse_allowed(args: Sequence[str]) -> frozenset[str]:
    """The ``--allow NAME`` options of the ``command=`` string; none: the default set."""
    allowed: set[str] = set()
    rest = list(args)
    while rest:
        option = rest.pop(0)
        if option != "--allow" or not rest:
            raise Refused(f"bad option {option!r} in the forced command (use --allow NAME)")
        name = rest.pop(0)
        if not name or "/" in name:
            raise Refused(f"--allow takes a program name, not {name!r}")
        allowed.add(name)
    return frozenset(allowed) or DEFAULT_ALLOWED


def argv_of(request: str | None, allowed: frozenset[str]) -> list[str]:
    """The argv to run for ``request`` (``SSH_ORIGINAL_COMMAND``); :class:`Refused` if it
    is not exactly ``shlex.join`` of an allowed program's argv."""
    if request is None:
        raise Refused("no command: this account only runs hpcgate's scheduler commands")
    if not request.strip():
        raise Refused("an empty command")
    if "\0" in request:
        raise Refused("a NUL byte in the command")
    try:
        argv = shlex.split(request)
    except ValueError as exc:
        raise Refused(f"unparseable command: {exc}") from None
    if not argv or shlex.join(argv) != request:
        raise Refused("the command is not a plain argv (shell syntax is refused)")
    program = _program(argv)
    if program not in allowed:
        raise Refused(f"{program!r} is not allowed here")
    return argv


def _program(argv: list[str]) -> str:
    """The program ``argv`` runs: its first word, or the one after the gateway's wrappers,
    ``timeout -s KILL SECONDS`` (the host-side bound of a command) and then
    ``env [-i] [--] NAME=VALUE...`` (how a job's environment is passed). No other option of
    either (``env -S`` splits strings)."""
    if argv[:3] == ["timeout", "-s", "KILL"] and len(argv) > 4 and argv[3].isdigit():
        argv = argv[4:]
    if argv[0] != "env":
        return argv[0]
    rest = argv[1:]
    while rest and rest[0] in ("-i", "--"):
        rest = rest[1:]
    while rest and _is_assignment(rest[0]):
        rest = rest[1:]
    if not rest:
        raise Refused("env without a program")
    if rest[0].startswith("-"):
        raise Refused(f"env option {rest[0]!r} is not allowed here")
    return rest[0]


def _is_assignment(word: str) -> bool:
    name, equals, _ = word.partition("=")
    return bool(equals) and name.isidentifier() and name.isascii()


def main(args: Sequence[str] | None = None) -> None:
    """Entry point of ``hpcgate-forced``: exec the request or refuse it."""
    try:
        allowed = parse_allowed(sys.argv[1:] if args is None else args)
        argv = argv_of(os.environ.get("SSH_ORIGINAL_COMMAND"), allowed)
    except Refused as refusal:
        print(f"hpcgate-forced: refused: {refusal}", file=sys.stderr)
        sys.exit(REFUSED)
    try:
        os.execvp(argv[0], argv)  # noqa: S606 - an allowed program, as argv, no shell
    except OSError as exc:
        print(f"hpcgate-forced: cannot run {argv[0]}: {exc.strerror}", file=sys.stderr)
        sys.exit(127)


if __name__ == "__main__":
    main()
