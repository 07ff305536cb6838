"""Replicas are jobs: what a replica's job is, the port it is told, where its node is."""

from __future__ import annotations

import secrets
from collections.abc import Iterable

from hpcgate.cluster import Cluster
from hpcgate.model.errors import HpcgateError
from hpcgate.model.jobs import JobSpec
from hpcgate.model.services import ServiceSpec

PORT_VARIABLE = "HPCGATE_SERVICE_PORT"
PREFIX_VARIABLE = "HPCGATE_SERVICE_PREFIX"
PORT_TRIES = 64


def job_name(service: str, port: int) -> str:
    """``hpcgate-SERVICE-PORT``: the SSH relay lets a stream reach a node's port only if
    the account runs a job there whose name ends in ``-PORT``."""
    return f"hpcgate-{service}-{port}"


def public_prefix(service: str) -> str:
    """Where the gateway serves the service: its proxy's path, ending in ``/``."""
    return f"/api/v1/services/{service}/proxy/"


def job_spec(service: str, spec: ServiceSpec, port: int) -> JobSpec:
    return JobSpec(
        script=spec.script,
        script_path=spec.script_path,
        name=job_name(service, port),
        environment={PORT_VARIABLE: str(port), PREFIX_VARIABLE: public_prefix(service)},
        time_limit=spec.time_limit,
        partition=spec.partition,
        account=spec.account,
        cpus_per_task=spec.cpus_per_task,
        memory=spec.memory,
        gpus=spec.gpus,
    )


def choose_port(low: int, high: int, taken: Iterable[int]) -> int:
    """A random port of ``[low, high]`` that no live replica of the system has."""
    used = set(taken)
    for _ in range(PORT_TRIES):
        port = low + secrets.randbelow(high - low + 1)
        if port not in used:
            return port
    free = [port for port in range(low, high + 1) if port not in used]
    if not free:
        raise HpcgateError(f"every service port from {low} to {high} is taken")
    return secrets.choice(free)


def first_node(node_list: str | None) -> str | None:
    """The first host of a job's (expanded, comma-separated) node list."""
    if not node_list:
        return None
    return node_list.split(",")[0].strip() or None


async def node_addresses(cluster: Cluster) -> dict[str, str]:
    """Each node's address as the scheduler reports it (its name where it reports none)."""
    info = cluster.scheduler.info
    command = None if info is None else info.nodes_command()
    if info is None or command is None:
        return {}
    nodes = info.parse_nodes(await cluster.run("nodes", command))
    return {node.name: node.address or node.name for node in nodes}


def address_of(node: str | None, addresses: dict[str, str]) -> str | None:
    """The address of ``node``; with no node reported, that of a system's only node (the
    embedded scheduler runs every job on its one machine)."""
    if node is not None:
        return addresses.get(node, node)
    return next(iter(addresses.values())) if len(addresses) == 1 else None
