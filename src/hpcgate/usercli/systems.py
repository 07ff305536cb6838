"""``hpcgate systems [NAME]``: the gateway's systems and their health."""

from __future__ import annotations

from typing import Annotated

import typer

from hpcgate.usercli.common import Session, user_command
from hpcgate.usercli.output import details, print_json, table


@user_command(system=False)
def systems(
    session: Session,
    name: Annotated[str | None, typer.Argument(help="One system: its details")] = None,
) -> None:
    """List the systems, or show one (with your file roots and home directory)."""
    if name is not None:
        details(session.client.system(name), session.json)
        return
    found = session.client.systems()
    if session.json:
        print_json(found)
        return
    rows = [
        (s.name, s.scheduler, s.transport, "yes" if s.healthy else "NO", s.health_message)
        for s in found
    ]
    table(("NAME", "SCHEDULER", "TRANSPORT", "HEALTHY", "STATUS"), rows)
