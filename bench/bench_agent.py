"""The agent transport against the local transport and the raw thing, on this machine, in
one run (issue 17's Performance section): the transport seam measured directly, without
the HTTP routes in front (they are the same for every transport).

A real ``hpcgate-agent`` process (``scheduler = "slurm"``, so ``squeue`` is its command)
dials a WebSocket server of this process that plays the gateway's part with the gateway's
own :class:`~hpcgate.transports.agent_hub.AgentLink` and
:class:`~hpcgate.transports.agent.AgentTransport`; the local transport is
:class:`~hpcgate.transports.local.LocalTransport` in this same process. Measured:

- command round trip, p50 and p99: ``squeue -h -o %i`` as a subprocess, through the local
  transport, through the agent (the issue: agent ≤ local + 2 ms p50);
- many in flight: ``--concurrent`` (1,000) file ``size`` requests at once through the
  agent, and the same through the local transport;
- a ``--size-mib`` (256) file written and read back through each transport's open file
  (1 MiB pieces, as the files service moves them), against ``cp`` of the same file
  (the issue: agent ≥ 50 % of local);
- one byte stream: ``--size-mib`` from a TCP server (another process) through the
  agent's stream, a direct TCP connection (the local transport's stream) and a raw socket;
- downloads compared fairly: the same ``--size-mib`` file through a real gateway's HTTP
  download route, from a system on the local transport and from one served by a real
  agent (the raw open-file figures above set a page-cache copy against the agent's whole
  path; here both pay the route, the HTTP body and the client); the agent's both ways,
  on its data connection (``bulk_reads``) and as WebSocket frames, ``--http-rounds``
  times in alternating order, with the gateway's, the agent's and the client's CPU seconds
  a GiB (``--profile DIR``: py-spy on the gateway during each agent download). The client
  is curl writing to /dev/null (``--client curl``, as ``bench.py``'s load comes from wrk):
  the agent's path runs three processes on this machine's cores, and a Python client
  (``--client httpx``, 0.25-0.3 CPU s/GiB here against curl's 0.1) takes its share of
  them from the gateway and the agent. The stand-in gateway above offers no data
  connection: its open-file figures are the frames'.

Needs Slurm up (``scripts/slurm up``) and root (the agent runs as root, as at a site).
``python -m bench.bench_agent [--size-mib 256] [--rounds 200] [--concurrent 1000]
[--only-http] [--http-rounds 1] [--profile DIR] [--client curl|httpx]``
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from multiprocessing import Process
from pathlib import Path

import anyio
import httpx
from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed

from bench.host import machine
from hpcgate.agentwire import codec
from hpcgate.agentwire import messages as m
from hpcgate.agentwire.frames import Kind, control, decode, fields
from hpcgate.model.commands import Command
from hpcgate.transports.agent import AgentTransport
from hpcgate.transports.agent_hub import AgentHub, AgentLink
from hpcgate.transports.local import LocalTransport
from tests.support.accounts import give
from tests.support.agent_process import AgentProcess
from tests.support.gateway_process import cli, new_gateway

PIECE = 1 << 20
SQUEUE = ("squeue", "-h", "-o", "%i")


class BenchGateway:
    """The gateway's part of the agent's connection: HELLO, WELCOME, then an AgentLink fed
    every frame, registered in ``hub`` as system ``edge``."""

    def __init__(self) -> None:
        self.hub = AgentHub()
        self.linked = asyncio.Event()

    async def handler(self, connection: ServerConnection) -> None:
        hello = codec.decode(fields(decode(await connection.recv(decode=False))), m.Hello)
        link = AgentLink(hello, "bench", connection.send)
        await link.send(control(Kind.WELCOME, 0, {"epoch": self.hub.epoch}))
        self.hub.add("edge", link)
        self.linked.set()
        try:
            while True:
                await link.deliver(decode(await connection.recv(decode=False)))
        except ConnectionClosed:
            pass
        finally:
            self.hub.remove("edge", link)
            link.broken("closed")


def quantiles(samples: list[float]) -> tuple[float, float]:
    """p50 and p99 in milliseconds."""
    ordered = sorted(samples)
    return (
        statistics.median(ordered) * 1000,
        ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1000,
    )


async def timed(rounds: int, call: Callable[[], Awaitable[object]]) -> tuple[float, float]:
    samples = []
    for _ in range(rounds):
        started = time.perf_counter()
        await call()
        samples.append(time.perf_counter() - started)
    return quantiles(samples)


async def raw_squeue() -> None:
    await anyio.to_thread.run_sync(lambda: subprocess.run(SQUEUE, capture_output=True, check=True))


async def round_trips(agent: AgentTransport, local: LocalTransport, rounds: int) -> list[str]:
    command = Command(SQUEUE)
    for warm in (raw_squeue(), local.run(command, 30), agent.run(command, 30)):
        await warm
    rows = {
        "squeue, a subprocess": await timed(rounds, raw_squeue),
        "squeue, local transport": await timed(rounds, lambda: local.run(command, 30)),
        "squeue, agent transport": await timed(rounds, lambda: agent.run(command, 30)),
    }
    local_p50, agent_p50 = rows["squeue, local transport"][0], rows["squeue, agent transport"][0]
    lines = [f"| {name} | {p50:.2f} ms | {p99:.2f} ms |" for name, (p50, p99) in rows.items()]
    lines.append(f"| agent - local, p50 (target ≤ +2 ms) | {agent_p50 - local_p50:+.2f} ms | |")
    return lines


async def in_flight(
    agent: AgentTransport, local: LocalTransport, path: str, count: int
) -> list[str]:
    lines = []
    for name, files in (("local", local.files()), ("agent", agent.files())):
        failures = 0

        async def one(files: object = files) -> None:
            nonlocal failures
            try:
                await files.size(path)  # type: ignore[attr-defined]
            except Exception:
                failures += 1

        started = time.perf_counter()
        async with anyio.create_task_group() as tasks:
            for _ in range(count):
                tasks.start_soon(one)
        took = time.perf_counter() - started
        lines.append(
            f"| {count} `size` requests at once, {name} | {took * 1000:.0f} ms"
            f" | {count / took:,.0f}/s | {failures} failed |"
        )
    return lines


async def copy_through(
    transport: AgentTransport | LocalTransport, source: Path, target: Path
) -> tuple[float, float]:
    """MiB/s writing ``source``'s bytes to ``target`` and reading them back."""
    files = transport.files()
    data = await anyio.Path(source).read_bytes()
    started = time.perf_counter()
    opened = await files.open_new(str(target))
    for start in range(0, len(data), PIECE):
        await opened.write(data[start : start + PIECE])
    await opened.close()
    upload = len(data) / (time.perf_counter() - started) / 2**20
    started = time.perf_counter()
    opened = await files.open_read(str(target))
    offset, got = 0, 0
    while chunk := await opened.read(offset, PIECE):
        offset += len(chunk)
        got += len(chunk)
    await opened.close()
    download = len(data) / (time.perf_counter() - started) / 2**20
    assert got == len(data), (got, len(data))
    await anyio.Path(target).unlink()
    return upload, download


