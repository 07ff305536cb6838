"""``hpcgate files``: a system's files, as your account sees them. Remote paths are absolute
or relative to your home (or default) directory on the system."""

from __future__ import annotations

import posixpath
import shutil
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Literal

import typer

from hpcgate.client import Client
from hpcgate.model.errors import NotFound
from hpcgate.model.files import FileEntry
from hpcgate.model.tasks import Task
from hpcgate.usercli import tasks
from hpcgate.usercli.common import EXIT_CODES, Exit, Session, conflict_hint, fail, user_command
from hpcgate.usercli.output import (
    plain_fields,
    print_json,
    report,
    say,
    size,
    table,
    transfer,
    when,
)

app = typer.Typer(
    no_args_is_help=True,
    help="List, copy, move and transfer files on a system. Remote paths are absolute or"
    " relative to your home directory there.",
)

_TIMES = frozenset({"modified", "accessed", "changed"})
Remote = Annotated[str, typer.Argument(help="A path on the system")]
Lines = Annotated[int | None, typer.Option("--lines", "-n", min=1, help="How many lines")]
Bytes = Annotated[int | None, typer.Option("--bytes", "-c", min=1, help="How many bytes")]
Overwrite = Annotated[bool, typer.Option("--overwrite", help="Replace an existing target")]
Compression = Literal["auto", "gzip", "bzip2", "xz", "none"]
NoWait = Annotated[
    bool, typer.Option("--no-wait", help="Print the task and return; see 'hpcgate tasks'")
]


def _overwrite_hint(given: bool) -> str | None:
    return None if given else "pass --overwrite to replace it"


@app.command("ls", epilog=EXIT_CODES)
@user_command()
def list_directory(
    session: Session,
    path: Annotated[str, typer.Argument(help="A directory on the system")] = ".",
    hidden: Annotated[bool, typer.Option("--all", "-a", help="Names starting with '.'")] = False,
    depth: Annotated[int, typer.Option(min=1, max=32, help="Levels to descend")] = 1,
    numeric: Annotated[bool, typer.Option(help="uid and gid, no names")] = False,
) -> None:
    """List a directory: mode, owner, size, modification time, name."""
    listing = session.client.ls(session.system, path, hidden=hidden, depth=depth, numeric=numeric)
    if session.json:
        print_json(listing)
        return
    rows = [_row(entry, listing.path) for entry in sorted(listing.entries, key=lambda e: e.path)]
    table(("MODE", "USER", "GROUP", "SIZE", "MODIFIED", "NAME"), rows)


@app.command(epilog=EXIT_CODES)
@user_command()
def stat(
    session: Session,
    path: Remote,
    dereference: Annotated[
        bool, typer.Option("--dereference", "-L", help="Follow a final symlink")
    ] = False,
) -> None:
    """Show one file's details."""
    entry = session.client.stat(session.system, path, dereference=dereference)
    if session.json:
        print_json(entry)
    else:  # times as dates, not seconds since the epoch
        fields = [(name, _dated(name, value)) for name, value in plain_fields(entry)]
        table(("field", "value"), fields)


def _dated(name: str, value: object) -> object:
    if name in _TIMES and isinstance(value, int | float):
        return datetime.fromtimestamp(value, UTC)
    return value


@app.command(epilog=EXIT_CODES)
@user_command()
def get(
    session: Session,
    remote: Remote,
    local: Annotated[
        Path | None, typer.Argument(help="Where to save it; default: its name, here")
    ] = None,
) -> None:
    """Download a file, with a progress bar; a broken download resumes where it stopped."""
    target = local or Path(posixpath.basename(remote.rstrip("/")) or "download")
    if target.is_dir():
        target = target / posixpath.basename(remote.rstrip("/"))
    client, system = session.client, session.system
    with transfer(remote, session.json) as progress:
        saved = client.download(system, remote, target, progress=progress)
    count = saved.stat().st_size
    found = {"remote": remote, "local": str(saved), "bytes": count}
    report(found, session.json, f"{remote} -> {saved} ({size(count)})")


