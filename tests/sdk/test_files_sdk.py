"""The SDK's files methods, both twins, against the session's real gateway process and the
real filesystem: every operation, uploads small and in chunks, downloads that resume, and
the errors. Broken connections are real: a TCP proxy in front of the gateway cuts one
after so many bytes, and the SDK has to resume over a new one.
"""

from __future__ import annotations

import contextlib
import grp
import hashlib
import os
import socket
import threading
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from hpcgate.client import AsyncClient, Client, GatewayUnreachable, Retry
from hpcgate.model import errors
from hpcgate.model.tasks import TaskState
from tests.support.accounts import give
from tests.support.gateway_process import GatewayProcess

SYSTEM = "local"
CHUNK = 256 << 10
QUICK = Retry(attempts=5, backoff=0.05)
CHUNK_PUT = b"PUT /api/v1/systems/local/files/uploads/"


class CuttingProxy:
    """A TCP proxy on 127.0.0.1 to the gateway. After :meth:`cut`, the next connection it
    accepts is closed (both ways) once so many bytes have gone ``up`` (client to gateway)
    or ``down``, or, with ``answers=n``, as the gateway's answer n + 1 begins (an answer
    is lost though the gateway did the work). It keeps what went up and counts what went
    down, so a test can tell what the client asked for and how much it fetched."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self.listener.getsockname()[1]
        self.lock = threading.Lock()
        self.plan: tuple[str, int] | None = None
        self.cuts = 0
        self.sent = bytearray()
        self.received = 0
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def cut(
        self, *, up: int | None = None, down: int | None = None, answers: int | None = None
    ) -> None:
        if up is not None:
            self.plan = ("up", up)
        elif down is not None:
            self.plan = ("down", down)
        else:
            self.plan = ("answers", answers or 0)

    def reset(self) -> None:
        with self.lock:
            self.plan, self.cuts, self.sent, self.received = None, 0, bytearray(), 0

    def close(self) -> None:
        self.listener.close()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            plan, self.plan = self.plan, None
            threading.Thread(target=self._serve, args=(client, plan), daemon=True).start()

    def _serve(self, client: socket.socket, plan: tuple[str, int] | None) -> None:
        upstream = socket.create_connection(("127.0.0.1", self.target_port))
        limits = {"up": None, "down": None, "answers": None} | (dict([plan]) if plan else {})
        down = (upstream, client, limits["down"], False, limits["answers"])
        pumps = [
            threading.Thread(target=self._pump, args=(client, upstream, limits["up"], True)),
            threading.Thread(target=self._pump, args=down),
        ]
        for pump in pumps:
            pump.start()
        for pump in pumps:
            pump.join()
        client.close()
        upstream.close()

    def _pump(
        self,
        source: socket.socket,
        sink: socket.socket,
        limit: int | None,
        up: bool,
        answers: int | None = None,
    ) -> None:
        moved = begun = 0
        try:
            while data := source.recv(65536):
                begun += data.startswith(b"HTTP/1.1 ")  # an answer starts a read of its own
                if answers is not None and begun > answers:
                    with self.lock:
                        self.cuts += 1
                    break
                if limit is not None and moved + len(data) >= limit:
                    self._count(data[: limit - moved], up)
                    sink.sendall(data[: limit - moved])
                    with self.lock:
                        self.cuts += 1
                    break
                self._count(data, up)
                sink.sendall(data)
                moved += len(data)
        except OSError:
            pass
        finally:
            for end in (source, sink):
                with contextlib.suppress(OSError):
                    end.shutdown(socket.SHUT_RDWR)

    def _count(self, data: bytes, up: bool) -> None:
        with self.lock:
            if up:
                self.sent += data
            else:
                self.received += len(data)


@pytest.fixture(scope="module")
def proxy(sdk_gateway: GatewayProcess) -> Iterator[CuttingProxy]:
    server = CuttingProxy(sdk_gateway.port)
    yield server
    server.close()


@pytest.fixture
def proxied(proxy: CuttingProxy, alice_token: str) -> Iterator[Client]:
    """Alice's client through the proxy, with quick retries."""
    proxy.reset()
    with Client(proxy.url, alice_token, retry=QUICK) as hpc:
        yield hpc


