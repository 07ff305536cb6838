"""The gateway's commands of ``hpcgate``: run the gateway and administer it.

The ``hpcgate`` command itself is the client distribution's (:mod:`hpcgate.usercli`); this
distribution declares :func:`register` in the ``hpcgate.commands`` entry point group, and
the command mounts it when the server is installed. The server's stack (settings included)
is imported by the commands that use it, so ``hpcgate --help`` and the user commands start
fast."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import resource
from collections.abc import Awaitable, Callable
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, TypeVar

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from hpcgate.model.agent_tokens import AGENT_USER_PATTERN
from hpcgate.model.errors import Forbidden, HpcgateError
from hpcgate.model.principal import DEFAULT_SCOPES, Principal, Scope

if TYPE_CHECKING:
    from hpcgate.config import Settings
    from hpcgate.gateway import Gateway
    from hpcgate.tokens import IssuedToken

token_app = typer.Typer(no_args_is_help=True, help="Create, list and revoke API tokens.")
config_app = typer.Typer(no_args_is_help=True, help="Inspect the configuration.")
agent_token_app = typer.Typer(
    no_args_is_help=True, help="Create, list and revoke the tokens agents serve systems with."
)
err = Console(stderr=True)
T = TypeVar("T")

ConfigOption = Annotated[
    Path | None, typer.Option("--config", "-c", help="TOML configuration file", exists=True)
]
_DURATION = re.compile(r"^(\d+)([smhdw]?)$")
_UNIT = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
# A token's lifetime is at most a hundred years: past that the expiry overflows dates.
MAX_LIFETIME = timedelta(days=36500)


def register(app: typer.Typer) -> None:
    """Mount ``serve``, ``token``, ``agent-token``, ``project`` and ``config`` on the
    ``hpcgate`` command."""
    from hpcgate.projects_cli import project_app  # it imports this module

    app.command()(serve)
    app.add_typer(project_app, name="project")
    app.add_typer(token_app, name="token")
    app.add_typer(config_app, name="config")
    app.add_typer(agent_token_app, name="agent-token")


def _settings(config: Path | None) -> Settings:
    from hpcgate.config import load_settings  # it loads the database layer

    try:
        return load_settings(config)
    except (ValueError, FileNotFoundError) as exc:
        err.print(f"[red]configuration error:[/red] {escape(str(exc))}")
        raise typer.Exit(2) from None


def _with_store(settings: Settings, work: Callable[[Gateway], Awaitable[T]]) -> T:
    # Said on stderr, so a shell without HPCGATE_HOME is not silently another gateway's.
    # soft_wrap: a path is never broken over two lines (rich wraps at 80 columns off a tty)
    err.print(f"hpcgate: data in {escape(str(settings.home))}", highlight=False, soft_wrap=True)

    async def run() -> T:
        gateway = _gateway(settings)
        await gateway.open_store()
        try:
            return await work(gateway)
        finally:
            await gateway.database.close()

    try:
        return asyncio.run(run())
    except HpcgateError as exc:
        err.print(f"[red]error:[/red] {escape(exc.detail)}")
        raise typer.Exit(1) from None


def _gateway(settings: Settings) -> Gateway:
    from hpcgate.gateway import Gateway

    try:
        return Gateway(settings)
    except ValueError as exc:
        err.print(f"[red]configuration error:[/red] {escape(str(exc))}")
        raise typer.Exit(2) from None


def _lock_home(gateway: Gateway) -> None:
    from hpcgate.homelock import HomeInUse

    try:
        gateway.lock_home()
    except HomeInUse as exc:
        err.print(f"[red]error:[/red] {escape(str(exc))}")
        raise typer.Exit(1) from None


async def _refusal(gateway: Gateway, user: str) -> str | None:
    """Why a multi-user gateway will refuse ``user``'s jobs and files on its own machine
    (no Unix account), or None."""
    local = [c for c in gateway.systems if c.config.transport == "local"]
    if not gateway.accounts.multi or not local:
        return None
    try:
        await gateway.accounts.resolve(Principal(user, frozenset(), ""), local[0].transport)
    except Forbidden as exc:
        return str(exc)
    return None


def _mode(gateway: Gateway) -> str:
    local = any(c.config.transport == "local" for c in gateway.systems)
    if not gateway.accounts.multi and not local:
        return "single-user: every system is reached over SSH, as its configured ssh.user"
    return gateway.accounts.describe()


def parse_duration(text: str) -> timedelta:
    """``90``, ``90s``, ``15m``, ``12h``, ``30d`` or ``2w``."""
    match = _DURATION.match(text.strip())
    if match is None or int(match.group(1)) == 0:
        raise typer.BadParameter(f"invalid duration {text!r}; use e.g. 3600, 90m, 12h or 30d")
    seconds = int(match.group(1)) * _UNIT[match.group(2)]
    if seconds > MAX_LIFETIME.total_seconds():
        raise typer.BadParameter(f"duration {text!r} is too long; at most {MAX_LIFETIME.days}d")
    return timedelta(seconds=seconds)


def _scopes(names: list[str] | None) -> frozenset[Scope]:
    from hpcgate.tokens import parse_scopes  # it loads the database layer

    if not names:
        return DEFAULT_SCOPES
    try:
        return parse_scopes(names)
    except HpcgateError as exc:
        raise typer.BadParameter(exc.detail, param_hint="'--scope'") from None


def _raise_file_limit() -> int:
    """The soft limit of open files raised to the hard one: every open stream holds the
    client's connection and, to a service's replica, one more (a function's streams share
    one connection per worker: 10,000 of them need some 10,100); a system's default soft
    limit is often 1,024. The limit now."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        with contextlib.suppress(ValueError, OSError):  # an infinite hard limit: kept as is
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def serve(
    config: ConfigOption = None,
    host: Annotated[str | None, typer.Option(help="Address to listen on")] = None,
    port: Annotated[int | None, typer.Option(help="Port to listen on")] = None,
) -> None:
    """Run the gateway (default: 127.0.0.1:8000, SQLite and the embedded scheduler)."""
    import uvicorn

    from hpcgate.api.access_log import log_config
    from hpcgate.api.app import create_app
    from hpcgate.api.http_server import GatheringProtocol

    settings = _settings(config)
    settings.host = host or settings.host
    settings.port = port or settings.port
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    systems = ", ".join(settings.systems)
    said = f"hpcgate: data in {escape(str(settings.home))}; systems: {escape(systems)}"
    err.print(said, highlight=False, soft_wrap=True)
    gateway = _gateway(settings)
    _lock_home(gateway)
    err.print(f"hpcgate: {_mode(gateway)}")
    err.print(f"hpcgate: {_raise_file_limit()} open files (a proxied stream holds two)")
    uvicorn.run(
        create_app(settings, gateway),
        host=settings.host,
        port=settings.port,
        log_level="info",
        log_config=log_config(),  # uvicorn's, with a cheaper access line formatter
        timeout_graceful_shutdown=5,
        # Not uvloop: libuv (PR #3696, 2022) accepts one connection per turn of its loop, so
        # under a saturating load new connections wait seconds in the accept queue (five a
        # second got in, 2026-12-03); the standard loop accepts all that wait at once
        # (bench/RESULTS.md, 2026-11-29 and 2026-12-03).
        loop="asyncio",
        http=GatheringProtocol,  # httptools; an answer's pieces of one turn in one send
    )


