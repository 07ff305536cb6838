"""``hpcgate files``: a system's files, as your account sees them. Remote paths are absolute
or relative to your home (or default) directory on the system."""

from __future__ import annotations

import posixpath
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Annotated, Literal

import typer

from hpcgate.client import Client
from hpcgate.model.errors import NotFound
from hpcgate.model.files import FileEntry
from hpcgate.model.tasks import Task
from hpcgate.usercli import tasks
from hpcgate.usercli.common import (
    EXIT_CODES,
    Exit,
    JsonOption,
    ProfileOption,
    SystemOption,
    connect,
    fail,
    handled,
    pick_system,
)
from hpcgate.usercli.output import details, print_json, report, say, size, table, transfer, when

app = typer.Typer(
    no_args_is_help=True,
    help="List, copy, move and transfer files on a system. Remote paths are absolute or"
    " relative to your home directory there.",
)

Remote = Annotated[str, typer.Argument(help="A path on the system")]
Lines = Annotated[int | None, typer.Option("--lines", "-n", min=1, help="How many lines")]
Bytes = Annotated[int | None, typer.Option("--bytes", "-c", min=1, help="How many bytes")]
Overwrite = Annotated[bool, typer.Option("--overwrite", help="Replace an existing target")]
Compression = Literal["gzip", "bzip2", "xz", "none"]
NoWait = Annotated[
    bool, typer.Option("--no-wait", help="Print the task and return; see 'hpcgate tasks'")
]


@app.command("ls", epilog=EXIT_CODES)
@handled
def list_directory(
    path: Annotated[str, typer.Argument(help="A directory on the system")] = ".",
    system: SystemOption = None,
    hidden: Annotated[bool, typer.Option("--all", "-a", help="Names starting with '.'")] = False,
    depth: Annotated[int, typer.Option(min=1, max=32, help="Levels to descend")] = 1,
    numeric: Annotated[bool, typer.Option(help="uid and gid, no names")] = False,
    json_out: JsonOption = False,
    profile: ProfileOption = None,
) -> None:
    """List a directory: mode, owner, size, modification time, name."""
    with connect(profile) as client:
        listing = client.ls(
            pick_system(client, system), path, hidden=hidden, depth=depth, numeric=numeric
        )
    if json_out:
        print_json(listing)
        return
    rows = [_row(entry, listing.path) for entry in sorted(listing.entries, key=lambda e: e.path)]
    table(("MODE", "USER", "GROUP", "SIZE", "MODIFIED", "NAME"), rows)


@app.command(epilog=EXIT_CODES)
@handled
def stat(
    path: Remote,
    system: SystemOption = None,
    dereference: Annotated[
        bool, typer.Option("--dereference", "-L", help="Follow a final symlink")
    ] = False,
    json_out: JsonOption = False,
    profile: ProfileOption = None,
) -> None:
    """Show one file's details."""
    with connect(profile) as client:
        entry = client.stat(pick_system(client, system), path, dereference=dereference)
    if json_out:
        print_json(entry)
    else:
        details(entry)


@app.command(epilog=EXIT_CODES)
@handled
def get(
    remote: Remote,
    local: Annotated[
        Path | None, typer.Argument(help="Where to save it; default: its name, here")
    ] = None,
    system: SystemOption = None,
    json_out: JsonOption = False,
    profile: ProfileOption = None,
) -> None:
    """Download a file, with a progress bar; a broken download resumes where it stopped."""
    target = local or Path(posixpath.basename(remote.rstrip("/")) or "download")
    if target.is_dir():
        target = target / posixpath.basename(remote.rstrip("/"))
    with connect(profile) as client, transfer(remote, json_out) as progress:
        saved = client.download(pick_system(client, system), remote, target, progress=progress)
    count = saved.stat().st_size
    found = {"remote": remote, "local": str(saved), "bytes": count}
    report(found, json_out, f"{remote} -> {saved} ({size(count)})")