def cp_rate(source: Path, target: Path) -> float:
    started = time.perf_counter()
    subprocess.run(["cp", str(source), str(target)], check=True)
    took = time.perf_counter() - started
    target.unlink()
    return source.stat().st_size / took / 2**20


def flood_server(port: int, size: int) -> None:
    """A TCP server (its own process) that sends ``size`` bytes to each connection."""
    block = os.urandom(PIECE)
    with socket.create_server(("127.0.0.1", port)) as server:
        while True:
            connection, _ = server.accept()
            with connection:
                connection.recv(16)
                for _ in range(size // PIECE):
                    connection.sendall(block)


async def drain(stream_of: Callable[[], Awaitable[object]], size: int) -> float:
    """MiB/s reading ``size`` bytes from a new stream."""
    stream = await stream_of()
    started = time.perf_counter()
    await stream.send(b"go")  # type: ignore[attr-defined]
    got = 0
    while got < size:
        got += len(await stream.receive(1 << 20))  # type: ignore[attr-defined]
    took = time.perf_counter() - started
    await stream.aclose()  # type: ignore[attr-defined]
    return size / took / 2**20


def raw_stream(port: int, size: int) -> float:
    with socket.create_connection(("127.0.0.1", port)) as sock:
        started = time.perf_counter()
        sock.sendall(b"go")
        got = 0
        while got < size:
            got += len(sock.recv(1 << 20))
        return size / (time.perf_counter() - started) / 2**20


def free_stream_port() -> int:
    """A free port of the agent's default stream_ports."""
    for port in range(24000, 39999):
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port")


async def run(args: argparse.Namespace, work: Path) -> list[str]:
    gateway = BenchGateway()
    size = args.size_mib << 20
    async with serve(gateway.handler, "127.0.0.1", 0, max_size=None) as server:
        port = server.sockets[0].getsockname()[1]
        agent_process = AgentProcess(
            work / "agent",
            f"ws://127.0.0.1:{port}",
            "bench",
            (str(work),),
            work / "spool",
            scheduler="slurm",
        )
        agent_process.start()
        local = LocalTransport()
        try:
            with anyio.fail_after(60):
                await gateway.linked.wait()
            agent = AgentTransport("edge", gateway.hub)
            out = ["| measure | p50 | p99 |", "|---|---|---|"]
            out += await round_trips(agent, local, args.rounds)
            out += ["", "| many in flight | wall | rate | failed |", "|---|---|---|---|"]
            (work / "small").write_bytes(b"x")
            out += await in_flight(agent, local, str(work / "small"), args.concurrent)
            source = work / "source.bin"
            with source.open("wb") as f:
                for _ in range(args.size_mib):
                    f.write(os.urandom(PIECE))
            cp = cp_rate(source, work / "cp.bin")
            up_local, down_local = await copy_through(local, source, work / "local.bin")
            up_agent, down_agent = await copy_through(agent, source, work / "agent.bin")
            out += [
                "",
                f"| {args.size_mib} MiB file | write (upload) | read (download) |",
                "|---|---|---|",
                f"| `cp` (one copy: read and write) | {cp:.0f} MiB/s | |",
                f"| local transport | {up_local:.0f} MiB/s | {down_local:.0f} MiB/s |",
                f"| agent transport | {up_agent:.0f} MiB/s | {down_agent:.0f} MiB/s |",
                f"| agent / local (target ≥ 0.5) | {up_agent / up_local:.2f}"
                f" | {down_agent / down_local:.2f} |",
            ]
            stream_port = free_stream_port()
            flood = Process(target=flood_server, args=(stream_port, size), daemon=True)
            flood.start()
            await anyio.sleep(0.5)  # until it listens
            raw = await anyio.to_thread.run_sync(raw_stream, stream_port, size)
            direct = await drain(lambda: local.stream("127.0.0.1", stream_port), size)
            through = await drain(lambda: agent.stream("127.0.0.1", stream_port), size)
            flood.kill()
            out += [
                "",
                f"| one stream, {args.size_mib} MiB | MiB/s | of raw |",
                "|---|---|---|",
                f"| raw socket | {raw:.0f} | 1.00 |",
                f"| local transport (TCP from this process) | {direct:.0f} | {direct / raw:.2f} |",
                f"| agent transport | {through:.0f} | {through / raw:.2f} |",
            ]
            return out
        finally:
            await local.close()
            agent_process.stop()


MODES = {"bulk": "", "frames": "bulk_reads = false\n"}  # the agent's download paths


def http_downloads(
    work: Path,
    size_mib: int,
    rounds: int = 1,
    profile: Path | None = None,
    client: str = "curl",
) -> list[str]:
    """MiB/s of downloads of the same file through the gateway's route, per system, and
    the CPU seconds a GiB the gateway, the agent and the client spent on each; the agent's
    system both ways (``bulk``: its data connection, ``frames``: WebSocket DATA frames, as
    an agent without the feature), ``rounds`` times in alternating order. ``client``:
    ``curl`` (C, to /dev/null) or ``httpx`` (this process). ``profile``: a py-spy flame
    graph of the gateway during each agent download, in that folder."""
    home = work / "http"
    (home / "alice").mkdir(parents=True)
    give(home / "alice", "alice")
    big = home / "alice" / "big.bin"
    with big.open("wb") as f:
        for _ in range(size_mib):
            f.write(os.urandom(PIECE))
    give(big, "alice")
    systems = "".join(
        f'\n[systems.{name}]\nscheduler = "embedded"\nroots = ["{home}/{{user}}"]\n'
        f'spool = "{home}/spool-{name}"\n{extra}'
        for name, extra in (("local", ""), ("edge", 'transport = "agent"\n'))
    )
    gateway = new_gateway(home / "gateway-home", systems)
    gateway.start_seconds = 120
    gateway.start()
    assert gateway.process is not None
    token = cli(gateway.home, "agent-token", "create", "edge").stdout.strip().splitlines()[-1]
    seen: dict[str, list[Measured]] = {"local": [], **{k: [] for k in MODES}}
    download = DOWNLOADERS[client]
    try:
        with gateway.client(gateway.token("alice")) as alice:
            alice.timeout = httpx.Timeout(600)
            for turn in range(rounds):
                seen["local"].append(
                    _measured(alice, download, "local", size_mib, gateway.process.pid)
                )
                modes = list(MODES) if turn % 2 == 0 else list(reversed(MODES))
                for mode in modes:
                    agent = AgentProcess(home / f"agent-{mode}", gateway.url, token,
                                         (f"{home}/{{user}}",), home / "spool-edge",
                                         extra=MODES[mode])  # fmt: skip
                    agent.start()
                    try:
                        spy = _spy(gateway.process.pid, profile, f"{mode}-{turn}")
                        found = _measured(
                            alice, download, "edge", size_mib, gateway.process.pid, agent
                        )
                        seen[mode].append(found)
                        if spy is not None:
                            spy.send_signal(signal.SIGINT)
                            spy.wait(60)
                    finally:
                        agent.stop()
                    _gone(alice)
    finally:
        gateway.stop()
    return _download_table(size_mib, seen, client)


def _download_table(size_mib: int, seen: dict[str, list[Measured]], client: str) -> list[str]:
    median = {
        name: tuple(statistics.median(run[i] for run in runs) for i in range(4))
        for name, runs in seen.items()
    }
    local = median["local"][0]
    out = [
        "",
        f"| {size_mib} MiB through `GET .../files/download` ({client}), median of"
        f" {len(seen['local'])} | MiB/s | of local (target ≥ 0.5) | gateway CPU s/GiB"
        " | agent CPU s/GiB | client CPU s/GiB |",
        "|---|---|---|---|---|---|",
    ]
    labels = {
        "local": "local transport system",
        "bulk": "agent system, data connection (bulk_reads)",
        "frames": "agent system, WebSocket frames (bulk_reads = false)",
    }
    for name, label in labels.items():
        rate, gateway_cpu, agent_cpu, client_cpu = median[name]
        agent_text = f"{agent_cpu:.2f}" if name != "local" else "-"
        out.append(
            f"| {label} | {rate:.0f} | {rate / local:.2f} | {gateway_cpu:.2f} | {agent_text}"
            f" | {client_cpu:.2f} |"
        )
    out.append("")
    out.append("each run (MiB/s): " + "; ".join(
        f"{name} " + ", ".join(f"{run[0]:.0f}" for run in runs) for name, runs in seen.items()
    ))  # fmt: skip
    return out


def _cpu(pid: int) -> float:
    """CPU seconds (user + system) process ``pid`` has used."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _spy(pid: int, folder: Path | None, name: str) -> subprocess.Popen[bytes] | None:
    if folder is None:
        return None
    folder.mkdir(parents=True, exist_ok=True)
    argv = ["py-spy", "record", "--pid", str(pid), "--rate", "1000", "--format", "raw",
            "--output", str(folder / f"{name}.txt"), "--nonblocking"]  # fmt: skip
    spy = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(1.0)  # attached
    return spy


def _gone(client: httpx.Client) -> None:
    """Wait until the stopped agent's system is no longer served (the next one's turn)."""
    deadline = time.monotonic() + 30
    while client.get("/api/v1/systems/edge").json().get("agents") and time.monotonic() < deadline:
        time.sleep(0.1)


Measured = tuple[float, float, float, float]  # MiB/s; gateway, agent, client CPU s/GiB
Download = Callable[[httpx.Client, str, int], tuple[float, float]]


def _measured(
    client: httpx.Client,
    download: Download,
    system: str,
    size_mib: int,
    gateway: int,
    agent: AgentProcess | None = None,
) -> Measured:
    """MiB/s of one download, and the gateway's, the agent's and the client's CPU s/GiB
    in it."""
    _served(client, system)
    agent_pid = agent.process.pid if agent is not None and agent.process is not None else None
    before = (_cpu(gateway), _cpu(agent_pid) if agent_pid else 0.0)
    rate, client_cpu = download(client, system, size_mib)
    after = (_cpu(gateway), _cpu(agent_pid) if agent_pid else 0.0)
    per_gib = 1024 / size_mib
    gateway_cpu, agent_cpu = (after[0] - before[0]) * per_gib, (after[1] - before[1]) * per_gib
    return rate, gateway_cpu, agent_cpu, client_cpu * per_gib


def _served(client: httpx.Client, system: str) -> None:
    deadline = time.monotonic() + 60
    while client.get(f"/api/v1/systems/{system}/files/ls", params={"path": "."}).status_code != 200:
        assert time.monotonic() < deadline, f"{system} never served"
        time.sleep(0.2)


def _download_httpx(client: httpx.Client, system: str, size_mib: int) -> tuple[float, float]:
    """One download read by httpx in this process: MiB/s and this process's CPU seconds."""
    url = f"/api/v1/systems/{system}/files/download"
    cpu, started, got = time.process_time(), time.perf_counter(), 0
    with client.stream("GET", url, params={"path": "big.bin"}) as answer:
        assert answer.status_code == 200, answer.read()
        for chunk in answer.iter_bytes():
            got += len(chunk)
    assert got == size_mib << 20, got
    return got / (time.perf_counter() - started) / 2**20, time.process_time() - cpu


