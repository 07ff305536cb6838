"""Tokens for a test gateway's users, made in the test's own process.

``hpcgate token create`` starts an interpreter that imports the whole gateway (some 1.5 s
of CPU a token); the suite makes a thousand. :func:`mint` runs what that command runs (the
gateway's settings from its home, its store brought up to date, ``TokenService.create``)
without the interpreter's start. The command itself keeps its own tests (tests/api).
"""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from hpcgate.cli import parse_duration
from hpcgate.config import load_settings
from hpcgate.gateway import Gateway
from hpcgate.model.principal import DEFAULT_SCOPES
from hpcgate.tokens import parse_scopes


def mint(home: Path, user: str, scopes: tuple[str, ...], expires_in: str | None) -> str:
    """A new token's secret for ``user`` on the gateway whose data directory is ``home``
    (its ``config.toml`` read as the command reads it). Safe to call from a test that runs
    an event loop: the store is opened on a thread of its own."""
    config = home / "config.toml"
    settings = load_settings(config if config.is_file() else None, home=home)
    wanted = parse_scopes(list(scopes)) if scopes else DEFAULT_SCOPES
    lifetime = parse_duration(expires_in) if expires_in else None

    async def create() -> str:
        gateway = Gateway(settings)
        await gateway.open_store()
        try:
            return (await gateway.tokens.create(user, wanted, lifetime)).secret
        finally:
            await gateway.database.close()

    with ThreadPoolExecutor(1) as thread:
        return thread.submit(asyncio.run, create()).result(timeout=60)
