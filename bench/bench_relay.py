"""SSH stream benchmark: one stream to a replica through hpcgate-forced's relay, against
OpenSSH's own forwarding (``ssh -W``) and the transport's ``direct-tcpip`` channel.

Everything goes through one sshd of the benchmark's own (``scripts/sshd``, with
``AllowTcpForwarding local``) as the functional account ``hpcgate-svc``, with one key whose
``restrict`` is relaxed by ``port-forwarding`` (so all three may run, with the same cipher
and the same login): the replica is an echo server run as a real Slurm job named
``hpcgate-echo-PORT`` (scripts/slurm), so the relay's checks (squeue, scontrol) are the
real ones. ``ssh -W`` runs over a warm master connection (ControlMaster), so like the
transport's streams it opens a channel per run, not a login.

Each run sends ``--size-mib`` MiB and reads the same back at once, then the end both ways;
the figure is payload MiB per second one way, best of ``--runs``, the methods taking turns
in each round so all see the same load. The transport's figures leave out the stream's
opening (timed apart: the relay's includes its scheduler queries); ``ssh -W``'s include
its channel's. The ratios are of the relay to ``ssh -W`` (the issue asks for at least 0.5)
and to direct-tcpip. Needs root (a Slurm job as the account, a key in its
authorized_keys, taken out again afterwards).

Usage, from the repository root:
    .venv/bin/python -m bench.bench_relay [--size-mib 64] [--runs 3]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import pwd
import shlex
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

from anyio.abc import ByteStream

from bench.host import machine
from hpcgate.config import SshConfig
from hpcgate.transports.ssh import SshTransport
from tests.ssh.test_ssh_forced import slurm_association
from tests.support.gateway_process import free_port
from tests.support.replica import replica_job
from tests.support.slurm import ensure_cluster
from tests.support.sshd import FORCED, FUNCTIONAL, Sshd, own_sshd

MIB = 1 << 20
CHUNK = 1 << 18
TARGET_RATIO = 0.5  # the relay against ssh -W
Run = Callable[[bytes], Awaitable[float]]


@contextlib.contextmanager
def forwarding_key(directory: Path) -> Iterator[Path]:
    """A key of the functional account that runs hpcgate-forced and may forward; its line
    is taken out of authorized_keys again at the end."""
    key = directory / "bench-key"
    argv = ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)]
    subprocess.run(argv, check=True, stdin=subprocess.DEVNULL)
    entry = shlex.join(["/usr/bin/python3", "-I", str(FORCED)])
    line = f'restrict,port-forwarding,command="{entry}" {key.with_suffix(".pub").read_text()}'
    authorized = Path(pwd.getpwnam(FUNCTIONAL).pw_dir) / ".ssh" / "authorized_keys"
    with authorized.open("a") as keys:
        keys.write(line)
    try:
        yield key
    finally:
        kept = [old for old in authorized.read_text().splitlines(True) if old != line]
        authorized.write_text("".join(kept))


async def through(stream: ByteStream, data: bytes) -> float:
    """Seconds to send ``data`` and read it all back (then the end both ways)."""
    received = 0

    async def read() -> None:
        nonlocal received
        async for chunk in stream:
            received += len(chunk)

    started = time.perf_counter()
    async with stream:
        reader = asyncio.create_task(read())
        for start in range(0, len(data), CHUNK):
            await stream.send(data[start : start + CHUNK])
        await stream.send_eof()
        await reader
    elapsed = time.perf_counter() - started
    if received != len(data):
        raise AssertionError(f"{received} bytes came back of {len(data)}")
    return elapsed


def transport_run(transport: SshTransport, port: int, opened: list[float]) -> Run:
    async def run(data: bytes) -> float:
        started = time.perf_counter()
        stream = await transport.stream("127.0.0.1", port)
        opened.append(time.perf_counter() - started)
        return await through(stream, data)

    return run


@contextlib.contextmanager
def ssh_master(sshd: Sshd, key: Path, directory: Path) -> Iterator[list[str]]:
    """A warm OpenSSH connection (ControlMaster, no session: the forced command never
    runs), so ``ssh -W`` pays a channel's opening per run, as the transport does, not a
    login; the client argv that uses it."""
    control = ["-o", f"ControlPath={directory}/master.sock"]
    argv = sshd.ssh_argv(FUNCTIONAL, key, *control)
    start = [*argv[:-3], "-o", "ControlMaster=yes", "-o", "ControlPersist=120", "-N", "-f"]
    subprocess.run([*start, *argv[-3:]], check=True, timeout=30, stdin=subprocess.DEVNULL)
    try:
        yield argv
    finally:
        stop = [*argv[:-3], "-O", "exit", *argv[-3:]]
        subprocess.run(stop, capture_output=True, timeout=30)


def ssh_w_run(client: list[str], port: int) -> Run:
    """OpenSSH's ``ssh -W 127.0.0.1:PORT`` over the warm connection, fed and read through
    pipes."""
    argv = [*client[:-3], "-W", f"127.0.0.1:{port}", *client[-3:]]

    async def run(data: bytes) -> float:
        started = time.perf_counter()
        process = await asyncio.create_subprocess_exec(
            *argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        out, err = await process.communicate(data)
        elapsed = time.perf_counter() - started
        if out != data:
            raise AssertionError(f"ssh -W gave back {len(out)} bytes: {err.decode()[-500:]}")
        return elapsed

    return run


def config(sshd: Sshd, key: Path, stream: str) -> SshConfig:
    return SshConfig(
        host=sshd.host,
        port=sshd.port,
        known_hosts=sshd.known_hosts,
        identity="forced",
        key=key,
        user=FUNCTIONAL,
        stream=stream,
    )


async def measure(
    sshd: Sshd, key: Path, client: list[str], port: int, size: int, runs: int
) -> dict[str, object]:
    relay = SshTransport("bench", config(sshd, key, "relay"))
    forward = SshTransport("bench", config(sshd, key, "forward"))
    opened: dict[str, list[float]] = {"relay": [], "direct_tcpip": []}
    methods: dict[str, Run] = {
        "relay": transport_run(relay, port, opened["relay"]),
        "ssh_w": ssh_w_run(client, port),
        "direct_tcpip": transport_run(forward, port, opened["direct_tcpip"]),
    }
    data = os.urandom(size)
    seconds: dict[str, list[float]] = {name: [] for name in methods}
    try:
        for _round in range(runs):
            for name, run in methods.items():
                seconds[name].append(await run(data))
    finally:
        await relay.close()
        await forward.close()
    return summary(seconds, opened, size)


def summary(
    seconds: dict[str, list[float]], opened: dict[str, list[float]], size: int
) -> dict[str, object]:
    rates = {name: round(size / MIB / min(times), 1) for name, times in seconds.items()}
    return {
        "mib_per_s": rates,
        "seconds": {name: [round(t, 3) for t in times] for name, times in seconds.items()},
        "open_ms_best": {name: round(1000 * min(times), 1) for name, times in opened.items()},
        "ratio_relay_to_ssh_w": round(rates["relay"] / rates["ssh_w"], 2),
        "ratio_relay_to_direct_tcpip": round(rates["relay"] / rates["direct_tcpip"], 2),
        "target_ratio": TARGET_RATIO,
    }


def state_dir(directory: Path) -> Path:
    """A directory for the sshd's state (deleted by its ``down --purge``)."""
    (directory / "sshd").mkdir()
    return directory / "sshd"


def main() -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench.bench_relay", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--size-mib", type=int, default=64)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("bench_relay: needs root (a Slurm job as hpcgate-svc, its authorized_keys)")
    ensure_cluster()
    slurm_association(FUNCTIONAL)
    port = free_port()
    results: dict[str, object] = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "size_mib": args.size_mib,
        "runs": args.runs,
    }
    with (
        tempfile.TemporaryDirectory(prefix="hpcgate-bench-relay-") as name,
        own_sshd(state_dir(Path(name)), forwarding=True) as sshd,
        forwarding_key(Path(name)) as key,
        ssh_master(sshd, key, Path(name)) as client,
        replica_job(FUNCTIONAL, port),
    ):
        size = args.size_mib * MIB
        measured = asyncio.run(measure(sshd, key, client, port, size, args.runs))
        results.update(measured)
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
