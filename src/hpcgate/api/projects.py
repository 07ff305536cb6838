"""``/api/v1/projects``: projects, their members and their roles.

Admins create projects; an admin or a project's owner adds, changes and removes its
members; a member may leave. Someone with no role in a project is told it does not exist.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated

from fastapi import APIRouter, Path, status

from hpcgate.api.auth import Caller, GatewayDep
from hpcgate.api.problems import responses
from hpcgate.model.projects import (
    PROJECT_NAME_PATTERN,
    MemberChange,
    NewProject,
    Project,
)
from hpcgate.model.tokens import USER_NAME_PATTERN

router = APIRouter(prefix="/api/v1/projects", tags=["projects"])

ProjectPath = Annotated[str, Path(pattern=PROJECT_NAME_PATTERN, description="The project")]
UserPath = Annotated[str, Path(pattern=USER_NAME_PATTERN, description="The member")]


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    summary="Create a project (admins)",
    responses=responses(401, 403, 409, 422),
)
async def create_project(body: NewProject, who: Caller, gateway: GatewayDep) -> Project:
    """A new project whose first owner is `owner` (default: the caller). Admins only,
    with a token limited to nothing; a name taken is a 409."""
    return await gateway.projects.create(who, body)


@router.get("", summary="List my projects", responses=responses(401, 403))
async def list_projects(who: Caller, gateway: GatewayDep) -> Sequence[Project]:
    """The projects the caller has a role in (stored, or given by its identity provider's
    groups); an admin's: every stored one. A token limited to a project lists that one."""
    return await gateway.projects.list(who)


@router.get("/{project}", summary="One project and its members", responses=responses(401, 403, 404))
async def get_project(project: ProjectPath, who: Caller, gateway: GatewayDep) -> Project:
    """404 for a project the caller has no role in (an admin sees every one)."""
    return await gateway.projects.get(who, project)


@router.put(
    "/{project}/members/{user}",
    summary="Add a member or change its role (admins and owners)",
    responses=responses(401, 403, 404, 409, 422),
)
async def set_member(
    project: ProjectPath, user: UserPath, body: MemberChange, who: Caller, gateway: GatewayDep
) -> Project:
    """Roles: `viewer` reads the project's jobs and their output; `member` also submits
    and cancels them; `owner` also manages the members. Taking the owner role from the
    last owner is a 409. A member's new role applies from its next request."""
    return await gateway.projects.set_member(who, project, user, body)


@router.delete(
    "/{project}/members/{user}",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="Remove a member (admins and owners; a member itself)",
    responses=responses(401, 403, 404, 409, 422),
)
async def remove_member(
    project: ProjectPath, user: UserPath, who: Caller, gateway: GatewayDep
) -> None:
    """The member loses access to the project's resources with its next request. The
    last owner cannot be removed (409). A provider's group grant is not a stored
    membership: it is the provider's to change."""
    await gateway.projects.remove_member(who, project, user)
