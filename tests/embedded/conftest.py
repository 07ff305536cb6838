"""Fixtures for the embedded scheduler: a fresh spool per test, checked for leftovers."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.embedded.engine import Engine


def engine_in(base: Path) -> Iterator[Engine]:
    """An engine on a new spool under ``base``; fails if its processes outlive the test."""
    workdir = base / "work"
    workdir.mkdir()
    engine = Engine(base / "spool", workdir)
    yield engine
    strays = engine.shut_down()
    assert not strays, f"processes left behind (killed now): {strays}"


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    """An engine with its own spool and working directory."""
    yield from engine_in(tmp_path)
