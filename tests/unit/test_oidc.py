"""The pure parts of OIDC: the [auth.oidc] table's checks, claims to a principal, which
key may verify which algorithm."""

from __future__ import annotations

import pytest
from joserfc.jwk import ECKey, OKPKey, RSAKey
from pydantic import ValidationError

from hpcgate.config import OidcIssuer
from hpcgate.identity.claims import principal
from hpcgate.identity.keys import fits
from hpcgate.identity.service import looks_like_jwt
from hpcgate.model.errors import Forbidden, Unauthenticated
from hpcgate.model.principal import Scope

HTTPS = {"issuer": "https://idp.example.org/realms/hpc", "audience": "hpcgate"}


@pytest.mark.parametrize(
    "fields",
    [
        {"issuer": "http://idp.example.org"},  # plain http off loopback
        {"issuer": "http://127.0.0.1:8080"},  # loopback, but not allowed explicitly
        {"issuer": "http://idp.example.org", "allow_insecure_issuer": True},
        {"issuer": "https://idp.example.org/?x=1"},
        {"algorithms": ["HS256"]},
        {"algorithms": ["none"]},
        {"algorithms": []},
        {"clock_skew": 3600},
        {"introspection_client_id": "gw"},  # no secret
    ],
)
def test_an_unsafe_issuer_table_is_refused(fields: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        OidcIssuer.model_validate(HTTPS | fields)


def test_loopback_http_needs_the_explicit_switch() -> None:
    loose = OidcIssuer.model_validate(
        HTTPS | {"issuer": "http://127.0.0.1:9480", "allow_insecure_issuer": True}
    )
    assert loose.algorithms == ["RS256", "ES256", "PS256", "EdDSA"]


def _claims(**changes: object) -> dict[str, object]:
    return {"preferred_username": "alice", "scope": "openid jobs:read admin x:y", "exp": 2e9} | (
        changes
    )


def test_claims_map_to_a_principal_with_known_allowed_scopes_only() -> None:
    who = principal(_claims(), OidcIssuer.model_validate(HTTPS), "oidc:1")
    assert (who.user, who.scopes) == ("alice", frozenset({Scope.JOBS_READ}))
    trusted = OidcIssuer.model_validate(HTTPS | {"scopes": ["jobs:read", "admin"]})
    listed = principal(_claims(scope=["admin", 7]), trusted, "oidc:1")
    assert listed.scopes == frozenset({Scope.ADMIN})


@pytest.mark.parametrize("name", [None, 7, "", "Alice", "root\n", "a b", "x" * 65])
def test_a_user_name_hpcgate_cannot_take_is_refused(name: object) -> None:
    with pytest.raises(Unauthenticated):
        principal(_claims(preferred_username=name), OidcIssuer.model_validate(HTTPS), "oidc:1")


def test_a_key_verifies_only_the_algorithms_of_its_type() -> None:
    rsa, p256 = RSAKey.generate_key(2048), ECKey.generate_key("P-256")
    ed = OKPKey.generate_key("Ed25519")
    assert fits(rsa, "RS256") and fits(rsa, "PS256") and not fits(rsa, "ES256")
    assert fits(p256, "ES256") and not fits(p256, "ES384") and not fits(p256, "RS256")
    assert fits(ed, "EdDSA") and not fits(ed, "HS256") and not fits(rsa, "none")
    pinned = RSAKey.generate_key(2048, parameters={"alg": "RS512"})
    assert fits(pinned, "RS512") and not fits(pinned, "RS256")
    encrypting = RSAKey.generate_key(2048, parameters={"use": "enc"})
    assert not fits(encrypting, "RS256")


def test_only_three_base64url_segments_look_like_a_jwt() -> None:
    assert looks_like_jwt("eyJh.eyJi.c2ln") and looks_like_jwt("eyJh.eyJi.")
    assert not looks_like_jwt("hpcg_0123456789ab_" + "a" * 43)
    assert not looks_like_jwt("a.b.c.d") and not looks_like_jwt("eyJh.eyJi.c2ln\n")


RULES = HTTPS | {
    "scopes": ["jobs:read", "admin"],
    "users": [
        {"claim": "email", "match": r"^([a-z]+)\.([a-z]+)@uni\.example$", "user": "{2}-{1}"},
        {"claim": "email", "equals": "ops@uni.example", "user": "ops", "account": "hpcops"},
    ],
    "groups": [{"value": "staff", "scopes": ["admin"], "projects": ["climate", "ocean"]}],
}


def test_the_first_matching_rule_names_user_and_account() -> None:
    mapped = OidcIssuer.model_validate(RULES)
    who = principal({"email": "ada.lovelace@uni.example", "sub": "1"}, mapped, "oidc:1")
    assert (who.user, who.account) == ("lovelace-ada", None)
    ops = principal({"email": "ops@uni.example", "sub": "2", "client_id": "portal"}, mapped, "t")
    assert (ops.user, ops.account, ops.client) == ("ops", "hpcops", "portal")


@pytest.mark.parametrize(
    "claims",
    [
        {"email": "someone@elsewhere.example"},
        {"email": ["ada.lovelace@uni.example"]},  # not a string
        {"email": "a" * 300 + ".b@uni.example"},  # too long to be tested
        {"preferred_username": "alice"},  # rules, so no username_claim default
    ],
)
def test_no_matching_rule_is_forbidden(claims: dict[str, object]) -> None:
    with pytest.raises(Forbidden, match="no identity mapping rule"):
        principal(claims | {"sub": "x"}, OidcIssuer.model_validate(RULES), "oidc:1")


def test_groups_add_scopes_and_projects() -> None:
    claims = {"email": "ops@uni.example", "sub": "2", "groups": ["x", "staff", 7], "scope": ""}
    who = principal(claims, OidcIssuer.model_validate(RULES), "oidc:1")
    assert (who.scopes, who.projects) == (frozenset({Scope.ADMIN}), frozenset({"climate", "ocean"}))
    alone = principal(claims | {"groups": "staff"}, OidcIssuer.model_validate(RULES), "oidc:1")
    assert alone.projects == who.projects


def test_a_client_s_own_token_is_its_service_account() -> None:
    config = OidcIssuer.model_validate(RULES)
    claims = {
        "sub": "ci",
        "client_id": "ci",
        "scope": "jobs:read admin",
        "email": "ops@uni.example",
    }
    who = principal(claims, config, "oidc:1")
    assert (who.user, who.client, who.account) == ("client:ci", "ci", None)
    assert who.scopes == frozenset({Scope.JOBS_READ, Scope.ADMIN})  # the token's, no groups
    marked = OidcIssuer.model_validate(RULES | {"service_account_claim": "client_host"})
    uuid_sub = claims | {"sub": "f81d4fae", "client_host": "10.0.0.1"}
    assert principal(uuid_sub, marked, "oidc:1").user == "client:ci"
    with pytest.raises(Forbidden):
        principal(claims, OidcIssuer.model_validate(RULES | {"service_accounts": False}), "t")
    with pytest.raises(Unauthenticated):
        principal(claims | {"client_id": "ci pipeline", "sub": "ci pipeline"}, config, "t")
