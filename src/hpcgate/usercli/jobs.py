"""``hpcgate jobs``: submit, list, show, follow, wait for and cancel batch jobs."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable
from typing import Annotated, Any

import typer

from hpcgate.client import Client
from hpcgate.model.jobs import Job, JobState
from hpcgate.usercli.common import EXIT_CODES, Exit, Session, fail, read_text, user_command
from hpcgate.usercli.output import busy, details, note, print_json, report, say, table

app = typer.Typer(no_args_is_help=True, help="Submit, list, follow and cancel batch jobs.")

JobId = Annotated[str, typer.Argument(help="The job's id (from 'jobs submit' or 'jobs ls')")]
Timeout = Annotated[
    float | None,
    typer.Option(help="Give up waiting after this many seconds (exit 124); the job keeps running"),
]
ENDED = {
    JobState.COMPLETED: Exit.OK,
    JobState.CANCELLED: Exit.CANCELLED,
    JobState.TIMEOUT: Exit.TIMEOUT,
}


def job_exit(job: Job) -> Exit:
    """0 for a completed job; 8 cancelled; 9 out of time; 1 for any other end."""
    return ENDED.get(job.state, Exit.FAILED)


@app.command(epilog=EXIT_CODES)
@user_command()
def submit(
    session: Session,
    file: Annotated[str, typer.Argument(help="The batch script (starts with #!); - : stdin")],
    name: Annotated[str | None, typer.Option("--name", "-J", help="Job name")] = None,
    partition: Annotated[str | None, typer.Option("--partition", "-p")] = None,
    account: Annotated[str | None, typer.Option("--account", "-A")] = None,
    qos: Annotated[str | None, typer.Option(help="Quality of service")] = None,
    time: Annotated[
        str | None,
        typer.Option("--time", "-t", help="Time limit: minutes, or e.g. 1:30:00, 2-00:00:00"),
    ] = None,
    nodes: Annotated[int | None, typer.Option("--nodes", "-N")] = None,
    ntasks: Annotated[int | None, typer.Option("--ntasks", "-n")] = None,
    cpus_per_task: Annotated[int | None, typer.Option("--cpus-per-task", "-c")] = None,
    memory: Annotated[str | None, typer.Option("--mem", help="Per node: MiB, or e.g. 4G")] = None,
    gpus: Annotated[int | None, typer.Option()] = None,
    workdir: Annotated[
        str | None, typer.Option("--workdir", "-D", help="Directory the job starts in")
    ] = None,
    env: Annotated[
        list[str] | None,
        typer.Option(
            "--env", "-e", help="KEY=VALUE, or KEY to pass this shell's value (repeat it)"
        ),
    ] = None,
    stdout: Annotated[
        str | None, typer.Option("--output", "-o", help="Stdout file (%j: job id)")
    ] = None,
    stderr: Annotated[str | None, typer.Option("--error", help="Stderr file")] = None,
    array: Annotated[str | None, typer.Option(help="Array indices, e.g. 0-9%2")] = None,
    dependency: Annotated[
        list[str] | None, typer.Option("--dependency", "-d", help="e.g. afterok:12 (repeat it)")
    ] = None,
    wait: Annotated[
        bool,
        typer.Option("--wait", "-w", help="Wait for the end; exit non-zero unless it completed"),
    ] = False,
    follow: Annotated[
        bool,
        typer.Option(
            "--follow", "-f", help="Print the job's output live until it ends (as --wait)"
        ),
    ] = False,
    timeout: Timeout = None,
) -> None:
    """Submit a batch script.

    With --wait or --follow, end when the job does: exit 0 only if it completed."""
    if follow and session.json:
        raise fail(Exit.USAGE, "--follow prints the job's output on stdout; use --wait --json")
    spec: dict[str, Any] = {
        "name": name,
        "partition": partition,
        "account": account,
        "qos": qos,
        "time_limit": time,
        "nodes": nodes,
        "ntasks": ntasks,
        "cpus_per_task": cpus_per_task,
        "memory": memory,
        "gpus": gpus,
        "working_directory": workdir,
        "environment": _environment(env or []),
        "stdout": stdout,
        "stderr": stderr,
        "array": array,
        "dependencies": dependency or [],
    }
    given = {key: value for key, value in spec.items() if value not in (None, [], {})}
    script = read_text(file)
    job = session.client.submit(session.system, script, **given)
    if not (wait or follow):
        report(job, session.json, f"submitted job {job.id} to {session.system}")
        return
    job = _until_ended(session.client, job, follow, timeout, session.json)
    _ended(job, session.json, follow)


@app.command("ls", epilog=EXIT_CODES)
@user_command()
def list_jobs(
    session: Session,
    state: Annotated[
        list[JobState] | None,
        typer.Option("--state", case_sensitive=False, help="Only jobs in this state (repeat it)"),
    ] = None,
    name: Annotated[str | None, typer.Option(help="Only jobs of this name")] = None,
    limit: Annotated[int, typer.Option(min=1, help="At most this many, newest first")] = 50,
) -> None:
    """List your jobs, newest first."""
    found = session.client.jobs(session.system, state=state, name=name, limit=limit)
    if session.json:
        print_json(found)
        return
    rows = [
        (j.id, j.name, j.state.value, j.exit_code, j.submit_time, j.end_time, j.nodes)
        for j in found
    ]
    table(("ID", "NAME", "STATE", "EXIT", "SUBMITTED", "ENDED", "NODES"), rows)


@app.command(epilog=EXIT_CODES)
@user_command()
def show(session: Session, job_id: JobId) -> None:
    """Show one job: state, exit code, times, nodes, output files."""
    job = session.client.job(session.system, job_id)
    details(job, session.json)


@app.command(epilog=EXIT_CODES)
@user_command()
def cancel(session: Session, job_id: JobId) -> None:
    """Cancel a job (one that has already ended is an error, exit code 7)."""
    job = session.client.cancel(session.system, job_id)
    report(job, session.json, f"job {job.id}: {job.state.value}")


@app.command(epilog=EXIT_CODES)
@user_command(json=False)
def logs(
    session: Session,
    job_id: JobId,
    follow: Annotated[
        bool, typer.Option("--follow", "-f", help="Keep printing new output until the job ends")
    ] = False,
    stderr: Annotated[bool, typer.Option("--stderr", help="The job's stderr, not stdout")] = False,
) -> None:
    """Print a job's output (stdout, or --stderr)."""
    stream = "stderr" if stderr else "stdout"
    client, system = session.client, session.system
    if follow:
        _print_output(client.follow(system, job_id, stream=stream))
    else:
        _print_output([client.output(system, job_id, stream=stream)])


