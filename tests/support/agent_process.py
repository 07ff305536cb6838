"""A real ``hpcgate-agent`` process (``python -m hpcgate.agent``) for tests, with its own
configuration, token file and state directory, dialling the gateway given."""

from __future__ import annotations

import os
import pwd
import signal
import site
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

from websockets.asyncio.server import ServerConnection, serve

import hpcgate
from tests.support.gateway_process import end

#: A user-mode agent runs on the system's Python (of the same minor version) with this
#: checkout's packages: the test interpreter may live where other users cannot read.
USER_PYTHON = "/usr/bin/python3"
IMPORTABLE = (str(Path(hpcgate.__file__).parents[1]), *site.getsitepackages())


@dataclass
class AgentProcess:
    directory: Path
    gateway: str
    token: str
    roots: tuple[str, ...]
    spool: Path
    user: str | None = None  # run as this Unix user (a user-mode agent); None: as root
    scheduler: str = "embedded"  # or slurm (then ``spool`` is unused)
    wrapper: tuple[str, ...] = ()  # argv it runs under (``ip netns exec NAME``)
    process: subprocess.Popen[bytes] | None = None
    extra: str = ""  # more settings of agent.toml, as TOML lines

    @property
    def config(self) -> Path:
        return self.directory / "agent.toml"

    def write(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        token_file = self.directory / "agent.token"
        token_file.write_text(self.token + "\n")
        token_file.chmod(0o600)
        roots = ", ".join(f'"{root}"' for root in self.roots)
        embedded = f'embedded_spool = "{self.spool}"\nembedded_slots = 2\n'
        self.config.write_text(
            f'gateway = "{self.gateway}"\ntoken_file = "{token_file}"\n'
            f'scheduler = "{self.scheduler}"\n'
            f'roots = [{roots}]\nstate_dir = "{self.directory / "state"}"\n'
            + (embedded if self.scheduler == "embedded" else "")
            + self.extra
        )

    def start(self) -> None:
        self.write()
        argv = [sys.executable, "-m", "hpcgate.agent", "--config", str(self.config)]
        with (self.directory / "agent.log").open("ab") as log:
            if self.user is None:
                self.process = subprocess.Popen([*self.wrapper, *argv], stdout=log, stderr=log)
                return
            entry = pwd.getpwnam(self.user)
            for path in (self.directory, *self.directory.rglob("*")):
                os.chown(path, entry.pw_uid, entry.pw_gid)
            env = {**os.environ, "HOME": entry.pw_dir, "USER": self.user, "LOGNAME": self.user,
                   "PYTHONPATH": os.pathsep.join(IMPORTABLE)}  # fmt: skip
            self.process = subprocess.Popen(
                [USER_PYTHON, *argv[1:]], stdout=log, stderr=log, env=env,
                user=entry.pw_uid, group=entry.pw_gid, extra_groups=[],
            )  # fmt: skip

    def stop(self, sig: int = signal.SIGTERM) -> None:
        end(self.process, sig)
        self.process = None

    def log(self) -> str:
        path = self.directory / "agent.log"
        return path.read_text(errors="replace") if path.exists() else ""


@asynccontextmanager
async def facing_peer(
    handler: Callable[[ServerConnection], Awaitable[None]], directory: Path
) -> AsyncIterator[tuple[AgentProcess, Path]]:
    """A real agent process that dials a test peer playing the gateway (``handler`` serves
    its WebSocket), with one file root, ``directory/root``; stopped on the way out."""
    root = directory / "root"
    root.mkdir()
    async with serve(handler, "127.0.0.1", 0, max_size=None) as server:
        port = server.sockets[0].getsockname()[1]
        url = f"ws://127.0.0.1:{port}"
        agent = AgentProcess(directory / "agent", url, "hpcg_x", (str(root),), directory / "spool")
        agent.start()
        try:
            yield agent, root
        finally:
            agent.stop()
