"""The files API on a real gateway process and the real filesystem (single-user mode).

Roots are ``<tmp>/{user}`` and ``<tmp>/shared``, so alice and bob each have a directory of
their own; ``<tmp>/outside`` is outside everyone's roots.
"""

from __future__ import annotations

import hashlib
import io
import os
import signal
import stat
import subprocess
import tarfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.accounts import give
from tests.support.gateway_process import GatewayProcess, new_gateway, roots_config, user_client
from tests.support.jobs import finished

FILES = "/api/v1/systems/local/files"


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("files")
    for name in ("alice", "bob", "shared", "outside"):
        (base / name).mkdir()
    (base / "outside" / "secret.txt").write_text("not for you\n")
    (base / "bob" / "bob.txt").write_text("bob's\n")
    give(base / "alice", "alice")  # as root, users act as their own accounts
    give(base / "bob", "bob")
    (base / "shared").chmod(0o1777)
    return base


@pytest.fixture(scope="module")
def server(base: Path) -> Iterator[GatewayProcess]:
    limits = "max_extract_bytes = 10_000_000\nmax_extract_members = 50\n"
    config = limits + roots_config(f"{base}/{{user}}", f"{base}/shared")
    gateway = new_gateway(base / "gateway-home", config)
    gateway.start()
    yield gateway
    gateway.stop()


alice = user_client("alice", "server")
bob = user_client("bob", "server")


def put(client: httpx.Client, path: str, data: bytes, **params: str) -> httpx.Response:
    return client.put(f"{FILES}/upload", params={"path": path, **params}, content=data)


def problem(response: httpx.Response, status: int) -> dict[str, object]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body: dict[str, object] = response.json()
    return body


def test_the_system_tells_the_caller_its_roots_and_home(alice: httpx.Client, base: Path) -> None:
    info = alice.get("/api/v1/systems/local").json()
    assert info["roots"] == [f"{base}/alice", f"{base}/shared"]
    assert info["home"] == f"{base}/alice"


def test_upload_list_stat_checksum_download(alice: httpx.Client, base: Path) -> None:
    data = os.urandom(3 << 20) + b"end"
    done = put(alice, "data/blob.bin", data)
    assert done.status_code == 404  # no parent directory yet
    assert alice.post(f"{FILES}/mkdir", json={"path": "data", "parents": True}).status_code == 201
    done = put(alice, "data/blob.bin", data, sha256=hashlib.sha256(data).hexdigest())
    assert done.status_code == 201, done.text
    assert done.json()["sha256"] == hashlib.sha256(data).hexdigest()
    assert (base / "alice" / "data" / "blob.bin").read_bytes() == data
    listing = alice.get(f"{FILES}/ls", params={"path": "data"}).json()
    assert [(e["name"], e["size"], e["type"]) for e in listing["entries"]] == [
        ("blob.bin", len(data), "file")
    ]
    stat = alice.get(f"{FILES}/stat", params={"path": f"{base}/alice/data/blob.bin"}).json()
    assert stat["mode"] == "0644" and stat["size"] == len(data)
    digest = alice.get(f"{FILES}/checksum", params={"path": "data/blob.bin"}).json()
    assert digest["checksum"] == hashlib.sha256(data).hexdigest()
    md5 = alice.get(f"{FILES}/checksum", params={"path": "data/blob.bin", "algorithm": "md5"})
    assert md5.json()["checksum"] == hashlib.md5(data, usedforsecurity=False).hexdigest()
    got = alice.get(f"{FILES}/download", params={"path": "data/blob.bin"})
    assert got.status_code == 200 and got.content == data
    assert got.headers["accept-ranges"] == "bytes" and got.headers["etag"]


def test_download_resumes_with_range_and_if_range(alice: httpx.Client) -> None:
    data = bytes(range(256)) * 4096
    assert put(alice, "ranged.bin", data).status_code == 201
    url, params = f"{FILES}/download", {"path": "ranged.bin"}
    tag = alice.get(url, params=params).headers["etag"]
    part = alice.get(url, params=params, headers={"Range": "bytes=1000-", "If-Range": tag})
    assert part.status_code == 206 and part.content == data[1000:]
    assert part.headers["content-range"] == f"bytes 1000-{len(data) - 1}/{len(data)}"
    last = alice.get(url, params=params, headers={"Range": "bytes=-10"})
    assert last.status_code == 206 and last.content == data[-10:]
    stale = alice.get(url, params=params, headers={"Range": "bytes=5-", "If-Range": '"old"'})
    assert stale.status_code == 200 and stale.content == data
    assert alice.get(url, params=params, headers={"If-None-Match": tag}).status_code == 304
    beyond = alice.get(url, params=params, headers={"Range": f"bytes={len(data)}-"})
    problem(beyond, 416)
    assert beyond.headers["content-range"] == f"bytes */{len(data)}"