@app.command(epilog=EXIT_CODES)
@user_command()
def wait(session: Session, job_id: JobId, timeout: Timeout = None) -> None:
    """Wait for a job to end; exit 0 only if it completed."""
    job = _wait(session.client, session.system, job_id, timeout, session.json)
    _ended(job, session.json, follow=False)


def _environment(pairs: list[str]) -> dict[str, str]:
    found: dict[str, str] = {}
    for pair in pairs:
        key, given, value = pair.partition("=")
        if not given and key not in os.environ:
            raise fail(Exit.USAGE, f"--env {key}: not set here; give it as {key}=VALUE")
        found[key] = value if given else os.environ[key]
    return found


def _print_output(pieces: Iterable[str]) -> None:
    for piece in pieces:
        sys.stdout.write(piece)
        sys.stdout.flush()


def _until_ended(client: Client, job: Job, follow: bool, timeout: float | None, quiet: bool) -> Job:
    """The submitted job once ended, its output printed on the way if ``follow``."""
    if not quiet:
        (note if follow else say)(f"submitted job {job.id} to {job.system}")
    try:
        if follow:
            _print_output(client.follow(job.system, job.id))
        return _wait(client, job.system, job.id, timeout, quiet)
    except KeyboardInterrupt:
        stop = f"'hpcgate jobs cancel {job.id} --system {job.system}' stops it"
        raise fail(Exit.INTERRUPTED, f"interrupted: job {job.id} goes on; {stop}") from None


def _wait(client: Client, system: str, job_id: str, timeout: float | None, quiet: bool) -> Job:
    with busy(f"waiting for job {job_id}", quiet):
        return client.wait(system, job_id, timeout=timeout)


def _ended(job: Job, json_out: bool, follow: bool) -> None:
    """Report the ended job; exit with its code."""
    code = job_exit(job)
    if json_out:
        print_json(job)
    else:
        exit_code = f", exit code {job.exit_code}" if job.exit_code is not None else ""
        reason = f" ({job.reason})" if job.reason and code != Exit.OK else ""
        (note if follow else say)(f"job {job.id} {job.state.value}{exit_code}{reason}")
        if code != Exit.OK and not follow:
            note(f"its output: hpcgate jobs logs {job.id} --system {job.system} [--stderr]")
    if code != Exit.OK:
        raise typer.Exit(int(code))
