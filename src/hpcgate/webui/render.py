"""Pages from the templates: Jinja2, autoescape on for every template."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined
from starlette.requests import Request
from starlette.responses import HTMLResponse

from hpcgate.webui.sessions import Session

_env = Environment(
    loader=PackageLoader("hpcgate.webui", "templates"),
    autoescape=True,  # every template, whatever its name: user text is always escaped
    undefined=StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)


def _when(value: datetime | float | None) -> str:
    if value is None:
        return ""
    moment = value if isinstance(value, datetime) else datetime.fromtimestamp(value)
    return moment.strftime("%Y-%m-%d %H:%M:%S")


def _size(value: int) -> str:
    amount = float(value)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if amount < 1024 or unit == "TiB":
            return f"{amount:.0f} {unit}" if unit == "B" else f"{amount:.1f} {unit}"
        amount /= 1024
    return f"{value} B"


_env.filters["when"] = _when
_env.filters["size"] = _size


def page(
    request: Request,
    template: str,
    session: Session | None,
    status_code: int = 200,
    **context: Any,
) -> HTMLResponse:
    """``template`` rendered with the session (for the CSRF token and the user's name)."""
    text = _env.get_template(template).render(
        request=request, session=session, csrf=session.csrf if session else "", **context
    )
    return HTMLResponse(text, status_code=status_code)