def test_a_failed_upload_leaves_nothing_behind(alice: httpx.Client, base: Path) -> None:
    wrong = put(alice, "checked.bin", b"some bytes", sha256="0" * 64)
    assert "sha256" in str(problem(wrong, 400)["detail"])
    assert not [p for p in (base / "alice").iterdir() if "checked" in p.name]


def test_upload_does_not_replace_unless_asked(alice: httpx.Client, base: Path) -> None:
    assert put(alice, "once.txt", b"first").status_code == 201
    refused = problem(put(alice, "once.txt", b"second"), 409)
    assert str(refused["detail"]).endswith(": once.txt"), refused  # the target, not the hidden file
    assert (base / "alice" / "once.txt").read_bytes() == b"first"
    assert put(alice, "once.txt", b"second", overwrite="true").status_code == 201
    assert (base / "alice" / "once.txt").read_bytes() == b"second"


def test_an_upload_into_a_missing_directory_names_the_callers_path(alice: httpx.Client) -> None:
    """Not the hidden file the upload is received into: the caller never named that."""
    for answer in (
        put(alice, "no/such/dir/data.bin", b"bytes"),
        alice.post(f"{FILES}/uploads", json={"path": "no/such/dir/data.bin", "size": 5}),
    ):
        detail = str(problem(answer, 404)["detail"])
        assert detail.endswith(": no/such/dir/data.bin"), detail
        assert "hpcgate-upload" not in detail


def test_head_tail_view_and_type(alice: httpx.Client) -> None:
    text = "".join(f"line {n}\n" for n in range(1, 101)).encode()
    assert put(alice, "lines.txt", text).status_code == 201
    params = {"path": "lines.txt"}
    head = alice.get(f"{FILES}/head", params={**params, "lines": 3}).json()
    assert head["content"] == "line 1\nline 2\nline 3\n"
    tail = alice.get(f"{FILES}/tail", params={**params, "lines": 2}).json()
    assert tail["content"] == "line 99\nline 100\n"
    assert alice.get(f"{FILES}/tail", params={**params, "bytes": 4}).json()["content"] == "100\n"
    view = alice.get(f"{FILES}/view", params={**params, "offset": 7, "size": 6}).json()
    assert view["content"] == "line 2"
    kind = alice.get(f"{FILES}/file", params=params).json()
    assert kind == {"path": kind["path"], "type": "file", "mime_type": "text/plain"}


def test_mkdir_rm_and_their_conflicts(alice: httpx.Client, base: Path) -> None:
    made = alice.post(f"{FILES}/mkdir", json={"path": "tree/a/b", "parents": True})
    assert made.status_code == 201 and made.json()["type"] == "directory"
    problem(alice.post(f"{FILES}/mkdir", json={"path": "tree/a"}), 409)
    problem(alice.post(f"{FILES}/mkdir", json={"path": "nowhere/x"}), 404)
    assert put(alice, "tree/a/b/f.txt", b"x").status_code == 201
    problem(alice.post(f"{FILES}/mkdir", json={"path": "tree/a/b/f.txt/sub"}), 409)
    problem(alice.delete(f"{FILES}/rm", params={"path": "tree"}), 409)  # not empty
    gone = alice.delete(f"{FILES}/rm", params={"path": "tree", "recursive": "true"})
    assert gone.status_code == 204 and not (base / "alice" / "tree").exists()
    problem(alice.delete(f"{FILES}/rm", params={"path": "tree"}), 404)
    problem(alice.delete(f"{FILES}/rm", params={"path": f"{base}/alice", "recursive": "true"}), 403)
    assert (base / "alice").is_dir()