@app.command(epilog=EXIT_CODES)
@user_command()
def put(
    session: Session,
    local: Annotated[Path, typer.Argument(help="The local file")],
    remote: Annotated[
        str | None,
        typer.Argument(help="Where on the system; a directory keeps the name; default: home"),
    ] = None,
    overwrite: Overwrite = False,
) -> None:
    """Upload a file, with a progress bar; large files go in chunks that resume."""
    if not local.is_file():
        raise fail(Exit.USAGE, f"{local}: not a file")
    client, system = session.client, session.system
    where = _into(client, system, remote or ".", local.name)
    with conflict_hint(_overwrite_hint(overwrite)), transfer(local.name, session.json) as progress:
        done = client.upload(system, local, where, overwrite=overwrite, progress=progress)
    report(done, session.json, f"{local} -> {done.entry.path} ({size(done.entry.size)})")


@app.command(epilog=EXIT_CODES)
@user_command()
def rm(
    session: Session,
    paths: Annotated[list[str], typer.Argument(help="Files, links or directories")],
    recursive: Annotated[
        bool, typer.Option("--recursive", "-r", help="A directory and all in it")
    ] = False,
) -> None:
    """Remove files (a link itself, never what it points to)."""
    client, system = session.client, session.system
    for path in paths:
        with conflict_hint(None if recursive else "pass -r to remove a directory and all in it"):
            client.rm(system, path, recursive=recursive)
        if not session.json:
            say(f"removed {path}")
    if session.json:
        print_json({"removed": paths})


@app.command(epilog=EXIT_CODES)
@user_command()
def mkdir(
    session: Session,
    path: Remote,
    parents: Annotated[
        bool, typer.Option("--parents", "-p", help="Make parents; no error if it exists")
    ] = False,
) -> None:
    """Create a directory."""
    entry = session.client.mkdir(session.system, path, parents=parents)
    report(entry, session.json, f"created {entry.path}")


@app.command(epilog=EXIT_CODES)
@user_command()
def chmod(
    session: Session,
    mode: Annotated[str, typer.Argument(help="Octal, e.g. 750")],
    path: Remote,
) -> None:
    """Change a file's permission bits."""
    entry = session.client.chmod(session.system, path, mode)
    report(entry, session.json, f"{entry.path}: {entry.permissions}")


@app.command(epilog=EXIT_CODES)
@user_command()
def chown(
    session: Session,
    path: Remote,
    owner: Annotated[str | None, typer.Option(help="New owner (usually only root may)")] = None,
    group: Annotated[str | None, typer.Option(help="New group, one of yours")] = None,
) -> None:
    """Change a file's owner or group."""
    entry = session.client.chown(session.system, path, owner=owner, group=group)
    report(entry, session.json, f"{entry.path}: {entry.user}:{entry.group}")


@app.command(epilog=EXIT_CODES)
@user_command()
def ln(
    session: Session,
    target: Annotated[str, typer.Argument(help="What the link points to")],
    link: Annotated[str, typer.Argument(help="The link to create")],
) -> None:
    """Create a symbolic link (its target must lie inside your roots)."""
    entry = session.client.symlink(session.system, link, target)
    report(entry, session.json, f"{entry.path} -> {entry.link_target}")


@app.command(epilog=EXIT_CODES)
@user_command(json=False)
def cat(session: Session, path: Remote) -> None:
    """Print a whole file, byte for byte."""
    client, system = session.client, session.system
    with tempfile.TemporaryDirectory() as folder:
        copy = client.download(system, path, Path(folder) / "cat")
        with copy.open("rb") as source:
            shutil.copyfileobj(source, sys.stdout.buffer)
        sys.stdout.buffer.flush()


@app.command(epilog=EXIT_CODES)
@user_command(json=False)
def head(
    session: Session,
    path: Remote,
    lines: Lines = None,
    count: Bytes = None,
) -> None:
    """Print the first lines (10 unless -n or -c) of a file."""
    text = session.client.head(session.system, path, lines=lines, bytes=count)
    sys.stdout.write(text)


