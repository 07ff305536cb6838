"""``/api/v1/systems``: the configured systems, their health and their resources."""

from __future__ import annotations

from fastapi import APIRouter, Path

from hpcgate.api.auth import Caller, GatewayDep
from hpcgate.api.problems import responses
from hpcgate.cluster import Cluster
from hpcgate.model.principal import Scope
from hpcgate.model.status import Association, Node, Partition, Reservation, SystemInfo

router = APIRouter(prefix="/api/v1/systems", tags=["systems"])


def _info(cluster: Cluster) -> SystemInfo:
    return SystemInfo(
        name=cluster.name,
        description=cluster.config.description,
        scheduler=cluster.config.scheduler,
        transport=cluster.config.transport,
        healthy=cluster.health.healthy,
        health_message=cluster.health.message,
        checked_at=cluster.health.checked_at,
    )


@router.get("", summary="List systems", responses=responses(401, 403))
async def list_systems(who: Caller, gateway: GatewayDep) -> list[SystemInfo]:
    who.require(Scope.JOBS_READ)
    return [_info(cluster) for cluster in gateway.systems]


@router.get("/{system}", summary="One system", responses=responses(401, 403, 404))
async def get_system(
    who: Caller, gateway: GatewayDep, system: str = Path(max_length=64)
) -> SystemInfo:
    who.require(Scope.JOBS_READ)
    info = _info(gateway.systems.get(system))
    roots = await gateway.files.roots(who, system)
    return info.model_copy(update={"roots": list(roots.shown), "home": roots.home})


@router.get(
    "/{system}/partitions",
    summary="The system's partitions (queues) and their limits",
    responses=responses(401, 403, 404, 501, 503, 504),
)
async def list_partitions(
    who: Caller, gateway: GatewayDep, system: str = Path(max_length=64)
) -> list[Partition]:
    return await gateway.status.partitions(who, system)


@router.get(
    "/{system}/nodes",
    summary="The system's nodes: state, CPUs, memory, GPUs",
    responses=responses(401, 403, 404, 501, 503, 504),
)
async def list_nodes(
    who: Caller, gateway: GatewayDep, system: str = Path(max_length=64)
) -> list[Node]:
    return await gateway.status.nodes(who, system)


@router.get(
    "/{system}/reservations",
    summary="The system's reservations",
    responses=responses(401, 403, 404, 501, 503, 504),
)
async def list_reservations(
    who: Caller, gateway: GatewayDep, system: str = Path(max_length=64)
) -> list[Reservation]:
    return await gateway.status.reservations(who, system)


@router.get(
    "/{system}/accounts",
    summary="The caller's accounts and associations (what it may charge jobs to)",
    responses=responses(401, 403, 404, 501, 503, 504),
)
async def list_accounts(
    who: Caller, gateway: GatewayDep, system: str = Path(max_length=64)
) -> list[Association]:
    return await gateway.status.associations(who, system)