def test_chmod_and_listing_options(alice: httpx.Client, base: Path) -> None:
    assert put(alice, "opts/.hidden", b"h").status_code == 404
    alice.post(f"{FILES}/mkdir", json={"path": "opts/deep/er", "parents": True})
    assert put(alice, "opts/.hidden", b"h").status_code == 201
    changed = alice.put(f"{FILES}/chmod", json={"path": "opts/.hidden", "mode": "600"})
    assert changed.json()["permissions"] == "-rw-------"
    assert (base / "alice" / "opts" / ".hidden").stat().st_mode & 0o777 == 0o600
    shallow = alice.get(f"{FILES}/ls", params={"path": "opts"}).json()["entries"]
    assert [e["name"] for e in shallow] == ["deep"]
    every = alice.get(
        f"{FILES}/ls", params={"path": "opts", "hidden": "true", "depth": 3, "numeric": "true"}
    ).json()["entries"]
    assert [e["name"] for e in every] == [".hidden", "deep", "er"]
    assert all(e["user"] is None and isinstance(e["uid"], int) for e in every)


@pytest.mark.parametrize(
    "path",
    ["../bob/bob.txt", "data/../../bob/bob.txt", "a\x00b", "x" * 256, "/" + "d/" * 2100],
)
def test_bad_path_strings_are_400(alice: httpx.Client, path: str) -> None:
    response = alice.get(f"{FILES}/stat", params={"path": path})
    assert response.status_code in (400, 422), response.text
    assert response.headers["content-type"] == "application/problem+json"


def test_paths_outside_the_roots_are_403(alice: httpx.Client, base: Path) -> None:
    for path in ("/etc/passwd", f"{base}/bob/bob.txt", f"{base}/outside/secret.txt", "/"):
        problem(alice.get(f"{FILES}/download", params={"path": path}), 403)
    problem(alice.delete(f"{FILES}/rm", params={"path": f"{base}/bob/bob.txt"}), 403)
    problem(put(alice, f"{base}/bob/planted.txt", b"x"), 403)
    assert (base / "bob" / "bob.txt").exists() and not (base / "bob" / "planted.txt").exists()


def test_symlinks_out_of_the_roots_are_never_followed(alice: httpx.Client, base: Path) -> None:
    home = base / "alice"
    (home / "escape").symlink_to(base / "outside")
    (home / "leak.txt").symlink_to(base / "outside" / "secret.txt")
    (home / "inside").mkdir()
    (home / "within").symlink_to(home / "inside")  # absolute, but within its own root
    (home / "across").symlink_to(base / "shared")  # another root: not its own
    give(home, "alice")
    for path in ("escape/secret.txt", "leak.txt", "escape"):
        problem(alice.get(f"{FILES}/download", params={"path": path}), 403)
    problem(alice.get(f"{FILES}/ls", params={"path": "escape"}), 403)
    problem(put(alice, "escape/new.txt", b"x"), 403)
    problem(alice.post(f"{FILES}/mkdir", json={"path": "escape/d"}), 403)
    problem(alice.put(f"{FILES}/chmod", json={"path": "leak.txt", "mode": "777"}), 403)
    assert not (base / "outside" / "new.txt").exists()
    assert (base / "outside" / "secret.txt").stat().st_mode & 0o777 != 0o777
    listed = alice.get(f"{FILES}/ls", params={"path": "."}).json()["entries"]
    link = next(e for e in listed if e["name"] == "leak.txt")
    assert link["type"] == "symlink" and link["link_target"] == f"{base}/outside/secret.txt"
    assert put(alice, "within/ok.txt", b"mine").status_code == 201  # a link within its root
    assert (home / "inside" / "ok.txt").read_bytes() == b"mine"
    problem(put(alice, "across/ok.txt", b"shared"), 403)  # a link may not leave its root
    assert not (base / "shared" / "ok.txt").exists()
    problem(alice.post(f"{FILES}/symlink", json={"path": "l2", "target": "/etc"}), 403)
    across = {"path": "l4", "target": f"{base}/shared"}
    problem(alice.post(f"{FILES}/symlink", json=across), 403)
    made = alice.post(f"{FILES}/symlink", json={"path": "l3", "target": "within"})
    assert made.status_code == 201 and made.json()["link_target"] == f"{home}/inside"
    assert alice.delete(f"{FILES}/rm", params={"path": "leak.txt"}).status_code == 204
    assert (base / "outside" / "secret.txt").exists()  # the link went, not its target


