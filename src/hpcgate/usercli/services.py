"""``hpcgate services``: list, start, scale and stop services, and follow their events and
their servers' stderr."""

from __future__ import annotations

import sys
from collections.abc import Iterable
from itertools import islice
from typing import Annotated, Any

import typer

from hpcgate.model.services import Service, ServiceEvent
from hpcgate.usercli.common import (
    EXIT_CODES,
    Exit,
    InProject,
    Session,
    fail,
    in_project,
    read_text,
    user_command,
)
from hpcgate.usercli.output import busy, note, out, print_json, report, say, table, when

app = typer.Typer(
    no_args_is_help=True,
    help="Start, scale, stop and watch services: servers kept running as jobs and reached"
    " through the gateway's proxy.",
)

Name = Annotated[str, typer.Argument(help="The service's name (from 'services ls')")]
Limit = Annotated[
    int | None, typer.Option("--limit", "-n", min=1, help="Stop after this many; default: never")
]
Project = Annotated[
    str | None,
    typer.Option(help="A project's services (named PROJECT~NAME) instead of your own"),
]
LIVE = ("starting", "ready", "draining")


@app.command("ls", epilog=EXIT_CODES)
@user_command(system=False)
def list_services(session: Session, project: Project = None) -> None:
    """List the services declared for you and your own, with their replicas' counts."""
    found = session.client.services.list(project)
    if session.json:
        print_json(found)
        return
    table(
        ("NAME", "OWNER", "SYSTEM", "MIN", "MAX", "READY", "LIVE", "MODELS"),
        [_row(service) for service in found],
    )


app.command("list", hidden=True, epilog=EXIT_CODES)(list_services)


@app.command(epilog=EXIT_CODES)
@user_command(system=False)
def show(session: Session, name: Name, project: InProject = None) -> None:
    """Show one service: what it runs, how it scales, and its replicas."""
    service = session.client.services.get(in_project(name, project))
    if session.json:
        print_json(service)
        return
    _show(service)


@app.command(epilog=EXIT_CODES)
@user_command()
def start(
    session: Session,
    name: Annotated[str, typer.Argument(help="Its name: a-z, 0-9 and -, up to 40")],
    file: Annotated[
        str | None,
        typer.Argument(
            help="The script that starts the server on $HPCGATE_SERVICE_PORT; - : stdin"
        ),
    ] = None,
    script_path: Annotated[
        str | None, typer.Option(help="A script file on the system instead of FILE")
    ] = None,
    min_replicas: Annotated[
        int | None, typer.Option("--min", help="Replicas always kept (0: none until a request)")
    ] = None,
    max_replicas: Annotated[int | None, typer.Option("--max", help="Replicas at most")] = None,
    model: Annotated[
        list[str] | None,
        typer.Option("--model", "-m", help="An OpenAI model name it answers (repeat it)"),
    ] = None,
    health_path: Annotated[
        str | None, typer.Option(help="Ready once this answers 2xx (default /health)")
    ] = None,
    keep_prefix: Annotated[
        bool, typer.Option(help="Pass the proxy's whole path on (apps served under a prefix)")
    ] = False,
    target_in_flight: Annotated[
        int | None, typer.Option(help="Requests at once per replica before another starts")
    ] = None,
    idle_seconds: Annotated[
        int | None, typer.Option(help="A replica idle this long stops (never below --min)")
    ] = None,
    ready_timeout: Annotated[
        int | None, typer.Option(help="Seconds a replica may take to become ready")
    ] = None,
    request_timeout: Annotated[
        int | None, typer.Option(help="Seconds the proxy waits for the server's next bytes")
    ] = None,
    time: Annotated[
        str | None, typer.Option("--time", "-t", help="Each replica job's time limit")
    ] = None,
    partition: Annotated[str | None, typer.Option("--partition", "-p")] = None,
    account: Annotated[str | None, typer.Option("--account", "-A")] = None,
    cpus_per_task: Annotated[int | None, typer.Option("--cpus-per-task", "-c")] = None,
    memory: Annotated[str | None, typer.Option("--mem", help="Per node: MiB, or e.g. 4G")] = None,
    gpus: Annotated[int | None, typer.Option()] = None,
    wait: Annotated[
        bool, typer.Option("--wait", "-w", help="Wait until a replica is ready (needs --min 1)")
    ] = False,
    timeout: Annotated[
        float | None, typer.Option(help="Give up waiting after this many seconds (exit 124)")
    ] = None,
    project: Annotated[
        str | None,
        typer.Option(help="Start it in this project: still as you, named PROJECT~NAME"),
    ] = None,
) -> None:
    """Start a service of your own, running as you on --system; only you see it (with
    --project: the project's members see it too)."""
    if (file is None) == (script_path is None):
        raise fail(Exit.USAGE, "give the script as FILE or --script-path (one of them)")
    if wait and not min_replicas:
        raise fail(Exit.USAGE, "--wait needs --min 1 or more: with 0 nothing starts yet")
    fields: dict[str, Any] = {
        "script": None if file is None else read_text(file),
        "script_path": script_path,
        "min_replicas": min_replicas,
        "max_replicas": max_replicas,
        "models": model or None,
        "health_path": health_path,
        "keep_prefix": keep_prefix or None,
        "target_in_flight": target_in_flight,
        "idle_seconds": idle_seconds,
        "ready_timeout": ready_timeout,
        "request_timeout": request_timeout,
        "time_limit": time,
        "partition": partition,
        "account": account,
        "cpus_per_task": cpus_per_task,
        "memory": memory,
        "gpus": gpus,
        "project": project,
    }
    services = session.client.services
    service = services.create(name, session.system, **fields)
    name = f"{project}~{name}" if project else name
    if wait:
        with busy(f"waiting for a ready replica of {name}", session.json):
            service = services.wait(name, timeout=timeout)
    report(service, session.json, f"service {name}: {_counts(service)}")