def _download_curl(client: httpx.Client, system: str, size_mib: int) -> tuple[float, float]:
    """One download read by curl into /dev/null (as bench.py's load comes from wrk: a C
    client, so the client's own cost is small beside the gateway's): MiB/s by curl's own
    clock, and curl's CPU seconds."""
    base = str(client.base_url).rstrip("/")
    url = f"{base}/api/v1/systems/{system}/files/download?path=big.bin"
    config = f'header = "Authorization: {client.headers["authorization"]}"\n'
    argv = ["curl", "--silent", "--show-error", "--fail", "--config", "-", "--output",
            os.devnull, "--write-out", "%{size_download} %{time_total}", url]  # fmt: skip
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    done = subprocess.run(argv, input=config, capture_output=True, text=True, check=True)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    size, seconds = done.stdout.split()
    assert int(size) == size_mib << 20, done.stdout
    cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    return int(size) / float(seconds) / 2**20, cpu


DOWNLOADERS: dict[str, Download] = {"curl": _download_curl, "httpx": _download_httpx}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mib", type=int, default=256)
    parser.add_argument("--rounds", type=int, default=200)
    parser.add_argument("--concurrent", type=int, default=1000)
    parser.add_argument("--dir", type=Path, default=None, help="where the files go")
    parser.add_argument("--only-http", action="store_true", help="only the HTTP downloads")
    parser.add_argument("--http-rounds", type=int, default=1, help="downloads of each kind")
    parser.add_argument("--profile", type=Path, default=None, help="py-spy the gateway here")
    parser.add_argument(
        "--client", choices=sorted(DOWNLOADERS), default="curl", help="the downloads' reader"
    )
    args = parser.parse_args()
    if shutil.which("squeue") is None:
        sys.exit("bench_agent: needs Slurm (scripts/slurm up)")
    start_load = os.getloadavg()
    began = time.strftime("%Y-%m-%d %H:%M", time.gmtime())
    with tempfile.TemporaryDirectory(dir=args.dir) as folder:
        work = Path(folder)
        work.chmod(0o755)
        lines = [] if args.only_http else asyncio.run(run(args, work))
        lines += http_downloads(work, args.size_mib, args.http_rounds, args.profile, args.client)
    end_load = os.getloadavg()
    print(f"{began} UTC, {machine()}")
    print(f"load average (1, 5, 15 min) at start {start_load}, at end {end_load}")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
