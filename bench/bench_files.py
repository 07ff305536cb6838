"""hpcgate file-transfer benchmark: the files targets of issue 14, measured in one run.

Starts real gateways and writes a source file of ``--size-mib`` MiB, then measures on this
machine, one after the other in each round (the order rotating from round to round), so all
see the same load:

* ``cp src dst`` (the raw copy, a subprocess);
* a download and an upload through a single-user gateway (embedded scheduler, local
  transport, its roots the source's folder), with **curl** (a client in C, so the figures
  show what the gateway itself can do) and with the leanest Python client (``http.client``,
  ``readinto`` and ``socket.sendfile``);
* the raw Python receiver floor: the ``recv`` mode of ``bench/raw_receive.py``, the same
  file over loopback TCP to a receiver with no HTTP and no checks;
* as root with the test sshd up (``scripts/sshd up``): ``scp`` of the file up and down
  through that sshd as alice (OpenSSH's defaults, over one master connection opened
  first), and the same curl and lean transfers through a second gateway whose system
  reaches that sshd (``transport = "ssh"``, certificates from its CA, alice's files over
  SFTP in her own login; past 8 MiB over OpenSSH's client, ``ssh.bulk``); then the
  source lies in a folder of alice's home;
* with ``--extra``, also the httpx client and the bare ASGI app of ``bench/bare_asgi.py``
  (the floor of the server stack) on the local gateway.

It prints one JSON object: speeds, the ratios the issue names with a verdict for each
(``bench/files_targets.py``: median of the round-by-round ratios), and the gateway's
resident memory (VmRSS, sampled every 50 ms) before and at its peak during each transfer,
with the CPU time the gateway (and the ``ssh`` it ran, once reaped) spent on it (which a
loaded machine disturbs less than the speeds); the verdicts again on stderr, one line each.

Everything is on the same filesystem and nobody syncs: all read the source from the page
cache and leave their copy as dirty pages, so this measures the copying, not the disk.
Before each transfer every earlier copy is deleted, so each starts with only the source in
the cache; one unmeasured round (``--warmup``) comes first.
Sizes are checked after every transfer and the sha256 of each result in the first round,
and the sha256 each gateway computes for every upload, so a transfer cannot "win" by moving
nothing. At the default size (512 MiB, 3 rounds) a run takes some two minutes on a quiet
2-core machine.

With ``--multi-user`` (as root, with a user ``alice`` and the test Slurm cluster of
``scripts/slurm up`` answering ``scontrol ping``) the local gateway's runs are made a second
time against a gateway in multi-user mode on the Slurm system, as alice, in alice's home:
there the files are opened by alice's file helper and the descriptors passed to the gateway.

Usage, from the repository root (as root, after ``scripts/sshd up``, for the SSH side):
    .venv/bin/python -m bench.bench_files [--size-mib 512] [--runs 3] [--warmup 1]
        [--no-ssh | --ssh-only] [--ssh-bulk auto|openssh|asyncssh|both] [--extra]
        [--multi-user] [--dir D]

``--ssh-only`` leaves out ``cp``, the raw receiver and the local gateway: only ``scp`` and
the SSH gateway, in the same rounds (the SFTP targets, in less time). ``--ssh-bulk`` sets
the SSH gateway's ``ssh.bulk``; ``both`` adds a second SSH gateway whose transfers stay on
asyncssh (its steps are named ``sshasync_...``), in the same rounds.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
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

from bench.bench import SSH_CONFIG, SSH_SYSTEM
from bench.bench_ssh import RawSsh
from bench.files_clients import (
    MIB,
    Curl,
    Lean,
    Upload,
    copy_raw,
    download,
    files_prefix,
    raw_receive,
    scp,
)
from bench.files_targets import FLAT_MIB, flat, verdicts
from bench.host import machine
from tests.support.gateway_process import GatewayProcess, new_gateway
from tests.support.sshd import Sshd, answering, read_env

ROOT = Path(__file__).resolve().parents[1]  # where ``bench.bare_asgi`` is found
BLOCK = 64 * MIB
SAMPLE_SECONDS = 0.05
SSH_USER = "alice"  # the SSH tier's test user: scp and the SSH gateway act as her
MULTI_USER = "alice"

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
    cpu_seconds: float = 0.0  # the gateway's (user + system), where its time went


def cpu_seconds(pid: int) -> float:
    """CPU time a process and its reaped children (the SSH gateway's ``ssh`` of a long
    transfer) have used so far, user and system (``/proc/PID/stat``)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return sum(int(field) for field in fields[11:15]) / os.sysconf("SC_CLK_TCK")


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
        "cpu_s": [round(t.cpu_seconds, 2) for t in transfers],
    }


