"""The web interface: server-rendered pages under ``/ui`` over the same domain services,
Principal and scopes as the API (issue 19).

Jinja2 renders every page with autoescape on; htmx (vendored: ``static/htmx-2.0.11.min.js``
from the npm package ``htmx.org`` 2.0.11, sha256 d6fdc75f…f717, its licence beside it) and
our own ``static/app.js`` add the live parts. Nothing loads from elsewhere, and the
Content-Security-Policy allows no inline script or style (:mod:`hpcgate.webui.headers`).
"""