@token_app.command("create")
def token_create(
    user: Annotated[str, typer.Argument(help="The user the token acts as")],
    scope: Annotated[
        list[str] | None,
        typer.Option(
            "--scope",
            "-s",
            help="jobs:read, jobs:write, files:read, files:write or admin (repeat the option)",
        ),
    ] = None,
    expires_in: Annotated[
        str | None,
        typer.Option(help="Lifetime such as 12h or 30d (at most 36500d); default: no expiry"),
    ] = None,
    description: Annotated[str, typer.Option(help="A note for the token list")] = "",
    config: ConfigOption = None,
) -> None:
    """Create a token; its secret is printed once, alone on the last line."""
    scopes = _scopes(scope)
    lifetime = parse_duration(expires_in) if expires_in else None

    async def create(gateway: Gateway) -> tuple[IssuedToken, str | None]:
        issued = await gateway.tokens.create(user, scopes, lifetime, description)
        return issued, await _refusal(gateway, user)

    issued, refusal = _with_store(_settings(config), create)
    if refusal is not None:
        err.print(f"hpcgate: warning: {escape(refusal)}", highlight=False)
    expiry = issued.expires_at.isoformat() if issued.expires_at else "never"
    typer.echo(f"token {issued.id} for {user}; scopes {','.join(sorted(scopes))}; expires {expiry}")
    typer.echo(issued.secret)


