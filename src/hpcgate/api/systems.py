"""``/api/v1/systems``: the configured systems, their health and their resources."""

from __future__ import annotations

from fastapi import APIRouter

from hpcgate.api.auth import Caller, GatewayDep, TargetDep
from hpcgate.api.problems import responses
from hpcgate.cluster import Cluster
from hpcgate.gateway import Gateway
from hpcgate.model.errors import CommandTimeout, Unavailable
from hpcgate.model.principal import Scope
from hpcgate.model.status import AgentInfo, Association, Node, Partition, Reservation, SystemInfo

router = APIRouter(prefix="/api/v1/systems", tags=["systems"])
STATUS_ERRORS = responses(401, 403, 404, 501, 503, 504)  # the scheduler's queries can fail


def _info(cluster: Cluster, multi_user: bool) -> SystemInfo:
    if cluster.config.functional_account is not None:
        run_as = "functional"
    else:
        run_as = "user" if multi_user else "gateway"
    return SystemInfo(
        name=cluster.name,
        description=cluster.config.description,
        scheduler=cluster.config.scheduler,
        transport=cluster.config.transport,
        healthy=cluster.health.healthy,
        health_message=cluster.health.message,
        checked_at=cluster.health.checked_at,
        run_as=run_as,
    )


@router.get("", summary="List systems", responses=responses(401, 403))
async def list_systems(who: Caller, gateway: GatewayDep) -> list[SystemInfo]:
    who.require(Scope.JOBS_READ)
    seen = (cluster for cluster in gateway.systems if who.sees_system(cluster.name))
    return [_info(cluster, gateway.accounts.multi) for cluster in seen]


@router.get("/{system}", summary="One system", responses=responses(401, 403, 404))
async def get_system(target: TargetDep, gateway: GatewayDep) -> SystemInfo:
    target.who.require(Scope.JOBS_READ)
    info = _info(target.cluster, gateway.accounts.multi)
    shown: dict[str, object] = {}
    try:
        roots = await gateway.files.roots(target)
        shown.update(roots=list(roots.shown), home=roots.home)
    except (Unavailable, CommandTimeout):
        pass  # the system can't be reached just now: it is still described, roots unknown
    if target.cluster.config.transport == "agent":
        shown["agents"] = _agents(gateway, target.cluster.name)
    return info.model_copy(update=shown)


def _agents(gateway: Gateway, system: str) -> list[AgentInfo]:
    return [
        AgentInfo(
            id=link.hello.agent_id,
            host=link.hello.host,
            version=link.hello.version,
            connected_since=link.connected_since,
            user=link.hello.user,
        )
        for link in gateway.agents.links(system)
    ]


@router.get(
    "/{system}/partitions",
    summary="The system's partitions (queues) and their limits",
    responses=STATUS_ERRORS,
)
async def list_partitions(target: TargetDep, gateway: GatewayDep) -> list[Partition]:
    return await gateway.status.partitions(target)


@router.get(
    "/{system}/nodes",
    summary="The system's nodes: state, CPUs, memory, GPUs",
    responses=STATUS_ERRORS,
)
async def list_nodes(target: TargetDep, gateway: GatewayDep) -> list[Node]:
    return await gateway.status.nodes(target)


@router.get(
    "/{system}/reservations",
    summary="The system's reservations",
    responses=STATUS_ERRORS,
)
async def list_reservations(target: TargetDep, gateway: GatewayDep) -> list[Reservation]:
    return await gateway.status.reservations(target)


@router.get(
    "/{system}/accounts",
    summary="The caller's accounts and associations (what it may charge jobs to)",
    responses=STATUS_ERRORS,
)
async def list_accounts(target: TargetDep, gateway: GatewayDep) -> list[Association]:
    return await gateway.status.associations(target)
