"""The security headers on every ``/ui`` answer: a page, a fragment, an asset, an error."""

from __future__ import annotations

import re

from starlette.types import ASGIApp, Message, Receive, Scope, Send

#: Scripts, styles, images and connections from the gateway only; nothing inline, no
#: plugins, no framing, forms posted only back here.
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none'; "
    "form-action 'self'; frame-ancestors 'none'"
)
HEADERS: tuple[tuple[bytes, bytes], ...] = (
    (b"content-security-policy", CSP.encode()),
    (b"x-frame-options", b"DENY"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"same-origin"),
    (b"cross-origin-opener-policy", b"same-origin"),
)
#: A page whose form's answer redirects to another origin (a service's own, from its
#: Open button) names it in this header: it joins ``form-action``, and the header is
#: taken off (Chromium checks a form's redirects against ``form-action`` too).
FORM_ACTION_HEADER = "x-hpcgate-form-action"
STATIC = "/static/"
#: A service's own pages (``/ui/open/...``) are sandboxed on top: an opaque origin, so
#: their scripts cannot act as this gateway's pages (nor read its cookies).
OPENED = "/open/"
SANDBOX = (b"content-security-policy", b"sandbox allow-scripts allow-forms allow-downloads")


_ORIGIN = re.compile(rb"https?://[a-z0-9.-]+(:[0-9]{1,5})?")


class SecurityHeaders:
    """Adds :data:`HEADERS` to every answer; pages (not the static assets) are never cached,
    since they may show a token's secret or a user's files."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        inside = within(scope)
        cached = inside.startswith(STATIC)  # the assets only, not a page whose path holds it
        sandboxed = inside.startswith(OPENED)

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = _with_form_action(message.get("headers", []))
                if not cached:
                    headers.append((b"cache-control", b"no-store"))
                if sandboxed:
                    headers.append(SANDBOX)
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_headers)


def within(scope: Scope) -> str:
    """The path inside the web interface's mount (``/ui`` taken off)."""
    path: str = scope.get("path", "")
    root: str = scope.get("root_path", "")
    return path[len(root) :] if root and path.startswith(root) else path


def _with_form_action(given: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    """The answer's headers and :data:`HEADERS`, the CSP's ``form-action`` with the origin
    the route named (:data:`FORM_ACTION_HEADER`), if it named one."""
    name = FORM_ACTION_HEADER.encode()
    extra = [value for key, value in given if key == name]
    kept = [(key, value) for key, value in given if key != name]
    if not extra or not _ORIGIN.fullmatch(extra[0]):
        return [*kept, *HEADERS]
    policy = CSP.replace("form-action 'self'", f"form-action 'self' {extra[0].decode()}")
    csp = (b"content-security-policy", policy.encode())
    return [*kept, csp, *(h for h in HEADERS if h[0] != b"content-security-policy")]
