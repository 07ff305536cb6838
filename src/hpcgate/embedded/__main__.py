"""Command line of the embedded scheduler: ``python -m hpcgate.embedded --spool DIR COMMAND``.

Only argument parsing and JSON output live here. Each command prints one JSON document on
stdout and exits 0; a refused request prints one line on stderr and exits 2, an unknown job
id exits 3 (``unknown job ID``), a spool that cannot be used exits 1.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any, NoReturn

from hpcgate.embedded.errors import UnknownJob, UserError
from hpcgate.embedded.procs import seal_inherited_fds
from hpcgate.embedded.spool import Spool, update_config

EXIT_USER_ERROR = 2
EXIT_UNKNOWN_JOB = 3
EXIT_SPOOL_ERROR = 1


class _Parser(argparse.ArgumentParser):
    """argparse, with usage errors reported on one line and exit status 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USER_ERROR, f"{self.prog}: {message}\n")


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise ValueError(text)
    return value


def _non_negative_float(text: str) -> float:
    value = float(text)
    if not value >= 0 or value == float("inf"):
        raise ValueError(text)
    return value


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the command line."""
    parser = _Parser(prog="python -m hpcgate.embedded", description=__doc__)
    parser.add_argument("--spool", required=True, help="spool directory (created if missing)")
    parser.add_argument("--slots", type=_positive_int, help="jobs run at once (persisted)")
    parser.add_argument(
        "--kill-wait", type=_non_negative_float, help="seconds from SIGTERM to SIGKILL (persisted)"
    )
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    commands.add_parser("submit", help="submit the JSON job document read on stdin")
    status = commands.add_parser("status", help="print the jobs")
    status.add_argument("--ids", default=None, help="comma-separated job ids")
    cancel = commands.add_parser("cancel", help="cancel jobs")
    cancel.add_argument("ids", nargs="+", metavar="ID")
    commands.add_parser("info", help="print the machine: host, slots, jobs running")
    run = commands.add_parser("run", help="internal: supervise one job")
    run.add_argument("id", metavar="ID")
    return parser


def _submit(spool: Spool, args: argparse.Namespace) -> dict[str, Any]:
    from hpcgate.embedded.dispatch import dispatch
    from hpcgate.embedded.submit import submit

    job_id = submit(spool, sys.stdin.buffer.read(), os.getcwd())
    dispatch(spool)
    return {"id": job_id}


def _status(spool: Spool, args: argparse.Namespace) -> dict[str, Any]:
    from hpcgate.embedded.dispatch import dispatch

    jobs = dispatch(spool)
    if args.ids is not None:
        wanted = {part.strip() for part in args.ids.split(",")}
        jobs = [job for job in jobs if job.id in wanted]
    return {"jobs": [job.record() for job in jobs]}


def _cancel(spool: Spool, args: argparse.Namespace) -> dict[str, Any]:
    from hpcgate.embedded.cancel import cancel

    return {"cancelled": cancel(spool, list(args.ids))}


def _info(spool: Spool, args: argparse.Namespace) -> dict[str, Any]:
    from hpcgate.embedded.info import machine_info

    return machine_info(spool)


def _run(spool: Spool, args: argparse.Namespace) -> dict[str, Any]:
    from hpcgate.embedded.runner import supervise

    job = supervise(spool, args.id)
    return {"id": args.id, "state": None if job is None else job.state}


_COMMANDS = {"submit": _submit, "status": _status, "cancel": _cancel, "info": _info, "run": _run}


def main(argv: list[str] | None = None) -> int:
    """Run one command; return the exit status."""
    seal_inherited_fds()
    args = build_parser().parse_args(argv)
    spool = Spool(args.spool)
    try:
        spool.ensure()
        update_config(spool, args.slots, args.kill_wait)
        output = _COMMANDS[args.command](spool, args)
    except UserError as exc:
        return _fail(str(exc), EXIT_USER_ERROR)
    except UnknownJob as exc:
        return _fail(str(exc), EXIT_UNKNOWN_JOB)
    except OSError as exc:
        return _fail(f"spool {spool.root}: {exc}", EXIT_SPOOL_ERROR)
    sys.stdout.write(json.dumps(output) + "\n")
    return 0


def _fail(message: str, status: int) -> int:
    sys.stderr.write(" ".join(message.split()) + "\n")  # always a single line
    return status


if __name__ == "__main__":
    sys.exit(main())
