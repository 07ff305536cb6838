"""How fast can this machine take an upload over loopback TCP, with no HTTP at all?

An experiment for issue 4's open design decision (a data path outside the ASGI server):
the client sends a file with ``socket.sendfile`` to a receiver in another process, which
writes what arrives to a file, in one of three ways, each timed against ``cp`` of the same
file in the same round:

- ``recv``: ``recv_into`` a 1 MiB buffer and ``write`` it (what a Python receiver does);
- ``splice``: ``os.splice`` from the socket into a pipe and from the pipe into the file,
  so the bytes never enter user space;
- ``recv+sha256``: as ``recv``, hashing each buffer too (a checksum verified on arrival).

No HTTP, no authentication, no checks: an upper bound for any receiver written in Python on
this machine, not a design. Prints one JSON object.

Usage, from the repository root (or ``python bench/raw_receive.py``: it needs nothing else):
    python -m bench.raw_receive [--size-mib 1024] [--rounds 5] [--dir DIR]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BUFFER = 1 << 20
PIPE = 1 << 20


def receive(mode: str, port_file: str, target: str) -> None:
    """The receiving process: accept one connection, write it all to ``target``."""
    with socket.create_server(("127.0.0.1", 0)) as server:
        Path(port_file).write_text(str(server.getsockname()[1]))
        connection, _ = server.accept()
        with connection, open(target, "wb", buffering=0) as out:
            if mode == "splice":
                _splice(connection, out.fileno())
            else:
                _recv(connection, out, hashed=mode == "recv+sha256")


def _recv(connection: socket.socket, out: object, hashed: bool) -> None:
    buffer = bytearray(BUFFER)
    view = memoryview(buffer)
    digest = hashlib.sha256()
    while count := connection.recv_into(buffer):
        if hashed:
            digest.update(view[:count])
        written = 0
        while written < count:
            written += out.write(view[written:count])  # type: ignore[attr-defined]


def _splice(connection: socket.socket, fd: int) -> None:
    read_end, write_end = os.pipe()
    try:
        import fcntl

        fcntl.fcntl(write_end, 1031, PIPE)  # F_SETPIPE_SZ
        while moved := os.splice(connection.fileno(), write_end, PIPE):
            while moved:
                moved -= os.splice(read_end, fd, moved)
    finally:
        os.close(read_end)
        os.close(write_end)


def send(mode: str, source: Path, folder: Path) -> float:
    """Seconds to send ``source`` to a fresh receiver until it has written it all."""
    port_file, target = folder / "port", folder / f"received-{mode}"
    port_file.unlink(missing_ok=True)
    receiver = subprocess.Popen(
        [sys.executable, __file__, "--receive", mode, str(port_file), str(target)]
    )
    while not port_file.exists() or not port_file.read_text():
        time.sleep(0.005)
    port = int(port_file.read_text())
    start = time.perf_counter()
    with socket.create_connection(("127.0.0.1", port)) as sock, source.open("rb") as handle:
        sock.sendfile(handle)
    receiver.wait()
    took = time.perf_counter() - start
    assert target.stat().st_size == source.stat().st_size
    target.unlink()
    return took


def copy(source: Path, folder: Path) -> float:
    target = folder / "copied"
    start = time.perf_counter()
    subprocess.run(["cp", str(source), str(target)], check=True)
    took = time.perf_counter() - start
    target.unlink()
    return took


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--receive":
        receive(*sys.argv[2:5])
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--dir", default=os.environ.get("HOME", "/tmp"))
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="hpcgate-raw-", dir=args.dir))
    try:
        source = folder / "source"
        with source.open("wb") as out:
            for _ in range(args.size_mib):
                out.write(os.urandom(1 << 20))
        modes = ["recv", "splice", "recv+sha256"]
        speeds: dict[str, list[float]] = {name: [] for name in ["cp", *modes]}
        ratios: dict[str, list[float]] = {name: [] for name in modes}
        for _ in range(args.rounds + 1):  # the first round is not counted
            cp = args.size_mib / copy(source, folder)
            taken = {mode: args.size_mib / send(mode, source, folder) for mode in modes}
            speeds["cp"].append(cp)
            for mode, speed in taken.items():
                speeds[mode].append(speed)
                ratios[mode].append(speed / cp)
        print(
            json.dumps(
                {
                    "size_mib": args.size_mib,
                    "rounds": args.rounds,
                    "mib_per_s_median": {
                        k: round(statistics.median(v[1:])) for k, v in speeds.items()
                    },
                    "ratio_to_cp_median": {
                        k: round(statistics.median(v[1:]), 2) for k, v in ratios.items()
                    },
                    "ratio_to_cp_all": {k: [round(x, 2) for x in v[1:]] for k, v in ratios.items()},
                },
                indent=2,
            )
        )
    finally:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
