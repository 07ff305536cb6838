"""User and group names on an SSH host, as its ``getent`` gives them.

SFTP version 3 carries only numeric ids, so the names of a listing's owners, the ids of a
``chown``'s names and the accounts of callers (the transport is the system's user
directory) come from one ``getent passwd|group KEY...`` per batch, run as a command, argv
only. Names of ids are remembered for :data:`NAMES_SECONDS`.
"""

from __future__ import annotations

import re
import time
from typing import Protocol

from hpcgate.accounts import Account, UserEntry
from hpcgate.model.commands import Command, CommandResult
from hpcgate.model.errors import BadRequest
from hpcgate.transports.ssh_errors import C_LOCALE, failure

NAMES_SECONDS = 300.0
LOOKUP_TIMEOUT = 120.0
ACCOUNT_NAME = re.compile(r"^[A-Za-z0-9_.][A-Za-z0-9_.@$-]{0,255}$")  # what useradd and IdPs allow


class Runner(Protocol):
    """What runs ``getent`` on the host: the SSH transport."""

    async def run(
        self, command: Command, timeout: float, account: Account | None = None
    ) -> CommandResult: ...


class Names:
    """User and group names by id, as the host's ``getent`` gives them, for a while."""

    def __init__(self) -> None:
        self._known: dict[tuple[str, int], tuple[str | None, float]] = {}

    async def of(
        self, host: Runner, account: Account | None, database: str, ids: set[int]
    ) -> dict[int, str | None]:
        now = time.monotonic()
        missing = sorted(i for i in ids if self._known.get((database, i), (None, 0.0))[1] < now)
        if missing:
            found = await _getent(host, account, database, [str(i) for i in missing])
            for number in missing:
                self._known[(database, number)] = (found.get(number), now + NAMES_SECONDS)
        return {number: self._known[(database, number)][0] for number in ids}

    async def number(self, host: Runner, account: Account | None, database: str, name: str) -> int:
        """The id of a user or group name (digits are taken as the id itself)."""
        if name.isdigit():
            return int(name)
        found = await _getent(host, account, database, [_checked(name)])
        if not found:
            raise BadRequest(f"no such {'user' if database == 'passwd' else 'group'}: {name}")
        return next(iter(found))

    async def user(self, host: Runner, name: str) -> UserEntry | None:
        """The passwd entry of ``name`` on the host, asked in the gateway's own login."""
        command = Command(("getent", "passwd", _checked(name)), env=C_LOCALE)
        result = await host.run(command, LOOKUP_TIMEOUT, None)
        if result.returncode == 2:  # no such key
            return None
        if not result.ok:
            raise failure(result, "getent", "passwd")
        return _user_entry(result.stdout.decode(errors="replace"), name)


def _checked(name: str) -> str:
    """A user or group name that no program takes for an option."""
    if not ACCOUNT_NAME.match(name):
        raise BadRequest(f"not a user or group name: {name!r}")
    return name


def _user_entry(text: str, name: str) -> UserEntry | None:
    """The entry of ``name`` in ``getent passwd`` output (name:x:uid:gid:gecos:home:shell)."""
    for line in text.splitlines():
        fields = line.split(":")
        if len(fields) == 7 and fields[0] == name and fields[2].isdigit() and fields[3].isdigit():
            return UserEntry(name, int(fields[2]), int(fields[3]), fields[5])
    return None


async def _getent(
    host: Runner, account: Account | None, database: str, keys: list[str]
) -> dict[int, str]:
    """Ids to names of the entries ``getent`` finds (exit status 2: some were not found).
    No key starts with ``-`` (names are checked first), so none is taken for an option:
    ``getent -s SERVICE`` loads a library of the caller's choosing."""
    command = Command(("getent", database, *keys), env=C_LOCALE)
    result = await host.run(command, LOOKUP_TIMEOUT, account)
    if result.returncode not in (0, 2):
        raise failure(result, "getent", database)
    found: dict[int, str] = {}
    for line in result.stdout.decode(errors="replace").splitlines():
        fields = line.split(":")
        if len(fields) > 2 and fields[2].isdigit():
            found[int(fields[2])] = fields[0]
    return found
