"""The registry of configured systems, built from settings."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from hpcgate.cluster import Cluster
from hpcgate.config import Settings, SystemConfig
from hpcgate.errors import NotFound
from hpcgate.schedulers.base import Scheduler
from hpcgate.schedulers.embedded import EmbeddedScheduler
from hpcgate.schedulers.slurm import SlurmScheduler
from hpcgate.transports.base import Transport
from hpcgate.transports.local import LocalTransport


def _scheduler(config: SystemConfig) -> Scheduler:
    if config.scheduler == "embedded":
        return EmbeddedScheduler(Path(str(config.spool)), config.slots)
    if config.scheduler == "slurm":
        return SlurmScheduler()
    raise ValueError(f"unknown scheduler {config.scheduler!r}")


def _transport(config: SystemConfig) -> Transport:
    if config.transport == "local":
        return LocalTransport()
    raise ValueError(f"unknown transport {config.transport!r}")


class Systems:
    """Name → :class:`Cluster`, in configuration order."""

    def __init__(self, clusters: dict[str, Cluster]) -> None:
        self._clusters = clusters

    @classmethod
    def from_settings(cls, settings: Settings) -> Systems:
        return cls(
            {
                name: Cluster(name, config, _scheduler(config), _transport(config))
                for name, config in settings.systems.items()
            }
        )

    def get(self, name: str) -> Cluster:
        try:
            return self._clusters[name]
        except KeyError:
            raise NotFound(f"no system named {name!r}") from None

    def __iter__(self) -> Iterator[Cluster]:
        return iter(self._clusters.values())
