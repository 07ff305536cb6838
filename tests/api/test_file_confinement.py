"""The files API against a hostile user of its own roots (single-user mode, a real gateway).

A client that swaps a directory for an outward symlink mid-request, writes through a
symlink, or points the API at a FIFO or a device must reach nothing outside its roots and
must not stop the gateway for anyone else. Roots are ``<tmp>/{user}``; ``<tmp>/outside``
lies outside every root.
"""

from __future__ import annotations

import os
import stat
import tarfile
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from tests.support.accounts import give
from tests.support.gateway_process import GatewayProcess, new_gateway, roots_config, user_client
from tests.support.jobs import finished
from tests.support.races import INSIDE, OUTSIDE, race_tasks, results, swapped, swapping

FILES = "/api/v1/systems/local/files"


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("confine")
    for name in ("alice", "bob", "outside"):
        (base / name).mkdir()
    (base / "outside" / "secret.txt").write_bytes(OUTSIDE)
    for victim in ("victim.txt", "copied.txt", "uploaded.txt"):
        (base / "outside" / victim).write_bytes(OUTSIDE)
    give(base / "alice", "alice")  # as root, users act as their own accounts
    give(base / "bob", "bob")
    return base


@pytest.fixture(scope="module")
def server(base: Path) -> Iterator[GatewayProcess]:
    config = roots_config(f"{base}/{{user}}")
    gateway = new_gateway(base / "gateway-home", config)
    gateway.start()
    yield gateway
    gateway.stop()


alice = user_client("alice", "server")
bob = user_client("bob", "server")


def test_a_directory_swapped_for_an_outward_link_mid_request_leaks_nothing(
    alice: httpx.Client, base: Path
) -> None:
    folder = base / "alice" / "race"
    (folder / "a").mkdir(parents=True)
    (folder / "a" / "secret.txt").write_bytes(INSIDE)
    (folder / "a-link").symlink_to(base / "outside")
    stop = threading.Event()
    swapper = threading.Thread(target=swapping, args=(folder, base / "outside", stop))
    swapper.start()

    def reads(count: int) -> list[bytes]:
        with httpx.Client(base_url=str(alice.base_url), headers=alice.headers) as client:
            found = []
            for turn in range(count):
                params = {"path": "race/a/secret.txt"}
                if turn % 2:
                    got = client.get(f"{FILES}/download", params=params)
                    found.append(got.content if got.status_code == 200 else b"")
                else:
                    got = client.get(f"{FILES}/head", params=params)
                    found.append(got.json()["content"].encode() if got.status_code == 200 else b"")
        return found

    try:
        with ThreadPoolExecutor(4) as pool:
            seen = [data for part in pool.map(reads, [150] * 4) for data in part]
    finally:
        stop.set()
        swapper.join()
    assert seen.count(OUTSIDE) == 0
    assert seen.count(INSIDE) > 0  # the race ran: some reads found the directory


def test_tasks_on_a_directory_swapped_for_an_outward_link_touch_nothing_outside(
    alice: httpx.Client, base: Path
) -> None:
    """The programs a task runs (cp, tar) get the directories that were checked, never
    names they resolve again: swapping ``a`` for a link out of the root while they start
    makes them read and write inside the root, or fail, never outside."""
    folder, outside = base / "alice" / "taskrace", base / "outside-tasks"
    for made in (folder / "out", outside):
        made.mkdir(parents=True)
    (folder / "plain.txt").write_bytes(INSIDE)
    give(folder, "alice")  # alice's tasks write there; and outside, only confinement stops them
    give(outside, "alice")
    for _ in range(3):  # a round may by chance let no task through; the next one will
        with swapped(folder, outside):
            tasks = race_tasks(alice, FILES, "taskrace", 90)
        assert sorted(p.name for p in outside.iterdir()) == ["secret.txt"]
        copies, archived = results(folder / "out")
        assert OUTSIDE not in copies + archived
        if INSIDE in copies and INSIDE in archived:
            break
    assert INSIDE in copies and INSIDE in archived  # the race ran: some tasks got through
    assert any(task["state"] == "completed" for task in tasks)