def check_size(path: Path, size: int, what: str) -> None:
    found = path.stat().st_size
    if found != size:
        raise SystemExit(f"{what}: {found} bytes at {path}, not {size}")


@dataclass
class Step:
    """One transfer of a round: what it runs, the file it leaves (its size checked, its
    sha256 in the first round, then deleted; None when it checks itself), and the gateway
    whose memory is sampled meanwhile (None for the baselines)."""

    name: str
    action: Callable[[], object]
    made: Path | None
    pid: int | None = None


@dataclass
class Plan:
    """The steps of a round in their first order, and the uploads among them whose answers
    carry the gateway's sha256."""

    source: Path
    steps: list[Step] = field(default_factory=list)
    uploads: list[Upload | Curl | Lean] = field(default_factory=list)

    def out(self, name: str) -> Path:
        return self.source.parent / f"{name}.bin"


def gateway_steps(
    plan: Plan, server: GatewayProcess, token: str, system: str = "local", label: str = ""
) -> None:
    """The download and upload through ``server``'s ``system`` with curl and the lean
    client, named ``{label}download_curl`` and so on."""
    assert server.process is not None
    pid, prefix, source = server.process.pid, files_prefix(system), plan.source
    header = server.home / "curl-headers"  # the gateway's own home, not the user's
    header.write_text(f"Authorization: Bearer {token}\n")
    header.chmod(0o600)
    for client in ("curl", "lean"):
        down, up = plan.out(f"{label}down-{client}"), plan.out(f"{label}up-{client}")
        getter: Curl | Lean
        putter: Curl | Lean
        if client == "curl":
            getter = Curl(server.url, header, source, down, upload=False, prefix=prefix)
            putter = Curl(server.url, header, source, up, upload=True, prefix=prefix)
        else:
            getter = Lean(server.url, token, source, down, upload=False, prefix=prefix)
            putter = Lean(server.url, token, source, up, upload=True, prefix=prefix)
        plan.steps.append(Step(f"{label}download_{client}", getter, down, pid))
        plan.steps.append(Step(f"{label}upload_{client}", putter, up, pid))
        plan.uploads.append(putter)


def extra_steps(plan: Plan, server: GatewayProcess, client: httpx.Client, bare_url: str) -> None:
    """httpx through the local gateway, and the lean client against the bare ASGI app."""
    assert server.process is not None
    pid, source = server.process.pid, plan.source
    upload = Upload(client, source, plan.out("up-httpx"))
    plan.steps.append(
        Step(
            "download_httpx",
            download(client, source, plan.out("down-httpx")),
            plan.out("down-httpx"),
            pid,
        )
    )
    plan.steps.append(Step("upload_httpx", upload, plan.out("up-httpx"), pid))
    plan.uploads.append(upload)
    for name, upward in (("download_bare_asgi", False), ("upload_bare_asgi", True)):
        made = plan.out(name)
        lean = Lean(bare_url, "", source, made, upload=upward, prefix="")
        plan.steps.append(Step(name, lean, made))


def baseline_steps(plan: Plan) -> None:
    """cp and the raw receiver."""
    source = plan.source
    plan.steps.append(Step("cp", copy_raw(source, plan.out("cp")), plan.out("cp")))
    plan.steps.append(Step("raw_receive", raw_receive(source, source.parent), None))


def scp_steps(plan: Plan, ssh: RawSsh) -> None:
    """scp up and down through the test sshd, over ``ssh``'s master connection."""
    up, down = plan.out("scp-up"), plan.out("scp-down")
    plan.steps.append(Step("scp_up", scp(ssh, plan.source, up, upload=True), up))
    plan.steps.append(Step("scp_down", scp(ssh, down, plan.source, upload=False), down))


def transfer(pid: int | None, action: Callable[[], object]) -> Transfer:
    if pid is None:
        start = time.perf_counter()
        action()
        return Transfer(time.perf_counter() - start, 0, 0, 0)
    with RssSampler(pid) as rss:
        cpu, start = cpu_seconds(pid), time.perf_counter()
        action()
        seconds, cpu = time.perf_counter() - start, cpu_seconds(pid) - cpu
    return Transfer(seconds, rss.before_kib, rss.peak_kib, rss.samples, cpu)


