"""The restricted entry point for a functional account behind an SSH forced command.

An administrator who gives hpcgate one account on the cluster (as SAIA does) copies this
one file of standard-library code there (say to ``/opt/hpcgate/forced.py``; nothing else
of hpcgate is needed) and puts the gateway's public key in that account's
``authorized_keys`` as::

    restrict,command="/usr/bin/python3 -I /opt/hpcgate/forced.py" ssh-ed25519 AAAA... hpcgate

sshd then runs this program for every connection, whatever the client asked, with the
client's request in ``SSH_ORIGINAL_COMMAND``; ``restrict`` turns off port, agent and X11
forwarding, pty allocation and ``~/.ssh/rc``. This program does one of two things:

- **SFTP.** sshd runs it for the ``sftp`` subsystem too, with the subsystem's configured
  command as the request: ``internal-sftp``, or a path whose last part is ``sftp-server``
  (with any options of sshd_config after it). Such a request ``exec``s the sftp-server
  program: ``--sftp-server PATH`` if given, else the first that exists of
  ``/usr/lib/openssh/sftp-server``, ``/usr/libexec/openssh/sftp-server`` and
  ``/usr/libexec/sftp-server``; never the path in the request, and with none of its
  options, only the ones given with ``--sftp-option ARG`` (each one word, e.g.
  ``--sftp-option -l --sftp-option INFO``). The gateway does all its file operations over
  SFTP, so this gives the key the account's own file access, reading and writing whatever
  the account may. ``--no-sftp`` turns it off: then such a request is refused (status 126;
  sshd sends no stderr of a subsystem), and the gateway's file operations fail.
- **One command.** It runs the request only if it is one argv of an allowed program,
  written exactly as the gateway writes it (``shlex.join``), and ``exec``s it directly: no
  shell ever sees it, so ``;``, ``&&``, ``$(...)``, redirections and globs are refused as
  such, not interpreted. The wrappers the gateway's SSH transport puts in front are
  allowed: ``timeout -s KILL SECONDS`` and ``env [-i] [--] NAME=VALUE...``, except for the
  variables that make a program load or run other code (``PATH``, ``LD_*``,
  ``GCONV_PATH``, ``GLIBC_TUNABLES``, a shell's ``BASH_ENV``/``ENV``/``SHELLOPTS``/
  ``BASHOPTS`` for sites whose ``sbatch`` is a shell script, ``TAR_OPTIONS``,
  ``SLURM_CONF``, ``PBS_CONF_FILE``). So a job's environment cannot set those through a
  functional account.

Anything else (no command, an interactive session, another program, a path to a program, a
command not in the canonical form) is refused with exit status 126 and one line on stderr.

The allowed programs, by default, are exactly what the gateway runs:

- Slurm's ``sbatch squeue sacct scancel scontrol sacctmgr`` and PBS's ``qsub qstat qdel
  pbsnodes pbs_rstat``;
- for job files: ``tail`` (job output), ``stat`` (sizes) and ``mkdir`` (job directories);
- for the files API: ``getent`` (the names of uids and gids), ``md5sum sha1sum sha256sum
  sha512sum b2sum`` (checksums), ``du`` (sizes, for a task's progress) and the task
  programs ``cp``, ``mv`` and ``tar``.

Of the programs for files, two have options that run other code, so they are held to the
gateway's exact shapes. ``tar`` can run programs in many ways
(``--to-command``, ``--checkpoint-action=exec=``, ``--use-compress-program``/``-I``,
``--rsh-command``, ``--info-script``/``-F``, ``--new-volume-script``, an archive named
``host:path``): a tar request must consist of ``--create`` (the gateway extracts archives
itself, never with tar, which would make devices and setuid files), one ``--file=PATH``,
``--force-local`` (so no archive name is a remote one), and otherwise only
``--gzip --bzip2 --xz --checkpoint=N --checkpoint-action=echo=%u`` and ``-C DIR``, with
names only after ``--`` (as ``hpcgate.files.bulk`` builds them).
``getent -s SERVICE`` loads a library named by the caller, so getent runs only as ``getent
passwd|group KEY...``, with no option. The GNU coreutils ones (``cp mv du tail stat mkdir``
and the ``*sum`` programs) have no such option (checked against coreutils 9.1): they read
and write files, and ``du --files0-from``, ``du -X`` and ``*sum -c`` read lists from
files, nothing more.

The administrator may narrow or widen the list in the ``command=`` string, e.g.
``forced.py --allow sbatch --allow squeue`` (then only those, and SFTP unless
``--no-sftp``). Programs are found on ``PATH``.

What this does not guard: the account's own rights. ``sbatch``/``qsub`` run any script the
key's holder sends, as the account, on the compute nodes; and through SFTP (or ``cp``,
``tar``, or a job on a shared home) the key's holder can write the account's files. So
keep the files that decide what a login runs out of the account's reach, or the key
escapes this program: an ``authorized_keys`` the account can write can lose its
``command=``, and bash, when sshd runs it, reads ``~/.bashrc`` first (Debian's and others'
builds). Put the key in a root-owned file (``AuthorizedKeysFile /etc/ssh/authorized_keys/%u``
in a ``Match User`` block) and give the account ``/bin/sh`` as its login shell (neither
dash nor bash as ``sh`` reads a start-up file for ``sh -c``).
"""

