"""The services and functions pages' sections for the caller's projects: one per project
it has a role in (viewer and up), each with that project's items as the API lists them
(``?project=``) and the caller's role there, which the pages show their controls by (the
actions themselves are checked again by the services and functions layers)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

from hpcgate.model.errors import NotFound
from hpcgate.model.principal import Principal, Role
from hpcgate.webui.viewer import Viewer

T = TypeVar("T")
Listing = Callable[[Principal, str], Awaitable[list[T]]]


@dataclass(frozen=True)
class Section(Generic[T]):
    """One project's items on a page, with the caller's role in it."""

    project: str
    role: Role
    items: list[T]

    @property
    def uses(self) -> bool:
        """Whether the role lets the caller use the items (a member's or an owner's)."""
        return may_use(self.role)


def may_use(role: Role | None) -> bool:
    """A member or an owner uses a project's services and invokes its functions; a viewer
    (or no role) only sees them."""
    return role is not None and role.rank >= Role.MEMBER.rank


async def sections(viewer: Viewer, listing: Listing[T]) -> list[Section[T]]:
    """A section per project the caller has a role in, by name; a project it left between
    the two reads is left out."""
    roles = await viewer.gateway.projects.roles(viewer.who)
    found: list[Section[T]] = []
    for project, role in sorted(roles.items()):
        try:
            items = await listing(viewer.who, project)
        except NotFound:
            continue
        found.append(Section(project, role, items))
    return found