def run_rounds(plan: Plan, size: int, runs: int, warmup: int) -> dict[str, list[Transfer]]:
    """``warmup`` unmeasured rounds, then ``runs`` measured ones; each round runs every
    step, starting one step later than the round before. Every earlier copy is deleted
    before a step, so each starts alike, with only the source in the page cache."""
    expected = sha256_of(plan.source)
    results: dict[str, list[Transfer]] = {step.name: [] for step in plan.steps}
    count = len(plan.steps)
    for run in range(-warmup, runs):
        shift = (run + warmup) % count
        for step in plan.steps[shift:] + plan.steps[:shift]:
            for other in plan.steps:
                if other.made is not None:
                    other.made.unlink(missing_ok=True)
            done = transfer(step.pid, step.action)
            if run >= 0:
                results[step.name].append(done)
            if step.made is not None:
                check_size(step.made, size, step.name)
                if run == -warmup and sha256_of(step.made) != expected:
                    raise SystemExit(f"{step.name}: the sha256 of {step.made} differs")
        for sent in plan.uploads:
            if sent.answers[-1].get("sha256") != expected:
                raise SystemExit(f"upload: the gateway answered {sent.answers[-1]}")
    for step in plan.steps:
        if step.made is not None:
            step.made.unlink(missing_ok=True)
    return results


def figures(results: dict[str, list[Transfer]], size: int, plan: Plan) -> dict[str, object]:
    """Speeds, the targets' verdicts, and each gateway transfer's memory."""
    rates = {name: Rates([size / MIB / t.seconds for t in ts]) for name, ts in results.items()}
    sampled = [step.name for step in plan.steps if step.pid is not None]
    growth = {
        name: max(t.rss_peak_kib - t.rss_before_kib for t in results[name]) / 1024
        for name in sampled
    }
    seconds = {name: [t.seconds for t in ts] for name, ts in results.items()}
    targets = verdicts(seconds)
    if growth:
        targets.append(flat(growth))
    return {
        "throughput": {name: rate.report() for name, rate in rates.items()},
        "targets": targets,
        "gateway_memory": {name: memory(results[name]) for name in sampled},
        "verified": "sizes after every transfer; sha256 of each result in the first round;"
        " the upload's sha256 (computed by the gateway) in every round",
    }


def summary(found: dict[str, object]) -> str:
    """The verdicts, one line each, for a reader of the terminal."""
    lines = []
    for target in found.get("targets", []):  # type: ignore[attr-defined]
        value = target.get("median", target.get("worst"))
        mark = "met" if target["met"] else "NOT MET"
        lines.append(f"  {target['measure']:<50} {value!s:>7}  target {target['target']:<7} {mark}")
    return "\n".join(lines)


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


def ssh_skipped() -> str | None:
    """Why scp and the SSH gateway cannot be measured here, or None."""
    if os.geteuid() != 0:
        return "not root (the test sshd's keys and CA are root's)"
    try:
        pwd.getpwnam(SSH_USER)
    except KeyError:
        return f"no user {SSH_USER!r}"
    if not answering():
        return "the test sshd does not answer; start it with scripts/sshd up"
    return None


@contextlib.contextmanager
def folder_of(user: str) -> Iterator[Path]:
    """A fresh folder in ``user``'s home, theirs, removed at the end."""
    account = pwd.getpwnam(user)
    folder = Path(tempfile.mkdtemp(prefix="hpcgate-bench-", dir=account.pw_dir))
    try:
        os.chown(folder, account.pw_uid, account.pw_gid)
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@contextlib.contextmanager
def running(server: GatewayProcess) -> Iterator[GatewayProcess]:
    server.start()
    try:
        yield server
    finally:
        server.stop()


@contextlib.contextmanager
def master(sshd: Sshd, control_dir: Path) -> Iterator[RawSsh]:
    """alice's OpenSSH master connection to the test sshd, for scp."""
    ssh = RawSsh(sshd, SSH_USER, control_dir)
    ssh.start()
    try:
        yield ssh
    finally:
        ssh.close()


@dataclass
class Options:
    size: int
    runs: int
    warmup: int
    ssh: bool
    extra: bool
    ssh_only: bool = False
    ssh_bulk: str = "auto"


def single_user(tmp: Path, folder: Path, options: Options) -> dict[str, object]:
    """The baselines, the local single-user gateway and, with ``options.ssh``, scp and
    the SSH gateway: all on the source in ``folder``, in the same rounds."""
    source = folder / "source.bin"
    write_source(source, options.size)
    if options.ssh:
        shutil.chown(source, SSH_USER, SSH_USER)
    plan = Plan(source)
    config = SINGLE_CONFIG.format(root=json.dumps(str(folder)))
    with contextlib.ExitStack() as stack:
        if not options.ssh_only:
            local = stack.enter_context(running(new_gateway(tmp / "home", config)))
            baseline_steps(plan)
            gateway_steps(plan, local, local.token("bench"))
        if options.ssh:
            sshd = read_env()
            scp_steps(plan, stack.enter_context(master(sshd, tmp)))
            for bulk, label in bulk_gateways(options.ssh_bulk):
                config = ssh_config(sshd, bulk)
                remote = stack.enter_context(running(new_gateway(tmp / f"home-{label}", config)))
                gateway_steps(plan, remote, remote.token(SSH_USER), SSH_SYSTEM, label=label)
        if options.extra and not options.ssh_only:
            client = stack.enter_context(local.client(local.token("bench")))
            client.timeout = httpx.Timeout(600)
            extra_steps(plan, local, client, stack.enter_context(bare_server()))
        results = run_rounds(plan, options.size, options.runs, options.warmup)
        return {
            "mode": "single-user (embedded, local transport)"
            + (
                f"; SSH gateway: multi-user, {SSH_SYSTEM} over the test sshd as {SSH_USER}"
                if options.ssh
                else ""
            ),
            **figures(results, options.size, plan),
        }


