"""hpcgate file-transfer benchmark: download and upload throughput against ``cp``.

Starts a real gateway (SQLite, embedded scheduler, single-user) whose system ``local`` has
its roots in a temporary directory, writes a source file of ``--size-mib`` MiB there, and
measures on this machine, one after the other in each round, so all see the same load:

* ``cp src dst`` (the raw copy, a subprocess);
* a download through the gateway (``GET files/download``), streamed by httpx to a file;
* an upload through the gateway (``PUT files/upload?overwrite=true``), the body streamed
  by httpx from the file in 1 MiB chunks;
* the same download and upload with the leanest Python client (``http.client``,
  ``readinto`` and ``socket.sendfile``), which shows what the gateway itself can do;
* in single-user mode, the lean client against ``bench/bare_asgi.py`` (an ASGI app that
  only streams bytes, under the same uvicorn): the floor of the server stack;
* if curl is installed, the same download and upload with curl: a client in C, so the
  figures show what the gateway itself can do without the Python client's cost.

Everything is on the same filesystem and nobody syncs: all read the source from the page
cache and leave their copy as dirty pages, so this measures the copying, not the disk.
Before each transfer every earlier copy is deleted, so each starts with only the source in
the cache; one unmeasured round (``--warmup``) comes first.
Sizes are checked after every transfer and the sha256 of each result at least once, so a
transfer cannot "win" by moving nothing. The gateway's resident memory (VmRSS) is sampled
every 50 ms during each transfer, to show that it does not grow with the file.

With ``--multi-user`` (as root, with a user ``alice`` and the test Slurm cluster of
``scripts/slurm up`` answering ``scontrol ping``) the same runs are made a second time
against a gateway in multi-user mode on the Slurm system, as alice, in alice's home: there
the files are opened by alice's file helper and the descriptors passed to the gateway.

Usage, from the repository root:
    .venv/bin/python -m bench.bench_files [--size-mib 1024] [--runs 5] [--warmup 1]
        [--multi-user] [--dir D]
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import http.client
import json
import os
import pwd
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import httpx

from bench.host import machine
from tests.support.gateway_process import GatewayProcess, new_gateway

ROOT = Path(__file__).resolve().parents[1]  # where ``bench.bare_asgi`` is found
MIB = 1 << 20
BLOCK = 64 * MIB
CHUNK = MIB
SAMPLE_SECONDS = 0.05
TARGET_RATIO = 0.8
MULTI_USER = "alice"
FILES = "/api/v1/systems/local/files"

SINGLE_CONFIG = """
[systems.local]
scheduler = "embedded"
status_interval = 1.0
slots = 1
roots = [{root}]

[users]
mode = "single"
"""
MULTI_CONFIG = """
[systems.local]
scheduler = "slurm"
status_interval = 1.0
roots = ["{home}"]

