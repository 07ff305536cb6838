"""A form from a function's input JSON Schema, and the input back from that form.

Each top-level property of an object schema is one field: a string, number or integer a
text input, a boolean a checkbox, an enum a choice (its values by position, so any JSON
value may be one); anything else (arrays, objects, unions) a JSON text area. A schema that
is no object with properties is one JSON text area for the whole input. The input is then
checked against the schema by the functions' own validation, as the API checks it."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

from hpcgate.webui.forms import Form

#: The form's field that holds the whole input when the schema gives no properties.
WHOLE = "__input"
FIELD_PREFIX = "in."
SIMPLE = {"string": "string", "number": "number", "integer": "integer", "boolean": "boolean"}


class FormError(ValueError):
    """A field whose text is not what its kind needs (no number, no JSON)."""


@dataclass(frozen=True)
class Field:
    """One input of the generated form."""

    name: str
    kind: str  # string, number, integer, boolean, enum, json
    required: bool
    default: str  # as the field shows it
    description: str
    choices: tuple[str, ...] = ()  # an enum's values, as JSON

    @property
    def key(self) -> str:
        """The form field's name (never clashes with the CSRF field)."""
        return FIELD_PREFIX + self.name


def fields(schema: dict[str, Any]) -> list[Field]:
    """The form's fields; empty if the schema has no properties (one JSON text area)."""
    properties = schema.get("properties")
    if schema.get("type") not in ("object", None) or not isinstance(properties, dict):
        return []
    required = schema.get("required")
    needed = set(required) if isinstance(required, list) else set()
    return [
        _field(str(name), part if isinstance(part, dict) else {}, name in needed)
        for name, part in properties.items()
    ]


def _field(name: str, part: dict[str, Any], required: bool) -> Field:
    description = str(part.get("description") or part.get("title") or "")
    default = part.get("default")
    enum = part.get("enum")
    if isinstance(enum, list) and enum:
        choices = tuple(json.dumps(value) for value in enum)
        chosen = json.dumps(default) if "default" in part else ""
        return Field(name, "enum", required, chosen, description, choices)
    kind = SIMPLE.get(str(part.get("type")))
    if kind is None:
        shown = json.dumps(default, indent=2) if "default" in part else ""
        return Field(name, "json", required, shown, description)
    if kind == "boolean":
        return Field(name, kind, required, "true" if default is True else "", description)
    return Field(name, kind, required, "" if default is None else str(default), description)


def whole_default(schema: dict[str, Any]) -> str:
    return json.dumps(schema.get("default", {}), indent=2)


def value(schema: dict[str, Any], form: Form) -> Any:
    """The input the form describes: a field left empty is left out (the schema's default
    then applies); :class:`FormError` naming the field whose text does not parse."""
    wanted = fields(schema)
    if not wanted:
        return _json(WHOLE, form.get(WHOLE))
    found: dict[str, Any] = {}
    for field in wanted:
        text = form.get(field.key)
        if field.kind == "boolean":
            found[field.name] = text == "true"
        elif text.strip() or (field.kind == "string" and field.required):
            found[field.name] = _parsed(field, text)
    return found


def _parsed(field: Field, text: str) -> Any:
    if field.kind == "string":
        return text.replace("\r\n", "\n")
    if field.kind == "enum":
        if text not in field.choices:
            raise FormError(f"{field.name}: choose one of the values offered")
        return json.loads(text)
    if field.kind == "json":
        return _json(field.name, text)
    what = "an integer" if field.kind == "integer" else "a number"
    try:
        number = int(text) if field.kind == "integer" else float(text)
    except ValueError:
        raise FormError(f"{field.name}: not {what}") from None
    if not math.isfinite(number):
        raise FormError(f"{field.name}: not {what}")
    return number


def _json(name: str, text: str) -> Any:
    try:
        return json.loads(text)
    except (ValueError, RecursionError):
        raise FormError(f"{'the input' if name == WHOLE else name}: not valid JSON") from None
