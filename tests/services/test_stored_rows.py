"""Rows no release wrote (a spec that does not parse, a system no longer configured, a
state of no name) never break a read, and never stop the controller for the others."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from hpcgate.clock import utcnow
from hpcgate.config import Settings
from hpcgate.gateway import Gateway
from hpcgate.model.principal import DEFAULT_SCOPES, Principal
from hpcgate.model.services import ReplicaState, ServiceSpec
from hpcgate.store.services import ReplicaStore
from hpcgate.store.tables import ReplicaRow, ServiceRow
from tests.support.accounts import passable

ALICE = Principal("alice", DEFAULT_SCOPES, "t")


def _row(name: str, spec: str, low: int = 0) -> ServiceRow:
    return ServiceRow(
        name=name,
        owner="alice",
        spec=spec,
        min_replicas=low,
        max_replicas=1,
        stopping=False,
        created_at=utcnow(),
    )


def _spec(system: str) -> str:
    return ServiceSpec(system=system, script="#!/bin/sh\nexit 0\n").model_dump_json()


@pytest.fixture
async def gateway(tmp_path: Path) -> AsyncIterator[Gateway]:
    home = tmp_path / "home"
    home.mkdir()
    passable(home)  # a root gateway runs alice's replica as alice, who must reach her directory
    settings = Settings(home=home, systems={"local": {"scheduler": "embedded"}})
    made = Gateway(settings)
    made.open_home()
    await made.open_store()
    yield made
    await made.stop()  # closes the transports (alice's file helper) and the store


async def test_bad_rows_are_left_out_of_reads_and_the_controller_goes_on(
    gateway: Gateway, caplog: pytest.LogCaptureFixture
) -> None:
    store = gateway.service_store
    await store.add(_row("broken", "{not json"))
    await store.add(_row("gone", _spec("gone"), low=1))  # its system left the config
    good = await store.add(_row("good", _spec("local"), low=1))
    replicas = ReplicaStore(gateway.database)
    odd = ReplicaRow(
        service_pk=good.pk,
        system="local",
        port=20001,
        state="exploded",
        created_at=utcnow(),
        updated_at=utcnow(),
    )
    await replicas.add(odd)

    listed = {service.name: service for service in await gateway.services.list(ALICE)}
    assert set(listed) == {"gone", "good"}  # the unreadable one is left out, not an error
    assert [r.state for r in listed["good"].replicas] == [ReplicaState.FAILED]

    with caplog.at_level(logging.ERROR, logger="hpcgate.services.controller"):
        await gateway.controller.tick()
        await gateway.controller.tick()
    logged = [r.getMessage() for r in caplog.records if "cannot be reconciled" in r.getMessage()]
    assert len(logged) == 2  # one each, once
    started = [r for r in await replicas.of(good.pk) if r.pk != odd.pk]
    assert len(started) == 1 and started[0].job_id is not None, started[0].reason  # served
