"""Input schemas: a function's JSON Schema checked when it is registered, each input
validated against it (and its top-level defaults filled in) before anything runs.

The schema's own ``$schema`` picks the draft (2020-12 when it names none). References are
resolved within the schema only: jsonschema retrieves nothing over the network.
"""

from __future__ import annotations

import copy
from typing import Any

import jsonschema
from jsonschema.exceptions import SchemaError
from jsonschema.validators import validator_for
from referencing import Registry
from referencing.exceptions import Unresolvable

from hpcgate.model.errors import Invalid

#: No retrieval: jsonschema would otherwise fetch a ``$ref`` to a URL (a request from the
#: gateway's network, chosen by whoever registered the schema).
NOTHING_REMOTE: Registry[Any] = Registry()
ERRORS_SHOWN = 20  # a 422 lists at most this many of an input's errors


def check(schema: dict[str, Any]) -> None:
    """Invalid (422) unless ``schema`` is a valid JSON Schema."""
    try:
        validator_for(schema, default=jsonschema.Draft202012Validator).check_schema(schema)
    except SchemaError as exc:
        raise Invalid(f"input_schema is not a valid JSON Schema: {exc.message}") from None
    except RecursionError:
        raise Invalid("input_schema is nested too deeply") from None


def validated(schema: dict[str, Any], value: Any) -> dict[str, Any]:
    """``value`` with the defaults of the schema's top-level properties filled in; Invalid
    (422) listing where and why, if it does not match the schema."""
    cls = validator_for(schema, default=jsonschema.Draft202012Validator)
    try:
        failed = cls(schema, registry=NOTHING_REMOTE).iter_errors(value)
        found = sorted(failed, key=lambda e: [str(part) for part in e.absolute_path])
    except RecursionError:
        raise Invalid("the input is nested too deeply") from None
    except Unresolvable as exc:
        detail = f"the function's input_schema has a reference it cannot resolve: {exc}"
        raise Invalid(detail) from None
    if found or not isinstance(value, dict):
        errors = [_shown(error) for error in found[:ERRORS_SHOWN]] or [_NOT_AN_OBJECT]
        raise Invalid("the input does not match the function's input_schema", errors=errors)
    return _with_defaults(schema, value)


_NOT_AN_OBJECT: dict[str, Any] = {
    "loc": ["body"],
    "msg": "the input must be an object",
    "type": "type",
}


def _shown(error: jsonschema.ValidationError) -> dict[str, Any]:
    """As a 422's field errors are (``loc`` from ``body``), typed by the failed keyword."""
    where: list[str | int] = ["body", *error.absolute_path]
    return {"loc": where, "msg": error.message[:1000], "type": str(error.validator)}


def _with_defaults(schema: dict[str, Any], value: dict[str, Any]) -> dict[str, Any]:
    properties = schema.get("properties")
    if not isinstance(properties, dict):
        return value
    filled = dict(value)
    for name, sub in properties.items():
        if name not in filled and isinstance(sub, dict) and "default" in sub:
            filled[name] = copy.deepcopy(sub["default"])
    return filled
