"""A real ``hpcgate-agent`` process (``python -m hpcgate.agent``) for tests, with its own
configuration, token file and state directory, dialling the gateway given."""

from __future__ import annotations

import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from tests.support.gateway_process import end


@dataclass
class AgentProcess:
    directory: Path
    gateway: str
    token: str
    roots: tuple[str, ...]
    spool: Path
    process: subprocess.Popen[bytes] | None = None
    extra: str = ""  # more settings of agent.toml, as TOML lines
    scheduler: str = "embedded"

    @property
    def config(self) -> Path:
        return self.directory / "agent.toml"

    def write(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        token_file = self.directory / "agent.token"
        token_file.write_text(self.token + "\n")
        token_file.chmod(0o600)
        roots = ", ".join(f'"{root}"' for root in self.roots)
        self.config.write_text(
            f'gateway = "{self.gateway}"\ntoken_file = "{token_file}"\n'
            f'scheduler = "{self.scheduler}"\n'
            f'roots = [{roots}]\nstate_dir = "{self.directory / "state"}"\n'
            f'embedded_spool = "{self.spool}"\nembedded_slots = 2\n{self.extra}'
        )

    def start(self) -> None:
        self.write()
        argv = [sys.executable, "-m", "hpcgate.agent", "--config", str(self.config)]
        with (self.directory / "agent.log").open("ab") as log:
            self.process = subprocess.Popen(argv, stdout=log, stderr=log)

    def stop(self, sig: int = signal.SIGTERM) -> None:
        end(self.process, sig)
        self.process = None

    def log(self) -> str:
        path = self.directory / "agent.log"
        return path.read_text(errors="replace") if path.exists() else ""
