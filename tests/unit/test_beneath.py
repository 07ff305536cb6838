"""Finding files beneath a root (:mod:`hpcgate.transports.beneath`) and the local file
operations built on it, on real files: both ways, openat2 and the component walk."""

from __future__ import annotations

import errno
import os
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from hpcgate.transports import beneath, local_ops


@pytest.fixture(params=["openat2", "walk"])
def way(request: pytest.FixtureRequest) -> Iterator[str]:
    beneath.force_walk(request.param == "walk")
    if request.param == "openat2" and not beneath._openat2_usable():
        pytest.skip("openat2 is not available here")
    yield str(request.param)
    beneath.force_walk(False)


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """``root`` with links that stay inside it and links that leave it."""
    root, outside = tmp_path / "root", tmp_path / "outside"
    (root / "a").mkdir(parents=True)
    outside.mkdir()
    (root / "a" / "f.txt").write_bytes(b"inside\n")
    (outside / "f.txt").write_bytes(b"outside\n")
    (root / "absolute").symlink_to(root / "a")
    (root / "relative").symlink_to("a")
    (root / "a" / "up").symlink_to("../a/f.txt")
    (root / "out").symlink_to(outside)
    (root / "dotdot").symlink_to("../outside")
    (root / "a" / "deep").symlink_to("../../outside/f.txt")
    return root


def read(root: Path, rel: str) -> bytes:
    with beneath.opened(str(root), f"{root}/{rel}", os.O_RDONLY) as fd:
        return os.read(fd, 100)


@pytest.mark.parametrize("rel", ["a/f.txt", "absolute/f.txt", "relative/f.txt", "a/up"])
def test_links_within_the_root_are_followed(tree: Path, way: str, rel: str) -> None:
    assert read(tree, rel) == b"inside\n"


@pytest.mark.parametrize("rel", ["out/f.txt", "dotdot/f.txt", "a/deep"])
def test_links_out_of_the_root_are_refused(tree: Path, way: str, rel: str) -> None:
    with pytest.raises(PermissionError):
        read(tree, rel)


def test_a_path_outside_the_root_string_is_refused(tree: Path, way: str) -> None:
    with pytest.raises(PermissionError):
        beneath.relative(str(tree), str(tree.parent / "outside" / "f.txt"))


def test_a_loop_of_links_ends(tree: Path, way: str) -> None:
    (tree / "l1").symlink_to("l2")
    (tree / "l2").symlink_to("l1")
    with pytest.raises(OSError, match="symbolic links") as caught:
        read(tree, "l1")
    assert caught.value.errno == errno.ELOOP


def test_resolve_names_the_file_from_the_root_as_configured(tree: Path, way: str) -> None:
    root = str(tree)
    assert local_ops.resolve(f"{root}/absolute/f.txt", True, root) == f"{root}/a/f.txt"
    assert local_ops.resolve(f"{root}/relative/new/x", True, root) == f"{root}/a/new/x"
    assert local_ops.resolve(f"{root}/relative", False, root) == f"{root}/relative"


def test_writes_never_follow_a_final_link(tree: Path, way: str) -> None:
    root = str(tree)
    with pytest.raises(FileExistsError):
        local_ops.open_new(f"{root}/out", root)
    (tree / "a" / "tmp").write_bytes(b"new\n")
    local_ops.publish(f"{root}/a/tmp", f"{root}/a/deep", True, 0o644, root)
    assert (tree / "a" / "deep").read_bytes() == b"new\n"
    assert (tree.parent / "outside" / "f.txt").read_bytes() == b"outside\n"
    with pytest.raises(PermissionError):
        local_ops.mkdir(f"{root}/out/made", True, root)
    assert not (tree.parent / "outside" / "made").exists()


def test_special_files_are_refused_without_blocking(tree: Path, way: str) -> None:
    root = str(tree)
    os.mkfifo(tree / "pipe")
    for op in (local_ops.head, local_ops.tail):
        with pytest.raises(OSError, match="FIFO") as caught:
            op(f"{root}/pipe", 1, None, root)
        assert caught.value.errno == errno.EINVAL
    with pytest.raises(OSError, match="FIFO"):
        local_ops.checksum(f"{root}/pipe", "sha256", root)
    with pytest.raises(OSError, match="FIFO"):
        local_ops.open_read(f"{root}/pipe", root)
    assert local_ops.file_type(f"{root}/pipe", root)["type"] == "other"


def test_a_directory_swapped_for_a_link_never_leaks(tree: Path, way: str) -> None:
    root, folder = str(tree), tree / "race"
    (folder / "a").mkdir(parents=True)
    (folder / "a" / "f.txt").write_bytes(b"inside\n")
    (folder / "a-link").symlink_to(tree.parent / "outside")
    stop = threading.Event()

    def swap() -> None:
        while not stop.is_set():
            os.rename(folder / "a", folder / "parked")
            os.rename(folder / "a-link", folder / "a")
            os.rename(folder / "a", folder / "a-link")
            os.rename(folder / "parked", folder / "a")

    swapper = threading.Thread(target=swap)
    swapper.start()
    seen = []
    try:
        for _ in range(3000):
            try:
                seen.append(local_ops.head(f"{folder}/a/f.txt", 1, None, root)["content"])
            except OSError:
                seen.append(None)
    finally:
        stop.set()
        swapper.join()
    assert "outside\n" not in seen
    assert "inside\n" in seen
