"""``hpcgate usage``: requests and tokens on the OpenAI-compatible routes."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

import typer

from hpcgate.usercli.common import Exit, Session, fail, user_command
from hpcgate.usercli.output import print_json, table

When = Annotated[
    str | None,
    typer.Option(help="An ISO 8601 time, e.g. 2026-05-01T00:00:00+02:00 (no zone: local time)"),
]


@user_command(system=False)
def usage(
    session: Session,
    user: Annotated[str | None, typer.Option(help="Whose (admin only); default: all")] = None,
    service: Annotated[str | None, typer.Option(help="Only this service's")] = None,
    model: Annotated[str | None, typer.Option(help="Only this model's")] = None,
    since: When = None,
    until: When = None,
) -> None:
    """Requests and tokens on /v1 per user, service and model, counted by the hour: yours,
    or (admin) everyone's. --since takes the whole hour it falls in."""
    found = session.client.usage(
        user=user, service=service, model=model, since=_time(since), until=_time(until)
    )
    if session.json:
        print_json(found)
        return
    rows = [
        (
            u.user,
            u.service,
            u.owner or "(declared)",
            u.model,
            u.requests,
            u.prompt_tokens,
            u.completion_tokens,
        )
        for u in found
    ]
    table(("USER", "SERVICE", "OWNER", "MODEL", "REQUESTS", "PROMPT", "COMPLETION"), rows)


def _time(text: str | None) -> datetime | None:
    if text is None:
        return None
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        raise fail(Exit.USAGE, f"{text!r} is not an ISO 8601 time") from None
