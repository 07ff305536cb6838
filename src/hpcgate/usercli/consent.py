"""``hpcgate consent``: the requests held for your consent (a new token asking for a
sensitive scope, a portal acting for you), listed, approved or denied. Decide them with
your own login, not with the credential that asked."""

from __future__ import annotations

from typing import Annotated

import typer

from hpcgate.model.consents import ConsentRequest, ConsentState
from hpcgate.usercli.common import EXIT_CODES, Session, user_command
from hpcgate.usercli.output import print_json, report, table, when

app = typer.Typer(
    no_args_is_help=True,
    help="Requests held for your consent: list, approve and deny them.",
)

ConsentId = Annotated[str, typer.Argument(help="The request's id (from 'hpcgate consent list')")]


@app.command("list", epilog=EXIT_CODES)
@user_command(system=False)
def list_consents(
    session: Session,
    state: Annotated[
        ConsentState | None, typer.Option(help="Only those in this state")
    ] = ConsentState.PENDING,
    every: Annotated[bool, typer.Option("--all", help="Every state")] = False,
) -> None:
    """List your consent requests, newest first (pending ones, unless --state or --all)."""
    found = session.client.consents(state=None if every else state, limit=200)
    if session.json:
        print_json(found)
        return
    table(("ID", "STATE", "WHAT", "ASKED BY", "EXPIRES"), [_row(c) for c in found])


@app.command(epilog=EXIT_CODES)
@user_command(system=False)
def approve(session: Session, consent_id: ConsentId) -> None:
    """Approve a request: what it held acts from now on."""
    decided = session.client.approve_consent(consent_id)
    report(decided, session.json, f"consent {decided.id}: {decided.state} ({decided.what})")


@app.command(epilog=EXIT_CODES)
@user_command(system=False)
def deny(session: Session, consent_id: ConsentId) -> None:
    """Deny a request: what it held stays refused (a new token is revoked)."""
    decided = session.client.deny_consent(consent_id)
    report(decided, session.json, f"consent {decided.id}: {decided.state} ({decided.what})")


def _row(consent: ConsentRequest) -> tuple[object, ...]:
    asker = consent.asked_by
    by = asker.token_id if asker.client is None else f"{asker.token_id} via {asker.client}"
    return (consent.id, consent.state, consent.what, by, when(consent.expires_at))