[users]
mode = "multi"
"""


def write_source(path: Path, size: int) -> None:
    """``size`` bytes that do not compress: one random 64 MiB block, repeated."""
    block = os.urandom(min(BLOCK, size))
    with path.open("wb", buffering=0) as out:
        left = size
        while left > 0:
            left -= out.write(block[: min(len(block), left)])


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb", buffering=0) as handle:
        while chunk := handle.read(8 * MIB):
            digest.update(chunk)
    return digest.hexdigest()


def rss_kib(pid: int, field_name: str = "VmRSS") -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field_name + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"no {field_name} for process {pid}")


@dataclass
class RssSampler:
    """The peak VmRSS of a process, sampled in a thread while a ``with`` block runs."""

    pid: int
    before_kib: int = 0
    peak_kib: int = 0
    samples: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def __enter__(self) -> RssSampler:
        self.before_kib = self.peak_kib = rss_kib(self.pid)
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.wait(SAMPLE_SECONDS):
            self.peak_kib = max(self.peak_kib, rss_kib(self.pid))
            self.samples += 1

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        assert self._thread is not None
        self._thread.join()
        self.peak_kib = max(self.peak_kib, rss_kib(self.pid))


@dataclass
class Transfer:
    seconds: float
    rss_before_kib: int
    rss_peak_kib: int
    samples: int


def transfer(pid: int, action: Callable[[], object]) -> Transfer:
    with RssSampler(pid) as rss:
        start = time.perf_counter()
        action()
        seconds = time.perf_counter() - start
    return Transfer(seconds, rss.before_kib, rss.peak_kib, rss.samples)


def copy_raw(source: Path, target: Path) -> Callable[[], object]:
    return lambda: subprocess.run(["cp", str(source), str(target)], check=True)


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
    answers: list[dict[str, object]] = field(default_factory=list)

    def __call__(self) -> None:
        argv = ["curl", "--silent", "--show-error", "--fail", "-H", f"@{self.headers}"]
        if self.upload:
            query = httpx.QueryParams({"path": str(self.target), "overwrite": "true"})
            answer = subprocess.run(
                [*argv, "-T", str(self.source), f"{self.url}{FILES}/upload?{query}"],
                check=True,
                capture_output=True,
            )
            self.answers.append(json.loads(answer.stdout))
        else:
            query = httpx.QueryParams({"path": str(self.source)})
            subprocess.run(
                [*argv, "-o", str(self.target), f"{self.url}{FILES}/download?{query}"],
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


def check_size(path: Path, size: int, what: str) -> None:
    found = path.stat().st_size
    if found != size:
        raise SystemExit(f"{what}: {found} bytes at {path}, not {size}")


@dataclass
class Rates:
    """MiB/s over the runs."""

    runs: list[float]

    @property
    def best(self) -> float:
        return max(self.runs)

    @property
    def median(self) -> float:
        return statistics.median(self.runs)

    def report(self) -> dict[str, object]:
        return {
            "best_mib_s": round(self.best, 1),
            "median_mib_s": round(self.median, 1),
            "runs_mib_s": [round(r, 1) for r in self.runs],
        }


def memory(transfers: list[Transfer]) -> dict[str, object]:
    return {
        "rss_before_mib": [round(t.rss_before_kib / 1024, 1) for t in transfers],
        "rss_peak_mib": [round(t.rss_peak_kib / 1024, 1) for t in transfers],
        "max_growth_mib": round(
            max(t.rss_peak_kib - t.rss_before_kib for t in transfers) / 1024, 1
        ),
        "samples": [t.samples for t in transfers],
    }


def _steps(
    server: GatewayProcess,
    client: httpx.Client,
    token: str,
    workdir: Path,
    bare_url: str | None,
) -> tuple[dict[str, tuple[Callable[[], object], Path]], list[Upload | Curl | Lean]]:
    """Each transfer of a round, by name, with the file it makes; and the uploads among
    them whose answers carry the gateway's sha256."""
    source = workdir / "source.bin"

    def out(name: str) -> Path:
        return workdir / f"{name}.bin"

    upload = Upload(client, source, out("up"))
    lean_up = Lean(server.url, token, source, out("lean-up"), upload=True)
    steps: dict[str, tuple[Callable[[], object], Path]] = {
        "cp": (copy_raw(source, out("cp")), out("cp")),
        "download": (download(client, source, out("down")), out("down")),
        "upload": (upload, out("up")),
        "download_lean": (
            Lean(server.url, token, source, out("lean-down"), upload=False),
            out("lean-down"),
        ),
        "upload_lean": (lean_up, out("lean-up")),
    }
    uploads: list[Upload | Curl | Lean] = [upload, lean_up]
    if shutil.which("curl") is not None:
        header = server.home / "curl-headers"  # the gateway's own home, not the user's
        header.write_text(f"Authorization: Bearer {token}\n")
        header.chmod(0o600)
        by_curl = Curl(server.url, header, source, out("curl-up"), upload=True)
        steps["download_curl"] = (
            Curl(server.url, header, source, out("curl-down"), upload=False),
            out("curl-down"),
        )
        steps["upload_curl"] = (by_curl, out("curl-up"))
        uploads.append(by_curl)
    if bare_url is not None:
        steps["download_bare_asgi"] = (
            Lean(bare_url, "", source, out("bare-down"), upload=False, prefix=""),
            out("bare-down"),
        )
        steps["upload_bare_asgi"] = (
            Lean(bare_url, "", source, out("bare-up"), upload=True, prefix=""),
            out("bare-up"),
        )
    return steps, uploads


def measure(
    server: GatewayProcess,
    token: str,
    workdir: Path,
    size: int,
    runs: int,
    warmup: int,
    bare_url: str | None = None,
) -> dict[str, object]:
    """Alternate cp and the transfers ``warmup`` times unmeasured, then ``runs`` times, in
    ``workdir``; the figures. With ``bare_url``, also the bare ASGI app's floor."""
    source = workdir / "source.bin"
    expected = sha256_of(source)
    assert server.process is not None
    pid = server.process.pid
    with server.client(token) as client:
        client.timeout = httpx.Timeout(600)
        steps, uploads = _steps(server, client, token, workdir, bare_url)
        results: dict[str, list[Transfer]] = {name: [] for name in steps}
        at_start = rss_kib(pid)
        for run in range(-warmup, runs):
            for name, (action, target) in steps.items():
                for _, earlier in steps.values():  # each starts alike: only the source cached
                    earlier.unlink(missing_ok=True)
                done = transfer(pid, action)
                if run >= 0:
                    results[name].append(done)
                check_size(target, size, name)
                if run == -warmup and sha256_of(target) != expected:
                    raise SystemExit(f"{name}: the sha256 of {target} differs from the source's")
            for sent in uploads:
                if sent.answers[-1].get("sha256") != expected:
                    raise SystemExit(f"upload: the gateway answered {sent.answers[-1]}")
        for _, target in steps.values():
            target.unlink(missing_ok=True)
    rates = {name: Rates([size / MIB / t.seconds for t in ts]) for name, ts in results.items()}
    cp = rates["cp"]
    return {
        "throughput": {name: rate.report() for name, rate in rates.items()},
        "ratio_to_cp": {
            name: {
                "best": round(rates[name].best / cp.best, 2),
                "median": round(rates[name].median / cp.median, 2),
                "met": rates[name].median / cp.median >= TARGET_RATIO,
            }
            for name in rates
            if name != "cp"
        },
        "gateway_memory": {
            name: memory(results[name])
            for name in results
            if name != "cp" and not name.endswith("bare_asgi")
        },
        "gateway_rss_at_start_mib": round(at_start / 1024, 1),
        "gateway_vmhwm_mib": round(rss_kib(pid, "VmHWM") / 1024, 1),  # the peak, all rounds
        "verified": "sizes after every transfer; sha256 of each result in the first round;"
        " the upload's sha256 (computed by the gateway) in every round",
    }