@app.command(epilog=EXIT_CODES)
@handled
def put(
    local: Annotated[Path, typer.Argument(help="The local file")],
    remote: Annotated[
        str | None,
        typer.Argument(help="Where on the system; a directory keeps the name; default: home"),
    ] = None,
    system: SystemOption = None,
    overwrite: Overwrite = False,
    json_out: JsonOption = False,
    profile: ProfileOption = None,
) -> None:
    """Upload a file, with a progress bar; large files go in chunks that resume."""
    if not local.is_file():
        raise fail(Exit.USAGE, f"{local}: not a file")
    with connect(profile) as client:
        target = pick_system(client, system)
        where = _into(client, target, remote or ".", local.name)
        with transfer(local.name, json_out) as progress:
            done = client.upload(target, local, where, overwrite=overwrite, progress=progress)
    report(done, json_out, f"{local} -> {done.entry.path} ({size(done.entry.size)})")


@app.command(epilog=EXIT_CODES)
@handled
def rm(
    paths: Annotated[list[str], typer.Argument(help="Files, links or directories")],
    system: SystemOption = None,
    recursive: Annotated[
        bool, typer.Option("--recursive", "-r", help="A directory and all in it")
    ] = False,
    json_out: JsonOption = False,
    profile: ProfileOption = None,
) -> None:
    """Remove files (a link itself, never what it points to)."""
    with connect(profile) as client:
        target = pick_system(client, system)
        for path in paths:
            client.rm(target, path, recursive=recursive)
            if not json_out:
                say(f"removed {path}")
    if json_out:
        print_json({"removed": paths})


@app.command(epilog=EXIT_CODES)
@handled
def mkdir(
    path: Remote,
    system: SystemOption = None,
    parents: Annotated[
        bool, typer.Option("--parents", "-p", help="Make parents; no error if it exists")
    ] = False,
    json_out: JsonOption = False,
    profile: ProfileOption = None,
) -> None:
    """Create a directory."""
    with connect(profile) as client:
        entry = client.mkdir(pick_system(client, system), path, parents=parents)
    report(entry, json_out, f"created {entry.path}")


@app.command(epilog=EXIT_CODES)
@handled
def chmod(
    mode: Annotated[str, typer.Argument(help="Octal, e.g. 750")],
    path: Remote,
    system: SystemOption = None,
    json_out: JsonOption = False,
    profile: ProfileOption = None,
) -> None:
    """Change a file's permission bits."""
    with connect(profile) as client:
        entry = client.chmod(pick_system(client, system), path, mode)
    report(entry, json_out, f"{entry.path}: {entry.permissions}")


@app.command(epilog=EXIT_CODES)
@handled
def chown(
    path: Remote,
    system: SystemOption = None,
    owner: Annotated[str | None, typer.Option(help="New owner (usually only root may)")] = None,
    group: Annotated[str | None, typer.Option(help="New group, one of yours")] = None,
    json_out: JsonOption = False,
    profile: ProfileOption = None,
) -> None:
    """Change a file's owner or group."""
    with connect(profile) as client:
        entry = client.chown(pick_system(client, system), path, owner=owner, group=group)
    report(entry, json_out, f"{entry.path}: {entry.user}:{entry.group}")


@app.command(epilog=EXIT_CODES)
@handled
def ln(
    target: Annotated[str, typer.Argument(help="What the link points to")],
    link: Annotated[str, typer.Argument(help="The link to create")],
    system: SystemOption = None,
    json_out: JsonOption = False,
    profile: ProfileOption = None,
) -> None:
    """Create a symbolic link (its target must lie inside your roots)."""
    with connect(profile) as client:
        entry = client.symlink(pick_system(client, system), link, target)
    report(entry, json_out, f"{entry.path} -> {entry.link_target}")


@app.command(epilog=EXIT_CODES)
@handled
def cat(path: Remote, system: SystemOption = None, profile: ProfileOption = None) -> None:
    """Print a whole file, byte for byte."""
    with connect(profile) as client, tempfile.TemporaryDirectory() as folder:
        copy = client.download(pick_system(client, system), path, Path(folder) / "cat")
        with copy.open("rb") as source:
            shutil.copyfileobj(source, sys.stdout.buffer)
        sys.stdout.buffer.flush()