from __future__ import annotations

import os
import posixpath
import shlex
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass

DEFAULT_ALLOWED = frozenset(
    {
        "sbatch", "squeue", "sacct", "scancel", "scontrol", "sacctmgr",
        "qsub", "qstat", "qdel", "pbsnodes", "pbs_rstat",
        "tail", "stat", "mkdir",
        "getent", "md5sum", "sha1sum", "sha256sum", "sha512sum", "b2sum", "du",
        "cp", "mv", "tar",
    }
)  # fmt: skip
SFTP_SERVERS = (
    "/usr/lib/openssh/sftp-server",  # Debian, Ubuntu, SUSE
    "/usr/libexec/openssh/sftp-server",  # RHEL, Fedora
    "/usr/libexec/sftp-server",  # OpenBSD, Alpine
)
# Variables that make a program load or run code other than its own.
STEERING = frozenset(
    {
        "PATH", "GCONV_PATH", "GLIBC_TUNABLES",
        "BASH_ENV", "ENV", "SHELLOPTS", "BASHOPTS",
        "TAR_OPTIONS", "SLURM_CONF", "PBS_CONF_FILE",
    }
)  # fmt: skip
TAR_FLAGS = frozenset(
    {
        "--create", "--gzip", "--bzip2", "--xz",
        "--checkpoint-action=echo=%u", "--force-local",
    }
)  # fmt: skip
REFUSED = 126


class Refused(Exception):
    """The request is not one this entry point runs."""


@dataclass(frozen=True)
class Options:
    """The options of the ``command=`` string."""

    allowed: frozenset[str] = DEFAULT_ALLOWED
    sftp: bool = True
    sftp_server: str | None = None  # None: the first of SFTP_SERVERS that exists
    sftp_options: tuple[str, ...] = ()


def parse_options(args: Sequence[str]) -> Options:
    """``--allow NAME`` (repeated; none: the default programs), ``--no-sftp``,
    ``--sftp-server PATH`` and ``--sftp-option ARG`` (repeated)."""
    values: dict[str, list[str]] = {"--allow": [], "--sftp-server": [], "--sftp-option": []}
    sftp = True
    rest = list(args)
    while rest:
        option = rest.pop(0)
        if option == "--no-sftp":
            sftp = False
        elif option in values and rest:
            values[option].append(rest.pop(0))
        else:
            raise Refused(f"bad option {option!r} in the forced command (see its docstring)")
    allowed = _programs(values["--allow"])
    return Options(allowed, sftp, _server(values["--sftp-server"]), tuple(values["--sftp-option"]))


def _programs(names: list[str]) -> frozenset[str]:
    for name in names:
        if not name or "/" in name:
            raise Refused(f"--allow takes a program name, not {name!r}")
    return frozenset(names) or DEFAULT_ALLOWED


def _server(paths: list[str]) -> str | None:
    if len(paths) > 1:
        raise Refused("--sftp-server is given more than once")
    if paths and not paths[0].startswith("/"):
        raise Refused(f"--sftp-server takes an absolute path, not {paths[0]!r}")
    return paths[0] if paths else None


def is_sftp_request(request: str | None) -> bool:
    """Whether ``request`` is sshd's command for the ``sftp`` subsystem: ``internal-sftp``
    or a path ending in ``sftp-server``, with whatever options after it."""
    words = (request or "").split()
    return bool(words) and (
        words[0] == "internal-sftp" or posixpath.basename(words[0]) == "sftp-server"
    )


