"""The controller's rules, with no I/O: the replicas as seen, the plan out."""

from __future__ import annotations

import pytest

from hpcgate.model.services import ReplicaState
from hpcgate.services.rules import Plan, Rules, Seen, backoff, plan

READY, STARTING = ReplicaState.READY, ReplicaState.STARTING
RULES = Rules(
    min_replicas=1, max_replicas=3, target_in_flight=4, idle_seconds=60, handover_seconds=30
)


def test_a_service_below_its_minimum_starts_replicas() -> None:
    assert plan(RULES, [], waiting=0, stopping=False) == Plan(start=1)
    two = Rules(2, 3, 4, 60, 30)
    assert plan(two, [Seen(1, READY)], 0, False) == Plan(start=1)


def test_starting_replicas_count_so_none_start_twice() -> None:
    assert plan(RULES, [Seen(1, STARTING)], 0, False) == Plan()


def test_a_waiting_request_scales_up_from_zero() -> None:
    zero = Rules(0, 2, 4, 60, 30)
    assert plan(zero, [], waiting=0, stopping=False) == Plan()
    assert plan(zero, [], waiting=1, stopping=False) == Plan(start=1)


def test_load_above_the_target_starts_another_replica_up_to_the_maximum() -> None:
    assert plan(RULES, [Seen(1, READY, in_flight=4)], 0, False) == Plan()
    assert plan(RULES, [Seen(1, READY, in_flight=5)], 0, False) == Plan(start=1)
    busy = [Seen(1, READY, in_flight=50), Seen(2, READY, in_flight=50)]
    assert plan(RULES, busy, waiting=10, stopping=False) == Plan(start=1)  # max is 3


def test_idle_replicas_drain_but_never_below_the_minimum() -> None:
    idle = [Seen(1, READY, idle_for=61), Seen(2, READY, idle_for=90)]
    assert plan(RULES, idle, 0, False) == Plan(drain=[2])  # the longest idle goes first
    assert plan(RULES, [Seen(1, READY, idle_for=61)], 0, False) == Plan()
    zero = Rules(0, 2, 4, 60, 30)
    assert plan(zero, [Seen(1, READY, idle_for=61)], 0, False) == Plan(drain=[1])
    assert plan(zero, [Seen(1, READY, idle_for=59)], 0, False) == Plan()


def test_a_replica_serving_requests_is_never_idle() -> None:
    zero = Rules(0, 2, 4, 60, 30)
    assert plan(zero, [Seen(1, READY, in_flight=1, idle_for=600)], 0, False) == Plan()


def test_a_lower_maximum_drains_the_least_busy_first() -> None:
    one = Rules(0, 1, 4, 60, 30)
    seen = [Seen(1, READY, in_flight=3), Seen(2, READY, in_flight=1)]
    assert plan(one, seen, 0, False) == Plan(drain=[2])


def test_handover_starts_a_successor_then_drains_the_old_replica() -> None:
    old = Seen(1, READY, in_flight=2, expires_in=20)
    assert plan(RULES, [old], 0, False) == Plan(start=1)
    assert plan(RULES, [old, Seen(2, STARTING)], 0, False) == Plan()
    assert plan(RULES, [old, Seen(2, READY)], 0, False) == Plan(drain=[1])


def test_an_idle_expiring_replica_of_a_scaled_to_zero_service_just_drains() -> None:
    zero = Rules(0, 2, 4, 60, 30)
    assert plan(zero, [Seen(1, READY, idle_for=5, expires_in=10)], 0, False) == Plan(drain=[1])


def test_a_stopping_service_drains_everything_and_starts_nothing() -> None:
    seen = [Seen(1, READY), Seen(2, STARTING), Seen(3, ReplicaState.DRAINING)]
    assert plan(RULES, seen, waiting=5, stopping=True) == Plan(drain=[1, 2])


@pytest.mark.parametrize(("failures", "seconds"), [(0, 0), (1, 1), (2, 2), (5, 16), (40, 300)])
def test_restarts_back_off_doubling_up_to_a_bound(failures: int, seconds: float) -> None:
    assert backoff(failures) == seconds