@app.command(epilog=EXIT_CODES)
@handled
def head(
    path: Remote,
    system: SystemOption = None,
    lines: Lines = None,
    count: Bytes = None,
    profile: ProfileOption = None,
) -> None:
    """Print the first lines (10 unless -n or -c) of a file."""
    with connect(profile) as client:
        text = client.head(pick_system(client, system), path, lines=lines, bytes=count)
    sys.stdout.write(text)


@app.command(epilog=EXIT_CODES)
@handled
def tail(
    path: Remote,
    system: SystemOption = None,
    lines: Lines = None,
    count: Bytes = None,
    profile: ProfileOption = None,
) -> None:
    """Print the last lines (10 unless -n or -c) of a file."""
    with connect(profile) as client:
        text = client.tail(pick_system(client, system), path, lines=lines, bytes=count)
    sys.stdout.write(text)


@app.command(epilog=EXIT_CODES)
@handled
def checksum(
    path: Remote,
    system: SystemOption = None,
    algorithm: Annotated[str, typer.Option("--algorithm", help="e.g. sha256, md5")] = "sha256",
    json_out: JsonOption = False,
    profile: ProfileOption = None,
) -> None:
    """Print a file's digest, computed on the system (as sha256sum does)."""
    with connect(profile) as client:
        digest = client.checksum(pick_system(client, system), path, algorithm)
    report(digest, json_out, f"{digest.checksum}  {digest.path}")


@app.command(epilog=EXIT_CODES)
@handled
def cp(
    source: Remote,
    target: Remote,
    system: SystemOption = None,
    overwrite: Overwrite = False,
    no_wait: NoWait = False,
    json_out: JsonOption = False,
    profile: ProfileOption = None,
) -> None:
    """Copy a file or a tree on the system (a task; waits for it with a progress bar)."""
    with connect(profile) as client:
        name = pick_system(client, system)
        started = client.cp(name, source, target, overwrite=overwrite)
        _follow_task(client, started, no_wait, json_out)


@app.command(epilog=EXIT_CODES)
@handled
def mv(
    source: Remote,
    target: Remote,
    system: SystemOption = None,
    overwrite: Overwrite = False,
    no_wait: NoWait = False,
    json_out: JsonOption = False,
    profile: ProfileOption = None,
) -> None:
    """Move or rename on the system (a task; waits for it with a progress bar)."""
    with connect(profile) as client:
        name = pick_system(client, system)
        started = client.mv(name, source, target, overwrite=overwrite)
        _follow_task(client, started, no_wait, json_out)


@app.command(epilog=EXIT_CODES)
@handled
def compress(
    source: Annotated[str, typer.Argument(help="A file or directory")],
    archive: Annotated[str, typer.Argument(help="The tar archive to create")],
    system: SystemOption = None,
    compression: Annotated[Compression, typer.Option()] = "gzip",
    overwrite: Overwrite = False,
    no_wait: NoWait = False,
    json_out: JsonOption = False,
    profile: ProfileOption = None,
) -> None:
    """Make a tar archive on the system (a task)."""
    with connect(profile) as client:
        name = pick_system(client, system)
        started = client.compress(
            name, source, archive, compression=compression, overwrite=overwrite
        )
        _follow_task(client, started, no_wait, json_out)


@app.command(epilog=EXIT_CODES)
@handled
def extract(
    archive: Annotated[str, typer.Argument(help="A tar archive")],
    target: Annotated[str, typer.Argument(help="The directory to unpack into")],
    system: SystemOption = None,
    no_wait: NoWait = False,
    json_out: JsonOption = False,
    profile: ProfileOption = None,
) -> None:
    """Unpack a tar archive (gzip, bzip2, xz or none) on the system (a task)."""
    with connect(profile) as client:
        started = client.extract(pick_system(client, system), archive, target)
        _follow_task(client, started, no_wait, json_out)


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


def _follow_task(client: Client, started: Task, no_wait: bool, json_out: bool) -> None:
    if no_wait:
        report(started, json_out, f"task {started.id} started: see 'hpcgate tasks show'")
        return
    tasks.ended(tasks.watch(client, started, None, json_out), json_out)
