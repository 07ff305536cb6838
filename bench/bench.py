"""hpcgate benchmark: submit latency, status throughput, scheduler load.

Starts a real gateway (SQLite) in a temporary home, on the embedded scheduler or (with
``--scheduler slurm``, as root, with ``scripts/slurm up`` running) on the test Slurm
cluster in multi-user mode as alice, and measures on this machine, in one run:

* submit latency through the API (p50/p99) against the raw scheduler command (the
  embedded engine's submit, or ``sbatch`` run as alice exactly as the gateway runs it);
* job-status GET throughput and latency with many concurrent clients (wrk, a C load
  generator, so the client does not steal the gateway's CPU the way a Python client would);
* scheduler status queries per second while those clients poll (from /metrics).

Usage: .venv/bin/python bench/bench.py [--scheduler embedded|slurm] [--submits 200]
       [--clients 100] [--jobs 100] [--seconds 10]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.gateway_process import GatewayProcess, new_gateway

from hpcgate.accounts import Accounts
from hpcgate.config import UsersConfig
from hpcgate.jobs.models import JobSpec
from hpcgate.schedulers.base import SubmitContext
from hpcgate.schedulers.slurm import SlurmScheduler
from hpcgate.transports.identity import account_environment, as_account

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
USER = {"embedded": "bench", "slurm": "alice"}
TRUE_SCRIPT = "#!/bin/sh\ntrue\n"
LUA = """
local ids = {%s}
request = function()
  local id = ids[math.random(#ids)]
  return wrk.format("GET", "/api/v1/systems/local/jobs/" .. id, {["Authorization"] = "Bearer %s"})
end
"""


def percentile(values: list[float], pct: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(pct / 100 * (len(ordered) - 1)))]


def summary(values: list[float]) -> dict[str, float]:
    return {
        "p50_ms": round(percentile(values, 50) * 1000, 2),
        "p99_ms": round(percentile(values, 99) * 1000, 2),
        "mean_ms": round(statistics.fmean(values) * 1000, 2),
    }


def timed(action: Callable[[], object]) -> float:
    start = time.perf_counter()
    action()
    return time.perf_counter() - start


def api_submit(client: httpx.Client, workdir: str) -> Callable[[], object]:
    def submit() -> object:
        body = {"script": TRUE_SCRIPT, "working_directory": workdir}
        return client.post("/api/v1/systems/local/jobs", json=body).raise_for_status()

    return submit


def raw_engine(spool: Path, workdir: str) -> Callable[[], object]:
    """The embedded scheduler's own submit command, as the gateway runs it."""
    argv = [sys.executable, "-m", "hpcgate.embedded", "--spool", str(spool), "--slots", "2"]
    document = json.dumps({"script": TRUE_SCRIPT, "workdir": workdir, "env": {}})
    return lambda: subprocess.run(
        [*argv, "submit"], input=document.encode(), check=True, capture_output=True
    )


def raw_sbatch(workdir: str) -> Callable[[], object]:
    """sbatch as alice, with the argv, stdin and privilege drop the gateway uses."""
    account = Accounts(UsersConfig(), multi=True).lookup("alice", "alice")
    spec = JobSpec(script=TRUE_SCRIPT, working_directory=workdir)
    command = SlurmScheduler().submit_command(spec, SubmitContext("raw", workdir))
    argv, env = as_account(command.argv, account), account_environment(account)
    return lambda: subprocess.run(
        argv, input=command.stdin, env=env, check=True, capture_output=True
    )


def submit_pairs(
    api: Callable[[], object], raw: Callable[[], object], count: int
) -> tuple[list[float], list[float]]:
    """Alternate API and raw submits, so both see the same machine load and drift."""
    pairs = [(timed(api), timed(raw)) for _ in range(count)]
    return [p[0] for p in pairs], [p[1] for p in pairs]


def status_queries(admin: httpx.Client) -> float:
    text = admin.get("/metrics").text
    match = re.search(
        r'hpcgate_scheduler_commands_total\{operation="status",system="local"\} (\S+)', text
    )
    return float(match.group(1)) if match else 0.0


def run_wrk(
    url: str, token: str, ids: list[str], clients: int, seconds: int, workdir: Path
) -> dict[str, float]:
    script = workdir / "status.lua"
    script.write_text(LUA % (", ".join(f'"{i}"' for i in ids), token))
    out = subprocess.run(
        ["wrk", "-t2", f"-c{clients}", f"-d{seconds}s", "--latency", "-s", str(script), url],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return parse_wrk(out)


def parse_wrk(out: str) -> dict[str, float]:
    def ms(text: str) -> float:
        value, unit = re.match(r"([\d.]+)(us|ms|s)", text).groups()  # type: ignore[union-attr]
        return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]

    latency = dict(re.findall(r"^\s+(50|99)%\s+(\S+)", out, re.MULTILINE))
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return {
        "requests_per_s": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),  # type: ignore[union-attr]
        "p50_ms": ms(latency["50"]),
        "p99_ms": ms(latency["99"]),
        "non_2xx": float(errors.group(1)) if errors else 0.0,
    }


def machine() -> str:
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return f"{os.cpu_count()} cores ({cpu}), {mem:.0f} GiB, {platform.platform()}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--scheduler", choices=sorted(CONFIGS), default="embedded")
    parser.add_argument("--submits", type=int, default=200)
    parser.add_argument("--clients", type=int, default=100)
    parser.add_argument("--jobs", type=int, default=100)
    parser.add_argument("--seconds", type=int, default=10)
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("bench needs wrk (Debian: apt-get install wrk)")
    with tempfile.TemporaryDirectory() as tmp:
        results = measure(Path(tmp), args)
    print(json.dumps(results, indent=2))


