"""The pages for people: a landing page at ``/`` and the interactive API reference at
``/docs``, whose Swagger UI assets are served by the gateway itself (from the
``swagger-ui-bundle`` package), so the reference works on a machine with no Internet."""

from __future__ import annotations

from html import escape

from fastapi import FastAPI
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles
from swagger_ui_bundle import swagger_ui_path

ASSETS = "/docs/assets"

LANDING = """<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><title>{title}</title></head>
<body>
<h1>{title} {version}</h1>
<p>An HTTP gateway to HPC clusters. Every API route lives under <code>/api/v1</code> and
needs <code>Authorization: Bearer &lt;token&gt;</code> (create one with
<code>hpcgate token create USER</code>).</p>
<ul>
<li><a href="{docs}">Interactive API reference</a> (Swagger UI)</li>
<li><a href="{openapi}">OpenAPI document</a></li>
<li><a href="/api/v1/health">Health</a></li>
</ul>
</body>
</html>
"""


def install(app: FastAPI) -> None:
    """Serve ``/``, ``/docs`` and the assets ``/docs`` loads. The app must be made with
    ``docs_url=None`` and ``redoc_url=None`` (their defaults load from a CDN)."""
    openapi = app.openapi_url or "/openapi.json"
    app.mount(ASSETS, StaticFiles(directory=swagger_ui_path), name="swagger-ui")
    reference = get_swagger_ui_html(
        openapi_url=openapi,
        title=f"{app.title} - API reference",
        swagger_js_url=f"{ASSETS}/swagger-ui-bundle.js",
        swagger_css_url=f"{ASSETS}/swagger-ui.css",
        swagger_favicon_url=f"{ASSETS}/favicon-32x32.png",
    )
    landing = HTMLResponse(
        LANDING.format(
            title=escape(app.title), version=escape(app.version), docs="/docs", openapi=openapi
        )
    )

    async def docs() -> HTMLResponse:
        return reference

    async def home() -> HTMLResponse:
        return landing

    app.add_api_route("/docs", docs, methods=["GET"], include_in_schema=False)
    app.add_api_route("/", home, methods=["GET"], include_in_schema=False)
