"""The per-user limits on users' own services, as pure rules (no I/O): what a create or a
scale is refused for, and what the controller may start."""

from __future__ import annotations

import pytest

from hpcgate.clock import utcnow
from hpcgate.config import ServiceLimits
from hpcgate.model.errors import LimitExceeded
from hpcgate.model.services import ServiceSpec
from hpcgate.services import limits
from hpcgate.store.tables import ServiceRow

LIMITS = ServiceLimits(
    services_per_user=3, replicas_per_user=5, replicas_per_service=3, time_limit=3600
)


def _spec(**fields: object) -> ServiceSpec:
    return ServiceSpec.model_validate({"system": "local", "script": "#!/bin/sh\n", **fields})


def _row(pk: int, high: int, owner: str = "alice", stopping: bool = False) -> ServiceRow:
    return ServiceRow(
        pk=pk,
        name=f"s{pk}",
        owner=owner,
        spec=_spec().model_dump_json(),
        min_replicas=0,
        max_replicas=high,
        stopping=stopping,
        created_at=utcnow(),
    )


def test_a_service_within_every_limit_is_let_through() -> None:
    limits.check_create(LIMITS, [_row(1, 1), _row(2, 1)], _spec(max_replicas=3, time_limit=3600))


@pytest.mark.parametrize(
    ("owned", "spec", "limit", "requested"),
    [
        ([_row(1, 1), _row(2, 1), _row(3, 1)], _spec(), 3, 4),  # a fourth service
        ([], _spec(max_replicas=4), 3, 4),  # past the per-service maximum
        ([_row(1, 3), _row(2, 1)], _spec(max_replicas=2), 5, 6),  # past the user's sum
        ([], _spec(time_limit="1:00:01"), 3600, 3601),  # a longer job than allowed
    ],
)
def test_a_service_past_a_limit_is_refused_and_says_by_how_much(
    owned: list[ServiceRow], spec: ServiceSpec, limit: int, requested: int
) -> None:
    with pytest.raises(LimitExceeded) as refused:
        limits.check_create(LIMITS, owned, spec)
    assert refused.value.extra == {"limit": limit, "requested": requested}
    assert refused.value.status == 403


def test_services_being_deleted_count_no_more() -> None:
    owned = [_row(1, 3, stopping=True), _row(2, 1, stopping=True), _row(3, 1), _row(4, 1)]
    limits.check_create(LIMITS, owned, _spec(max_replicas=3))


def test_raising_past_a_limit_is_refused_and_lowering_always_allowed() -> None:
    mine, other = _row(1, 2), _row(2, 3)
    with pytest.raises(LimitExceeded, match="add up to 6"):
        limits.check_scale(LIMITS, [mine, other], mine, 3)
    limits.check_scale(LIMITS, [mine, other], mine, 2)  # no raise: unchanged
    over = _row(3, 9)  # stored before the admin lowered the limits
    limits.check_scale(LIMITS, [over], over, 4)  # lower, though still over: allowed


def test_declared_services_are_never_limited() -> None:
    declared = _row(1, 60, owner="")
    limits.check_scale(LIMITS, [], declared, 64)
    assert limits.max_replicas(LIMITS, declared) == 60
    assert limits.room(LIMITS, declared, 100) is None
    assert limits.time_limit(LIMITS, declared, _spec(time_limit=7200)) == 7200


def test_the_controller_starts_no_more_than_the_limits_leave_room_for() -> None:
    row = _row(1, 9)
    assert limits.max_replicas(LIMITS, row) == 3
    assert [limits.room(LIMITS, row, live) for live in (0, 4, 5, 7)] == [5, 1, 0, 0]


def test_a_replicas_job_gets_at_most_the_time_limit() -> None:
    row = _row(1, 1)
    assert limits.time_limit(LIMITS, row, _spec()) == 3600
    assert limits.time_limit(LIMITS, row, _spec(time_limit=60)) == 60
    assert limits.time_limit(LIMITS, row, _spec(time_limit=7200)) == 3600
    assert limits.time_limit(ServiceLimits(), row, _spec()) is None
