"""The user's side of the ``hpcgate`` command: log in to a gateway, then work with its
systems, jobs, files and tasks through the SDK (:class:`hpcgate.Client`)."""

from __future__ import annotations

import typer

from hpcgate.usercli import files, jobs, login, systems, tasks
from hpcgate.usercli.common import EXIT_CODES

PANEL = "Use a gateway (as a user)"


def register(app: typer.Typer) -> None:
    """Add the user commands to the ``hpcgate`` app."""
    for command in (login.login, login.logout, systems.systems):
        app.command(epilog=EXIT_CODES, rich_help_panel=PANEL)(command)
    for noun in (jobs, files, tasks):
        app.add_typer(noun.app, name=noun.__name__.rsplit(".", 1)[1], rich_help_panel=PANEL)
