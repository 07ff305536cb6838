"""Projects as clients see them: a name, members with roles. Pure models, shared by the
API and the SDK."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from hpcgate.model.jobs import PROJECT_NAME_PATTERN, ProjectName
from hpcgate.model.principal import Role
from hpcgate.model.tokens import USER_NAME_PATTERN

UserName = Annotated[str, StringConstraints(pattern=USER_NAME_PATTERN)]
#: Members one project may have (each add beyond is a 422).
MEMBERS_MAX = 10_000


__all__ = ["PROJECT_NAME_PATTERN", "Member", "MemberChange", "NewProject", "Project", "ProjectName"]


class Member(BaseModel):
    user: str
    role: Role
    added_at: datetime


class Project(BaseModel):
    """A project and its members (those stored here: a provider's group members are not
    listed, see ``my_role``)."""

    name: str
    description: str
    created_at: datetime | None = Field(None, description="None: known from a provider only")
    members: list[Member]
    my_role: Role | None = Field(
        None,
        description="The caller's role: the higher of its membership here and the one"
        " its identity provider's groups give (none: an admin who is no member)",
    )


class NewProject(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: ProjectName
    description: str = Field("", max_length=255)
    owner: UserName | None = Field(None, description="Its first owner; default the caller")


class MemberChange(BaseModel):
    model_config = ConfigDict(extra="forbid")

    role: Role = Field(Role.MEMBER, description="owner, member or viewer")