@pytest.fixture
async def aproxied(proxy: CuttingProxy, alice_token: str) -> AsyncIterator[AsyncClient]:
    proxy.reset()
    async with AsyncClient(proxy.url, alice_token, retry=QUICK) as hpc:
        yield hpc


@pytest.fixture
def folder(client: Client, sdk_base: Path) -> tuple[str, Path]:
    """A fresh directory in alice's root: its remote name and where it is on disk."""
    name = f"files-{uuid.uuid4().hex[:8]}"
    client.mkdir(SYSTEM, name)
    return name, sdk_base / "alice" / name


class Progress:
    """A progress callback that keeps every call."""

    def __init__(self) -> None:
        self.calls: list[tuple[int, int | None]] = []

    def __call__(self, done: int, total: int | None) -> None:
        self.calls.append((done, total))


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def local_file(tmp_path: Path, size: int, name: str = "data.bin") -> tuple[Path, bytes]:
    data = os.urandom(size)
    path = tmp_path / name
    path.write_bytes(data)
    return path, data


def test_reading_operations(client: Client, folder: tuple[str, Path], tmp_path: Path) -> None:
    remote, disk = folder
    text = "".join(f"line {i}\n" for i in range(1, 21))
    (disk / "notes.txt").write_text(text)
    listing = client.ls(SYSTEM, remote)
    assert [(e.name, e.type, e.size) for e in listing.entries] == [("notes.txt", "file", len(text))]
    (disk / ".hidden").write_text("h")
    assert {e.name for e in client.ls(SYSTEM, remote, hidden=True).entries} == {
        "notes.txt",
        ".hidden",
    }
    entry = client.stat(SYSTEM, f"{remote}/notes.txt")
    assert (entry.path, entry.size, entry.mode) == (str(disk / "notes.txt"), len(text), "0644")
    assert client.stat(SYSTEM, f"{remote}/notes.txt", numeric=True).user is None
    sums = client.checksum(SYSTEM, f"{remote}/notes.txt")
    assert (sums.algorithm, sums.checksum) == ("sha256", digest(text.encode()))
    md5 = client.checksum(SYSTEM, f"{remote}/notes.txt", algorithm="md5").checksum
    assert md5 == hashlib.md5(text.encode(), usedforsecurity=False).hexdigest()
    assert client.head(SYSTEM, f"{remote}/notes.txt") == "".join(text.splitlines(True)[:10])
    assert client.head(SYSTEM, f"{remote}/notes.txt", lines=2) == "line 1\nline 2\n"
    assert client.tail(SYSTEM, f"{remote}/notes.txt", lines=1) == "line 20\n"
    assert client.tail(SYSTEM, f"{remote}/notes.txt", bytes=3) == "20\n"
    assert client.view(SYSTEM, f"{remote}/notes.txt", 7, 6) == "line 2"
    kind = client.file_type(SYSTEM, f"{remote}/notes.txt")
    assert (kind.type, kind.mime_type) == ("file", "text/plain")


def test_writing_operations(client: Client, folder: tuple[str, Path]) -> None:
    remote, disk = folder
    made = client.mkdir(SYSTEM, f"{remote}/a/b/c", parents=True)
    assert made.type == "directory" and (disk / "a" / "b" / "c").is_dir()
    with pytest.raises(errors.NotFound):
        client.mkdir(SYSTEM, f"{remote}/x/y")
    (disk / "f.txt").write_text("f")
    give(disk / "f.txt", "alice")  # made by other means, as alice's own
    assert client.chmod(SYSTEM, f"{remote}/f.txt", "600").mode == "0600"
    assert client.chmod(SYSTEM, f"{remote}/f.txt", 0o640).mode == "0640"
    assert (disk / "f.txt").stat().st_mode & 0o777 == 0o640
    group = grp.getgrgid((disk / "f.txt").stat().st_gid).gr_name  # one alice is in
    assert client.chown(SYSTEM, f"{remote}/f.txt", group=group).group == group
    link = client.symlink(SYSTEM, f"{remote}/link", str(disk / "f.txt"))
    assert link.type == "symlink" and (disk / "link").resolve() == disk / "f.txt"
    client.rm(SYSTEM, f"{remote}/link")
    assert not (disk / "link").is_symlink() and (disk / "f.txt").exists()
    with pytest.raises(errors.Conflict):
        client.rm(SYSTEM, f"{remote}/a")
    client.rm(SYSTEM, f"{remote}/a", recursive=True)
    assert not (disk / "a").exists()


