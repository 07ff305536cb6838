"""The fence of a file program (hpcgate.transports.fence), with real programs and the real
kernel: behind it a program reaches nothing outside the directories it was given, whatever
symlink it follows, and the gateway's own programs still work.

Deterministic in place of a race: what ``cp -R`` meets when a directory in the tree it
walks is swapped for an outward symlink at the wrong moment is exactly a symlink it
follows, which ``cp -L`` here does on purpose.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from hpcgate.transports import fence

pytestmark = pytest.mark.skipif(fence.abi() < 2, reason="this kernel has no Landlock ABI 2")


@pytest.fixture
def inside(tmp_path: Path) -> Iterator[tuple[Path, int]]:
    """A directory with a tree, a link out of it to a secret, and its O_PATH descriptor."""
    (tmp_path / "in" / "tree").mkdir(parents=True)
    (tmp_path / "in" / "tree" / "f.txt").write_text("mine\n")
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "secret.txt").write_text("not for you\n")
    (tmp_path / "in" / "tree" / "away").symlink_to(tmp_path / "out")
    fd = os.open(tmp_path / "in", os.O_PATH | os.O_DIRECTORY)
    yield tmp_path / "in", fd
    os.close(fd)


def fenced(fd: int, *argv: str) -> subprocess.CompletedProcess[str]:
    wrapper = [sys.executable, "-I", "-m", "hpcgate.transports.fence", "--dir", str(fd), "--"]
    return subprocess.run([*wrapper, *argv], pass_fds=[fd], capture_output=True, text=True)


def test_a_followed_link_out_of_the_directory_is_refused(inside: tuple[Path, int]) -> None:
    folder, fd = inside
    here = f"/proc/self/fd/{fd}"
    done = fenced(fd, "cp", "-R", "-L", "--", f"{here}/tree", f"{here}/copy")
    assert done.returncode != 0 and "Permission denied" in done.stderr
    assert (folder / "copy" / "f.txt").read_text() == "mine\n"
    assert not (folder / "copy" / "away" / "secret.txt").exists()
    assert fenced(fd, "cat", str(folder.parent / "out" / "secret.txt")).returncode != 0
    assert fenced(fd, "touch", str(folder.parent / "out" / "new")).returncode != 0
    assert not (folder.parent / "out" / "new").exists()


def test_the_gateway_s_programs_work_inside(inside: tuple[Path, int]) -> None:
    folder, fd = inside
    here = f"/proc/self/fd/{fd}"
    archive = f"--file={here}/t.tar.gz"
    made = fenced(fd, "tar", "--create", "--gzip", archive, "-C", here, "--", "tree")
    assert made.returncode == 0, made.stderr
    with tarfile.open(folder / "t.tar.gz") as opened:
        assert sorted(opened.getnames()) == ["tree", "tree/away", "tree/f.txt"]
    copied = fenced(fd, "cp", "-R", "-P", "-T", "--", f"{here}/tree", f"{here}/copy")
    assert copied.returncode == 0, copied.stderr
    assert (folder / "copy" / "away").is_symlink()
    moved = fenced(fd, "mv", "-T", "--", f"{here}/copy", f"{here}/moved")
    assert moved.returncode == 0, moved.stderr
    assert (folder / "moved" / "f.txt").read_text() == "mine\n"


def test_bad_arguments_run_nothing() -> None:
    with pytest.raises(SystemExit, match="bad arguments"):
        fence.parse(["--dir", "x", "--", "true"])
    with pytest.raises(SystemExit, match="no program"):
        fence.parse(["--dir", "3", "--"])
