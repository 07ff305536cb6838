"""``hpcgate systems [NAME]``: the gateway's systems and their health."""

from __future__ import annotations

from typing import Annotated

import typer

from hpcgate.usercli.common import JsonOption, ProfileOption, connect, handled
from hpcgate.usercli.output import details, print_json, table


@handled
def systems(
    name: Annotated[str | None, typer.Argument(help="One system: its details")] = None,
    json_out: JsonOption = False,
    profile: ProfileOption = None,
) -> None:
    """List the systems, or show one (with your file roots and home directory)."""
    with connect(profile) as client:
        found = [client.system(name)] if name is not None else client.systems()
    if json_out:
        print_json(found[0] if name is not None else found)
    elif name is not None:
        details(found[0])
    else:
        rows = [
            (s.name, s.scheduler, s.transport, "yes" if s.healthy else "NO", s.health_message)
            for s in found
        ]
        table(("NAME", "SCHEDULER", "TRANSPORT", "HEALTHY", "STATUS"), rows)