def test_bob_cannot_reach_alice(alice: httpx.Client, bob: httpx.Client, base: Path) -> None:
    assert put(alice, "mine.txt", b"alice's").status_code == 201
    problem(bob.get(f"{FILES}/download", params={"path": f"{base}/alice/mine.txt"}), 403)
    problem(bob.get(f"{FILES}/ls", params={"path": f"{base}/alice"}), 403)
    assert bob.get(f"{FILES}/download", params={"path": "bob.txt"}).content == b"bob's\n"


def test_files_need_a_token(server: GatewayProcess) -> None:
    with httpx.Client(base_url=server.url) as anonymous:
        problem(anonymous.get(f"{FILES}/ls", params={"path": "."}), 401)


def test_a_resumable_upload_in_chunks(alice: httpx.Client, base: Path) -> None:
    data = os.urandom(5 << 20)
    begun = alice.post(
        f"{FILES}/uploads",
        json={"path": "chunked.bin", "size": len(data), "sha256": hashlib.sha256(data).hexdigest()},
    )
    assert begun.status_code == 201, begun.text
    url = f"{FILES}/uploads/{begun.json()['id']}"
    first = alice.put(url, params={"offset": 0}, content=data[: 2 << 20])
    assert first.json()["offset"] == 2 << 20 and not first.json()["complete"]
    assert not (base / "alice" / "chunked.bin").exists()
    behind = alice.put(url, params={"offset": 1 << 20}, content=data[1 << 20 :])
    assert problem(behind, 409)["offset"] == 2 << 20
    too_long = alice.put(url, params={"offset": 2 << 20}, content=data[2 << 20 :] + b"extra")
    problem(too_long, 400)
    assert alice.get(url).json()["offset"] == 2 << 20
    last = alice.put(url, params={"offset": 2 << 20}, content=data[2 << 20 :])
    assert last.status_code == 200, last.text
    assert last.json()["complete"] and last.json()["sha256"] == hashlib.sha256(data).hexdigest()
    assert (base / "alice" / "chunked.bin").read_bytes() == data
    assert not [p for p in (base / "alice").iterdir() if "hpcgate-upload" in p.name]
    problem(alice.get(url), 404)


def test_a_resumable_upload_that_does_not_match_is_dropped(alice: httpx.Client, base: Path) -> None:
    begun = alice.post(f"{FILES}/uploads", json={"path": "bad.bin", "size": 4, "sha256": "1" * 64})
    url = f"{FILES}/uploads/{begun.json()['id']}"
    problem(alice.put(url, params={"offset": 0}, content=b"abcd"), 400)
    problem(alice.get(url), 404)
    assert not [p for p in (base / "alice").iterdir() if "bad.bin" in p.name]
    other = alice.post(f"{FILES}/uploads", json={"path": "gone.bin", "size": 10})
    assert alice.delete(f"{FILES}/uploads/{other.json()['id']}").status_code == 204
    assert not [p for p in (base / "alice").iterdir() if "gone.bin" in p.name]
    problem(alice.post(f"{FILES}/uploads", json={"path": "once.txt", "size": 1}), 409)


def test_bob_cannot_touch_alice_s_upload(alice: httpx.Client, bob: httpx.Client) -> None:
    begun = alice.post(f"{FILES}/uploads", json={"path": "private.bin", "size": 3})
    url = f"{FILES}/uploads/{begun.json()['id']}"
    problem(bob.get(url), 404)
    problem(bob.put(url, params={"offset": 0}, content=b"abc"), 404)
    problem(bob.delete(url), 404)
    assert alice.put(url, params={"offset": 0}, content=b"abc").json()["complete"]


def test_a_resumable_upload_survives_a_gateway_restart(
    server: GatewayProcess, alice: httpx.Client, base: Path
) -> None:
    data = os.urandom(1 << 20)
    begun = alice.post(f"{FILES}/uploads", json={"path": "restart.bin", "size": len(data)})
    url = f"{FILES}/uploads/{begun.json()['id']}"
    alice.put(url, params={"offset": 0}, content=data[:1000])
    server.stop()
    server.start()
    assert alice.get(url).json()["offset"] == 1000
    done = alice.put(url, params={"offset": 1000}, content=data[1000:])
    assert done.json()["complete"] and (base / "alice" / "restart.bin").read_bytes() == data


