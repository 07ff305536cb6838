"""The OpenAPI document, with each operation's path parameters in the order of its path.

FastAPI lists a route's own path parameters before those of its dependencies, so a route
that gets ``{system}`` through the target dependency would list ``job_id`` first. Routes
keep their parameters plain (a dependency per parameter costs every request a resolution
step) and the document is put in path order here, once, when it is first asked for.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import FastAPI

Edit = Callable[[str, dict[str, Any]], None]  # (path, operation), changed in place


def install(app: FastAPI, *edits: Edit) -> None:
    """Serve ``app``'s document with path parameters in path order, then ``edits`` applied
    to each operation, once, when the document is first built."""
    build = app.openapi

    def document() -> dict[str, Any]:
        fresh = app.openapi_schema is None
        schema = build()  # FastAPI's own, which it keeps in app.openapi_schema
        if fresh:
            for path, item in schema.get("paths", {}).items():
                for operation in item.values():
                    for edit in (_in_path_order, *edits):
                        edit(path, operation)
        return schema

    app.openapi = document  # type: ignore[method-assign]


def _in_path_order(path: str, operation: dict[str, Any]) -> None:
    parameters = operation.get("parameters")
    if not parameters:
        return

    def key(indexed: tuple[int, dict[str, Any]]) -> tuple[int, int]:
        index, parameter = indexed
        if parameter.get("in") == "path":
            return (0, path.find("{" + str(parameter.get("name")) + "}"))
        return (1, index)

    operation["parameters"] = [p for _, p in sorted(enumerate(parameters), key=key)]