@token_app.command("list")
def token_list(
    user: Annotated[str | None, typer.Option(help="Only this user's tokens")] = None,
    config: ConfigOption = None,
) -> None:
    """List tokens (never their secrets)."""
    rows = _with_store(_settings(config), lambda gw: gw.tokens.list(user))
    table = Table()
    # The id whole, whatever the terminal's width: it is what 'token revoke' takes.
    table.add_column("id", no_wrap=True, min_width=max((len(row.id) for row in rows), default=2))
    for name in ("user", "scopes", "created", "expires", "revoked", "description"):
        table.add_column(name)
    for row in rows:
        table.add_row(
            row.id,
            row.user,
            row.scopes,
            f"{row.created_at:%Y-%m-%d %H:%M}",
            f"{row.expires_at:%Y-%m-%d %H:%M}" if row.expires_at else "-",
            f"{row.revoked_at:%Y-%m-%d %H:%M}" if row.revoked_at else "-",
            row.description,
        )
    Console().print(table)


@token_app.command("revoke")
def token_revoke(
    token_id: Annotated[str, typer.Argument(help="The token's id (from 'token list')")],
    config: ConfigOption = None,
) -> None:
    """Revoke a token: it stops working at once."""
    _with_store(_settings(config), lambda gw: gw.tokens.revoke(token_id))
    typer.echo(f"revoked {token_id}")


@agent_token_app.command("create")
def agent_token_create(
    system: Annotated[str, typer.Argument(help="The system (transport = 'agent') it serves")],
    description: Annotated[str, typer.Option(help="A note for the list")] = "",
    user: Annotated[
        str | None,
        typer.Option(help="Only for an agent run as this Unix user (a user-mode agent)"),
    ] = None,
    config: ConfigOption = None,
) -> None:
    """Create a token that lets one agent serve SYSTEM; the secret is printed once, alone
    on the last line (put it in the agent's token_file)."""
    settings = _settings(config)
    if system not in settings.systems or settings.systems[system].transport != "agent":
        err.print(f"[red]error:[/red] no system {escape(system)!r} with transport = 'agent'")
        raise typer.Exit(1)
    if user is not None and not re.fullmatch(AGENT_USER_PATTERN, user):
        err.print(f"[red]error:[/red] {escape(user)!r} is not a Unix account's name")
        raise typer.Exit(1)
    issued = _with_store(settings, lambda gw: gw.tokens.create_agent(system, description, user))
    typer.echo(f"agent token {issued.id} for system {system}")
    typer.echo(issued.secret)


@agent_token_app.command("list")
def agent_token_list(config: ConfigOption = None) -> None:
    """List agent tokens (never their secrets)."""
    rows = _with_store(_settings(config), lambda gw: gw.tokens.list())
    table = Table()
    table.add_column("id", no_wrap=True, min_width=12)
    for name in ("system", "user", "created", "revoked", "description"):
        table.add_column(name)
    for row in (row for row in rows if row.system is not None):
        revoked = f"{row.revoked_at:%Y-%m-%d %H:%M}" if row.revoked_at else "-"
        created = f"{row.created_at:%Y-%m-%d %H:%M}"
        user = row.agent_user or "any"
        table.add_row(row.id, row.system, user, created, revoked, row.description)
    Console().print(table)


@agent_token_app.command("revoke")
def agent_token_revoke(
    token_id: Annotated[str, typer.Argument(help="The token's id (from 'agent-token list')")],
    config: ConfigOption = None,
) -> None:
    """Revoke an agent token: its agents are cut within a second and cannot reconnect."""
    _with_store(_settings(config), lambda gw: gw.tokens.revoke(token_id))
    typer.echo(f"revoked {token_id}")


@config_app.command("show")
def config_show(config: ConfigOption = None) -> None:
    """Print the effective configuration as JSON, secrets masked."""
    typer.echo(json.dumps(_settings(config).masked(), indent=2))
