"""``hpcgate project``: the server's commands for projects and their members, acting as
the gateway's admin on its store (the API's ``/api/v1/projects`` does the same)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, TypeVar

import typer
from pydantic import BaseModel, ValidationError
from rich.markup import escape

from hpcgate.cli import ConfigOption, _settings, _with_store
from hpcgate.model.principal import Principal, Role, Scope
from hpcgate.model.projects import MemberChange, NewProject, Project

if TYPE_CHECKING:
    from hpcgate.gateway import Gateway

project_app = typer.Typer(no_args_is_help=True, help="Create projects and manage their members.")
#: Who the commands act as: the gateway's admin, as the one who may read its store.
ACTING = "cli"  # what the audit and the logs name as the token
CLI_ADMIN = Principal("admin", frozenset({Scope.ADMIN}), token_id=ACTING)

M = TypeVar("M", bound=BaseModel)
Name = Annotated[str, typer.Argument(help="The project")]
User = Annotated[str, typer.Argument(help="The member's hpcgate user name")]


def _show(project: Project) -> None:
    typer.echo(f"{project.name}: {escape(project.description) or '-'}")
    for member in project.members:
        typer.echo(f"  {member.user} {member.role.value}")


def _request(make: type[M], **fields: object) -> M:
    """The request, or the command's usage error naming what is wrong with it."""
    try:
        return make.model_validate(fields)
    except ValidationError as exc:
        raise typer.BadParameter(str(exc.errors()[0]["msg"])) from None


@project_app.command("create")
def create(
    name: Name,
    owner: Annotated[str, typer.Option(help="Its first owner")],
    description: Annotated[str, typer.Option(help="A note")] = "",
    config: ConfigOption = None,
) -> None:
    """Create a project with its first owner."""
    request = _request(NewProject, name=name, owner=owner, description=description)

    async def work(gateway: Gateway) -> Project:
        return await gateway.projects.create(CLI_ADMIN, request)

    _show(_with_store(_settings(config), work))


@project_app.command("list")
def list_projects(config: ConfigOption = None) -> None:
    """List every stored project and its members."""

    async def work(gateway: Gateway) -> list[Project]:
        return list(await gateway.projects.list(CLI_ADMIN))

    for project in _with_store(_settings(config), work):
        _show(project)


@project_app.command("add")
def add(
    name: Name,
    user: User,
    role: Annotated[Role, typer.Option(help="owner, member or viewer")] = Role.MEMBER,
    config: ConfigOption = None,
) -> None:
    """Add a member, or change a member's role."""
    change = _request(MemberChange, role=role)

    async def work(gateway: Gateway) -> Project:
        return await gateway.projects.set_member(CLI_ADMIN, name, user, change)

    _show(_with_store(_settings(config), work))


@project_app.command("remove")
def remove(name: Name, user: User, config: ConfigOption = None) -> None:
    """Remove a member (never the last owner)."""

    async def work(gateway: Gateway) -> None:
        await gateway.projects.remove_member(CLI_ADMIN, name, user)

    _with_store(_settings(config), work)
    typer.echo(f"{user} removed from {name}")
