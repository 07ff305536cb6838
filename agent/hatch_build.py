"""Which files of ``../src/hpcgate`` the agent's distribution ships: the agent, its wire,
the local transport it serves by, the embedded scheduler's engine it runs, and the
accounts module (see client/hatch_build.py for how the shared tree is split: a wheel gets
them as ``hpcgate/...``, an sdist as ``src/hpcgate/...``, an editable install none)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hatchling.builders.config import BuilderConfig
from hatchling.builders.hooks.plugin.interface import BuildHookInterface

TRANSPORTS = (
    "__init__", "anchored", "beneath", "file_rules", "filesystem", "fshelper", "helper_pool",
    "identity", "local", "local_files", "local_ops", "os_errors", "tcp",
)  # fmt: skip
SHIPPED = (
    "agent",
    "agentwire",
    "embedded",
    "accounts.py",
    *(f"transports/{name}.py" for name in TRANSPORTS),
)


class AgentFiles(BuildHookInterface[BuilderConfig]):
    """Adds the agent's share of the sources to a wheel or an sdist."""

    def initialize(self, version: str, build_data: dict[str, Any]) -> None:
        if version == "editable":
            return
        root = Path(self.root)
        unpacked = root / "src" / "hpcgate"  # building from this distribution's sdist
        source = unpacked if unpacked.is_dir() else root.parent / "src" / "hpcgate"
        prefix = "src/hpcgate" if self.target_name == "sdist" else "hpcgate"
        for name in SHIPPED:
            build_data["force_include"][str(source / name)] = f"{prefix}/{name}"
