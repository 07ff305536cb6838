"""The registry of configured systems, and the checks that their identities are safe.

The clusters are built elsewhere (:mod:`hpcgate.factory`), so the services that look a
system up here depend on no concrete scheduler or transport.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

from hpcgate.cluster import Cluster
from hpcgate.model.errors import NotFound


def _check_identity(cluster: Cluster, multi_user: bool) -> None:
    per_user = cluster.scheduler.per_user
    functional = cluster.config.functional_account
    if multi_user and functional is not None:
        raise ValueError(
            f"system {cluster.name!r}: with ssh identity = 'forced' every user's commands and"
            f" jobs run as the one functional account {functional!r}, so on the cluster users"
            " are not kept apart (hpcgate still shows each user only their own jobs); the"
            " per-user accounts of multi-user mode cannot apply to it: set [users] mode ="
            " 'single', and serve per-user systems from another gateway"
        )
    if multi_user and not per_user:
        raise ValueError(
            f"system {cluster.name!r}: the {cluster.scheduler.kind} scheduler runs every job as"
            " the gateway's account, which would be root in multi-user mode; run the gateway as"
            " an unprivileged account, or set [users] mode = 'single' for a single-user sandbox"
        )
    remote = cluster.config.transport == "ssh"  # commands run on another host, as ssh.user
    if not multi_user and per_user and os.geteuid() == 0 and not remote:
        raise ValueError(
            f"system {cluster.name!r}: the gateway runs as root in single-user mode, so every"
            f" {cluster.scheduler.kind} job would run as root; use [users] mode = 'multi'"
            " (each user's jobs run as its own Unix account), or run the gateway as an"
            " unprivileged account"
        )


class Systems:
    """Name → :class:`Cluster`, in configuration order."""

    def __init__(self, clusters: dict[str, Cluster]) -> None:
        self._clusters = clusters

    @property
    def per_user(self) -> bool:
        """Whether any system's scheduler runs jobs as the submitting account (not on a
        system where everyone is one functional account)."""
        return any(
            cluster.scheduler.per_user and cluster.config.functional_account is None
            for cluster in self
        )

    def check_identity(self, multi_user: bool) -> None:
        """A ValueError if a system would run users' jobs as root in this mode."""
        for cluster in self:
            _check_identity(cluster, multi_user)

    def get(self, name: str) -> Cluster:
        try:
            return self._clusters[name]
        except KeyError:
            raise NotFound(f"no system named {name!r}") from None

    def __iter__(self) -> Iterator[Cluster]:
        return iter(self._clusters.values())
