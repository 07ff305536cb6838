"""A small real HTTP server that tests start as a service's replica job, to see what an app
host passes each way. It listens on ``$HPCGATE_SERVICE_PORT`` and answers

- ``GET /health``: 200;
- ``GET /away``: a redirect to an absolute URL on its own address (``Host`` as it came);
- any other request: its method, target, headers and body as JSON, with cookies that try
  to reach past its own host (``Domain=``) or to replace the app host's own cookie.
"""

from __future__ import annotations

import json
import os
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

COOKIES = (
    "app=1; Domain=apps.localhost; Path=/",
    "hpcgate_app=forged; Path=/",
    "plain=2; Path=/; HttpOnly",
)


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: object) -> None:
        sys.stderr.write(f"backend: {format % args}\n")

    def _answer(self) -> None:
        if self.path == "/health":
            self._send(200, [], b"ok")
            return
        if self.path == "/away":
            self._send(302, [("Location", f"http://{self.headers['Host']}/there")], b"")
            return
        length = int(self.headers.get("Content-Length") or 0)
        seen = {
            "method": self.command,
            "target": self.path,
            "headers": [[k.lower(), v] for k, v in self.headers.items()],
            "body": self.rfile.read(length).decode(errors="replace"),
        }
        self._send(200, [("Set-Cookie", c) for c in COOKIES], json.dumps(seen).encode())

    do_GET = do_POST = do_PUT = do_DELETE = _answer

    def _send(self, status: int, headers: list[tuple[str, str]], body: bytes) -> None:
        self.send_response(status)
        for name, value in headers:
            self.send_header(name, value)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def main() -> None:
    port = int(os.environ["HPCGATE_SERVICE_PORT"])
    ThreadingHTTPServer(("127.0.0.1", port), Handler).serve_forever()


if __name__ == "__main__":
    main()
