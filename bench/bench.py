"""hpcgate benchmark: submit latency, status throughput, scheduler load.

Starts a real gateway (SQLite) in a temporary home, on the embedded scheduler or (with
``--scheduler slurm``, as root, with ``scripts/slurm up`` running) on the test Slurm
cluster in multi-user mode as alice, and measures on this machine, in one run:

* submit latency through the API (p50/p90/p99) against the raw scheduler command (the
  embedded engine's submit, or ``sbatch`` run as alice exactly as the gateway runs it);
  the two alternate (the order rotating each round), so both see the same load;
* job-status GET throughput and latency with many concurrent clients (wrk, a C load
  generator, so the client does not steal the gateway's CPU the way a Python client would);
  wrk is closed-loop (each client asks again as soon as it is answered), so its latency is
  clients / throughput by construction;
* job-status GET latency at a given rate from as many clients, open-loop
  (``bench/openloop.py``: latency from when each request was due), the question
  "how fast are answers when 500 clients together ask 1000 times a second";
* scheduler commands per second while those clients poll (from /metrics).

With ``--transport ssh`` (Slurm only; ``scripts/sshd up`` running too) the system is
reached through the test sshd as in tests/ssh: certificates from its CA, alice's commands
as alice, the watcher's as bob. The raw side is then OpenSSH's ``ssh`` as alice over a
reused connection (ControlMaster; her test key; host key checked): ``sbatch`` with the same
argv and script, and also the exact line the gateway sends (with its ``timeout -s KILL``
wrapper); one GET of a job is compared with ``ssh ... squeue -j ID``; the SSH sessions the
gateway opened during the wrk load are counted from sshd's log as well as from /metrics.

Usage, from the repository root:
    .venv/bin/python -m bench.bench [--scheduler embedded|slurm] [--transport local|ssh]
        [--submits 200] [--clients 100] [--jobs 100] [--seconds 10] [--rate 1000]
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import os
import pwd
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path

import httpx

from bench.bench_ssh import RawSsh, gateway_sessions, log_size
from bench.host import machine
from hpcgate.accounts import Accounts
from hpcgate.config import SystemConfig, UsersConfig
from hpcgate.model.jobs import JobSpec
from hpcgate.model.scheduler import SubmitContext
from hpcgate.schedulers.slurm import SlurmScheduler
from hpcgate.transports.identity import account_environment, as_account
from hpcgate.transports.ssh import REMOTE_GRACE, command_line
from tests.support.gateway_process import GatewayProcess, new_gateway
from tests.support.sshd import Sshd, answering, read_env

CONFIGS = {
    "embedded": """
[systems.local]
scheduler = "embedded"
status_interval = 1.0
slots = 2
""",
    "slurm": """
[systems.local]
scheduler = "slurm"
status_interval = 1.0

[users]
mode = "multi"
""",
}
SSH_SYSTEM = "bench-ssh"  # its certificates' key ids: hpcgate:bench-ssh:<account>
SSH_CONFIG = """
[systems.bench-ssh]
scheduler = "slurm"
transport = "ssh"
status_interval = 1.0

