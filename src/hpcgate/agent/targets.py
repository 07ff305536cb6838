"""Where the agent opens byte streams for the gateway (``connect``): the check that a
compromised gateway cannot use the agent to reach whatever the login node can reach.

The agent cannot know which replica or worker the gateway started on which port (the
gateway chose both), so it checks what it can know by itself:

- **The port** is within ``stream_ports`` of its configuration (the range the gateway's
  ``service_ports`` hands out; by default the same 20000-32767). An ssh, database or
  admin port below or above it is never reached.
- **The host** is a compute node of this cluster, as the agent's own scheduler lists them
  (``sinfo`` for Slurm, ``pbsnodes`` for PBS: node names and addresses, asked by the agent
  itself, never told by the gateway), or one of ``stream_hosts`` of its configuration. With
  the embedded scheduler the one node is this machine: a loopback address or its own name.

What this cannot promise: any listener on a compute node within the port range (a
user's own server, say) is reachable, as it is from the login node itself.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import platform
import re
import socket
import time
from collections.abc import Awaitable, Callable

from hpcgate.agent.config import AgentConfig
from hpcgate.agent.policy import Refused

NODES_FRESH = 60.0  # seconds a node list is used for
NODES_RETRY = 5.0  # at least this long between two listings (a miss does not list again)
HOST = re.compile(r"[A-Za-z0-9][A-Za-z0-9.:_-]{0,252}")
log = logging.getLogger("hpcgate.agent")

#: The command listing the scheduler's nodes, and how its output becomes host names.
NodeLister = Callable[[tuple[str, ...]], Awaitable[bytes]]


def slurm_hosts(output: bytes) -> set[str]:
    """``sinfo -h -N -o '%N %o'``: each node's name and address."""
    return {word for line in output.decode(errors="replace").splitlines() for word in line.split()}


def pbs_hosts(output: bytes) -> set[str]:
    """``pbsnodes -a -F json``: each node's name and its Mom's host."""
    try:
        nodes = json.loads(output).get("nodes", {})
    except (ValueError, AttributeError):
        return set()
    found = set()
    for name, attributes in nodes.items() if isinstance(nodes, dict) else ():
        found.add(str(name))
        mom = attributes.get("Mom") if isinstance(attributes, dict) else None
        if isinstance(mom, str):
            found.add(mom)
    return found


LISTINGS: dict[str, tuple[tuple[str, ...], Callable[[bytes], set[str]]]] = {
    "slurm": (("sinfo", "-h", "-N", "-o", "%N %o"), slurm_hosts),
    "pbs": (("pbsnodes", "-a", "-F", "json"), pbs_hosts),
}


class StreamTargets:
    """The hosts and ports the agent connects to (:meth:`check`)."""

    def __init__(self, config: AgentConfig, list_nodes: NodeLister) -> None:
        self._config = config
        self._list = list_nodes
        self._nodes: set[str] = set()
        self._listed_at = -NODES_FRESH

    async def check(self, host: str, port: int) -> None:
        """Refused unless ``host``:``port`` is a node's port of the range."""
        low, high = self._config.stream_ports
        if not low <= port <= high:
            raise Refused(f"port {port} is outside this agent's stream_ports {low}-{high}")
        if not HOST.fullmatch(host):
            raise Refused(f"{host[:64]!r} is not a host name or address")
        if host in self._config.stream_hosts:
            return
        if self._config.scheduler == "embedded":
            if not _this_machine(host):
                raise Refused(f"host {host!r} is not this machine (embedded scheduler)")
            return
        if host not in await self._node_names(host):
            raise Refused(f"host {host!r} is not a node of this cluster's scheduler")

    async def _node_names(self, wanted: str) -> set[str]:
        age = time.monotonic() - self._listed_at
        if age > NODES_FRESH or (wanted not in self._nodes and age > NODES_RETRY):
            self._listed_at = time.monotonic()
            argv, parse = LISTINGS[self._config.scheduler]
            try:
                self._nodes = parse(await self._list(argv))
            except Exception as exc:  # no list: nothing is a node until one comes
                log.warning("cannot list the scheduler's nodes: %s", exc)
                self._nodes = set()
        return self._nodes


def _this_machine(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host in {"localhost", platform.node(), socket.gethostname()}