def sftp_argv(options: Options) -> list[str]:
    """The sftp-server to run, with the administrator's options only."""
    server = options.sftp_server or next(
        (path for path in SFTP_SERVERS if os.path.exists(path)), None
    )
    if server is None:
        raise Refused(f"no sftp-server in {', '.join(SFTP_SERVERS)}: name it (--sftp-server)")
    return [server, *options.sftp_options]


def request_argv(request: str | None, options: Options) -> list[str]:
    """The argv to exec for ``request`` (``SSH_ORIGINAL_COMMAND``): an sftp-server, or an
    allowed command; :class:`Refused` otherwise."""
    if is_sftp_request(request):
        if not options.sftp:
            raise Refused("SFTP is turned off for this account (--no-sftp)")
        return sftp_argv(options)
    return argv_of(request, options.allowed)


def argv_of(request: str | None, allowed: frozenset[str]) -> list[str]:
    """The argv to run for ``request``; :class:`Refused` if it is not exactly
    ``shlex.join`` of an allowed program's argv, in the shape that program is held to."""
    if request is None:
        raise Refused("no command: this account only runs hpcgate's commands")
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
    program, *args = _command(argv)
    if program not in allowed:
        raise Refused(f"{program!r} is not allowed here")
    SHAPES.get(program, _any)(args)
    return argv


def _command(argv: list[str]) -> list[str]:
    """The argv of the program ``argv`` runs: all of it, or what follows the gateway's
    wrappers, ``timeout -s KILL SECONDS`` (the host-side bound of a command) and then
    ``env [-i] [--] NAME=VALUE...`` (how a job's environment is passed). No other option of
    either (``env -S`` splits strings)."""
    if argv[:3] == ["timeout", "-s", "KILL"] and len(argv) > 4 and argv[3].isdigit():
        argv = argv[4:]
    if argv[0] != "env":
        return argv
    rest = argv[1:]
    while rest and rest[0] in ("-i", "--"):
        rest = rest[1:]
    while rest and _is_assignment(rest[0]):
        _check_variable(rest[0].partition("=")[0])
        rest = rest[1:]
    if not rest:
        raise Refused("env without a program")
    if rest[0].startswith("-"):
        raise Refused(f"env option {rest[0]!r} is not allowed here")
    return rest


def _is_assignment(word: str) -> bool:
    name, equals, _ = word.partition("=")
    return bool(equals) and name.isidentifier() and name.isascii()


def _check_variable(name: str) -> None:
    if name in STEERING or name.startswith("LD_"):
        raise Refused(f"the variable {name} is not allowed here (it chooses code to run)")


def _any(args: list[str]) -> None:
    """Any arguments."""


def _tar(args: list[str]) -> None:
    """Only the shape of ``hpcgate.files.bulk``'s ``compress_argv``."""
    options = _tar_options(args)
    files = [option for option in options if option.startswith("--file=")]
    if "--create" not in options or len(files) != 1 or "--force-local" not in options:
        raise Refused("tar needs --create, one --file= and --force-local")


def _tar_options(args: list[str]) -> list[str]:
    """The options before ``--``, each one of the few allowed (``-C`` takes the next word
    as its directory, whatever it is, as tar does)."""
    options: list[str] = []
    rest = list(args)
    while rest and rest[0] != "--":
        word = rest.pop(0)
        if word == "-C" and rest:
            rest.pop(0)
        elif word in TAR_FLAGS or word.startswith("--file=") or _is_checkpoint(word):
            options.append(word)
        else:
            raise Refused(f"tar option {word!r} is not allowed here")
    return options


def _is_checkpoint(word: str) -> bool:
    count = word.partition("--checkpoint=")[2]
    return word.startswith("--checkpoint=") and count.isdigit() and count.isascii()


def _getent(args: list[str]) -> None:
    """``getent passwd|group KEY...``: no option, since ``-s SERVICE`` loads a library
    whose name the caller chooses."""
    if not args or args[0] not in ("passwd", "group") or any(a.startswith("-") for a in args):
        raise Refused("getent runs only as 'getent passwd|group KEY...'")


SHAPES: dict[str, Callable[[list[str]], None]] = {"tar": _tar, "getent": _getent}


def main(args: Sequence[str] | None = None) -> None:
    """Entry point of ``hpcgate-forced``: exec the request or refuse it."""
    try:
        options = parse_options(sys.argv[1:] if args is None else args)
        argv = request_argv(os.environ.get("SSH_ORIGINAL_COMMAND"), options)
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
