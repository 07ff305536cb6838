"""A user's requests-per-minute window on given times (no I/O, no clock): the count within
a minute, the turn at the whole minute where the previous minute weighs as much as it
still overlaps the last 60 s, and the quota each answer reports; and a request refused by
one limit counted by none."""

from __future__ import annotations

import pytest

from hpcgate.config import RateLimitsConfig
from hpcgate.model.errors import RateLimited
from hpcgate.model.principal import DEFAULT_SCOPES, Principal, Restriction
from hpcgate.ratelimits import PER_MINUTE, USER_PER_MINUTE, Quota, RateLimits, _Window

MINUTE = 29_940_000  # a whole minute, in seconds since the epoch / 60


def at(second: float) -> float:
    return MINUTE * 60.0 + second


def test_within_a_minute_the_limit_is_the_count_and_the_reset_the_turn() -> None:
    window = _Window(MINUTE)
    answers = [window.hit(3, at(10.0)) for _ in range(4)]
    assert [taken for taken, _ in answers] == [True, True, True, False]
    assert [quota.remaining for _, quota in answers] == [2, 1, 0, 0]
    assert answers[0][1] == Quota(USER_PER_MINUTE, 3, 2, 50)
    assert answers[3][1].headers() == {
        "RateLimit-Policy": '"user-per-minute";q=3;w=60',
        "RateLimit": '"user-per-minute";r=0;t=50',
    }


def test_after_the_turn_the_previous_minute_weighs_what_it_still_overlaps() -> None:
    window = _Window(MINUTE)
    for _ in range(10):
        assert window.hit(10, at(30.0))[0]
    # 15 s into the next minute, the last minute's 10 weigh 10 * 45/60 = 7.5, so 7
    taken = [window.hit(10, at(75.0))[0] for _ in range(4)]
    assert taken == [True, True, True, False]
    # two minutes on, nothing of it is left
    assert window.hit(10, at(185.0)) == (True, Quota(USER_PER_MINUTE, 10, 9, 55))


def test_a_refused_request_is_not_counted() -> None:
    window = _Window(MINUTE)
    assert window.hit(1, at(1.0))[0]
    assert not any(window.hit(1, at(2.0))[0] for _ in range(100))
    # counted, the 100 refused would weigh floor(101 * 59/60) = 99 a second into the next
    # minute; uncounted, the one taken weighs floor(59/60) = 0: there is room again
    assert window.hit(1, at(61.0))[0]


def test_a_look_counts_nothing() -> None:
    window = _Window(MINUTE)
    for _ in range(5):
        assert window.hit(1, at(3.0), take=False) == (True, Quota(USER_PER_MINUTE, 1, 0, 57))
    assert window.hit(1, at(3.0))[0] and not window.hit(1, at(3.0), take=False)[0]


def test_a_request_its_key_refuses_does_not_count_for_its_user() -> None:
    limits = RateLimits(RateLimitsConfig(requests_per_minute=2))
    key = Principal("ann", DEFAULT_SCOPES, "k1", restriction=Restriction(frozenset(), 1))
    token = Principal("ann", DEFAULT_SCOPES, "t1")
    assert [q.policy for q in limits.admit(key)] == [PER_MINUTE, USER_PER_MINUTE]
    with pytest.raises(RateLimited):
        limits.admit(key)  # the key's one request of the minute is spent
    assert limits.admit(token)[0].remaining == 0  # the user's second, not its third


def test_a_shorter_window_turns_and_weighs_by_its_own_length() -> None:
    window = _Window(int(at(0.0) // 5), 5)
    assert [window.hit(4, at(1.0))[0] for _ in range(5)] == [True] * 4 + [False]
    assert window.hit(4, at(1.0), take=False)[1] == Quota(USER_PER_MINUTE, 4, 0, 4, 5)
    # 1 s into the next 5 s, the last window's 4 weigh 4 * 4/5 = 3.2, so 3: room for 1
    assert window.hit(4, at(6.0)) == (True, Quota(USER_PER_MINUTE, 4, 0, 4, 5))
    assert not window.hit(4, at(6.0))[0]
    assert Quota(USER_PER_MINUTE, 4, 0, 4, 5).policy_item() == '"user-per-minute";q=4;w=5'


def test_the_window_length_is_bounded_and_a_refusal_names_it() -> None:
    for bad in (0, 3601, "5s"):
        with pytest.raises(ValueError, match="window_seconds"):
            RateLimitsConfig.model_validate({"window_seconds": bad})
    limits = RateLimits(RateLimitsConfig(requests_per_minute=1, window_seconds=7))
    ann = Principal("ann", DEFAULT_SCOPES, "t1")
    assert limits.admit(ann)[0].window == 7
    refusals = []
    for _ in range(3):  # a turn between two of them lets one more in, never two
        try:
            limits.admit(ann)
        except RateLimited as refused:
            refusals.append(refused.detail)
    assert refusals and "1 requests in 7 s" in refusals[0]