def measure(tmp: Path, args: argparse.Namespace) -> dict[str, object]:
    server: GatewayProcess = new_gateway(tmp / "home", CONFIGS[args.scheduler])
    server.start()
    workdir = str(tmp) if args.scheduler == "embedded" else "/tmp"
    try:
        token = server.token(USER[args.scheduler])
        admin_token = (server.home / "admin-token").read_text().strip()
        with server.client(token) as client, server.client(admin_token) as admin:
            if args.scheduler == "slurm":
                raw_submit = raw_sbatch(workdir)
            else:
                raw_submit = raw_engine(tmp / "raw-spool", workdir)
            api, raw = submit_pairs(api_submit(client, workdir), raw_submit, args.submits)
            if args.scheduler == "slurm":
                subprocess.run(["scancel", "--user=alice"], check=False)
            ids = long_jobs(client, args.jobs, workdir)
            serial = serial_gets(client, ids, args.submits)
            before, t0 = status_queries(admin), time.monotonic()
            load = run_wrk(server.url, token, ids, args.clients, args.seconds, tmp)
            rate = (status_queries(admin) - before) / (time.monotonic() - t0)
            for job_id in ids:
                client.delete(f"/api/v1/systems/local/jobs/{job_id}")
    finally:
        server.stop()
    return {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "scheduler": args.scheduler,
        "submit_api": summary(api),
        "submit_raw": summary(raw),
        "submit_p50_ratio": round(percentile(api, 50) / percentile(raw, 50), 2),
        "submit_p50_overhead_ms": round((percentile(api, 50) - percentile(raw, 50)) * 1000, 2),
        "status_get_serial": summary(serial),
        "status_get_loaded": load,
        "clients": args.clients,
        "jobs_polled": len(ids),
        "scheduler_status_queries_per_s": round(rate, 2),
    }


def serial_gets(client: httpx.Client, ids: list[str], count: int) -> list[float]:
    """One client, one request at a time: the latency a single poller sees."""
    times = []
    for i in range(count):
        start = time.perf_counter()
        client.get(f"/api/v1/systems/local/jobs/{ids[i % len(ids)]}").raise_for_status()
        times.append(time.perf_counter() - start)
    return times


def long_jobs(client: httpx.Client, count: int, workdir: str) -> list[str]:
    """Jobs that stay live (two run, the rest queue) so the watcher tracks all of them."""
    return [
        client.post(
            "/api/v1/systems/local/jobs",
            json={"script": "#!/bin/sh\nsleep 300\n", "working_directory": workdir},
        ).json()["id"]
        for _ in range(count)
    ]


if __name__ == "__main__":
    main()
