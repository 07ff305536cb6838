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
    client = session.client
    found = [client.system(name)] if name is not None else client.systems()
    if session.json:
        print_json(found[0] if name is not None else found)
    elif name is not None:
        details(found[0])
    else:
        rows = [
            (s.name, s.scheduler, s.transport, "yes" if s.healthy else "NO", s.health_message)
            for s in found
        ]
        table(("NAME", "SCHEDULER", "TRANSPORT", "HEALTHY", "STATUS"), rows)