def make_tree(root: Path) -> None:
    (root / "sub").mkdir(parents=True)
    (root / "a.txt").write_text("a\n")
    (root / "sub" / "b.bin").write_bytes(os.urandom(100_000))
    (root / "link").symlink_to("a.txt")


def same_tree(left: Path, right: Path) -> bool:
    names = sorted(p.relative_to(left) for p in left.rglob("*"))
    if names != sorted(p.relative_to(right) for p in right.rglob("*")):
        return False
    for name in names:
        a, b = left / name, right / name
        if a.is_symlink() != b.is_symlink() or (a.is_file() and a.read_bytes() != b.read_bytes()):
            return False
    return True


def test_copy_and_move_are_tasks(alice: httpx.Client, base: Path) -> None:
    home = base / "alice"
    make_tree(home / "orig")
    copied = finished(alice, alice.post(f"{FILES}/cp", json={"source": "orig", "target": "dup"}))
    assert copied["state"] == "completed" and copied["kind"] == "copy", copied
    assert same_tree(home / "orig", home / "dup")
    assert (home / "dup" / "link").is_symlink()  # copied as a link, not followed
    assert copied["progress"]["total"] == copied["progress"]["done"] > 100_000
    problem(alice.post(f"{FILES}/cp", json={"source": "orig", "target": "dup"}), 409)
    problem(alice.post(f"{FILES}/cp", json={"source": "nothing", "target": "x"}), 404)
    problem(alice.post(f"{FILES}/cp", json={"source": "orig", "target": f"{base}/outside/o"}), 403)
    moved = finished(alice, alice.post(f"{FILES}/mv", json={"source": "dup", "target": "moved"}))
    assert moved["state"] == "completed"
    assert not (home / "dup").exists() and same_tree(home / "orig", home / "moved")
    problem(alice.post(f"{FILES}/mv", json={"source": str(home), "target": "x"}), 403)
    assert [t["id"] for t in alice.get("/api/v1/tasks").json()][:2] == [moved["id"], copied["id"]]


@pytest.mark.parametrize("compression", ["gzip", "bzip2", "xz", "none"])
def test_compress_and_extract(alice: httpx.Client, base: Path, compression: str) -> None:
    home = base / "alice"
    make_tree(home / f"src-{compression}")
    archive = f"src-{compression}.tar"
    asked = {"source": f"src-{compression}", "target": archive, "compression": compression}
    made = finished(alice, alice.post(f"{FILES}/compress", json=asked))
    assert made["state"] == "completed", made
    with tarfile.open(home / archive) as opened:
        assert f"src-{compression}/sub/b.bin" in opened.getnames()
    unpacked = finished(
        alice,
        alice.post(f"{FILES}/extract", json={"source": archive, "target": f"out-{compression}"}),
    )
    assert unpacked["state"] == "completed", unpacked
    assert same_tree(
        home / f"src-{compression}", home / f"out-{compression}" / f"src-{compression}"
    )


def archive(path: Path, members: list[tarfile.TarInfo], mode: str = "w") -> str:
    """Write a tar archive of ``members`` (regular ones hold ``x\\n``); its name."""
    with tarfile.open(path, mode) as made:  # type: ignore[call-overload]
        for member in members:
            if member.isreg():
                member.size = 2
            made.addfile(member, io.BytesIO(b"x\n") if member.isreg() else None)
    return path.name


def member(
    name: str, kind: bytes = tarfile.REGTYPE, link: str = "", mode: int = 0o644
) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname, info.mode = kind, link, mode
    return info


def extracted(client: httpx.Client, source: str, target: str) -> dict[str, Any]:
    return finished(
        client, client.post(f"{FILES}/extract", json={"source": source, "target": target})
    )


def test_extract_refuses_names_that_leave_the_target(alice: httpx.Client, base: Path) -> None:
    home = base / "alice"
    for name in ("../escaped.txt", "/absolute.txt"):
        source = archive(home / "hostile.tar", [member("fine.txt"), member(name)])
        task = extracted(alice, source, "inbox")
        assert task["state"] == "failed" and task["error"]["status"] == 400, task
        assert f"archive member {name!r} refused" in task["error"]["detail"]
        assert not (home / "escaped.txt").exists() and not Path("/absolute.txt").exists()
        assert not (home / "inbox").exists()  # a refused archive leaves nothing behind


