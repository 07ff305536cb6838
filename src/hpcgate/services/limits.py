"""Per-user limits on the services users start of their own (``[service_limits]``).

They are checked twice. When a user creates or scales a service, a request past a limit
is refused (403 ``limit-exceeded``) and changes nothing; lowering is always allowed, so a
user over a limit the admin lowered can come back under it. And the controller, each
round, never starts a replica past them, whatever the stored services ask for (rows
written before the admin lowered a limit). Declared services are the admin's: they count
for no one and no limit caps them.
"""

from __future__ import annotations

from collections.abc import Sequence

from hpcgate.config import ServiceLimits
from hpcgate.model.errors import LimitExceeded
from hpcgate.model.services import ServiceSpec
from hpcgate.store.tables import ServiceRow


def check_create(limits: ServiceLimits, owned: Sequence[ServiceRow], spec: ServiceSpec) -> None:
    """Refuse a new service that would take its owner past a limit (``owned``: the
    owner's services now; those being deleted count no more)."""
    active = [row for row in owned if not row.stopping]
    most = limits.services_per_user
    if len(active) + 1 > most:
        raise LimitExceeded(
            f"you have {len(active)} services: the limit is {most} per user",
            limit=most,
            requested=len(active) + 1,
        )
    _check_replicas(limits, active, spec.max_replicas)
    _check_time(limits, spec.time_limit)


def check_scale(
    limits: ServiceLimits, owned: Sequence[ServiceRow], row: ServiceRow, high: int
) -> None:
    """Refuse raising ``row``'s ``max_replicas`` to ``high`` past a limit."""
    if not row.owner or high <= row.max_replicas:
        return
    others = [other for other in owned if not other.stopping and other.pk != row.pk]
    _check_replicas(limits, others, high)


def _check_replicas(limits: ServiceLimits, others: Sequence[ServiceRow], high: int) -> None:
    per_service = limits.replicas_per_service
    if high > per_service:
        raise LimitExceeded(
            f"max_replicas {high} is over the limit of {per_service} per service",
            limit=per_service,
            requested=high,
        )
    total = sum(row.max_replicas for row in others) + high
    if total > limits.replicas_per_user:
        raise LimitExceeded(
            f"your services' max_replicas would add up to {total}: the limit is"
            f" {limits.replicas_per_user} per user",
            limit=limits.replicas_per_user,
            requested=total,
        )


def _check_time(limits: ServiceLimits, seconds: int | None) -> None:
    if limits.time_limit is not None and seconds is not None and seconds > limits.time_limit:
        raise LimitExceeded(
            f"time_limit {seconds} s is over the limit of {limits.time_limit} s per replica",
            limit=limits.time_limit,
            requested=seconds,
        )


def time_limit(limits: ServiceLimits, row: ServiceRow, spec: ServiceSpec) -> int | None:
    """The time limit of a replica's job: a user's service's at most the limit (the
    limit itself when it names none); a declared service's its own."""
    most = limits.time_limit
    if not row.owner or most is None:
        return spec.time_limit
    return min(spec.time_limit or most, most)


def max_replicas(limits: ServiceLimits, row: ServiceRow) -> int:
    """The most replicas the controller keeps of the service."""
    if not row.owner:
        return row.max_replicas
    return min(row.max_replicas, limits.replicas_per_service)


def room(limits: ServiceLimits, row: ServiceRow, live: int) -> int | None:
    """How many more replicas the service's owner may start, with ``live`` replicas of
    its services live now (None: no limit, a declared service)."""
    if not row.owner:
        return None
    return max(0, limits.replicas_per_user - live)
