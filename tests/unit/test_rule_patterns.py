"""The identity-mapping rules' regular expressions against hostile claim values: Python's
``re`` has no timeout, so a pattern that could backtrack exponentially (or past ``n**3``)
is refused when the configuration is read, and a value over 256 characters is never
matched at all."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from hpcgate.config import OidcIssuer
from hpcgate.identity.rules import MAX_VALUE_CHARS, Rules
from hpcgate.model.errors import Forbidden


def _issuer(match: str, user: str = "{1}") -> OidcIssuer:
    rule = {"claim": "email", "match": match, "user": user}
    return OidcIssuer(issuer="https://idp.example", audience="hpcgate", users=[rule])


@pytest.mark.parametrize(
    ("match", "complaint"),
    [
        (r"^(a+)+@x$", "nests a repeat"),
        (r"^([a-z]{1,9})*@x$", "nests a repeat"),
        (r"^((?:ab|a)+)@x$", "repeats an alternation"),
        (r"^(\w+)-\1$", "refers back"),
        (r"^(?P<u>\w+)-(?P=u)$", "refers back"),
        (r"^(.*)a(.*)b(.*)c(.*)$", "4 repeats that can vary"),
    ],
)
def test_a_pattern_that_could_backtrack_for_long_is_refused_at_load(
    match: str, complaint: str
) -> None:
    with pytest.raises(ValidationError, match=f"backtrack for too long.*{complaint}"):
        _issuer(match)


@pytest.mark.parametrize(
    "match",
    [
        r"^([a-z][a-z0-9]*)@partner\.example$",  # the README's
        r"^([a-z0-9._-]+)@(?:uni|lab)\.example$",
        r"^(\d{4})+-([a-z]+)$",  # a fixed-width part may repeat
        r"^([a-z]+)\.([a-z]+)@(.+)$",
    ],
)
def test_the_usual_patterns_still_load(match: str) -> None:
    assert _issuer(match).users[0].match == match


def test_a_claim_value_over_the_bound_is_never_matched() -> None:
    rules = Rules(_issuer(r"^([a-z]+)@(.*)$"))
    fits = "alice@" + "x" * (MAX_VALUE_CHARS - len("alice@"))
    assert rules.user({"email": fits}) == ("alice", None)
    with pytest.raises(Forbidden, match="no identity mapping rule"):
        rules.user({"email": fits + "x"})
