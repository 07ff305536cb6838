"""The agent's allow-list: the only place that says yes. Everything it allows comes from
the agent's own configuration and this module's tables, never from the gateway.

- **Programs.** A command's ``argv[0]`` is a bare name among the configured scheduler's
  programs (:data:`PROGRAMS`), looked up in the configured ``path``; a file program
  (``run_files``) is one of :data:`FILE_PROGRAMS`. The embedded scheduler's engine is run
  as this agent's own Python with its own spool and slots, whatever the gateway names.
- **Options.** ``sbatch --wrap`` (a command line for a shell) is refused: the adapter
  never sends it; environment names that change how programs load (``LD_*``,
  ``PYTHON*``, ``BASH_ENV``...) are refused.
- **Paths.** Every file operation is confined to one of the agent's roots (``{home}``
  and ``{user}`` of the request's account): the agent opens the path beneath that root,
  so no symlink leads out of it.
- **Accounts.** A root agent acts as the request's account (never root, a system account
  or nobody) or, for none, as itself; an agent run by a user acts only as that user.

What this cannot promise: submitting a job script *is* the product, so a compromised
gateway can still submit jobs as the users whose work it routes to this agent.
"""

from __future__ import annotations

import os
import posixpath
import pwd
import shutil
import sys

from hpcgate.accounts import NOBODY, Account, local_user
from hpcgate.agent.config import AgentConfig
from hpcgate.agentwire.messages import Beneath

PROGRAMS: dict[str, frozenset[str]] = {
    "slurm": frozenset({"sbatch", "squeue", "scontrol", "sacct", "sacctmgr", "scancel", "sinfo"}),
    "pbs": frozenset({"qsub", "qstat", "qdel", "pbsnodes", "pbs_rstat"}),
    "embedded": frozenset(),
}
FILE_PROGRAMS = frozenset({"cp", "mv", "tar"})
EMBEDDED_COMMANDS = frozenset({"submit", "status", "cancel", "info"})
REFUSED_OPTIONS: dict[str, tuple[str, ...]] = {"sbatch": ("--wrap", "-W")}
REFUSED_ENV_PREFIXES = ("LD_", "PYTHON", "BASH_FUNC_", "DYLD_")
REFUSED_ENV = frozenset({"BASH_ENV", "ENV", "IFS", "PATH", "SHELLOPTS", "PS4", "SLURM_CONF"})


class Refused(Exception):
    """The request asks for something the agent does not allow; the message says what."""


class Policy:
    def __init__(self, config: AgentConfig) -> None:
        self._config = config
        self._own = pwd.getpwuid(os.getuid())
        self.root_agent = os.getuid() == 0

    @property
    def serves(self) -> str | None:
        """Whom the agent serves: None (root: every account) or its own user's name."""
        return None if self.root_agent else self._own.pw_name

    # ------------------------------------------------------------------ accounts

    def account(self, name: str | None) -> Account | None:
        """The account a request runs as (None: the agent's own)."""
        if not self.root_agent:
            if name not in (None, self._own.pw_name):
                raise Refused(f"this agent serves only {self._own.pw_name!r}, not {name!r}")
            return None
        if name is None:
            return None
        entry = local_user(name)
        if entry is None:
            raise Refused(f"no account {name!r} here")
        if entry.uid in (0, NOBODY) or entry.uid < self._config.min_uid:
            raise Refused(f"account {name!r} is a system account, which is never used")
        return Account(entry.name, entry.uid, entry.gid, entry.groups, entry.home)

    # ------------------------------------------------------------------ commands

    def command(self, argv: tuple[str, ...], env: dict[str, str] | None) -> tuple[str, ...]:
        """The argv to run for a scheduler command the gateway asked for."""
        self._check_env(env)
        if self._config.scheduler == "embedded":
            return self._embedded(argv)
        return self._program(argv, PROGRAMS[self._config.scheduler])

    def file_command(self, argv: tuple[str | Beneath, ...]) -> str:
        """The program to run for a file program's argv (its paths checked separately)."""
        first = argv[0]
        if not isinstance(first, str):
            raise Refused("a file program's first word is its name")
        return self._program((first,), FILE_PROGRAMS)[0]

    def _program(self, argv: tuple[str, ...], allowed: frozenset[str]) -> tuple[str, ...]:
        name = argv[0]
        if name not in allowed:
            raise Refused(f"program {name[:64]!r} is not one this agent runs")
        for option in REFUSED_OPTIONS.get(name, ()):
            if any(word == option or word.startswith(option + "=") for word in argv[1:]):
                raise Refused(f"{name} {option} is not allowed")
        found = shutil.which(name, path=self._config.path)
        if found is None:
            raise Refused(f"program {name!r} is not installed in {self._config.path}")
        return (found, *argv[1:])

    def _embedded(self, argv: tuple[str, ...]) -> tuple[str, ...]:
        """The engine's argv is ``PYTHON -m hpcgate.embedded --spool S --slots N CMD ...``:
        the agent keeps only ``CMD ...`` and puts its own Python, spool and slots first."""
        shape_ok = len(argv) >= 8 and argv[1:4] == ("-m", "hpcgate.embedded", "--spool")
        if not shape_ok or argv[5] != "--slots" or argv[7] not in EMBEDDED_COMMANDS:
            raise Refused(f"program {argv[0][:64]!r} is not one this agent runs")
        spool, slots = str(self._config.embedded_spool), str(self._config.embedded_slots)
        return (sys.executable, "-m", "hpcgate.embedded", "--spool", spool, "--slots", slots,
                *argv[7:])  # fmt: skip

    def _check_env(self, env: dict[str, str] | None) -> None:
        for name in env or {}:
            if name in REFUSED_ENV or name.startswith(REFUSED_ENV_PREFIXES):
                raise Refused(f"environment variable {name[:64]!r} is not allowed")

    # ------------------------------------------------------------------ paths

    def confine(self, root: str | None, path: str, account: Account | None) -> str:
        """The root to open ``path`` beneath: the request's ``root`` if it lies inside one
        of the agent's roots, else the agent's root that holds ``path``."""
        if not _lexically_inside(path, root or "/"):
            raise Refused(f"path {path[:256]!r} is outside its root")
        roots = self.roots(account)
        if root is not None and any(_lexically_inside(root, mine) for mine in roots):
            return posixpath.normpath(root)
        for mine in roots:
            if _lexically_inside(path, mine):
                return mine
        raise Refused(f"path {path[:256]!r} is outside this agent's roots")

    def roots(self, account: Account | None) -> list[str]:
        """The agent's roots for ``account`` (None: the agent's own)."""
        name, home = (
            (account.name, account.home) if account else (self._own.pw_name, self._own.pw_dir)
        )
        expanded = (r.replace("{home}", home).replace("{user}", name) for r in self._config.roots)
        return [posixpath.normpath(root) for root in expanded]


def _lexically_inside(path: str, root: str) -> bool:
    if not path.startswith("/") or "\0" in path or ".." in path.split("/"):
        return False
    path, root = posixpath.normpath(path), posixpath.normpath(root)
    return path == root or path.startswith(root.rstrip("/") + "/")
