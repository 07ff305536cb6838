"""The ``hpcgate`` command.

Its user side is here: log in to a gateway, then work with its systems, jobs, files,
tasks, services and functions through the SDK (:class:`hpcgate.Client`). This package ships
in the client distribution (``hpcgate-client``), which owns the command; the commands that
run a gateway (``serve``, ``token``, ``config``) come with the server distribution, which
names a function that mounts them in the ``hpcgate.commands`` entry point group
(``hpcgate.cli:register``). Looking the group up reads only the installed distributions'
metadata; what it names is imported only when it is there.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, entry_points, version
from typing import Annotated

import typer

from hpcgate import __version__
from hpcgate.usercli import (
    consent,
    files,
    functions,
    jobs,
    login,
    services,
    systems,
    tasks,
    usage,
)
from hpcgate.usercli.common import EXIT_CODES

PANEL = "Use a gateway (as a user)"
COMMANDS = "hpcgate.commands"  # entry point group: functions that mount more commands


def register(app: typer.Typer) -> None:
    """Add the user commands to the ``hpcgate`` app."""
    for command in (login.login, login.logout, systems.systems, usage.usage):
        app.command(epilog=EXIT_CODES, rich_help_panel=PANEL)(command)
    for noun in (jobs, files, tasks, services, functions, consent):
        app.add_typer(noun.app, name=noun.__name__.rsplit(".", 1)[1], rich_help_panel=PANEL)


def versions() -> str:
    """What ``hpcgate --version`` prints: the package's version, and the server's when it is
    installed (a gateway) or ``client only``."""
    try:
        server = f"server {version('hpcgate')}"
    except PackageNotFoundError:
        server = "client only"
    return f"hpcgate {__version__} ({server})"


def _version(shown: bool) -> None:
    if shown:
        typer.echo(versions())
        raise typer.Exit()


def _options(
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_version, is_eager=True, help="Print the version and exit."
        ),
    ] = False,
) -> None:
    """hpcgate: an HTTP gateway to HPC clusters."""


def command() -> typer.Typer:
    """The whole ``hpcgate`` command: the installed distributions' commands, then the
    user commands."""
    app = typer.Typer(no_args_is_help=True, help="hpcgate: an HTTP gateway to HPC clusters.")
    app.callback()(_options)
    for mount in entry_points(group=COMMANDS):
        mount.load()(app)
    register(app)
    return app


def main() -> None:
    command()()
