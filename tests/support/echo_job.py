"""A TCP echo server to run as a job (``python3 echo_job.py PORT [hold]``), standard
library only: each connection gets back what it sends, and its write half is closed once
the client has closed its own (a half-close both ways), or with ``hold`` never (a server
that keeps its side open). Listens on all addresses, as a service on a compute node
would."""

from __future__ import annotations

import socket
import socketserver
import sys
import threading

BUFFER = 1 << 18


class Echo(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        connection: socket.socket = self.request
        while chunk := connection.recv(BUFFER):
            connection.sendall(chunk)
        if sys.argv[2:] == ["hold"]:
            threading.Event().wait()
        connection.shutdown(socket.SHUT_WR)


class Server(socketserver.ThreadingTCPServer):
    allow_reuse_address = True
    daemon_threads = True


def main() -> None:
    with Server(("0.0.0.0", int(sys.argv[1])), Echo) as server:  # noqa: S104 - a node's service
        server.serve_forever()


if __name__ == "__main__":
    main()