def single_user(tmp: Path, size: int, runs: int, warmup: int) -> dict[str, object]:
    workdir = tmp / "files"
    workdir.mkdir()
    write_source(workdir / "source.bin", size)
    server = new_gateway(tmp / "home", SINGLE_CONFIG.format(root=json.dumps(str(workdir))))
    server.start()
    try:
        with bare_server() as bare_url:
            return {
                "mode": "single-user, embedded scheduler",
                **measure(server, server.token("bench"), workdir, size, runs, warmup, bare_url),
            }
    finally:
        server.stop()


@contextlib.contextmanager
def bare_server() -> Iterator[str]:
    """bench/bare_asgi.py under uvicorn (uvloop, httptools, as the gateway); its URL."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    argv = [sys.executable, "-m", "uvicorn", "bench.bare_asgi:app", "--app-dir", str(ROOT)]
    argv += ["--port", str(port), "--log-level", "warning"]
    process = subprocess.Popen(argv)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline or process.poll() is not None:
                    raise SystemExit("bench_files: the bare ASGI app did not start") from None
                time.sleep(0.1)
        yield url
    finally:
        process.terminate()
        process.wait(10)


def multi_user_skipped() -> str | None:
    """Why the multi-user runs cannot be made here, or None."""
    if os.geteuid() != 0:
        return "not root"
    try:
        pwd.getpwnam(MULTI_USER)
    except KeyError:
        return f"no user {MULTI_USER!r}"
    if shutil.which("scontrol") is None:
        return "no scontrol (Slurm is not installed)"
    ping = subprocess.run(["scontrol", "ping"], capture_output=True, text=True, check=False)
    if ping.returncode != 0 or "UP" not in ping.stdout:
        return "the Slurm cluster is not up (scontrol ping); start it with scripts/slurm up"
    return None


def multi_user(tmp: Path, size: int, runs: int, warmup: int) -> dict[str, object]:
    account = pwd.getpwnam(MULTI_USER)
    workdir = Path(tempfile.mkdtemp(prefix="hpcgate-bench-", dir=account.pw_dir))
    try:
        os.chown(workdir, account.pw_uid, account.pw_gid)
        write_source(workdir / "source.bin", size)
        os.chown(workdir / "source.bin", account.pw_uid, account.pw_gid)
        server = new_gateway(tmp / "home-multi", MULTI_CONFIG)
        server.start()
        try:
            return {
                "mode": f"multi-user, Slurm system, as {MULTI_USER}",
                **measure(server, server.token(MULTI_USER), workdir, size, runs, warmup),
            }
        finally:
            server.stop()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench.bench_files", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument(
        "--warmup", type=int, default=1, help="unmeasured rounds first (fresh guest memory)"
    )
    parser.add_argument("--multi-user", action="store_true")
    parser.add_argument(
        "--dir",
        type=Path,
        default=Path.home(),
        help="where the single-user files go (a temporary folder inside it; default: $HOME)",
    )
    args = parser.parse_args()
    size = args.size_mib * MIB
    results: dict[str, object] = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "size_mib": args.size_mib,
        "runs": args.runs,
        "warmup_runs": args.warmup,
        "target_ratio": TARGET_RATIO,
        "note": "same filesystem, no sync: all transfers read and write the page cache",
    }
    with tempfile.TemporaryDirectory(prefix="hpcgate-bench-", dir=args.dir) as name:
        results["single_user"] = single_user(Path(name), size, args.runs, args.warmup)
        if args.multi_user:
            skipped = multi_user_skipped()
            if skipped is None:
                results["multi_user"] = multi_user(Path(name), size, args.runs, args.warmup)
            else:
                print(f"bench_files: multi-user runs skipped: {skipped}", file=sys.stderr)
                results["multi_user"] = {"skipped": skipped}
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