def test_copy_move_compress_extract_are_tasks(client: Client, folder: tuple[str, Path]) -> None:
    remote, disk = folder
    (disk / "tree" / "sub").mkdir(parents=True)
    (disk / "tree" / "sub" / "x.bin").write_bytes(os.urandom(10_000))
    give(disk / "tree", "alice")
    copied = client.cp(SYSTEM, f"{remote}/tree", f"{remote}/copy")
    assert copied.kind == "copy"
    assert client.wait_task(copied.id, timeout=30).state == TaskState.COMPLETED
    original = (disk / "tree" / "sub" / "x.bin").read_bytes()
    assert (disk / "copy" / "sub" / "x.bin").read_bytes() == original
    moved = client.wait_task(client.mv(SYSTEM, f"{remote}/copy", f"{remote}/moved").id)
    assert moved.state == TaskState.COMPLETED and not (disk / "copy").exists()
    packed = client.compress(SYSTEM, f"{remote}/tree", f"{remote}/t.tar.xz", compression="xz")
    assert client.wait_task(packed.id, timeout=30).state == TaskState.COMPLETED
    assert (disk / "t.tar.xz").read_bytes()[:6] == b"\xfd7zXZ\x00"
    unpacked = client.wait_task(client.extract(SYSTEM, f"{remote}/t.tar.xz", f"{remote}/out").id)
    assert unpacked.state == TaskState.COMPLETED
    assert (disk / "out" / "tree" / "sub" / "x.bin").read_bytes() == original
    with pytest.raises(errors.Conflict):
        client.cp(SYSTEM, f"{remote}/tree", f"{remote}/moved")
    replaced = client.cp(SYSTEM, f"{remote}/tree", f"{remote}/moved", overwrite=True)
    assert client.wait_task(replaced.id, timeout=30).state == TaskState.COMPLETED


def test_a_small_upload_is_one_request(
    proxied: Client, proxy: CuttingProxy, folder: tuple[str, Path], tmp_path: Path
) -> None:
    remote, disk = folder
    path, data = local_file(tmp_path, 100_000)
    progress = Progress()
    done = proxied.upload(SYSTEM, path, f"{remote}/small.bin", progress=progress)
    assert done.sha256 == digest(data) and done.entry.size == len(data)
    assert (disk / "small.bin").read_bytes() == data
    assert progress.calls[0] == (0, len(data)) and progress.calls[-1] == (len(data), len(data))
    assert bytes(proxy.sent).count(b"PUT /api/v1/systems/local/files/upload?") == 1
    assert f"sha256={digest(data)}".encode() in proxy.sent


def test_a_large_upload_goes_in_chunks(
    proxied: Client, proxy: CuttingProxy, folder: tuple[str, Path], tmp_path: Path
) -> None:
    remote, disk = folder
    path, data = local_file(tmp_path, (2 << 20) + 5)
    progress = Progress()
    done = proxied.upload(SYSTEM, path, f"{remote}/large.bin", chunk_size=CHUNK, progress=progress)
    assert done.sha256 == digest(data) and (disk / "large.bin").read_bytes() == data
    assert bytes(proxy.sent).count(CHUNK_PUT) == 9  # 8 full chunks and 5 bytes
    dones = [call[0] for call in progress.calls]
    assert dones == sorted(dones) and dones[-1] == len(data)
    assert {call[1] for call in progress.calls} == {len(data)}
    assert len(dones) > 9  # also within chunks, as pieces go out
    assert not [p for p in disk.iterdir() if "hpcgate-upload" in p.name]


