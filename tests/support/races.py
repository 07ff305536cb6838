"""A client racing the gateway: a directory ``a`` swapped for a symlink out of the file
root and back, forever, while file tasks copy and archive what is in it."""

from __future__ import annotations

import contextlib
import os
import shutil
import tarfile
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx

from tests.support.jobs import finished

INSIDE = b"inside\n"
OUTSIDE = b"not for you\n"


#: Every this many swaps the directory stays real a moment (:data:`REAL_PAUSE` s), so that
#: some tasks surely run whole on it: a test that saw every task fail would prove nothing.
REAL_EVERY = 64
REAL_PAUSE = 0.002


def swapping(folder: Path, outside: Path, stop: threading.Event) -> None:
    """Swap the directory ``folder/a`` with a symlink to ``outside`` and back, as fast as
    it can, forever (resting on the real directory every :data:`REAL_EVERY` swaps)."""
    real, link, parked = folder / "a", folder / "a-link", folder / "a-dir"
    turn = 0
    while not stop.is_set():
        os.rename(real, parked)
        os.rename(link, real)
        os.rename(real, link)
        os.rename(parked, real)
        turn += 1
        if turn % REAL_EVERY == 0:
            stop.wait(REAL_PAUSE)


@contextlib.contextmanager
def swapped(folder: Path, outside: Path, owner: tuple[int, int] | None = None) -> Iterator[None]:
    """``folder/a`` (holding ``secret.txt``: :data:`INSIDE`) swapped, while the context
    lasts, with a link to ``outside`` (whose ``secret.txt`` is :data:`OUTSIDE`); all of
    them owned by ``owner`` (uid, gid) if given. An earlier round's ``a`` and link go first."""
    for leftover in (folder / "a-link", folder / "a"):
        if leftover.is_symlink() or leftover.is_file():
            leftover.unlink()
        elif leftover.is_dir():
            shutil.rmtree(leftover)
    (folder / "a").mkdir(parents=True)
    (folder / "a" / "secret.txt").write_bytes(INSIDE)
    (outside / "secret.txt").write_bytes(OUTSIDE)
    (folder / "a-link").symlink_to(outside)
    if owner is not None:
        for path in (folder / "a", folder / "a" / "secret.txt", outside, outside / "secret.txt"):
            os.chown(path, *owner)
        os.chown(folder / "a-link", *owner, follow_symlinks=False)
    stop = threading.Event()
    swapper = threading.Thread(target=swapping, args=(folder, outside, stop))
    swapper.start()
    try:
        yield
    finally:
        stop.set()
        swapper.join()


def task_request(under: str, turn: int) -> tuple[str, dict[str, object]]:
    """One of three tasks on the swapped ``under/a``: a copy out of it, an archive of its
    file, a copy into it (the route and the body to post)."""
    if turn % 3 == 0:
        return "cp", {"source": f"{under}/a/secret.txt", "target": f"{under}/out/c{turn}"}
    if turn % 3 == 1:
        body = {"source": f"{under}/a/secret.txt", "target": f"{under}/out/t{turn}.tar"}
        return "compress", {**body, "compression": "none"}
    return "cp", {"source": f"{under}/plain.txt", "target": f"{under}/a/w{turn}"}


def race_tasks(client: httpx.Client, files: str, under: str, count: int) -> list[dict[str, object]]:
    """Start ``count`` tasks (:func:`task_request`) and wait for each to end."""
    started = [
        client.post(f"{files}/{route}", json=body)
        for route, body in (task_request(under, turn) for turn in range(count))
    ]
    return [finished(client, answer) for answer in started if answer.status_code == 202]


def results(out: Path) -> tuple[list[bytes], list[bytes]]:
    """What the copies and the archives in ``out`` hold."""
    copies = [path.read_bytes() for path in out.iterdir() if path.name.startswith("c")]
    archived = [_member_bytes(path) for path in out.iterdir() if path.suffix == ".tar"]
    return copies, archived


def _member_bytes(archive: Path) -> bytes:
    with tarfile.open(archive) as opened:
        member = opened.extractfile("secret.txt")
        assert member is not None
        return member.read()
