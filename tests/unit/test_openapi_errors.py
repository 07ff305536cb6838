"""The OpenAPI document declares every error status a route's code can give, each as
``application/problem+json`` with the Problem schema (on the OpenAI-compatible ``/v1``
routes, as OpenAI's error document).

The document is built from an app in this process (nothing is started); each route's
statuses are checked against the errors its code raises, found by walking the source of the
endpoint, the service methods it calls on the gateway and, within their modules, the
functions and methods those call.
"""

from __future__ import annotations

import ast
import inspect
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.routing import APIRoute

from hpcgate.api import (
    agent,
    agent_tokens,
    audit,
    consents,
    files,
    functions,
    jobs,
    login,
    openai,
    projects,
    services,
    systems,
    tasks,
    tokens,
    usage,
)
from hpcgate.api.app import create_app
from hpcgate.api.security import needs_token
from hpcgate.config import Settings
from hpcgate.gateway import Gateway
from hpcgate.model.errors import HpcgateError

PROBLEM = {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}
OPENAI = {"application/json": {"schema": {"$ref": "#/components/schemas/OpenAIError"}}}


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> FastAPI:
    settings = Settings(home=tmp_path_factory.mktemp("home"))
    return create_app(settings)


def _routes(app: FastAPI) -> list[APIRoute]:
    """Every documented route: the app's own and those of the routers it includes."""
    modules = (
        agent,
        agent_tokens,
        systems,
        jobs,
        files,
        tasks,
        tokens,
        consents,
        services,
        functions,
        openai,
        usage,
        audit,
        login,
        projects,
    )
    included = [route for m in modules for route in m.router.routes]
    every = [*app.routes, *included]
    return [r for r in every if isinstance(r, APIRoute) and r.include_in_schema]


def _operations(document: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, item in document["paths"].items():
        for method, operation in item.items():
            yield path, method, operation


def test_every_error_response_is_a_problem_document(app: FastAPI) -> None:
    for path, method, operation in _operations(app.openapi()):
        for status, response in operation["responses"].items():
            if int(status) >= 400:
                expected = OPENAI if path.startswith("/v1/") else PROBLEM
                assert response["content"] == expected, f"{method} {path} {status}"
                assert response["description"] != "Validation Error", f"{method} {path}"


def test_the_shared_machinery_s_statuses_are_declared(app: FastAPI) -> None:
    """401 where a token is needed (none where it is optional), 422 where there is input,
    413 for a JSON body."""
    for path, method, operation in _operations(app.openapi()):
        declared = set(operation["responses"])
        body = operation.get("requestBody", {}).get("content", {})
        if needs_token(operation):
            assert "401" in declared, f"{method} {path}"
        elif operation.get("security"):  # a token only adds to the answer: never refused
            assert not {"401", "403", "429"} & declared, f"{method} {path}"
        if (operation.get("parameters") or body) and not path.startswith("/v1/"):
            assert "422" in declared, f"{method} {path}"  # /v1: a 400, as OpenAI answers
        uploads = path.endswith("/files/upload") or "/files/uploads/" in path
        if "application/json" in body and not uploads:
            assert "413" in declared, f"{method} {path}"


def test_each_route_declares_what_its_code_raises(app: FastAPI) -> None:
    gateway: Gateway = app.state.gateway
    document = app.openapi()
    missing = []
    assert len(_routes(app)) == sum(1 for _ in _operations(document))
    for route in _routes(app):
        for method in route.methods or ():
            declared = set(document["paths"][route.path_format][method.lower()]["responses"])
            for error in _raised(route.endpoint, gateway):
                if str(error.status) not in declared:
                    missing.append(f"{method} {route.path_format}: {error.__name__} {error.status}")
    assert not missing, "\n".join(sorted(set(missing)))


def _raised(start: Callable[..., Any], gateway: Gateway) -> set[type[HpcgateError]]:
    found: set[type[HpcgateError]] = set()
    seen: set[Callable[..., Any]] = set()
    todo = [start]
    while todo:
        function = todo.pop()
        if function in seen or not _ours(function):
            continue
        seen.add(function)
        errors, callees = _walk(function, gateway)
        found |= errors
        todo += callees
    return found


def _ours(function: Callable[..., Any]) -> bool:
    module = inspect.getmodule(function)
    return module is not None and module.__name__.startswith("hpcgate.")


def _walk(
    function: Callable[..., Any], gateway: Gateway
) -> tuple[set[type[HpcgateError]], list[Callable[..., Any]]]:
    """The hpcgate errors ``function`` raises itself, and the functions it calls that can be
    named statically: module functions, ``self`` methods, ``gateway.<service>.<method>``;
    not within a ``try`` that catches every hpcgate error (:func:`_shielded`)."""
    names = vars(inspect.getmodule(function))
    qualname = function.__qualname__
    owner = names.get(qualname.split(".")[0]) if "." in qualname else None
    tree = ast.parse(textwrap.dedent(inspect.getsource(function)))
    errors: set[type[HpcgateError]] = set()
    callees: list[Any] = []
    shielded = _shielded(tree, names)
    for node in ast.walk(tree):
        if id(node) in shielded:
            continue
        if isinstance(node, ast.Raise) and isinstance(node.exc, ast.Call):
            kind = names.get(getattr(node.exc.func, "id", ""))
            if isinstance(kind, type) and issubclass(kind, HpcgateError):
                errors.add(kind)
        if isinstance(node, ast.Call):
            callees.append(_callee(node.func, names, owner, gateway))
    return errors, [c for c in callees if inspect.isfunction(c)]


def _shielded(tree: ast.AST, names: dict[str, Any]) -> set[int]:
    """The nodes in the body of a ``try`` with an ``except HpcgateError`` (or a base of it)
    that raises nothing: no hpcgate error raised there leaves the function."""
    inside: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Try) and any(_swallows(h, names) for h in node.handlers):
            inside |= {id(inner) for statement in node.body for inner in ast.walk(statement)}
    return inside


def _swallows(handler: ast.ExceptHandler, names: dict[str, Any]) -> bool:
    caught = names.get(getattr(handler.type, "id", ""))
    if not (isinstance(caught, type) and issubclass(HpcgateError, caught)):
        return False
    return not any(isinstance(n, ast.Raise) for s in handler.body for n in ast.walk(s))


def _callee(called: ast.expr, names: dict[str, Any], owner: object, gateway: Gateway) -> Any:
    if isinstance(called, ast.Name):
        return names.get(called.id)
    if not isinstance(called, ast.Attribute):
        return None
    inner = called.value
    if isinstance(inner, ast.Name) and inner.id == "self":
        return getattr(owner, called.attr, None)
    if isinstance(inner, ast.Attribute) and getattr(inner.value, "id", None) == "gateway":
        return getattr(type(getattr(gateway, inner.attr, None)), called.attr, None)
    return None


def test_the_walk_finds_an_error_raised_two_calls_down(app: FastAPI) -> None:
    """The jobs list's 400 for a bad cursor is raised in jobs/service.py's ``_cursor``."""
    listing = [r for r in _routes(app) if r.path_format.endswith("/jobs")]
    route = next(r for r in listing if "GET" in (r.methods or ()))
    assert 400 in {e.status for e in _raised(route.endpoint, app.state.gateway)}
    assert Path(inspect.getfile(route.endpoint)).name == "jobs.py"