def bulk_gateways(choice: str) -> list[tuple[str, str]]:
    """The SSH gateways to measure (their ``ssh.bulk`` and the label of their steps):
    ``both`` adds one whose transfers stay on asyncssh, labelled ``sshasync_``."""
    if choice == "both":
        return [("auto", "ssh_"), ("asyncssh", "sshasync_")]
    return [(choice, "ssh_")]


def ssh_config(sshd: Sshd, bulk: str) -> str:
    """The SSH gateway's configuration (bench.bench's), with ``ssh.bulk``."""
    return SSH_CONFIG.format(table=sshd.table(SSH_SYSTEM, bulk=bulk))


def multi_user(tmp: Path, options: Options) -> dict[str, object]:
    """The local gateway's transfers again, multi-user on the Slurm system, as alice."""
    with folder_of(MULTI_USER) as folder:
        source = folder / "source.bin"
        write_source(source, options.size)
        shutil.chown(source, MULTI_USER, MULTI_USER)
        plan = Plan(source)
        with running(new_gateway(tmp / "home-multi", MULTI_CONFIG)) as server:
            baseline_steps(plan)
            gateway_steps(plan, server, server.token(MULTI_USER))
            results = run_rounds(plan, options.size, options.runs, options.warmup)
            return {
                "mode": f"multi-user, Slurm system, as {MULTI_USER}",
                **figures(results, options.size, plan),
            }


def main() -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench.bench_files", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--size-mib", type=int, default=512)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument(
        "--warmup", type=int, default=1, help="unmeasured rounds first (fresh guest memory)"
    )
    parser.add_argument("--no-ssh", action="store_true", help="leave out scp and the SSH gateway")
    parser.add_argument("--extra", action="store_true", help="also httpx and the bare ASGI app")
    parser.add_argument(
        "--ssh-only", action="store_true", help="only scp and the SSH gateway (no local one)"
    )
    parser.add_argument("--multi-user", action="store_true")
    parser.add_argument(
        "--ssh-bulk",
        choices=("auto", "openssh", "asyncssh", "both"),
        default="auto",
        help="the SSH gateway's ssh.bulk; both: a second gateway on asyncssh, same rounds",
    )
    parser.add_argument(
        "--dir",
        type=Path,
        default=Path.home(),
        help="where the gateways' homes go, and the files without SSH (default: $HOME)",
    )
    args = parser.parse_args()
    skipped = "--no-ssh" if args.no_ssh else ssh_skipped()
    if skipped is not None:
        print(f"bench_files: scp and the SSH gateway left out: {skipped}", file=sys.stderr)
    if args.ssh_only and skipped is not None:
        raise SystemExit(f"bench_files: --ssh-only, but {skipped}")
    options = Options(
        args.size_mib * MIB,
        args.runs,
        args.warmup,
        skipped is None,
        args.extra,
        args.ssh_only,
        args.ssh_bulk,
    )
    results: dict[str, object] = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "size_mib": args.size_mib,
        "runs": args.runs,
        "warmup_runs": args.warmup,
        "ssh": skipped or "scp and the SSH gateway through the test sshd",
        "memory_flat_mib": FLAT_MIB,
        "note": "same filesystem, no sync: all transfers read and write the page cache",
    }
    with tempfile.TemporaryDirectory(prefix="hpcgate-bench-", dir=args.dir) as name:
        tmp = Path(name)
        with contextlib.ExitStack() as stack:
            folder = stack.enter_context(folder_of(SSH_USER)) if options.ssh else tmp / "files"
            folder.mkdir(exist_ok=True)
            results["single_user"] = single_user(tmp, folder, options)
        if args.multi_user:
            why = multi_user_skipped()
            results["multi_user"] = {"skipped": why} if why else multi_user(tmp, options)
    print(json.dumps(results, indent=2))
    for phase in ("single_user", "multi_user"):
        if isinstance(found := results.get(phase), dict) and "targets" in found:
            print(f"{phase}:\n{summary(found)}", file=sys.stderr)


if __name__ == "__main__":
    main()