{table}
[users]
mode = "multi"
"""
# wrk leaves a reply slower than --timeout (2 s by default) out of its latency percentiles
# and counts it as a "timeout" instead: 10 s, so the percentiles include the slow tail.
WRK_OPTIONS = ("--latency", "--timeout", "10s")
SOCKET_ERRORS = r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)"
USER = {"embedded": "bench", "slurm": "alice"}
TRUE_SCRIPT = "#!/bin/sh\ntrue\n"
LUA = """
local ids = {%s}
request = function()
  local id = ids[math.random(#ids)]
  return wrk.format("GET", "%s" .. id, {["Authorization"] = "Bearer %s"})
end
"""


def ssh_config(sshd: Sshd) -> str:
    return SSH_CONFIG.format(table=sshd.table(SSH_SYSTEM))


def percentile(values: list[float], pct: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(pct / 100 * (len(ordered) - 1)))]


def summary(values: list[float]) -> dict[str, float]:
    return {
        "p50_ms": round(percentile(values, 50) * 1000, 2),
        "p90_ms": round(percentile(values, 90) * 1000, 2),
        "p99_ms": round(percentile(values, 99) * 1000, 2),
        "mean_ms": round(statistics.fmean(values) * 1000, 2),
    }


def overhead(api: list[float], raw: list[float]) -> dict[str, float]:
    """How much slower the first is than the second: p50 ratio and p50 difference."""
    return {
        "p50_ratio": round(percentile(api, 50) / percentile(raw, 50), 2),
        "p50_overhead_ms": round((percentile(api, 50) - percentile(raw, 50)) * 1000, 2),
    }


def timed(action: Callable[[], object]) -> float:
    start = time.perf_counter()
    action()
    return time.perf_counter() - start


def jobs_path(system: str) -> str:
    return f"/api/v1/systems/{system}/jobs"


def api_submit(client: httpx.Client, system: str, spec: JobSpec) -> Callable[[], object]:
    body = spec.model_dump(mode="json", exclude_defaults=True)

    def submit() -> object:
        return client.post(jobs_path(system), json=body).raise_for_status()

    return submit


def raw_engine(spool: Path, workdir: str) -> Callable[[], object]:
    """The embedded scheduler's own submit command, as the gateway runs it."""
    argv = [sys.executable, "-m", "hpcgate.embedded", "--spool", str(spool), "--slots", "2"]
    document = json.dumps({"script": TRUE_SCRIPT, "workdir": workdir, "env": {}})
    return lambda: subprocess.run(
        [*argv, "submit"], input=document.encode(), check=True, capture_output=True
    )


def raw_sbatch(spec: JobSpec) -> Callable[[], object]:
    """sbatch as alice, with the argv, stdin and privilege drop the gateway uses."""
    account = Accounts(UsersConfig(), multi=True).lookup("alice", "alice")
    command = SlurmScheduler().submit_command(spec, SubmitContext("raw", "/"))
    argv, env = as_account(command.argv, account), account_environment(account)
    return lambda: subprocess.run(
        argv, input=command.stdin, env=env, check=True, capture_output=True
    )


def ssh_sbatch(ssh: RawSsh, spec: JobSpec, exact: bool) -> Callable[[], object]:
    """``ssh alice@host sbatch ...`` with the gateway's argv and script on stdin; ``exact``:
    the very line the gateway sends, with its host-side ``timeout -s KILL`` in front."""
    command = SlurmScheduler().submit_command(spec, SubmitContext("raw", "/"))
    if exact:
        line = command_line(command, SystemConfig().command_timeout + REMOTE_GRACE)
        return lambda: ssh.run_line(line, command.stdin)
    return lambda: ssh.run(command.argv, command.stdin)


def interleaved(actions: Sequence[Callable[[], object]], count: int) -> list[list[float]]:
    """Each action ``count`` times, in rounds of one each, the order rotating every round,
    so all of them see the same machine load and drift. One unmeasured round first."""
    for action in actions:
        action()
    times: list[list[float]] = [[] for _ in actions]
    for i in range(count):
        for k in range(len(actions)):
            j = (i + k) % len(actions)
            times[j].append(timed(actions[j]))
    return times


def scheduler_commands(admin: httpx.Client, system: str) -> dict[str, float]:
    """The gateway's scheduler commands so far on ``system``, by operation (/metrics)."""
    pattern = r'hpcgate_scheduler_commands_total\{operation="([^"]+)",system="%s"\} (\S+)'
    found = re.findall(pattern % re.escape(system), admin.get("/metrics").text)
    return {operation: float(value) for operation, value in found}


def run_wrk(
    url: str, token: str, ids: list[str], clients: int, seconds: int, workdir: Path, system: str
) -> dict[str, float]:
    script = workdir / "status.lua"
    script.write_text(LUA % (", ".join(f'"{i}"' for i in ids), f"{jobs_path(system)}/", token))
    out = subprocess.run(
        ["wrk", "-t2", f"-c{clients}", f"-d{seconds}s", *WRK_OPTIONS, "-s", str(script), url],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return parse_wrk(out)


def run_open_loop(
    url: str, token: str, paths: list[str], args: argparse.Namespace
) -> dict[str, float]:
    """bench/openloop.py in a process of its own: ``args.rate`` requests/s from
    ``args.clients`` connections for ``args.seconds``."""
    argv = [sys.executable, str(Path(__file__).with_name("openloop.py")), url, token, *paths]
    argv += ["--rate", str(args.rate), "--clients", str(args.clients)]
    argv += ["--seconds", str(args.seconds)]
    done = subprocess.run(argv, capture_output=True, text=True, check=True, timeout=600)
    found: dict[str, float] = json.loads(done.stdout)
    return found


def parse_wrk(out: str) -> dict[str, float]:
    def ms(text: str) -> float:
        value, unit = re.match(r"([\d.]+)(us|ms|s)", text).groups()  # type: ignore[union-attr]
        return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]

    latency = dict(re.findall(r"^\s+(50|90|99)%\s+(\S+)", out, re.MULTILINE))
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    sockets = re.search(SOCKET_ERRORS, out)
    return {
        "requests_per_s": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),  # type: ignore[union-attr]
        "requests": float(re.search(r"(\d+) requests in", out).group(1)),  # type: ignore[union-attr]
        "p50_ms": ms(latency["50"]),
        "p90_ms": ms(latency["90"]),
        "p99_ms": ms(latency["99"]),
        "non_2xx": float(errors.group(1)) if errors else 0.0,
        **{
            f"socket_errors_{kind}": float(sockets.group(i + 1)) if sockets else 0.0
            for i, kind in enumerate(("connect", "read", "write", "timeout"))
        },
    }


def cpu_seconds(pid: int) -> float:
    """User + system CPU time the process has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main() -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench.bench", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--scheduler", choices=sorted(CONFIGS), default="embedded")
    parser.add_argument("--transport", choices=["local", "ssh"], default="local")
    parser.add_argument("--submits", type=int, default=200)
    parser.add_argument("--clients", type=int, default=100)
    parser.add_argument("--jobs", type=int, default=100)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--rate", type=float, default=1000.0, help="open-loop requests/s")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("bench needs wrk (Debian: apt-get install wrk)")
    if args.transport == "ssh" and args.scheduler != "slurm":
        sys.exit("--transport ssh needs --scheduler slurm")
    if args.transport == "ssh" and not answering():
        sys.exit("--transport ssh needs the test sshd: scripts/sshd up (as root)")
    with tempfile.TemporaryDirectory() as tmp:
        results = measure(Path(tmp), args)
    print(json.dumps(results, indent=2))


@contextlib.contextmanager
def alice_directory() -> Iterator[str]:
    """A fresh directory of alice's for the Slurm jobs' working directory and output."""
    path = tempfile.mkdtemp(prefix="hpcgate-bench-", dir="/tmp")
    user = pwd.getpwnam("alice")
    os.chown(path, user.pw_uid, user.pw_gid)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def measure(tmp: Path, args: argparse.Namespace) -> dict[str, object]:
    if args.scheduler == "embedded":
        return run_bench(tmp, args, str(tmp))
    with alice_directory() as workdir:
        return run_bench(tmp, args, workdir)


def run_bench(tmp: Path, args: argparse.Namespace, workdir: str) -> dict[str, object]:
    sshd = read_env() if args.transport == "ssh" else None
    system = SSH_SYSTEM if sshd else "local"
    config = ssh_config(sshd) if sshd else CONFIGS[args.scheduler]
    name = f"hpcgate-bench-{uuid.uuid4().hex[:8]}"  # so cleanup cancels only these jobs
    spec = JobSpec(script=TRUE_SCRIPT, working_directory=workdir)
    if args.scheduler == "slurm":
        spec = spec.model_copy(update={"name": name})
    server: GatewayProcess = new_gateway(tmp / "home", config)
    log_start = log_size(sshd) if sshd else 0
    raw_ssh = RawSsh(sshd, "alice", tmp) if sshd else None
    result: dict[str, object] = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "load_average_at_start": os.getloadavg(),
        "scheduler": args.scheduler,
        "transport": args.transport,
    }
    server.start()
    try:
        token = server.token(USER[args.scheduler])
        admin_token = (server.home / "admin-token").read_text().strip()
        with server.client(token) as client, server.client(admin_token) as admin:
            if raw_ssh is not None:
                raw_ssh.start()
                raws = [ssh_sbatch(raw_ssh, spec, exact=False), ssh_sbatch(raw_ssh, spec, True)]
            elif args.scheduler == "slurm":
                raws = [raw_sbatch(spec)]
            else:
                raws = [raw_engine(tmp / "raw-spool", workdir)]
            result |= submits(api_submit(client, system, spec), raws, args.submits)
            if args.scheduler == "slurm":
                cancel(name)
            ids = long_jobs(client, system, spec, args.jobs)
            time.sleep(2)  # a watcher poll or two: the jobs are known to be live
            result |= status_reads(client, system, ids, raw_ssh, args.submits)
            before, t0 = scheduler_commands(admin, system), time.monotonic()
            assert server.process is not None
            cpu0, sessions_from = cpu_seconds(server.process.pid), log_size(sshd) if sshd else 0
            result["load_average_before_wrk"] = os.getloadavg()
            load = run_wrk(server.url, token, ids, args.clients, args.seconds, tmp, system)
            elapsed = time.monotonic() - t0
            cpu = cpu_seconds(server.process.pid) - cpu0
            after = scheduler_commands(admin, system)
            during = {op: after[op] - before.get(op, 0.0) for op in after}
            result |= {
                "status_get_loaded": load,
                "clients": args.clients,
                "jobs_polled": len(ids),
                "gateway_cpu_s_per_1000_requests": round(cpu / load["requests"] * 1000, 3),
                "scheduler_commands_during_load": {k: v for k, v in during.items() if v},
                "scheduler_status_queries_per_s": round(during.get("status", 0.0) / elapsed, 2),
                "scheduler_commands_per_s": round(sum(during.values()) / elapsed, 2),
            }
            if sshd is not None:
                sessions = gateway_sessions(sshd, f"hpcgate:{system}:", log_start, sessions_from)
                result["sshd_sessions_during_load"] = sessions
                result["sshd_sessions_per_s"] = round(sessions / elapsed, 2)
            paths = [f"{jobs_path(system)}/{job_id}" for job_id in ids]
            result["status_get_open_loop"] = run_open_loop(server.url, token, paths, args)
            for job_id in ids:
                client.delete(f"{jobs_path(system)}/{job_id}")
    finally:
        if raw_ssh is not None:
            raw_ssh.close()
        server.stop()
        if args.scheduler == "slurm":
            cancel(name)
    return result


def submits(
    api: Callable[[], object], raws: list[Callable[[], object]], count: int
) -> dict[str, object]:
    """API submits against the raw command (over SSH: and the gateway's exact line)."""
    api_times, raw_times, *exact = interleaved([api, *raws], count)
    result: dict[str, object] = {
        "submit_api": summary(api_times),
        "submit_raw": summary(raw_times),
        "submit_overhead": overhead(api_times, raw_times),
    }
    if exact:
        result["submit_raw_exact_line"] = summary(exact[0])
        result["submit_overhead_vs_exact_line"] = overhead(api_times, exact[0])
    return result


def status_reads(
    client: httpx.Client, system: str, ids: list[str], raw_ssh: RawSsh | None, count: int
) -> dict[str, object]:
    """One GET at a time (over SSH: alternating with ``ssh ... squeue -j ID``)."""
    gets = [api_get(client, system, ids)]
    if raw_ssh is not None:
        gets.append(ssh_squeue(raw_ssh, ids))
    times = interleaved(gets, count)
    result: dict[str, object] = {"status_get_serial": summary(times[0])}
    if raw_ssh is not None:
        result["status_raw_squeue"] = summary(times[1])
        result["status_overhead_vs_squeue"] = overhead(times[0], times[1])
    return result


def cancel(name: str) -> None:
    """Cancel the bench's own Slurm jobs (by their name), none of anyone else's."""
    subprocess.run(["scancel", "--user=alice", f"--name={name}"], check=False)


def api_get(client: httpx.Client, system: str, ids: list[str]) -> Callable[[], object]:
    """One client, one request at a time: the latency a single poller sees."""
    cycle = itertools.cycle(ids)

    def get() -> object:
        return client.get(f"{jobs_path(system)}/{next(cycle)}").raise_for_status()

    return get


def ssh_squeue(ssh: RawSsh, ids: list[str]) -> Callable[[], object]:
    """``ssh alice@host squeue -j ID`` over the reused connection."""
    cycle = itertools.cycle(ids)
    return lambda: ssh.run(["squeue", "-j", next(cycle)])


def long_jobs(client: httpx.Client, system: str, spec: JobSpec, count: int) -> list[str]:
    """Jobs that stay live (some run, the rest queue) so the watcher tracks all of them."""
    spec = spec.model_copy(update={"script": "#!/bin/sh\nsleep 300\n"})
    body = spec.model_dump(mode="json", exclude_defaults=True)
    return [client.post(jobs_path(system), json=body).json()["id"] for _ in range(count)]


if __name__ == "__main__":
    main()
