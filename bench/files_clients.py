"""The transfers of bench_files.py, each a callable that moves one file once.

``cp``; the gateway's download and upload with httpx, curl and the leanest Python client;
the raw Python receiver of ``bench/raw_receive.py``; and ``scp`` through the test sshd.
Each one that goes through a gateway takes the files prefix of its system, so the same
clients serve the local and the SSH gateway.
"""

from __future__ import annotations

import http.client
import json
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from bench.bench_ssh import RawSsh
from bench.raw_receive import send

MIB = 1 << 20
CHUNK = MIB


def files_prefix(system: str) -> str:
    return f"/api/v1/systems/{system}/files"


FILES = files_prefix("local")


def copy_raw(source: Path, target: Path) -> Callable[[], object]:
    return lambda: subprocess.run(["cp", str(source), str(target)], check=True)


def raw_receive(source: Path, folder: Path) -> Callable[[], object]:
    """The floor of any Python receiver: ``bench/raw_receive.py``'s ``recv`` mode (a fresh
    receiver process, started before the clock runs; it checks the size it got)."""
    return lambda: send("recv", source, folder)


def scp(ssh: RawSsh, local: Path, remote: Path, upload: bool) -> Callable[[], object]:
    return lambda: ssh.copy(local, str(remote), upload)


def download(client: httpx.Client, source: Path, target: Path) -> Callable[[], object]:
    def run() -> None:
        params = {"path": str(source)}
        with (
            client.stream("GET", f"{FILES}/download", params=params) as response,
            target.open("wb", buffering=0) as out,
        ):
            response.raise_for_status()
            for chunk in response.iter_raw(chunk_size=CHUNK):
                out.write(chunk)

    return run


@dataclass
class Curl:
    """The same transfer with curl (C), so the Python client's own cost is left out; the
    token goes in a header file, not on the command line."""

    url: str
    headers: Path
    source: Path
    target: Path
    upload: bool
    prefix: str = FILES
    answers: list[dict[str, object]] = field(default_factory=list)

    def __call__(self) -> None:
        argv = ["curl", "--silent", "--show-error", "--fail", "-H", f"@{self.headers}"]
        if self.upload:
            query = httpx.QueryParams({"path": str(self.target), "overwrite": "true"})
            answer = subprocess.run(
                [*argv, "-T", str(self.source), f"{self.url}{self.prefix}/upload?{query}"],
                check=True,
                capture_output=True,
            )
            self.answers.append(json.loads(answer.stdout))
        else:
            query = httpx.QueryParams({"path": str(self.source)})
            subprocess.run(
                [*argv, "-o", str(self.target), f"{self.url}{self.prefix}/download?{query}"],
                check=True,
            )


@dataclass
class Lean:
    """The leanest Python client: the standard library's http.client, reading into one
    1 MiB buffer and writing it out (download), or handing the file to the kernel with
    ``socket.sendfile`` (upload). It shows the gateway's throughput when the client costs
    as little as a Python client can."""

    url: str
    token: str
    source: Path
    target: Path
    upload: bool
    prefix: str = FILES
    answers: list[dict[str, object]] = field(default_factory=list)

    def __call__(self) -> None:
        address = httpx.URL(self.url)
        connection = http.client.HTTPConnection(address.host, address.port, timeout=600)
        headers = {"Authorization": f"Bearer {self.token}"}
        try:
            if self.upload:
                self._put(connection, headers)
            else:
                self._get(connection, headers)
        finally:
            connection.close()

    def _put(self, connection: http.client.HTTPConnection, headers: dict[str, str]) -> None:
        query = httpx.QueryParams({"path": str(self.target), "overwrite": "true"})
        connection.putrequest("PUT", f"{self.prefix}/upload?{query}")
        for name, value in {**headers, "Content-Length": str(self.source.stat().st_size)}.items():
            connection.putheader(name, value)
        connection.endheaders()
        assert connection.sock is not None
        with self.source.open("rb") as handle:
            connection.sock.sendfile(handle)
        response = connection.getresponse()
        body = response.read()
        if response.status >= 300:
            raise SystemExit(f"lean upload: {response.status} {body!r}")
        answer = json.loads(body)
        self.answers.append(answer if isinstance(answer, dict) else {"size": answer})

    def _get(self, connection: http.client.HTTPConnection, headers: dict[str, str]) -> None:
        query = httpx.QueryParams({"path": str(self.source)})
        connection.request("GET", f"{self.prefix}/download?{query}", headers=headers)
        response = connection.getresponse()
        if response.status != 200:
            raise SystemExit(f"lean download: {response.status} {response.read()!r}")
        buffer = bytearray(CHUNK)
        view = memoryview(buffer)
        with self.target.open("wb", buffering=0) as out:
            while count := response.readinto(buffer):
                out.write(view[:count])


def chunks_of(path: Path) -> Iterator[bytes]:
    with path.open("rb", buffering=0) as handle:
        while chunk := handle.read(CHUNK):
            yield chunk


@dataclass
class Upload:
    client: httpx.Client
    source: Path
    target: Path
    answers: list[dict[str, object]] = field(default_factory=list)

    def __call__(self) -> None:
        params = {"path": str(self.target), "overwrite": "true"}
        headers = {"Content-Length": str(self.source.stat().st_size)}
        response = self.client.put(
            f"{FILES}/upload", params=params, content=chunks_of(self.source), headers=headers
        )
        response.raise_for_status()
        self.answers.append(response.json())
