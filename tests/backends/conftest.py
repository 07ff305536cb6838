"""The backends tier: each real backend of the services tests (``scripts/backends``) started
directly as a process on a free port, no hpcgate in between, and checked with real clients.

The backends are installed here if they are not (needs root; a clean machine builds
llama.cpp for some minutes). In CI (``CI`` set) a backend that cannot be installed fails the
run; elsewhere, without root, the tier is skipped.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.backends import (
    Backend,
    ensure_backends,
    started,
    write_embeddings,
    write_jupyter,
    write_llama,
)

JUPYTER_BASE = "/api/v1/services/lab/proxy/"  # as behind hpcgate's proxy


@pytest.fixture(scope="session")
def backends() -> None:
    ensure_backends()


@pytest.fixture(scope="module")
def llama(backends: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The base URL of llama.cpp's server on the tiny model."""
    directory = tmp_path_factory.mktemp("llama")
    with started(write_llama(directory), directory) as url:
        yield url


@pytest.fixture(scope="module")
def embeddings(backends: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The base URL of the embeddings server on all-MiniLM-L6-v2."""
    directory = tmp_path_factory.mktemp("embeddings")
    with started(write_embeddings(directory), directory) as url:
        yield url


@pytest.fixture(scope="module")
def jupyter(
    backends: None, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, Backend]]:
    """JupyterLab's URL, base URL included, and its ``Backend`` (which holds the token)."""
    directory = tmp_path_factory.mktemp("jupyter")
    backend = write_jupyter(directory, base_url=JUPYTER_BASE)
    with started(backend, directory) as url:
        yield url + JUPYTER_BASE, backend
