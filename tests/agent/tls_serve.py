"""``hpcgate serve`` over TLS, for the agent's certificate tests: ``python -m
tests.agent.tls_serve CERT KEY serve --config ... --port ...`` runs the real command with
uvicorn given the certificate and its key (uvicorn's own TLS; the gateway has no option of
its own for it: a site puts its TLS where it likes, often in a reverse proxy)."""

from __future__ import annotations

import functools
import runpy
import sys

import uvicorn


def main() -> None:
    cert, key, *rest = sys.argv[1:]
    uvicorn.run = functools.partial(uvicorn.run, ssl_certfile=cert, ssl_keyfile=key)
    sys.argv = ["hpcgate", *rest]
    runpy.run_module("hpcgate", run_name="__main__")


if __name__ == "__main__":
    main()