def test_extract_never_writes_through_a_link(alice: httpx.Client, base: Path) -> None:
    """Issue 14.3: a link from one archive, then a file under it from another."""
    home, outside = base / "alice", base / "outside"
    before = sorted(p.name for p in outside.iterdir())
    first = archive(home / "one.tar", [member("evil", tarfile.SYMTYPE, str(outside))])
    task = extracted(alice, first, "x")
    assert task["state"] == "failed" and "'evil' refused" in task["error"]["detail"], task
    (home / "x").mkdir()  # the link made by other means: the directory is no longer new
    (home / "x" / "evil").symlink_to(outside)
    second = archive(home / "two.tar", [member("evil/stage2.txt")])
    problem(alice.post(f"{FILES}/extract", json={"source": second, "target": "x"}), 409)
    in_one = [
        member("d", tarfile.DIRTYPE, mode=0o755),
        member("d/up", tarfile.SYMTYPE, ".."),  # inside: the directory itself
        member("d/up/d/up/stage2.txt"),  # ...but never written through
    ]
    task = extracted(alice, archive(home / "three.tar", in_one), "y")
    assert task["state"] == "failed" and "'d/up/d/up/stage2.txt' refused" in task["error"]["detail"]
    assert sorted(p.name for p in outside.iterdir()) == before
    assert not (home / "y").exists()


def test_extract_makes_no_devices_fifos_or_setuid_files(alice: httpx.Client, base: Path) -> None:
    home = base / "alice"
    for special in (member("pipe", tarfile.FIFOTYPE), member("null", tarfile.CHRTYPE)):
        special.devmajor, special.devminor = 1, 3
        source = archive(home / "special.tar", [member("a.txt"), special])
        task = extracted(alice, source, "dev")
        assert task["state"] == "failed" and task["error"]["status"] == 400, task
        assert f"{special.name!r} refused" in task["error"]["detail"]
        assert not (home / "dev").exists()
    bits = [member("s", tarfile.DIRTYPE, mode=0o3777), member("s/root-shell", mode=0o6777)]
    task = extracted(alice, archive(home / "setuid.tar", bits), "plain")
    assert task["state"] == "completed", task
    assert stat.S_IMODE((home / "plain" / "s").stat().st_mode) == 0o755
    assert stat.S_IMODE((home / "plain" / "s" / "root-shell").stat().st_mode) == 0o755


@pytest.mark.parametrize("mode", ["w:gz", "w:xz"])
def test_extract_makes_a_tree_and_reports_progress(
    alice: httpx.Client, base: Path, mode: str
) -> None:
    home = base / "alice"
    tree = [
        member("top/sub/deep/f.txt"),  # its directories are implied
        member("top/sub", tarfile.DIRTYPE, mode=0o700),
        member("top/a.txt"),
        member("top/sub/deep/rel", tarfile.SYMTYPE, "../../a.txt"),
        member("top/hard", tarfile.LNKTYPE, "top/a.txt"),
        member("top/a.txt", mode=0o600),  # a later member of a name replaces it
    ]
    source = archive(home / f"tree.tar.{mode[2:]}", tree, mode)
    task = extracted(alice, source, f"tree-{mode[2:]}")
    assert task["state"] == "completed", task
    out = home / f"tree-{mode[2:]}" / "top"
    assert (out / "sub" / "deep" / "f.txt").read_text() == "x\n"
    assert (out / "sub" / "deep" / "rel").read_text() == "x\n"
    assert os.readlink(out / "sub" / "deep" / "rel") == "../../a.txt"
    assert (out / "hard").read_text() == "x\n" and not (out / "hard").is_symlink()
    assert stat.S_IMODE((out / "sub").stat().st_mode) == 0o700
    assert stat.S_IMODE((out / "a.txt").stat().st_mode) == 0o600
    size = (home / source).stat().st_size
    assert task["progress"] == {"done": size, "total": size, "unit": "bytes", "message": None}
    assert task["result"]["members"] == 9  # six members, three directories they imply
    problem(alice.post(f"{FILES}/extract", json={"source": source, "target": "tree-gz"}), 409)


