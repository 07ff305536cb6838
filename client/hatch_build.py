"""Which files of ``../src/hpcgate`` the client distribution ships.

Both distributions build from the one source tree: the server's pyproject at the
repository's root, this one beside it. The client's share lies outside this folder, so
hatchling would not find it; this hook names it. A wheel gets it as ``hpcgate/...``; an
sdist as ``src/hpcgate/...``, where a wheel built from that sdist finds it. An editable
install gets none of it (its ``.pth`` puts ``../src`` on the path: a copy in site-packages
would hide the server's modules, which live in the same ``hpcgate`` package).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hatchling.builders.config import BuilderConfig
from hatchling.builders.hooks.plugin.interface import BuildHookInterface

SHIPPED = ("__init__.py", "__main__.py", "py.typed", "model", "client", "usercli")


class ClientFiles(BuildHookInterface[BuilderConfig]):
    """Adds the client's share of the sources to a wheel or an sdist."""

    def initialize(self, version: str, build_data: dict[str, Any]) -> None:
        if version == "editable":
            return
        root = Path(self.root)
        unpacked = root / "src" / "hpcgate"  # building from this distribution's sdist
        source = unpacked if unpacked.is_dir() else root.parent / "src" / "hpcgate"
        prefix = "src/hpcgate" if self.target_name == "sdist" else "hpcgate"
        for name in SHIPPED:
            build_data["force_include"][str(source / name)] = f"{prefix}/{name}"