def test_an_upload_resumes_after_a_cut_connection(
    proxied: Client, proxy: CuttingProxy, folder: tuple[str, Path], tmp_path: Path
) -> None:
    remote, disk = folder
    path, data = local_file(tmp_path, (2 << 20) + 1)
    proxy.cut(up=(1 << 20) + 70_000)  # mid-way through the fifth chunk
    progress = Progress()
    done = proxied.upload(SYSTEM, path, f"{remote}/cut.bin", chunk_size=CHUNK, progress=progress)
    assert proxy.cuts == 1
    assert done.sha256 == digest(data) and (disk / "cut.bin").read_bytes() == data
    assert b"GET /api/v1/systems/local/files/uploads/" in proxy.sent  # asked where it stood
    assert progress.calls[-1] == (len(data), len(data))


def test_an_upload_whose_last_answer_was_lost_is_found_complete(
    proxied: Client, proxy: CuttingProxy, folder: tuple[str, Path], tmp_path: Path
) -> None:
    remote, disk = folder
    path, data = local_file(tmp_path, 100_000)
    proxy.cut(answers=1)  # the POST's answer comes; the one chunk's is lost
    done = proxied.upload(SYSTEM, path, f"{remote}/lost.bin", resumable=True)
    assert proxy.cuts == 1 and bytes(proxy.sent).count(CHUNK_PUT) == 1
    assert b"/files/checksum?" in proxy.sent  # the upload was gone: the file was checked
    assert done.sha256 == digest(data) and done.entry.path == str(disk / "lost.bin")
    assert (disk / "lost.bin").read_bytes() == data


def test_download_with_progress(proxied: Client, folder: tuple[str, Path], tmp_path: Path) -> None:
    remote, disk = folder
    data = os.urandom((3 << 20) + 7)
    (disk / "get.bin").write_bytes(data)
    progress = Progress()
    path = proxied.download(SYSTEM, f"{remote}/get.bin", tmp_path / "got.bin", progress=progress)
    assert path == tmp_path / "got.bin" and path.read_bytes() == data
    assert progress.calls[0] == (0, len(data)) and progress.calls[-1] == (len(data), len(data))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["got.bin"]


def test_a_part_left_behind_is_resumed(
    proxied: Client, proxy: CuttingProxy, folder: tuple[str, Path], tmp_path: Path
) -> None:
    remote, disk = folder
    data = os.urandom(2 << 20)
    (disk / "resume.bin").write_bytes(data)
    (tmp_path / "resume.bin.part").write_bytes(data[:1_500_000])
    progress = Progress()
    path = proxied.download(
        SYSTEM, f"{remote}/resume.bin", tmp_path / "resume.bin", progress=progress
    )
    assert path.read_bytes() == data
    assert progress.calls[0] == (1_500_000, len(data))
    assert b"Range: bytes=1500000-" in proxy.sent or b"range: bytes=1500000-" in proxy.sent
    assert proxy.received < len(data) - 1_500_000 + 4096  # only the rest came
    assert sorted(p.name for p in tmp_path.iterdir()) == ["resume.bin"]


def test_a_download_resumes_after_a_cut_connection(
    proxied: Client, proxy: CuttingProxy, folder: tuple[str, Path], tmp_path: Path
) -> None:
    remote, disk = folder
    data = os.urandom(3 << 20)
    (disk / "cut.bin").write_bytes(data)
    proxy.cut(down=1_000_000)
    progress = Progress()
    path = proxied.download(SYSTEM, f"{remote}/cut.bin", tmp_path / "cut.bin", progress=progress)
    assert proxy.cuts == 1 and path.read_bytes() == data
    assert proxy.received < len(data) + 8192  # resumed, not fetched twice
    assert bytes(proxy.sent).lower().count(b"if-range: ") == 1
    dones = [call[0] for call in progress.calls]
    assert dones == sorted(dones) and dones[-1] == len(data)


