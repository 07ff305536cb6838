"""The form generated from a function's input schema, and the input read back from it."""

from __future__ import annotations

import pytest

from hpcgate.webui import schemaform
from hpcgate.webui.forms import Form

SCHEMA = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "default": "x"},
        "n": {"type": "integer", "default": 3},
        "f": {"type": "number"},
        "ok": {"type": "boolean", "default": True},
        "pick": {"enum": [1, "two", None]},
        "list": {"type": "array", "default": [1]},
    },
    "required": ["name"],
}


def _form(**fields: str) -> Form:
    return Form({f"in.{key}": [value] for key, value in fields.items()})


def test_each_property_is_a_field_of_its_kind_with_its_default() -> None:
    fields = {f.name: f for f in schemaform.fields(SCHEMA)}
    kinds = {name: (f.kind, f.default, f.required) for name, f in fields.items()}
    assert kinds == {
        "name": ("string", "x", True),
        "n": ("integer", "3", False),
        "f": ("number", "", False),
        "ok": ("boolean", "true", False),
        "pick": ("enum", "", False),
        "list": ("json", "[\n  1\n]", False),
    }
    assert fields["pick"].choices == ("1", '"two"', "null")


def test_the_input_is_read_back_typed_and_empty_fields_left_out() -> None:
    got = schemaform.value(SCHEMA, _form(name="a", n="7", f="", ok="true", pick='"two"'))
    assert got == {"name": "a", "n": 7, "ok": True, "pick": "two"}
    assert schemaform.value(SCHEMA, _form(name="", pick="null", list="[2]")) == {
        "name": "",
        "ok": False,
        "pick": None,
        "list": [2],
    }


@pytest.mark.parametrize(
    ("fields", "said"),
    [
        ({"n": "1.5"}, "n: not an integer"),
        ({"f": "nan"}, "f: not a number"),
        ({"f": "1e999"}, "f: not a number"),
        ({"pick": "3"}, "pick: choose one"),
        ({"list": "[1"}, "list: not valid JSON"),
    ],
)
def test_text_that_is_not_its_kind_is_refused(fields: dict[str, str], said: str) -> None:
    with pytest.raises(schemaform.FormError, match=said):
        schemaform.value(SCHEMA, _form(name="a", **fields))


def test_a_schema_without_properties_is_one_json_input() -> None:
    schema = {"type": "array"}
    assert schemaform.fields(schema) == []
    assert schemaform.value(schema, Form({schemaform.WHOLE: ["[1, 2]"]})) == [1, 2]
