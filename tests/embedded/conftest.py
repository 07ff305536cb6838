"""Fixtures for the embedded scheduler: a fresh spool per test, checked for leftovers."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.embedded.engine import Engine, engine_in


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    """An engine with its own spool and working directory."""
    yield from engine_in(tmp_path)
