"""Form bodies (``application/x-www-form-urlencoded``), read with a bound."""

from __future__ import annotations

from urllib.parse import parse_qs

from starlette.requests import Request

from hpcgate.model.errors import BadRequest, PayloadTooLarge

#: The largest form: the editor's text (EDIT_MAX) encoded, and the other fields.
FORM_MAX = 3 << 20
FIELDS_MAX = 64


class Form:
    """A form's fields; each name's first value."""

    def __init__(self, fields: dict[str, list[str]]) -> None:
        self._fields = fields

    def get(self, name: str, default: str = "") -> str:
        values = self._fields.get(name)
        return values[0] if values else default

    def all(self, name: str) -> list[str]:
        return list(self._fields.get(name, []))

    def given(self, name: str) -> str | None:
        """The field's value stripped, or None if it is empty or missing."""
        value = self.get(name).strip()
        return value or None


FORM_TYPE = "application/x-www-form-urlencoded"


def is_form(request: Request) -> bool:
    return request.headers.get("content-type", "").split(";")[0].strip() == FORM_TYPE


async def read_form(request: Request) -> Form:
    """The request's form, read once (the CSRF check reads it before the route does)."""
    cached = getattr(request.state, "form", None)
    if isinstance(cached, Form):
        return cached
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > FORM_MAX:
            raise PayloadTooLarge(f"a form is at most {FORM_MAX} bytes")
    text = body.decode("utf-8", errors="replace")
    try:
        fields = parse_qs(text, keep_blank_values=True, max_num_fields=FIELDS_MAX)
    except ValueError:
        raise BadRequest(f"a form has at most {FIELDS_MAX} fields") from None
    request.state.form = form = Form(fields)
    return form