@app.command(epilog=EXIT_CODES)
@user_command(system=False)
def scale(
    session: Session,
    name: Name,
    min_replicas: Annotated[int | None, typer.Option("--min", help="Replicas always kept")] = None,
    max_replicas: Annotated[int | None, typer.Option("--max", help="Replicas at most")] = None,
    project: InProject = None,
) -> None:
    """Change a service's minimum and maximum replicas (your own; a declared one: admin)."""
    if min_replicas is None and max_replicas is None:
        raise fail(Exit.USAGE, "give --min, --max or both")
    name = in_project(name, project)
    service = session.client.services.update(
        name, min_replicas=min_replicas, max_replicas=max_replicas
    )
    report(service, session.json, f"service {name}: {_counts(service)}")


@app.command(epilog=EXIT_CODES)
@user_command(system=False)
def stop(session: Session, name: Name, project: InProject = None) -> None:
    """Stop and remove your service: its replicas finish their requests, then end."""
    name = in_project(name, project)
    service = session.client.services.delete(name)
    report(service, session.json, f"service {name}: stopping; {_counts(service)}")


@app.command(epilog=EXIT_CODES)
@user_command(system=False)
def events(session: Session, name: Name, limit: Limit = None, project: InProject = None) -> None:
    """Follow a service's events live (Ctrl-C ends it).

    Its replicas' changes of state and their servers' stderr lines (each live replica's
    from its start); with --json, one JSON object per line."""
    for event in islice(session.client.services.events(in_project(name, project)), limit):
        if session.json:
            sys.stdout.write(event.model_dump_json() + "\n")
            sys.stdout.flush()
        else:
            say(_event_line(event))


@app.command(epilog=EXIT_CODES)
@user_command(system=False, json=False)
def logs(
    session: Session,
    name: Name,
    replica: Annotated[
        int | None, typer.Option("--replica", "-r", help="Only this replica's (its id)")
    ] = None,
    limit: Annotated[
        int | None,
        typer.Option("--limit", "-n", min=1, help="Stop after this many lines; default: never"),
    ] = None,
    project: InProject = None,
) -> None:
    """Follow the stderr of a service's servers (Ctrl-C ends it).

    Each live replica's from its start, then as it is written; each line after its
    replica's id in brackets (not with --replica)."""
    lines = _stderr(session.client.services.events(in_project(name, project)), replica)
    for line in islice(lines, limit):
        sys.stdout.write(line + "\n")
        sys.stdout.flush()


def _stderr(found: Iterable[ServiceEvent], replica: int | None) -> Iterable[str]:
    for event in found:
        if event.kind != "stderr" or (replica is not None and event.replica != replica):
            continue
        text = event.text or ""
        yield text if replica is not None else f"[{event.replica}] {text}"


def _event_line(event: ServiceEvent) -> str:
    what = event.state.value if event.state is not None else event.kind
    text = f" {event.text}" if event.text else ""
    return f"{when(event.time)}  replica {event.replica}  {what}:{text}"


def _row(service: Service) -> tuple[object, ...]:
    spec, states = service.spec, [r.state.value for r in service.replicas]
    owner = service.owner or "(declared)"
    live = sum(state in LIVE for state in states)
    ready = states.count("ready")
    return (
        service.name,
        owner,
        spec.system,
        spec.min_replicas,
        spec.max_replicas,
        ready,
        live,
        spec.models,
    )


def _counts(service: Service) -> str:
    ready = sum(r.state.value == "ready" for r in service.replicas)
    live = sum(r.state.value in LIVE for r in service.replicas)
    spec = service.spec
    return f"{ready} ready, {live} live; min {spec.min_replicas}, max {spec.max_replicas}"


def _show(service: Service) -> None:
    spec = service.spec
    fields: list[tuple[str, object]] = [
        ("name", service.name),
        ("owner", service.owner or "(declared)"),
        ("stopping", service.stopping),
        ("system", spec.system),
        ("script", spec.script_path or "(inline)"),
        ("models", spec.models),
        ("replicas", f"min {spec.min_replicas}, max {spec.max_replicas}"),
        ("target_in_flight", spec.target_in_flight),
        ("idle_seconds", spec.idle_seconds),
        ("health_path", spec.health_path),
        ("keep_prefix", spec.keep_prefix),
        ("ready_timeout", spec.ready_timeout),
        ("request_timeout", spec.request_timeout),
        ("time_limit", spec.time_limit),
    ]
    table(("field", "value"), fields)
    if not service.replicas:
        note("no replicas")
        return
    out.print()
    table(
        ("REPLICA", "JOB", "STATE", "NODE", "PORT", "IN-FLIGHT", "READY", "HEALTHY", "REASON"),
        [
            (
                r.id,
                r.job_id,
                r.state.value,
                r.node,
                r.port,
                r.in_flight,
                r.ready_at,
                r.last_health_ok,
                r.reason,
            )
            for r in service.replicas
        ],
    )
