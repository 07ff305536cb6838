"""hpcgate: an HTTP gateway to HPC clusters, and its Python SDK.

``from hpcgate import Client, AsyncClient, Executor`` loads the SDK on first use, so the
server does not import it and the SDK does not import the server's web framework.

This file, ``hpcgate.model``, ``hpcgate.client`` and ``hpcgate.usercli`` are the client
distribution (``hpcgate-client``); the server distribution (``hpcgate``) installs its modules
beside them in this package. ``__version__`` is both distributions' version.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:
    from hpcgate.client import AsyncClient, Client, Executor

__all__ = ["AsyncClient", "Client", "Executor", "__version__"]


def __getattr__(name: str) -> Any:
    if name in ("AsyncClient", "Client", "Executor"):
        import hpcgate.client

        return getattr(hpcgate.client, name)
    raise AttributeError(f"module 'hpcgate' has no attribute {name!r}")
