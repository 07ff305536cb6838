"""A proxied request finds its service in memory: no database read once the catalogue is
read, and every change made through the store is seen by the next request."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, event

from hpcgate.clock import utcnow
from hpcgate.config import Settings
from hpcgate.gateway import Gateway
from hpcgate.model.errors import NotFound
from hpcgate.model.principal import DEFAULT_SCOPES, Principal, Scope
from hpcgate.model.services import ServiceSpec
from hpcgate.services.catalogue import Catalogue
from hpcgate.services.pool import ReplicaPool
from hpcgate.services.traffic import Route
from hpcgate.store.services import DECLARED
from hpcgate.store.tables import ServiceRow
from hpcgate.transports.local import LocalTransport

ALICE = Principal("alice", DEFAULT_SCOPES, "t")


def _row(name: str, timeout: int = 300) -> ServiceRow:
    spec = ServiceSpec(system="local", script="#!/bin/sh\n", request_timeout=timeout)
    return ServiceRow(
        name=name,
        owner="alice",
        spec=spec.model_dump_json(),
        min_replicas=0,
        max_replicas=1,
        stopping=False,
        created_at=utcnow(),
    )


@pytest.fixture
async def gateway(tmp_path: Path) -> AsyncIterator[Gateway]:
    settings = Settings(home=tmp_path / "home", systems={"local": {"scheduler": "embedded"}})
    made = Gateway(settings)
    await made.open_store()
    yield made
    await made.database.close()


@pytest.fixture
def statements() -> Iterator[list[str]]:
    """The SQL statements every engine of this process runs while the test does."""
    ran: list[str] = []

    def count(*args: Any) -> None:
        ran.append(str(args[2]))

    event.listen(Engine, "before_cursor_execute", count)
    yield ran
    event.remove(Engine, "before_cursor_execute", count)


def _routed(gateway: Gateway, service: int) -> None:
    """A ready replica in the routing table (never connected to here)."""
    route = Route(service + 1000, "127.0.0.1", 9, ReplicaPool(LocalTransport(), None))
    gateway.controller.traffic.set_routes(service, [route])


async def test_a_routed_request_reads_nothing_from_the_database(
    gateway: Gateway, statements: list[str]
) -> None:
    row = await gateway.service_store.add(_row("svc"))
    _routed(gateway, row.pk)
    await gateway.services.route(ALICE, "svc")  # the catalogue is read here
    statements.clear()
    for _ in range(5):
        route, spec = await gateway.services.route(ALICE, "svc")
        assert route.replica == row.pk + 1000
        assert spec.request_timeout == 300
    assert statements == []


async def test_changes_through_the_store_are_seen_by_the_next_request(gateway: Gateway) -> None:
    store = gateway.service_store
    first = await store.add(_row("svc"))
    _routed(gateway, first.pk)
    assert (await gateway.services.route(ALICE, "svc"))[1].request_timeout == 300
    with pytest.raises(NotFound):
        await gateway.services.route(ALICE, "later")
    later = await store.add(_row("later", timeout=7))
    _routed(gateway, later.pk)
    assert (await gateway.services.route(ALICE, "later"))[1].request_timeout == 7
    await store.update(later.pk, spec=_row("later", timeout=9).spec)
    assert (await gateway.services.route(ALICE, "later"))[1].request_timeout == 9
    await store.remove(first.pk)
    with pytest.raises(NotFound):
        await gateway.services.route(ALICE, "svc")


async def test_a_declared_service_is_seen_once_declared(gateway: Gateway) -> None:
    admin = Principal("root", DEFAULT_SCOPES | {Scope.ADMIN}, "t")
    with pytest.raises(NotFound):
        await gateway.services.route(admin, "shared")
    spec = ServiceSpec(system="local", script="#!/bin/sh\n").model_dump_json()
    await gateway.service_store.declare("shared", spec, 0, 1)
    row = next(r for r in await gateway.service_store.all() if r.name == "shared")
    _routed(gateway, row.pk)
    assert (await gateway.services.route(admin, "shared"))[0].replica == row.pk + 1000


async def test_owned_lists_an_owners_services_by_name_without_a_read(
    gateway: Gateway, statements: list[str]
) -> None:
    store = gateway.service_store
    for name in ("b", "a"):
        await store.add(_row(name))
    await store.declare("shared", _row("shared").spec, 0, 1)
    catalogue = Catalogue(store)
    assert [r.name for r in await catalogue.owned("alice")] == ["a", "b"]
    statements.clear()
    assert [r.name for r in await catalogue.owned(DECLARED)] == ["shared"]
    assert await catalogue.owned("bob") == []
    assert statements == []
    await store.remove(next(r for r in await catalogue.owned("alice") if r.name == "a").pk)
    assert [r.name for r in await catalogue.owned("alice")] == ["b"]
