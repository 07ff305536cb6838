"""``hpcgate-agent``: serve one system's gateway from this machine, dialling out."""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import sys
from pathlib import Path

import anyio

from hpcgate.agent.config import AgentConfig, ConfigError, load
from hpcgate.agent.dial import Dialer, pid_note
from hpcgate.agent.state import StateBusy, hold


def parser() -> argparse.ArgumentParser:
    made = argparse.ArgumentParser(
        prog="hpcgate-agent",
        description="Serve an hpcgate gateway from this login node over one outbound"
        " WebSocket. Runs only the operations hpcgate defines, within this machine's"
        " configuration (roots, scheduler programs, accounts).",
    )
    made.add_argument("--config", type=Path, default=Path("/etc/hpcgate/agent.toml"))
    made.add_argument("--gateway", help="the gateway's address (overrides the file's)")
    made.add_argument("--token-file", type=Path, help="the agent token's file (overrides)")
    made.add_argument(
        "--ca-file", type=Path, help="a PEM CA bundle to trust besides the system's (overrides)"
    )
    return made


def main(argv: list[str] | None = None) -> None:
    args = parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    try:
        config = _configured(args)
        lock = hold(config.state_dir)  # held, open, for the process's life
    except (ConfigError, StateBusy) as exc:
        sys.exit(f"hpcgate-agent: {exc}")
    log = logging.getLogger("hpcgate.agent")
    log.info("%s serving %s", pid_note(), config.url)
    if _others_read(config.token_file):
        log.warning("%s is readable by others than its owner: chmod 0600", config.token_file)
    try:
        anyio.run(Dialer(config).forever)
    finally:
        if lock is not None:
            os.close(lock)


def _configured(args: argparse.Namespace) -> AgentConfig:
    """The configuration file's settings, with the command line's over them."""
    config = load(args.config)
    overrides = {"gateway": args.gateway, "token_file": args.token_file, "ca_file": args.ca_file}
    return dataclasses.replace(config, **{k: v for k, v in overrides.items() if v})


def _others_read(path: Path) -> bool:
    try:
        return bool(path.stat().st_mode & 0o077)
    except OSError:  # missing: each connection attempt says so
        return False


if __name__ == "__main__":
    main()
