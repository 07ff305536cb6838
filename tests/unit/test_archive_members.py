"""The vetting of archive members (pure: tar headers in, what to make or a refusal out)."""

from __future__ import annotations

import re
import tarfile

import pytest

from hpcgate.files.archive_members import Kind, Member, vet
from hpcgate.model.errors import BadRequest


def header(
    name: str, kind: bytes = tarfile.REGTYPE, mode: int = 0o644, link: str = ""
) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.mode, info.linkname, info.size = kind, mode, link, 3
    return info


def test_files_directories_and_links_inside_are_made() -> None:
    assert vet(header("./a/b.txt")) == Member("./a/b.txt", ("a", "b.txt"), Kind.FILE, 0o644, 3)
    assert vet(header("a/", tarfile.DIRTYPE, 0o700)) == Member("a/", ("a",), Kind.DIRECTORY, 0o700)
    made = vet(header("a/b/l", tarfile.SYMTYPE, link="../../c/d"))
    assert made is not None and made.kind is Kind.SYMLINK and made.link == "../../c/d"
    hard = vet(header("a/h", tarfile.LNKTYPE, link="./a/b.txt"))
    assert hard is not None and hard.kind is Kind.HARDLINK and hard.source == ("a", "b.txt")


def test_the_directory_itself_is_nothing_to_make() -> None:
    assert vet(header("./", tarfile.DIRTYPE)) is None


@pytest.mark.parametrize("mode", [0o4755, 0o2755, 0o1755, 0o6777, 0o777, 0o775])
def test_special_bits_and_group_or_other_write_are_dropped(mode: int) -> None:
    for kind in (tarfile.REGTYPE, tarfile.DIRTYPE):
        made = vet(header("x", kind, mode))
        assert made is not None and made.mode == 0o755


@pytest.mark.parametrize(
    ("name", "why"),
    [
        ("/etc/passwd", "an absolute name"),
        ("../up.txt", "'..'"),
        ("a/../../up.txt", "'..'"),
        ("a/..", "'..'"),
    ],
)
def test_names_that_leave_the_directory_are_refused(name: str, why: str) -> None:
    with pytest.raises(BadRequest, match=f"archive member {name!r} refused: .*{why}"):
        vet(header(name))


@pytest.mark.parametrize(
    ("name", "link"),
    [
        ("evil", "/outside"),  # absolute
        ("evil", ".."),  # above the directory
        ("a/evil", "../.."),
        ("a/b/e", "x/../../../.."),
        ("t/e", "u/up/.."),  # climbs after a name, which may be a link: never
        ("empty", ""),
    ],
)
def test_symbolic_links_that_may_lead_out_are_refused(name: str, link: str) -> None:
    with pytest.raises(BadRequest, match=f"archive member {name!r} refused"):
        vet(header(name, tarfile.SYMTYPE, link=link))


@pytest.mark.parametrize(
    ("kind", "what"),
    [
        (tarfile.CHRTYPE, "character device"),
        (tarfile.BLKTYPE, "block device"),
        (tarfile.FIFOTYPE, "FIFO"),
        (b"Z", "member of type"),
    ],
)
def test_special_members_are_refused(kind: bytes, what: str) -> None:
    with pytest.raises(BadRequest, match=f"'dev' refused: a {what}"):
        vet(header("dev", kind))


def test_a_hard_link_needs_a_safe_name_too() -> None:
    with pytest.raises(BadRequest, match=re.escape("'..'")):
        vet(header("h", tarfile.LNKTYPE, link="../../etc/shadow"))
