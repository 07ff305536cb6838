"""A real ``hpcgate serve`` process for tests and benchmarks, with its own data directory and
port."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import httpx
import pytest

from tests.support.accounts import passable, unix_account
from tests.support.tokens import mint

TEST_CONFIG = """
max_script_bytes = 4096

[systems.local]
scheduler = "embedded"
status_interval = 0.2
slots = 4
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def cli(
    home: Path, *args: str, check: bool = True, wrapper: tuple[str, ...] = ()
) -> subprocess.CompletedProcess[str]:
    """Run the real ``hpcgate`` command line against a data directory (under ``wrapper``,
    as :attr:`GatewayProcess.wrapper`)."""
    env = {**os.environ, "HPCGATE_HOME": str(home)}
    return subprocess.run(
        [*wrapper, sys.executable, "-m", "hpcgate", *args],
        env=env,
        capture_output=True,
        text=True,
        check=check,
        timeout=60,
    )


@dataclass
class GatewayProcess:
    home: Path
    config: Path
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None
    wrapper: tuple[str, ...] = ()  # argv the server runs under (it must exec the rest)
    start_seconds: float = 30  # until it answers /api/v1/health (a bench on a loaded VM: more)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        env = {**os.environ, "HPCGATE_HOME": str(self.home)}
        argv = [*self.wrapper, sys.executable, "-m", "hpcgate", "serve"]
        argv += ["--config", str(self.config), "--port", str(self.port)]
        with (self.home / "server.log").open("ab") as log:
            self.process = subprocess.Popen(argv, env=env, stdout=log, stderr=log)
        try:
            self._wait_ready()
        except BaseException:
            self.stop()  # one that did not come up in time is not left running
            raise

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.start_seconds
        while time.monotonic() < deadline:
            assert self.process is not None and self.process.poll() is None, self.log_tail()
            try:
                if httpx.get(f"{self.url}/api/v1/health", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                time.sleep(0.05)
        raise TimeoutError(f"gateway did not start:\n{self.log_tail()}")

    def stop(self, sig: int = signal.SIGTERM) -> None:
        end(self.process, sig)
        self.process = None

    def log(self) -> str:
        """The whole server log (a start-up warning stays findable after any load)."""
        path = self.home / "server.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def log_tail(self) -> str:
        """The end of the server log, for a failure message."""
        return self.log()[-5000:]

    def token(self, user: str, *scopes: str, expires_in: str | None = None) -> str:
        if not self.wrapper:  # the command's work, without its interpreter's start
            return mint(self.home, user, scopes, expires_in)
        args = ["token", "create", user, *(f"--scope={s}" for s in scopes)]
        if expires_in:
            args.append(f"--expires-in={expires_in}")
        return cli(self.home, *args, wrapper=self.wrapper).stdout.strip().splitlines()[-1]

    def client(self, token: str | None) -> httpx.Client:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=30)


def roots_config(*roots: str) -> str:
    """The embedded test system with these file roots (each may hold ``{user}``)."""
    listed = ", ".join(f'"{root}"' for root in roots)
    return f"""
[systems.local]
scheduler = "embedded"
status_interval = 0.2
roots = [{listed}]
"""


#: As root, the test gateways are multi-user (as any root gateway): alice and bob run as
#: their own accounts, every other test user as this shared unprivileged one.
FALLBACK = "hpcgate-fallback"


def new_gateway(home: Path, config_text: str = TEST_CONFIG) -> GatewayProcess:
    home.mkdir(parents=True, exist_ok=True)
    if os.geteuid() == 0:
        for name in ("alice", "bob", FALLBACK):
            unix_account(name)
        passable(home)
        if "[users]" not in config_text:
            config_text += f'\n[users]\nfallback = "{FALLBACK}"\n'
    config = home / "config.toml"
    config.write_text(config_text)
    return GatewayProcess(home, config)


def running_gateway(home: Path, config_text: str = TEST_CONFIG) -> Iterator[GatewayProcess]:
    """A started gateway for a fixture to yield from; stopped when the fixture ends."""
    server = new_gateway(home, config_text)
    try:
        server.start()
        yield server
    finally:
        server.stop()


def user_client(
    user: str, gateway: str = "gateway", scope: Literal["session", "module"] = "module"
) -> object:
    """A fixture named ``user``: an HTTP client with a token of that user on the gateway
    process that the fixture named ``gateway`` gives. ``alice = user_client("alice")``."""

    @pytest.fixture(scope=scope, name=user)
    def client(request: pytest.FixtureRequest) -> Iterator[httpx.Client]:
        server: GatewayProcess = request.getfixturevalue(gateway)
        with server.client(server.token(user)) as made:
            yield made

    return client


def end(process: subprocess.Popen[bytes] | None, sig: int = signal.SIGTERM) -> None:
    """Signal ``process`` if it still runs and wait (30 s at most) for it to end."""
    if process is not None and process.poll() is None:
        process.send_signal(sig)
        process.wait(timeout=30)
