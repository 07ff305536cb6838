"""``hpcgate functions key``: API keys that let a web app invoke your functions without your
token, each limited to some of your functions and to its own rate."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from hpcgate.model.tokens import TokenInfo
from hpcgate.usercli.common import EXIT_CODES, InProject, Session, in_project, user_command
from hpcgate.usercli.output import note, print_json, table, when

app = typer.Typer(
    no_args_is_help=True,
    help="API keys for publishing your functions: create, list and revoke them.",
)


@app.command(epilog=EXIT_CODES)
@user_command(system=False)
def create(
    session: Session,
    names: Annotated[
        list[str], typer.Argument(metavar="NAME...", help="The functions of yours it may invoke")
    ],
    rpm: Annotated[
        int | None, typer.Option("--rpm", help="Requests it may make in any minute")
    ] = None,
    concurrent: Annotated[
        int | None, typer.Option(help="Unended invocations it may have at once")
    ] = None,
    expires_in: Annotated[
        int | None, typer.Option(help="Seconds it lasts (at most as long as your token)")
    ] = None,
    description: Annotated[str | None, typer.Option(help="What it is for")] = None,
    project: InProject = None,
) -> None:
    """Create an API key for functions of yours; its secret is printed only this once.

    The key may invoke them and read the invocations it started, nothing else; past --rpm
    or --concurrent its requests are refused (429) until it is under them again. With
    --project, each NAME is that project's (an owner of the project publishes them)."""
    names = [in_project(name, project) for name in names]
    made = session.client.functions.create_key(
        names, per_minute=rpm, concurrent=concurrent, expires_in=expires_in, description=description
    )
    if session.json:
        print_json(made)
        return
    note(f"key {made.id} for {', '.join(made.functions or [])}: its secret, shown only now:")
    sys.stdout.write(made.token + "\n")


@app.command("ls", epilog=EXIT_CODES)
@user_command(system=False)
def list_keys(
    session: Session,
    name: Annotated[str | None, typer.Argument(help="Only the keys for this function")] = None,
    project: InProject = None,
) -> None:
    """List your API keys (never their secrets)."""
    found = session.client.functions.keys(None if name is None else in_project(name, project))
    if session.json:
        print_json(found)
        return
    table(
        ("ID", "FUNCTIONS", "PER-MINUTE", "CONCURRENT", "EXPIRES", "REVOKED", "DESCRIPTION"),
        [_row(key) for key in found],
    )


@app.command(epilog=EXIT_CODES)
@user_command(system=False, json=False)
def revoke(
    session: Session, key_id: Annotated[str, typer.Argument(help="The key's id (from 'ls')")]
) -> None:
    """Revoke an API key at once."""
    session.client.functions.revoke_key(key_id)
    note(f"key {key_id}: revoked")


def _row(key: TokenInfo) -> tuple[object, ...]:
    limits = key.limits
    return (
        key.id,
        ",".join(key.functions or []),
        "-" if limits is None or limits.per_minute is None else limits.per_minute,
        "-" if limits is None or limits.concurrent is None else limits.concurrent,
        when(key.expires_at),
        when(key.revoked_at),
        key.description,
    )
