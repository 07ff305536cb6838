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

- **The relay.** ``relay HOST PORT`` (exactly so, as ``shlex.join`` writes it, with no
  wrapper in front) is how the gateway reaches a service's replica on a compute node when
  the key may not forward (``restrict``). It connects only where hpcgate put a replica: the
  account must have a *running* job named ``hpcgate-<service>-PORT`` (the services core
  names each replica's job so and gives it that port), as the scheduler on ``PATH`` says
  (Slurm: ``squeue --user ACCOUNT --states RUNNING``, then ``scontrol show node`` for its
  nodes; else PBS: ``qstat -f -F json``, the job's ``exec_host``), and HOST must be one of
  that job's nodes: its name, its ``NodeAddr`` or ``NodeHostName`` (Slurm), or an address
  the name resolves to here. PORT is 1024 to 65535, never a privileged port; HOST is a
  name or an address, nothing else. It then connects, writes ``hpcgate-forced: relay
  open`` on stderr, and copies bytes both ways (stdin to the connection, the connection to
  stdout), each end of input passed on as a half-close, until both ways are done, or until
  sshd's channel goes away. A refused target is status 126, a failed connection 1.
  The relay is one of the default programs; an ``--allow`` list without ``relay`` turns it
  off. It gives the key nothing a job of the account could not do, but keeps the login
  node from connecting anywhere else on the gateway's behalf.

Anything else (no command, an interactive session, another program, a path to a program, a
command not in the canonical form) is refused with exit status 126 and one line on stderr.

The allowed programs, by default, are exactly what the gateway runs:

- Slurm's ``sbatch squeue sacct scancel scontrol sacctmgr`` and PBS's ``qsub qstat qdel
  pbsnodes pbs_rstat``;
- for job files: ``tail`` (job output), ``stat`` (sizes) and ``mkdir`` (job directories);
- for the files API: ``getent`` (the names of uids and gids), ``md5sum sha1sum sha256sum
  sha512sum b2sum`` (checksums), ``du`` (sizes, for a task's progress) and the task
  programs ``cp``, ``mv`` and ``tar``.
- for services: ``relay`` (above; not a program on ``PATH``).

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

import contextlib
import fcntl
import json
import os
import posixpath
import pwd
import re
import select
import shlex
import shutil
import socket
import stat
import subprocess
import sys
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass

DEFAULT_ALLOWED = frozenset(
    {
        "sbatch", "squeue", "sacct", "scancel", "scontrol", "sacctmgr",
        "qsub", "qstat", "qdel", "pbsnodes", "pbs_rstat",
        "tail", "stat", "mkdir",
        "getent", "md5sum", "sha1sum", "sha256sum", "sha512sum", "b2sum", "du",
        "cp", "mv", "tar",
        "relay",
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


def _relay_alone(args: list[str]) -> None:
    """The relay is no program on ``PATH``: it runs only as the whole request."""
    raise Refused("relay runs only alone, as 'relay HOST PORT'")


SHAPES: dict[str, Callable[[list[str]], None]] = {
    "tar": _tar,
    "getent": _getent,
    "relay": _relay_alone,
}

# ---------------------------------------------------------------- the relay

RELAY = "relay"
RELAY_READY = b"hpcgate-forced: relay open\n"  # on stderr once connected: stdout is the stream's
RELAY_BUFFER = 1 << 20
F_SETPIPE_SZ = 1031  # Linux's fcntl, fcntl.F_SETPIPE_SZ from Python 3.10
MIN_RELAY_PORT = 1024
RELAY_QUERY_TIMEOUT = 30.0  # seconds for the scheduler's answer
RELAY_CONNECT_TIMEOUT = 10.0
SERVICE_JOB = "hpcgate-"  # a replica's job is named hpcgate-<service>-<port>
HOST_CHARACTERS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-:")
NODE_FIELDS = tuple(
    re.compile(rf"(?:^|\s){field}=(\S+)") for field in ("NodeName", "NodeAddr", "NodeHostName")
)


def is_relay_request(request: str | None) -> bool:
    """Whether ``request`` asks for the relay: its first word is ``relay``."""
    return (request or "").split(" ", 1)[0] == RELAY


def relay_target(request: str, options: Options) -> tuple[str, int]:
    """HOST and PORT of ``relay HOST PORT`` (exactly ``shlex.join``'s form), checked as
    words: a host name or address, a port from 1024 to 65535."""
    if RELAY not in options.allowed:
        raise Refused(f"{RELAY!r} is not allowed here")
    try:
        argv = shlex.split(request)
    except ValueError as exc:
        raise Refused(f"unparseable command: {exc}") from None
    if len(argv) != 3 or shlex.join(argv) != request:
        raise Refused("the relay runs only as 'relay HOST PORT'")
    return _relay_host(argv[1]), _relay_port(argv[2])


def _relay_host(text: str) -> str:
    valid = 0 < len(text) <= 253 and set(text) <= HOST_CHARACTERS
    if not valid or text[0] in "-.":
        raise Refused(f"the relay's host must be a node's name or address, not {text!r}")
    return text


def _relay_port(text: str) -> int:
    if not (text.isascii() and text.isdigit() and text == str(int(text))):
        raise Refused(f"the relay's port must be a number, not {text!r}")
    if not MIN_RELAY_PORT <= int(text) <= 65535:
        raise Refused(f"the relay connects to ports {MIN_RELAY_PORT} to 65535 only, not {text}")
    return int(text)


def is_service_job(name: str, port: int) -> bool:
    """Whether a job named ``name`` is a replica that hpcgate gave ``port``:
    ``hpcgate-<service>-<port>``, the service's name not empty."""
    tail = f"-{port}"
    long_enough = len(name) > len(SERVICE_JOB) + len(tail)
    return long_enough and name.startswith(SERVICE_JOB) and name.endswith(tail)


def is_replica_host(host: str, port: int) -> bool:
    """Whether ``host`` names a node where this account runs a job named
    ``hpcgate-<service>-<port>``, as the scheduler on ``PATH`` (Slurm, else PBS) says: by
    a name or address the scheduler gives, or one such a name resolves to."""
    hosts = replica_hosts(port)
    return host in hosts or any(host in _addresses(name) for name in hosts)


def replica_hosts(port: int) -> set[str]:
    """The names and addresses the scheduler gives the nodes of the account's running
    replica jobs on ``port``."""
    user = pwd.getpwuid(os.getuid()).pw_name
    if shutil.which("squeue"):
        return slurm_relay_hosts(user, port)
    if shutil.which("qstat"):
        return pbs_service_hosts(_query(["qstat", "-f", "-F", "json"]), user, port)
    raise Refused("no scheduler (squeue or qstat) on PATH to check the relay's target")


def slurm_relay_hosts(user: str, port: int) -> set[str]:
    """``squeue`` for the account's running replicas on ``port``, then ``scontrol`` for
    their nodes' names, addresses and host names."""
    listed = ["squeue", "--noheader", "--states=RUNNING", f"--user={user}", "--format=%N|%j"]
    nodes = slurm_service_nodes(_query(listed), port)
    if not nodes:
        return set()
    return slurm_node_names(_query(["scontrol", "--oneliner", "show", "node", ",".join(nodes)]))


def slurm_service_nodes(listed: str, port: int) -> list[str]:
    """The node lists (``node[1-2]``) of the replica jobs on ``port`` in ``squeue
    --format=%N|%j`` lines (a node list has no ``|``; a job name may)."""
    found: list[str] = []
    for line in listed.splitlines():
        nodes, _, name = line.partition("|")
        if nodes and is_service_job(name, port):
            found.append(nodes)
    return found


def slurm_node_names(shown: str) -> set[str]:
    """The ``NodeName``, ``NodeAddr`` and ``NodeHostName`` of each node in ``scontrol
    --oneliner show node`` output: the first of each on its line, as they come before
    free text such as ``Reason=``."""
    names: set[str] = set()
    for line in shown.splitlines():
        for pattern in NODE_FIELDS:
            found = pattern.search(line)
            if found:
                names.add(found.group(1))
    return names


def pbs_service_hosts(listed: str, user: str, port: int) -> set[str]:
    """The execution hosts of ``user``'s running replica jobs on ``port`` in ``qstat -f -F
    json`` output (``exec_host`` is ``host/slot*n+host/slot...``)."""
    try:
        jobs = json.loads(listed, strict=False).get("Jobs") or {}
    except (ValueError, AttributeError):
        raise Refused("qstat's answer is not the JSON expected") from None
    hosts: set[str] = set()
    for job in jobs.values() if isinstance(jobs, dict) else ():
        if isinstance(job, dict) and _pbs_replica(job, user, port):
            parts = str(job.get("exec_host", "")).split("+")
            hosts.update(part.partition("/")[0] for part in parts if part)
    return hosts


def _pbs_replica(job: dict[str, object], user: str, port: int) -> bool:
    owner = str(job.get("Job_Owner", "")).partition("@")[0]
    name = str(job.get("Job_Name", ""))
    return job.get("job_state") == "R" and owner == user and is_service_job(name, port)


def _addresses(host: str) -> set[str]:
    try:
        found = socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)
    except (OSError, UnicodeError):
        return set()
    return {str(info[4][0]) for info in found}


def _query(argv: list[str]) -> str:
    """What a scheduler command prints; :class:`Refused` if it fails."""
    try:
        done = subprocess.run(  # a fixed argv, no shell
            argv,
            capture_output=True,
            text=True,
            errors="replace",
            timeout=RELAY_QUERY_TIMEOUT,
            stdin=subprocess.DEVNULL,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise Refused(f"{argv[0]} did not answer: {exc}") from None
    if done.returncode != 0:
        said = done.stderr.strip().splitlines()[-1:] or [f"exit status {done.returncode}"]
        raise Refused(f"{argv[0]} failed: {said[0]}")
    return done.stdout


def relay(request: str, options: Options) -> int:
    """Check ``relay HOST PORT``, connect, and copy bytes both ways until both ends are
    done; the exit status (:class:`Refused` if the target is not the account's replica)."""
    host, port = relay_target(request, options)
    if not is_replica_host(host, port):
        raise Refused(
            f"{host} is not a node where this account runs a job named"
            f" {SERVICE_JOB}<service>-{port}"
        )
    try:
        connection = socket.create_connection((host, port), RELAY_CONNECT_TIMEOUT)
    except OSError as exc:
        print(f"hpcgate-forced: relay: cannot connect to {host}:{port}: {exc}", file=sys.stderr)
        return 1
    return pump(connection)


def pump(connection: socket.socket) -> int:
    """Copy stdin to ``connection`` and ``connection`` to stdout, each on a thread of its
    own, passing each end of input on as a half-close; return once both are done, or at
    once when stdout's reader (sshd's channel) goes away."""
    connection.settimeout(None)
    connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    for fd in (0, 1):
        _widen_pipe(fd)
    os.write(2, RELAY_READY)
    threads = [
        threading.Thread(target=_upstream, args=(connection,), daemon=True),
        threading.Thread(target=_downstream, args=(connection,), daemon=True),
    ]
    for thread in threads:
        thread.start()
    watch = select.poll()
    watch.register(1, 0)  # no events asked: only POLLERR/POLLHUP, the reader is gone
    while any(thread.is_alive() for thread in threads):
        if watch.poll(500):
            return 0
    return 0


def _widen_pipe(fd: int) -> None:
    """Make a pipe to sshd hold ``RELAY_BUFFER`` bytes (Linux; 64 KiB by default, which
    makes many small reads and writes); anything else is left as it is."""
    with contextlib.suppress(OSError):
        fcntl.fcntl(fd, F_SETPIPE_SZ, RELAY_BUFFER)


def _upstream(connection: socket.socket) -> None:
    """stdin to the connection, then the connection's write half closed."""
    try:
        while True:
            chunk = os.read(0, RELAY_BUFFER)
            if not chunk:
                break
            connection.sendall(chunk)
        connection.shutdown(socket.SHUT_WR)
    except OSError as exc:
        _abort(f"sending: {exc}")


def _downstream(connection: socket.socket) -> None:
    """The connection to stdout, then stdout closed (the channel's EOF)."""
    buffer = bytearray(RELAY_BUFFER)
    view = memoryview(buffer)
    try:
        while True:
            count = connection.recv_into(buffer)
            if not count:
                break
            _write_all(1, view[:count])
        _end_stdout()
    except OSError as exc:
        _abort(f"receiving: {exc}")


def _write_all(fd: int, data: memoryview) -> None:
    while data:
        data = data[os.write(fd, data) :]


def _end_stdout() -> None:
    """The end of the output, seen by sshd: stdout's pipe closed (in place, /dev/null
    takes fd 1), or a socket's write half shut; stderr too, since sshd holds back a
    session's EOF while its stderr is open."""
    if stat.S_ISSOCK(os.fstat(1).st_mode):
        socket.socket(fileno=os.dup(1)).shutdown(socket.SHUT_WR)
    null = os.open(os.devnull, os.O_WRONLY)
    if not stat.S_ISSOCK(os.fstat(1).st_mode):
        os.dup2(null, 1)
    os.dup2(null, 2)
    os.close(null)


def _abort(what: str) -> None:
    """A broken side ends the relay, both sides at once."""
    os.write(2, f"hpcgate-forced: relay: {what}\n".encode(errors="replace"))
    os._exit(1)


def main(args: Sequence[str] | None = None) -> None:
    """Entry point of ``hpcgate-forced``: exec the request or refuse it."""
    try:
        options = parse_options(sys.argv[1:] if args is None else args)
        request = os.environ.get("SSH_ORIGINAL_COMMAND")
        if request is not None and is_relay_request(request):
            sys.exit(relay(request, options))
        argv = request_argv(request, options)
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