def test_a_failed_download_leaves_a_part_and_a_changed_file_starts_over(
    proxy: CuttingProxy,
    alice_token: str,
    client: Client,
    folder: tuple[str, Path],
    tmp_path: Path,
) -> None:
    remote, disk = folder
    old = os.urandom(2 << 20)
    (disk / "moving.bin").write_bytes(old)
    local = tmp_path / "moving.bin"
    proxy.reset()
    proxy.cut(down=700_000)
    with (
        Client(proxy.url, alice_token, retry=Retry(attempts=1)) as fragile,
        pytest.raises(GatewayUnreachable),
    ):
        fragile.download(SYSTEM, f"{remote}/moving.bin", local)
    assert not local.exists()
    part = tmp_path / "moving.bin.part"
    assert 0 < part.stat().st_size < 700_000 and part.read_bytes() == old[: part.stat().st_size]
    new, source = local_file(tmp_path, 2 << 20, "new.bin")[1], tmp_path / "new.bin"
    client.upload(SYSTEM, source, f"{remote}/moving.bin", overwrite=True)
    progress = Progress()
    assert client.download(SYSTEM, f"{remote}/moving.bin", local, progress=progress) == local
    assert local.read_bytes() == new and progress.calls[0] == (0, len(new))
    assert not part.exists() and not (tmp_path / "moving.bin.part.etag").exists()


def test_a_part_is_ignored_without_resume(
    client: Client, folder: tuple[str, Path], tmp_path: Path
) -> None:
    remote, disk = folder
    (disk / "f.txt").write_text("the real content\n")
    (tmp_path / "f.txt.part").write_text("garbage")
    local = client.download(SYSTEM, f"{remote}/f.txt", tmp_path / "f.txt", resume=False)
    assert local.read_text() == "the real content\n"


def test_a_part_longer_than_the_file_starts_over(
    client: Client, folder: tuple[str, Path], tmp_path: Path
) -> None:
    remote, disk = folder
    (disk / "short.txt").write_text("short\n")
    (tmp_path / "short.txt.part").write_text("much longer than the file\n")
    local = client.download(SYSTEM, f"{remote}/short.txt", tmp_path / "short.txt")
    assert local.read_text() == "short\n"


def test_errors(client: Client, folder: tuple[str, Path], tmp_path: Path) -> None:
    remote, disk = folder
    local = tmp_path / "missing.bin"
    with pytest.raises(errors.NotFound):
        client.download(SYSTEM, f"{remote}/missing.bin", local)
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(errors.Forbidden):
        client.download(SYSTEM, "/etc/hostname", tmp_path / "hostname")
    assert list(tmp_path.iterdir()) == []
    path, data = local_file(tmp_path, 300_000)
    client.upload(SYSTEM, path, f"{remote}/taken.bin")
    for resumable in (False, True):
        with pytest.raises(errors.Conflict):
            client.upload(SYSTEM, path, f"{remote}/taken.bin", resumable=resumable)
        with pytest.raises(errors.Forbidden):
            client.upload(SYSTEM, path, "/tmp/outside.bin", resumable=resumable)
    (disk / "taken.bin").write_bytes(b"old")
    done = client.upload(SYSTEM, path, f"{remote}/taken.bin", overwrite=True, chunk_size=CHUNK)
    assert done.sha256 == digest(data) and (disk / "taken.bin").read_bytes() == data
    with pytest.raises(errors.Forbidden):
        client.ls(SYSTEM, "/etc")
    with pytest.raises(errors.NotFound):
        client.stat(SYSTEM, f"{remote}/nothing")
    assert not [p for p in disk.iterdir() if "hpcgate-upload" in p.name]