def test_extract_stops_at_the_size_bounds(alice: httpx.Client, base: Path) -> None:
    """The module's gateway allows 10 MB and 50 members per extraction."""
    home = base / "alice"
    bomb = tarfile.TarInfo("zeros.bin")
    bomb.size = 20_000_000
    with tarfile.open(home / "bomb.tar.gz", "w:gz") as made:
        made.addfile(bomb, io.BytesIO(bytes(bomb.size)))
    task = extracted(alice, "bomb.tar.gz", "bomb")
    assert task["state"] == "failed" and task["error"]["status"] == 413, task
    many = archive(home / "many.tar", [member(f"f{n}") for n in range(60)])
    task = extracted(alice, many, "many")
    assert task["state"] == "failed" and "more than 50 entries" in task["error"]["detail"]
    assert not (home / "bomb").exists() and not (home / "many").exists()


def test_a_failing_task_reports_the_program_s_complaint(alice: httpx.Client, base: Path) -> None:
    (base / "alice" / "not-an-archive.tar").write_text("plain text\n")
    task = finished(
        alice, alice.post(f"{FILES}/extract", json={"source": "not-an-archive.tar", "target": "o"})
    )
    assert task["state"] == "failed" and task["error"]["status"] == 400
    assert "not a readable tar archive" in task["error"]["detail"]


def test_cancelling_a_task_kills_its_program(alice: httpx.Client, base: Path) -> None:
    block = os.urandom(1 << 20)
    with (base / "alice" / "slow.bin").open("wb") as handle:
        for _ in range(256):
            handle.write(block)
    asked = {"source": "slow.bin", "target": "slow.tar.xz", "compression": "xz"}
    started = alice.post(f"{FILES}/compress", json=asked)
    assert started.status_code == 202
    task_id = started.json()["id"]
    time.sleep(0.5)
    cancelled = alice.delete(f"/api/v1/tasks/{task_id}")
    assert cancelled.status_code == 200 and cancelled.json()["state"] == "cancelled"
    assert subprocess.run(["pgrep", "-f", "slow.tar.xz"], capture_output=True).returncode == 1
    assert not (base / "alice" / "slow.tar.xz").exists()  # the partial archive is gone
    problem(alice.delete(f"/api/v1/tasks/{task_id}"), 409)


def test_tasks_are_private_and_checked(alice: httpx.Client, bob: httpx.Client) -> None:
    mine = alice.get("/api/v1/tasks").json()
    assert mine and all(t["state"] != "running" for t in mine)
    problem(bob.get(f"/api/v1/tasks/{mine[0]['id']}"), 404)
    problem(bob.delete(f"/api/v1/tasks/{mine[0]['id']}"), 404)
    problem(alice.get(f"/api/v1/tasks/{'0' * 32}"), 404)
    problem(alice.get("/api/v1/tasks/not-an-id"), 422)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL])
def test_a_task_running_when_the_gateway_stops_is_failed_after_it(
    server: GatewayProcess, alice: httpx.Client, base: Path, sig: int
) -> None:
    if not (base / "alice" / "slow.bin").exists():
        (base / "alice" / "slow.bin").write_bytes(os.urandom(256 << 20))
    asked = {"source": "slow.bin", "target": f"stop-{sig}.tar.xz", "compression": "xz"}
    task_id = alice.post(f"{FILES}/compress", json=asked).json()["id"]
    time.sleep(0.3)
    server.stop(sig)
    subprocess.run(["pkill", "-f", f"stop-{sig}.tar.xz"], check=False)  # a crash leaves tar
    server.start()
    task = alice.get(f"/api/v1/tasks/{task_id}").json()
    assert task["state"] == "failed", task
    assert "gateway stopped" in task["error"]["detail"]


def test_names_that_are_not_utf8_are_listed_escaped(alice: httpx.Client, base: Path) -> None:
    folder = base / "alice" / "bytes"
    folder.mkdir()
    os.close(os.open(bytes(folder) + b"/\xff-raw.txt", os.O_CREAT | os.O_WRONLY, 0o644))
    listed = alice.get(f"{FILES}/ls", params={"path": "bytes"})
    assert listed.status_code == 200, listed.text
    assert [e["name"] for e in listed.json()["entries"]] == ["\\xff-raw.txt"]
