"""The agent's configuration: one TOML file (``/etc/hpcgate/agent.toml`` or ``--config``).

Everything the agent allows comes from here, never from what the gateway sends::

    gateway = "https://gw.example.org"      # or wss://...; http(s) becomes ws(s)
    token_file = "/etc/hpcgate/agent.token"
    ca_file = "/etc/hpcgate/gateway-ca.pem" # optional: a CA to trust besides the system's
    scheduler = "slurm"                     # slurm | pbs | embedded
    roots = ["{home}", "/scratch/{user}"]   # the only places file operations may touch
    state_dir = "/var/lib/hpcgate-agent"
    path = "/usr/local/bin:/usr/bin:/bin"   # where programs are looked up
    min_uid = 1000                          # a root agent never acts as an account below
    embedded_spool = "/var/lib/hpcgate-agent/embedded"  # scheduler = "embedded" only
    embedded_slots = 4
    stream_ports = [20000, 32767]           # the ports byte streams may go to (the gateway's
                                            # service_ports); hosts: agent/targets.py
    stream_hosts = ["gpu-7.example.org"]    # optional: hosts besides the scheduler's nodes
    bulk_reads = true                       # downloads on a data connection of their own
                                            # (agent/bulk.py); false: as WebSocket messages
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SCHEDULERS = ("slurm", "pbs", "embedded")
DEFAULT_PATH = "/usr/local/bin:/usr/bin:/bin"


class ConfigError(Exception):
    """The configuration file is missing, unreadable or wrong; the message says how."""


@dataclass(frozen=True, slots=True)
class AgentConfig:
    gateway: str
    token_file: Path
    scheduler: str
    roots: tuple[str, ...]
    state_dir: Path
    ca_file: Path | None = None
    path: str = DEFAULT_PATH
    min_uid: int = 1000
    embedded_spool: Path | None = None
    embedded_slots: int = 1
    stream_ports: tuple[int, int] = (20000, 32767)
    stream_hosts: tuple[str, ...] = ()
    bulk_reads: bool = True

    @property
    def url(self) -> str:
        """The WebSocket address of the gateway's connect route."""
        base = self.gateway.rstrip("/")
        for plain, secure in (("http://", "ws://"), ("https://", "wss://")):
            if base.startswith(plain):
                base = secure + base.removeprefix(plain)
        return f"{base}/api/v1/agent/connect"

    def token(self) -> str:
        """The agent token, read from its file (kept out of argv and the environment)."""
        try:
            return self.token_file.read_text().strip()
        except OSError as exc:
            raise ConfigError(f"cannot read token_file {self.token_file}: {exc}") from None


def load(path: Path) -> AgentConfig:
    """The configuration in ``path``; ConfigError naming what is wrong."""
    try:
        data = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"cannot read {path}: {exc}") from None
    return parse(data)


_KEYS = {
    "gateway": str, "token_file": str, "ca_file": str, "scheduler": str, "roots": list,
    "state_dir": str, "path": str, "min_uid": int, "embedded_spool": str, "embedded_slots": int,
    "stream_ports": list, "stream_hosts": list, "bulk_reads": bool,
}  # fmt: skip


def parse(data: dict[str, Any]) -> AgentConfig:
    """The configuration in a parsed TOML table."""
    for key, value in data.items():
        if key not in _KEYS:
            raise ConfigError(f"unknown setting {key!r} (known: {', '.join(_KEYS)})")
        if not isinstance(value, _KEYS[key]) or (
            isinstance(value, bool) is not (_KEYS[key] is bool)
        ):
            raise ConfigError(f"{key} must be a {_KEYS[key].__name__}")
    missing = [key for key in ("gateway", "token_file", "scheduler", "roots") if key not in data]
    if missing:
        raise ConfigError(f"missing setting(s): {', '.join(missing)}")
    return _checked(data)


def _checked(data: dict[str, Any]) -> AgentConfig:
    if data["scheduler"] not in SCHEDULERS:
        raise ConfigError(f"scheduler must be one of {', '.join(SCHEDULERS)}")
    roots = tuple(data["roots"])
    if not roots or not all(isinstance(r, str) and _absolute_root(r) for r in roots):
        raise ConfigError("roots must be absolute directories ('{home}' and '{user}' allowed)")
    if not str(data["gateway"]).startswith(("http://", "https://", "ws://", "wss://")):
        raise ConfigError("gateway must be an http(s):// or ws(s):// address")
    state = Path(data.get("state_dir", "/var/lib/hpcgate-agent"))
    spool = data.get("embedded_spool")
    return AgentConfig(
        gateway=data["gateway"],
        token_file=Path(data["token_file"]),
        scheduler=data["scheduler"],
        roots=roots,
        state_dir=state,
        ca_file=Path(data["ca_file"]) if "ca_file" in data else None,
        path=data.get("path", DEFAULT_PATH),
        min_uid=max(1, data.get("min_uid", 1000)),
        embedded_spool=Path(spool) if spool else state / "embedded",
        embedded_slots=max(1, data.get("embedded_slots", os.cpu_count() or 1)),
        stream_ports=_ports(data.get("stream_ports", [20000, 32767])),
        stream_hosts=_hosts(data.get("stream_hosts", [])),
        bulk_reads=data.get("bulk_reads", True),
    )


def _ports(value: list[Any]) -> tuple[int, int]:
    shape_ok = len(value) == 2 and all(type(port) is int for port in value)
    if not shape_ok or not 1024 <= value[0] <= value[1] <= 65535:
        raise ConfigError("stream_ports must be [first, last] within 1024-65535")
    return value[0], value[1]


def _hosts(value: list[Any]) -> tuple[str, ...]:
    if not all(isinstance(host, str) and 0 < len(host) <= 253 for host in value):
        raise ConfigError("stream_hosts must be host names or addresses")
    return tuple(value)


def _absolute_root(root: str) -> bool:
    return root.startswith(("/", "{home}")) and ".." not in root.split("/")
