"""Builds each configured system's cluster: the one module that knows every concrete
scheduler adapter and transport.

Kept out of :mod:`hpcgate.systems` so that the services, which look systems up, do not
import every transport (and its libraries) only to be handed one; the gateway's wiring
calls this once at start-up.
"""

from __future__ import annotations

from pathlib import Path

from hpcgate.cluster import Cluster
from hpcgate.config import Settings, SystemConfig
from hpcgate.schedulers.base import Scheduler
from hpcgate.schedulers.embedded import EmbeddedScheduler
from hpcgate.schedulers.pbs import PbsScheduler
from hpcgate.schedulers.slurm import SlurmScheduler
from hpcgate.transports.agent import AgentTransport
from hpcgate.transports.agent_hub import AgentHub
from hpcgate.transports.base import Transport
from hpcgate.transports.local import LocalTransport
from hpcgate.transports.ssh import SshTransport


def build_clusters(settings: Settings, hub: AgentHub | None = None) -> dict[str, Cluster]:
    """Name → cluster for every configured system, in configuration order (no I/O); systems
    with ``transport = "agent"`` are served by the agents connected to ``hub``."""
    hub = hub or AgentHub()
    return {
        name: Cluster(name, config, _scheduler(name, config), _transport(name, config, hub))
        for name, config in settings.systems.items()
    }


def _scheduler(name: str, config: SystemConfig) -> Scheduler:
    if config.scheduler == "embedded":
        return EmbeddedScheduler(Path(str(config.spool)), config.slots, partition=name)
    if config.scheduler == "slurm":
        return SlurmScheduler()
    if config.scheduler == "pbs":
        return PbsScheduler()
    raise ValueError(f"unknown scheduler {config.scheduler!r}")


def _transport(name: str, config: SystemConfig, hub: AgentHub) -> Transport:
    if config.transport == "agent":
        return AgentTransport(name, hub)
    if config.transport == "local":
        return LocalTransport()
    if config.transport == "ssh" and config.ssh is not None:
        return SshTransport(name, config.ssh)
    raise ValueError(f"unknown transport {config.transport!r}")
