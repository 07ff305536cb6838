"""Project roles without a gateway: a provider's group rules give roles, a stored
membership (real SQLite) combines with them (the higher wins), and a token's limits."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from hpcgate.config import OidcIssuer
from hpcgate.identity.claims import principal
from hpcgate.model.errors import Conflict, Forbidden, Invalid, NotFound
from hpcgate.model.principal import Principal, Restriction, Role, Scope
from hpcgate.model.projects import MemberChange, NewProject
from hpcgate.projects import Projects
from hpcgate.store.db import Database
from hpcgate.store.projects import ProjectStore
from tests.support.postgres import new_database
from tests.unit.test_oidc import HTTPS

GROUPS = HTTPS | {
    "username_claim": "preferred_username",
    "groups": [
        {"value": "climate-readers", "projects": ["climate"], "role": "viewer"},
        {"value": "ocean", "projects": ["ocean"]},
    ],
}
ADMIN = Principal("admin", frozenset({Scope.ADMIN}), "t0")


def provider_user(*groups: str) -> Principal:
    claims = {"preferred_username": "ada", "sub": "1", "groups": list(groups), "scope": "jobs:read"}
    return principal(claims, OidcIssuer.model_validate(GROUPS), "oidc:1")


def test_group_rules_give_their_role_and_member_by_default() -> None:
    who = provider_user("climate-readers", "ocean")
    assert who.provider_role("climate") is Role.VIEWER
    assert who.provider_role("ocean") is Role.MEMBER
    assert who.provider_role("land") is None


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def projects(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Projects]:
    """The projects on SQLite, and on a fresh database of the real PostgreSQL (its row
    locks taken where an owner is counted)."""
    if request.param == "sqlite":
        database = Database(f"sqlite+aiosqlite:///{tmp_path}/hpcgate.db")
    else:
        database = Database(await new_database())
    await database.start()
    yield Projects(ProjectStore(database), max_members=3)
    await database.close()


async def test_the_higher_of_stored_and_provider_role_counts(projects: Projects) -> None:
    await projects.create(ADMIN, NewProject(name="climate", owner="bob"))
    viewer = provider_user("climate-readers")
    assert await projects.role(viewer, "climate") is Role.VIEWER
    await projects.set_member(ADMIN, "climate", "ada", MemberChange(role=Role.MEMBER))
    assert await projects.role(viewer, "climate") is Role.MEMBER
    await projects.remove_member(ADMIN, "climate", "ada")
    assert await projects.role(viewer, "climate") is Role.VIEWER  # the provider's grant stays
    with pytest.raises(Forbidden):
        await projects.require(viewer, "climate", Scope.JOBS_WRITE)


async def test_a_token_limited_elsewhere_has_no_role(projects: Projects) -> None:
    await projects.create(ADMIN, NewProject(name="climate", owner="ada"))
    ada = Principal("ada", frozenset({Scope.JOBS_READ}), "t1")
    assert await projects.role(ada, "climate") is Role.OWNER
    limited = Principal("ada", ada.scopes, "t2", restriction=Restriction(project="ocean"))
    assert await projects.role(limited, "climate") is None
    with pytest.raises(NotFound):
        await projects.get(limited, "climate")


async def test_members_are_bounded_and_the_last_owner_stays(projects: Projects) -> None:
    await projects.create(ADMIN, NewProject(name="small", owner="ada"))
    with pytest.raises(Conflict):
        await projects.create(ADMIN, NewProject(name="small", owner="bob"))
    for user in ("bob", "carl"):
        await projects.set_member(ADMIN, "small", user, MemberChange())
    with pytest.raises(Invalid, match="the most it may"):
        await projects.set_member(ADMIN, "small", "dora", MemberChange())
    with pytest.raises(Conflict):
        await projects.set_member(ADMIN, "small", "ada", MemberChange(role=Role.VIEWER))
    assert [m.user for m in (await projects.get(ADMIN, "small")).members] == ["ada", "bob", "carl"]


def test_a_read_only_token_holds_no_write_scope() -> None:
    who = Principal("ada", frozenset({Scope.ADMIN}), "t", restriction=Restriction(read_only=True))
    assert who.has(Scope.JOBS_READ) and who.has(Scope.FILES_READ)
    assert not any(who.has(s) for s in (Scope.JOBS_WRITE, Scope.FILES_WRITE, Scope.ADMIN))
    assert not who.is_key and who.key_id is None and who.limited