def test_compress_onto_a_symlink_replaces_the_link_not_its_target(
    alice: httpx.Client, base: Path
) -> None:
    home = base / "alice"
    (home / "tree").mkdir()
    (home / "tree" / "a.txt").write_text("a\n")
    (home / "victimlink").symlink_to(base / "outside" / "victim.txt")
    asked = {"source": "tree", "target": "victimlink", "compression": "none", "overwrite": True}
    task = finished(alice, alice.post(f"{FILES}/compress", json=asked))
    assert task["state"] == "completed", task
    assert (base / "outside" / "victim.txt").read_bytes() == OUTSIDE
    assert not (home / "victimlink").is_symlink()
    with tarfile.open(home / "victimlink") as archive:
        assert "tree/a.txt" in archive.getnames()
    assert (home / "victimlink").stat().st_mode & 0o777 == 0o644
    assert not [p for p in home.iterdir() if "hpcgate-" in p.name]


def test_copy_onto_a_symlink_replaces_the_link_not_its_target(
    alice: httpx.Client, base: Path
) -> None:
    home = base / "alice"
    (home / "plain.txt").write_text("mine\n")
    (home / "copylink").symlink_to(base / "outside" / "copied.txt")
    asked = {"source": "plain.txt", "target": "copylink", "overwrite": True}
    task = finished(alice, alice.post(f"{FILES}/cp", json=asked))
    assert task["state"] == "completed", task
    assert (base / "outside" / "copied.txt").read_bytes() == OUTSIDE
    assert (home / "copylink").read_text() == "mine\n" and not (home / "copylink").is_symlink()


def test_upload_onto_a_symlink_replaces_the_link(alice: httpx.Client, base: Path) -> None:
    home = base / "alice"
    (home / "uplink").symlink_to(base / "outside" / "uploaded.txt")
    done = alice.put(
        f"{FILES}/upload", params={"path": "uplink", "overwrite": "true"}, content=b"new\n"
    )
    assert done.status_code == 201, done.text
    assert (base / "outside" / "uploaded.txt").read_bytes() == OUTSIDE
    assert (home / "uplink").read_bytes() == b"new\n" and not (home / "uplink").is_symlink()


def special_files(home: Path) -> dict[str, str]:
    """A FIFO and a character device (/dev/zero's numbers) in ``home``: path -> type."""
    made = {}
    os.mkfifo(home / "pipe")
    made["pipe"] = "FIFO"
    try:
        os.mknod(home / "zero", 0o666 | stat.S_IFCHR, os.makedev(1, 5))
        made["zero"] = "character device"
    except PermissionError:
        (home / "zero").symlink_to("/dev/zero")  # not root: a link out of the root instead
    return made


@pytest.fixture(scope="module")
def specials(base: Path) -> dict[str, str]:
    return special_files(base / "alice")


READS = [
    ("head", {}),
    ("tail", {}),
    ("view", {"offset": "0", "size": "10"}),
    ("checksum", {}),
    ("download", {}),
]


@pytest.mark.parametrize(("route", "extra"), READS, ids=[route for route, _ in READS])
def test_special_files_are_refused_by_type(
    alice: httpx.Client, specials: dict[str, str], route: str, extra: dict[str, str]
) -> None:
    for name, kind in specials.items():
        got = alice.get(f"{FILES}/{route}", params={"path": name, **extra}, timeout=10)
        assert got.status_code == 400, got.text
        assert got.headers["content-type"] == "application/problem+json"
        assert kind in got.json()["detail"]
    entry = alice.get(f"{FILES}/stat", params={"path": "pipe"}).json()
    assert entry["type"] == "other"  # what it is can still be told


def test_heads_on_a_fifo_do_not_stop_other_users(
    alice: httpx.Client, bob: httpx.Client, specials: dict[str, str]
) -> None:
    def head(_: int) -> int:
        got = alice.get(f"{FILES}/head", params={"path": "pipe"}, timeout=10)
        return got.status_code

    with ThreadPoolExecutor(10) as pool:
        answers = list(pool.map(head, range(50)))
    started = time.monotonic()
    assert bob.get(f"{FILES}/stat", params={"path": "."}, timeout=10).status_code == 200
    assert time.monotonic() - started < 5
    assert answers == [400] * 50
