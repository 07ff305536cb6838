"""A file program's paths on the local transport (run_files), with real programs: each
reaches the program as a name under a descriptor opened beneath its root, and one that
leads out of the root never reaches a program at all."""

from __future__ import annotations

import tarfile
from pathlib import Path

import pytest

from hpcgate.files.bulk import compress_command, copy_command
from hpcgate.model.commands import Beneath
from hpcgate.model.errors import Forbidden
from hpcgate.transports.local import LocalTransport


async def test_a_copy_gets_its_paths_through_descriptors(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "a").mkdir(parents=True)
    (root / "a" / "f.txt").write_text("mine\n")
    seen: list[str] = []
    command = copy_command(Beneath(f"{root}/a/f.txt", str(root)), Beneath(f"{root}/g", str(root)))
    result = await LocalTransport().run_files(command, None, seen.append)
    assert result.ok, result.error_text()
    assert (root / "g").read_text() == "mine\n"


async def test_a_parent_that_leads_out_of_the_root_runs_nothing(tmp_path: Path) -> None:
    root, outside = tmp_path / "root", tmp_path / "outside"
    root.mkdir()
    outside.mkdir()
    (outside / "f.txt").write_text("not for you\n")
    (root / "a").symlink_to(outside)  # swapped in after the check
    command = copy_command(Beneath(f"{root}/a/f.txt", str(root)), Beneath(f"{root}/g", str(root)))
    with pytest.raises(Forbidden):
        await LocalTransport().run_files(command, None, print)
    assert not (root / "g").exists()


async def test_the_root_itself_is_archived_from_within(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    (root / "f.txt").write_text("mine\n")
    (tmp_path / "t.tar").touch()
    archive = Beneath(str(tmp_path / "t.tar"), str(tmp_path))
    command = compress_command(Beneath(str(root), str(root)), archive, "none")
    assert command.plain().argv[-4:] == ("-C", str(tmp_path), "--", "root")  # by name
    result = await LocalTransport().run_files(command, None, print)
    assert result.ok, result.error_text()
    with tarfile.open(tmp_path / "t.tar") as made:  # from the root's own directory
        assert made.getnames() == [".", "./f.txt"]
