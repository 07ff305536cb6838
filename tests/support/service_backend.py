"""A small real HTTP server that tests start as a service's replica job: it listens on
``$HPCGATE_SERVICE_PORT`` (HTTP/1.1, a thread per connection) and answers

- ``GET /health``: 200 (``HEALTH_FILE``, if set and the file exists: 503 instead);
- ``GET /pid``: its process id and port, as JSON;
- ``GET /path/...``: the request target (path and query) as it came;
- ``POST /echo``: the body back, read as it comes (chunked or with a length);
- ``POST /v1/completions``: an OpenAI-style stream of ``SLOW_EVENTS`` completion chunks,
  ``SLOW_SECONDS`` apart, then (with ``stream_options.include_usage``) a usage-only chunk,
  then ``[DONE]``; for the prompt ``hang`` nothing for a long time, for ``garbage`` bytes
  that are not HTTP;
- ``GET /stream?n=N&delay=S``: N chunks, S seconds apart, chunked;
- ``GET /hang``: nothing, for a long time;
- ``GET /garbage``: bytes that are not HTTP.

With ``NEVER_LISTEN`` set it never opens its port (a backend that fails to start).
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

SLOW_EVENTS = 5
SLOW_SECONDS = 0.2


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: object) -> None:
        sys.stderr.write(f"backend: {format % args}\n")

    def _send(self, status: int, body: bytes, kind: str = "text/plain") -> None:
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _chunk(self, data: bytes) -> None:
        self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
        self.wfile.flush()

    def _start_chunked(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        if url.path == "/health":
            sick = os.environ.get("HEALTH_FILE")
            self._send(503 if sick and os.path.exists(sick) else 200, b"ok")
        elif url.path == "/pid":
            port = os.environ["HPCGATE_SERVICE_PORT"]
            info = {"pid": os.getpid(), "port": int(port), "headers": dict(self.headers)}
            self._send(200, json.dumps(info).encode(), "application/json")
        elif url.path.startswith("/path/"):
            self._send(200, self.path.encode())
        elif url.path == "/stream":
            self._stream(parse_qs(url.query))
        elif url.path == "/hang":
            time.sleep(600)
        elif url.path == "/garbage":
            self.wfile.write(b"this is not HTTP at all\r\n\r\n")
            self.close_connection = True
        else:
            self._send(404, b"no such path")

    def _stream(self, query: dict[str, list[str]]) -> None:
        count = int(query.get("n", ["3"])[0])
        delay = float(query.get("delay", ["0.1"])[0])
        self._start_chunked()
        for index in range(count):
            self._chunk(f"chunk {index} from {os.getpid()} at {time.time():.3f}\n".encode())
            time.sleep(delay)
        self._chunk(b"")

    def do_POST(self) -> None:
        if urlsplit(self.path).path == "/v1/completions":
            self._slow_completion(json.loads(b"".join(self._body())))
            return
        if urlsplit(self.path).path != "/echo":
            for _ in self._body():  # read it all: the connection is kept for the next request
                pass
            self._send(404, b"no such path")
            return
        self._start_chunked()
        for piece in self._body():
            self._chunk(piece)
        self._chunk(b"")

    def _slow_completion(self, request: dict[str, object]) -> None:
        if request.get("prompt") == "hang":
            time.sleep(600)
            return
        if request.get("prompt") == "garbage":
            self.wfile.write(b"this is not HTTP at all\r\n\r\n")
            self.close_connection = True
            return
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        for index in range(SLOW_EVENTS):
            chunk = {"object": "text_completion", "choices": [{"index": 0, "text": f"{index} "}]}
            self._chunk(f"data: {json.dumps(chunk)}\n\n".encode())
            time.sleep(SLOW_SECONDS)
        options = request.get("stream_options")
        if isinstance(options, dict) and options.get("include_usage"):
            usage = {"prompt_tokens": 1, "completion_tokens": SLOW_EVENTS}
            self._chunk(f"data: {json.dumps({'choices': [], 'usage': usage})}\n\n".encode())
        self._chunk(b"data: [DONE]\n\n")
        self._chunk(b"")

    def _body(self) -> Iterator[bytes]:
        length = self.headers.get("Content-Length")
        if length is not None:
            yield self.rfile.read(int(length))
            return
        while size := int(self.rfile.readline().strip() or b"0", 16):
            yield self.rfile.read(size)
            self.rfile.readline()
        self.rfile.readline()


def main() -> None:
    port = int(os.environ["HPCGATE_SERVICE_PORT"])
    print(f"backend pid {os.getpid()} on port {port}", file=sys.stderr, flush=True)
    if os.environ.get("NEVER_LISTEN"):
        time.sleep(3600)
        return
    ThreadingHTTPServer.daemon_threads = True
    ThreadingHTTPServer(("127.0.0.1", port), Handler).serve_forever()


if __name__ == "__main__":
    main()