@app.command(epilog=EXIT_CODES)
@user_command(json=False)
def tail(
    session: Session,
    path: Remote,
    lines: Lines = None,
    count: Bytes = None,
) -> None:
    """Print the last lines (10 unless -n or -c) of a file."""
    text = session.client.tail(session.system, path, lines=lines, bytes=count)
    sys.stdout.write(text)


@app.command(epilog=EXIT_CODES)
@user_command()
def checksum(
    session: Session,
    path: Remote,
    algorithm: Annotated[str, typer.Option("--algorithm", help="e.g. sha256, md5")] = "sha256",
) -> None:
    """Print a file's digest, computed on the system (as sha256sum does)."""
    digest = session.client.checksum(session.system, path, algorithm)
    report(digest, session.json, f"{digest.checksum}  {digest.path}")


@app.command(epilog=EXIT_CODES)
@user_command()
def cp(
    session: Session,
    source: Remote,
    target: Remote,
    overwrite: Overwrite = False,
    no_wait: NoWait = False,
) -> None:
    """Copy a file or a tree on the system (a task; waits for it with a progress bar)."""
    with conflict_hint(_overwrite_hint(overwrite)):
        started = session.client.cp(session.system, source, target, overwrite=overwrite)
    _follow_task(session, started, no_wait)


@app.command(epilog=EXIT_CODES)
@user_command()
def mv(
    session: Session,
    source: Remote,
    target: Remote,
    overwrite: Overwrite = False,
    no_wait: NoWait = False,
) -> None:
    """Move or rename on the system (a task; waits for it with a progress bar)."""
    with conflict_hint(_overwrite_hint(overwrite)):
        started = session.client.mv(session.system, source, target, overwrite=overwrite)
    _follow_task(session, started, no_wait)


@app.command(epilog=EXIT_CODES)
@user_command()
def compress(
    session: Session,
    source: Annotated[str, typer.Argument(help="A file or directory")],
    archive: Annotated[str, typer.Argument(help="The tar archive to create")],
    compression: Annotated[
        Compression,
        typer.Option(help="auto: from the archive's suffix (.tar.gz, .tar.bz2, .tar.xz, .tar)"),
    ] = "auto",
    overwrite: Overwrite = False,
    no_wait: NoWait = False,
) -> None:
    """Make a tar archive on the system (a task)."""
    with conflict_hint(_overwrite_hint(overwrite)):
        started = session.client.compress(
            session.system, source, archive, compression=compression, overwrite=overwrite
        )
    _follow_task(session, started, no_wait)


@app.command(epilog=EXIT_CODES)
@user_command()
def extract(
    session: Session,
    archive: Annotated[str, typer.Argument(help="A tar archive")],
    target: Annotated[str, typer.Argument(help="A new directory to unpack into")],
    no_wait: NoWait = False,
) -> None:
    """Unpack a tar archive (gzip, bzip2, xz or none) on the system (a task)."""
    started = session.client.extract(session.system, archive, target)
    _follow_task(session, started, no_wait)


def _row(entry: FileEntry, top: str) -> tuple[object, ...]:
    name = posixpath.relpath(entry.path, top) if entry.path != top else entry.name
    if entry.type == "directory":
        name += "/"
    elif entry.link_target is not None:
        name += f" -> {entry.link_target}"
    owner = entry.user if entry.user is not None else entry.uid
    group = entry.group if entry.group is not None else entry.gid
    return (entry.permissions, owner, group, size(entry.size), when(entry.modified), name)


def _into(client: Client, system: str, remote: str, name: str) -> str:
    """``remote``, or ``remote/name`` when it is a directory (as cp does)."""
    if remote.endswith("/"):
        return remote + name
    try:
        found = client.stat(system, remote, dereference=True)
    except NotFound:
        return remote
    return posixpath.join(remote, name) if found.type == "directory" else remote


def _follow_task(session: Session, started: Task, no_wait: bool) -> None:
    if no_wait:
        report(started, session.json, f"task {started.id} started: see 'hpcgate tasks show'")
        return
    tasks.ended(tasks.watch(session.client, started, None, session.json), session.json)
