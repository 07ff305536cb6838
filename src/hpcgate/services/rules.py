"""The controller's rules: what a service's replicas are and what they should be, in,
the actions to take out. No I/O: the controller gathers the facts and carries the plan out.

- **Between min and max.** A service keeps ``min_replicas`` serving always and never more
  than ``max_replicas`` starting or serving.
- **Up with load.** It wants enough replicas that none serves more than ``target_in_flight``
  requests at once, counting requests that wait for a replica; a waiting request wants one.
- **Down when idle.** A serving replica with no request for ``idle_seconds`` is drained
  (it takes no new requests, and stops once its last one is done), never below the minimum.
- **Handover.** A ready replica within ``handover_seconds`` of its time limit no longer
  counts as serving, so a successor starts; once enough others serve it is drained.
- **Replacement with backoff.** A failed replica no longer counts, so another starts, but
  only after a delay that doubles with each failure in a row (a ready replica resets it).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

from hpcgate.model.services import ReplicaState

BACKOFF_FIRST = 1.0
BACKOFF_MAX = 300.0


@dataclass(frozen=True, slots=True)
class Rules:
    """A service's scaling settings, as the rules read them."""

    min_replicas: int
    max_replicas: int
    target_in_flight: int
    idle_seconds: float
    handover_seconds: float


@dataclass(frozen=True, slots=True)
class Seen:
    """One live replica as the controller sees it."""

    pk: int
    state: ReplicaState
    in_flight: int = 0
    idle_for: float = 0.0  # seconds since its last request ended (or it became ready)
    expires_in: float | None = None  # seconds to its job's time limit; None: no limit known


@dataclass(slots=True)
class Plan:
    start: int = 0
    drain: list[int] = field(default_factory=list)


def expiring(replica: Seen, rules: Rules) -> bool:
    left = replica.expires_in
    return (
        replica.state == ReplicaState.READY and left is not None and left <= rules.handover_seconds
    )


def wanted(rules: Rules, load: int, busy: int) -> int:
    """How many replicas should serve ``load`` requests (running and waiting), keeping the
    ``busy`` ones that are not idle, between min and max."""
    by_load = math.ceil(load / rules.target_in_flight)
    return min(max(rules.min_replicas, by_load, busy), rules.max_replicas)


def plan(rules: Rules, replicas: Sequence[Seen], waiting: int, stopping: bool) -> Plan:
    """What to do now: how many replicas to start and which to drain."""
    live = [r for r in replicas if r.state in (ReplicaState.STARTING, ReplicaState.READY)]
    if stopping:
        return Plan(0, [r.pk for r in live])
    starting = [r for r in live if r.state == ReplicaState.STARTING]
    serving = [r for r in live if r.state == ReplicaState.READY and not expiring(r, rules)]
    old = [r for r in live if expiring(r, rules)]
    idle = [r for r in serving if r.in_flight == 0 and r.idle_for >= rules.idle_seconds]
    load = waiting + sum(r.in_flight for r in live)
    want = wanted(rules, load, len(serving) - len(idle))
    have = len(serving) + len(starting)
    first = sorted(idle, key=lambda r: -r.idle_for)
    rest = [r for r in starting + sorted(serving, key=lambda r: r.in_flight) if r not in idle]
    count = max(min(len(idle), have - want), have - rules.max_replicas, 0)
    drain = [r.pk for r in (first + rest)[:count]]
    drain += [r.pk for r in old if len(serving) >= max(1, want) or (want == 0 and not r.in_flight)]
    return Plan(max(0, want - have), drain)


def backoff(failures: int) -> float:
    """Seconds to wait before the next start after ``failures`` failures in a row."""
    if failures <= 0:
        return 0.0
    return float(min(BACKOFF_FIRST * 2 ** (failures - 1), BACKOFF_MAX))