async def test_async_operations(
    aclient: AsyncClient, folder: tuple[str, Path], tmp_path: Path
) -> None:
    remote, disk = folder
    await aclient.mkdir(SYSTEM, f"{remote}/d")
    (disk / "d" / "t.txt").write_text("one\ntwo\nthree\n")
    give(disk / "d", "alice")
    assert [e.name for e in (await aclient.ls(SYSTEM, f"{remote}/d")).entries] == ["t.txt"]
    assert (await aclient.stat(SYSTEM, f"{remote}/d/t.txt")).size == 14
    assert (await aclient.checksum(SYSTEM, f"{remote}/d/t.txt")).checksum == digest(
        b"one\ntwo\nthree\n"
    )
    assert await aclient.head(SYSTEM, f"{remote}/d/t.txt", lines=1) == "one\n"
    assert await aclient.tail(SYSTEM, f"{remote}/d/t.txt", lines=1) == "three\n"
    assert await aclient.view(SYSTEM, f"{remote}/d/t.txt", 4, 3) == "two"
    assert (await aclient.file_type(SYSTEM, f"{remote}/d")).type == "directory"
    assert (await aclient.chmod(SYSTEM, f"{remote}/d/t.txt", "600")).mode == "0600"
    assert (await aclient.symlink(SYSTEM, f"{remote}/l", "d")).link_target == str(disk / "d")
    await aclient.rm(SYSTEM, f"{remote}/l")
    task = await aclient.cp(SYSTEM, f"{remote}/d", f"{remote}/e")
    assert (await aclient.wait_task(task.id, timeout=30)).state == TaskState.COMPLETED
    assert (disk / "e" / "t.txt").read_text() == "one\ntwo\nthree\n"
    await aclient.rm(SYSTEM, f"{remote}/e", recursive=True)
    assert not (disk / "e").exists()
    with pytest.raises(errors.NotFound):
        await aclient.download(SYSTEM, f"{remote}/none", tmp_path / "none")
    assert os.listdir(tmp_path) == []


async def test_async_uploads_and_downloads(
    aclient: AsyncClient, folder: tuple[str, Path], tmp_path: Path
) -> None:
    remote, disk = folder
    small, small_data = local_file(tmp_path, 50_000, "small.bin")
    done = await aclient.upload(SYSTEM, small, f"{remote}/small.bin")
    assert done.sha256 == digest(small_data) and (disk / "small.bin").read_bytes() == small_data
    large, data = local_file(tmp_path, (1 << 20) + 3, "large.bin")
    progress = Progress()
    done = await aclient.upload(
        SYSTEM, large, f"{remote}/large.bin", chunk_size=CHUNK, progress=progress
    )
    assert done.sha256 == digest(data) and (disk / "large.bin").read_bytes() == data
    assert progress.calls[-1] == (len(data), len(data))
    with pytest.raises(errors.Conflict):
        await aclient.upload(SYSTEM, large, f"{remote}/large.bin", chunk_size=CHUNK)
    progress = Progress()
    got = await aclient.download(SYSTEM, f"{remote}/large.bin", tmp_path / "got", progress=progress)
    assert got.read_bytes() == data and progress.calls[-1] == (len(data), len(data))


async def test_async_transfers_resume_after_cut_connections(
    aproxied: AsyncClient,
    proxy: CuttingProxy,
    alice_token: str,
    folder: tuple[str, Path],
    tmp_path: Path,
) -> None:
    remote, disk = folder
    path, data = local_file(tmp_path, (2 << 20) + 9)
    proxy.cut(up=900_000)
    done = await aproxied.upload(SYSTEM, path, f"{remote}/a.bin", chunk_size=CHUNK)
    assert proxy.cuts == 1 and done.entry.size == len(data)
    assert (disk / "a.bin").read_bytes() == data
    proxy.reset()
    proxy.cut(down=800_000)  # the next connection: a new client's
    progress = Progress()
    async with AsyncClient(proxy.url, alice_token, retry=QUICK) as fresh:
        got = await fresh.download(SYSTEM, f"{remote}/a.bin", tmp_path / "back", progress=progress)
    assert proxy.cuts == 1 and got.read_bytes() == data
    assert proxy.received < len(data) + 8192
    dones = [call[0] for call in progress.calls]
    assert dones == sorted(dones) and dones[-1] == len(data)
