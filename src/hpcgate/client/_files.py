"""The SDK's files methods: pure call builders, and the twins that send them.

Remote paths are absolute, or relative to the caller's home (or the system's default
directory) on the system; the gateway confines them to the system's roots. cp, mv,
compress and extract start a :class:`~hpcgate.model.tasks.Task` to poll with
``wait_task``. Uploads and downloads are ``_uploads.py``.
"""

from __future__ import annotations

from typing import Any, Literal

import httpx

from hpcgate.client._async import AsyncCore
from hpcgate.client._base import Call, given, request
from hpcgate.client._sync import SyncCore
from hpcgate.model.files import (
    Checksum,
    Compression,
    Content,
    FileEntry,
    FileType,
    Listing,
)
from hpcgate.model.tasks import Task


def _files(method: str, system: str, *operation: str, **parts: Any) -> Call:
    """A request to ``systems/{system}/files/...``; ``parts`` as :func:`request` takes them."""
    return request(method, "systems", system, "files", *operation, **parts)


def _get(system: str, name: str, path: str, **params: Any) -> Call:
    """A GET of ``files/name`` about ``path``; parameters that are None are left out."""
    return _files("GET", system, name, params={"path": path, **params})


def _body(method: str, system: str, name: str, **fields: Any) -> Call:
    """A request with a JSON body; fields that are None are left out."""
    return _files(method, system, name, json=given(fields))


def _mode(mode: str | int) -> str:
    return mode if isinstance(mode, str) else format(mode, "o")


def _listing(system: str, path: str, hidden: bool, depth: int, numeric: bool) -> Call:
    return _get(system, "ls", path, hidden=hidden, depth=depth, numeric=numeric)


def _remove(system: str, path: str, recursive: bool) -> Call:
    return _files("DELETE", system, "rm", params={"path": path, "recursive": recursive})


def _content(response: httpx.Response) -> str:
    return Content.model_validate_json(response.content).content


class SyncFiles(SyncCore):
    """Files methods of :class:`~hpcgate.Client`."""

    def ls(
        self, system: str, path: str, *, hidden: bool = False, depth: int = 1, numeric: bool = False
    ) -> Listing:
        """The directory's entries (``depth`` levels down; symlinks are not descended)."""
        return self._call(_listing(system, path, hidden, depth, numeric), Listing)

    def stat(
        self, system: str, path: str, *, dereference: bool = False, numeric: bool = False
    ) -> FileEntry:
        """A file's details; a symlink's own unless ``dereference``."""
        call = _get(system, "stat", path, dereference=dereference, numeric=numeric)
        return self._call(call, FileEntry)

    def checksum(self, system: str, path: str, algorithm: str = "sha256") -> Checksum:
        return self._call(_get(system, "checksum", path, algorithm=algorithm), Checksum)

    def head(
        self, system: str, path: str, *, lines: int | None = None, bytes: int | None = None
    ) -> str:
        """The first ``lines`` lines (10 unless asked) or ``bytes`` bytes, as text."""
        return _content(self._send(_get(system, "head", path, lines=lines, bytes=bytes)))

    def tail(
        self, system: str, path: str, *, lines: int | None = None, bytes: int | None = None
    ) -> str:
        """The last ``lines`` lines (10 unless asked) or ``bytes`` bytes, as text."""
        return _content(self._send(_get(system, "tail", path, lines=lines, bytes=bytes)))

    def view(self, system: str, path: str, offset: int = 0, length: int = 65536) -> str:
        """``length`` bytes (at most 1 MiB) from ``offset``, as text."""
        return _content(self._send(_get(system, "view", path, offset=offset, size=length)))

    def file_type(self, system: str, path: str) -> FileType:
        return self._call(_get(system, "file", path), FileType)

    def mkdir(self, system: str, path: str, *, parents: bool = False) -> FileEntry:
        return self._call(_body("POST", system, "mkdir", path=path, parents=parents), FileEntry)

    def rm(self, system: str, path: str, *, recursive: bool = False) -> None:
        """Remove a file, a link (never what it points to) or, if ``recursive``, a tree."""
        self._send(_remove(system, path, recursive))

    def chmod(self, system: str, path: str, mode: str | int) -> FileEntry:
        """``mode`` in octal: ``"750"`` or ``0o750``."""
        return self._call(_body("PUT", system, "chmod", path=path, mode=_mode(mode)), FileEntry)

    def chown(
        self, system: str, path: str, *, owner: str | None = None, group: str | None = None
    ) -> FileEntry:
        call = _body("PUT", system, "chown", path=path, owner=owner, group=group)
        return self._call(call, FileEntry)

    def symlink(self, system: str, path: str, target: str) -> FileEntry:
        """Make ``path`` a link to ``target`` (which must lie inside the roots)."""
        return self._call(_body("POST", system, "symlink", path=path, target=target), FileEntry)

    def cp(self, system: str, source: str, target: str, *, overwrite: bool = False) -> Task:
        """Copy a file or a tree, links as links; a task."""
        call = _body("POST", system, "cp", source=source, target=target, overwrite=overwrite)
        return self._call(call, Task)

    def mv(self, system: str, source: str, target: str, *, overwrite: bool = False) -> Task:
        """Move or rename, across filesystems too; a task."""
        call = _body("POST", system, "mv", source=source, target=target, overwrite=overwrite)
        return self._call(call, Task)

    def compress(
        self,
        system: str,
        source: str,
        target: str,
        *,
        compression: Compression | Literal["auto"] = "auto",
        overwrite: bool = False,
    ) -> Task:
        """Archive ``source`` (a file or a tree) into the tar file ``target``; a task. The
        compression is by default the one ``target``'s suffix says (gzip for other names)."""
        fields = {"source": source, "target": target, "compression": compression}
        return self._call(_body("POST", system, "compress", **fields, overwrite=overwrite), Task)

    def extract(
        self,
        system: str,
        source: str,
        target: str,
        *,
        compression: Compression | Literal["auto"] = "auto",
    ) -> Task:
        """Unpack the tar file ``source`` into the new directory ``target``; a task."""
        fields = {"source": source, "target": target, "compression": compression}
        return self._call(_body("POST", system, "extract", **fields), Task)


class AsyncFiles(AsyncCore):
    """Files methods of :class:`~hpcgate.AsyncClient`; see :class:`SyncFiles`."""

    async def ls(
        self, system: str, path: str, *, hidden: bool = False, depth: int = 1, numeric: bool = False
    ) -> Listing:
        return await self._call(_listing(system, path, hidden, depth, numeric), Listing)

    async def stat(
        self, system: str, path: str, *, dereference: bool = False, numeric: bool = False
    ) -> FileEntry:
        call = _get(system, "stat", path, dereference=dereference, numeric=numeric)
        return await self._call(call, FileEntry)

    async def checksum(self, system: str, path: str, algorithm: str = "sha256") -> Checksum:
        return await self._call(_get(system, "checksum", path, algorithm=algorithm), Checksum)

    async def head(
        self, system: str, path: str, *, lines: int | None = None, bytes: int | None = None
    ) -> str:
        return _content(await self._send(_get(system, "head", path, lines=lines, bytes=bytes)))

    async def tail(
        self, system: str, path: str, *, lines: int | None = None, bytes: int | None = None
    ) -> str:
        return _content(await self._send(_get(system, "tail", path, lines=lines, bytes=bytes)))

    async def view(self, system: str, path: str, offset: int = 0, length: int = 65536) -> str:
        return _content(await self._send(_get(system, "view", path, offset=offset, size=length)))

    async def file_type(self, system: str, path: str) -> FileType:
        return await self._call(_get(system, "file", path), FileType)

    async def mkdir(self, system: str, path: str, *, parents: bool = False) -> FileEntry:
        call = _body("POST", system, "mkdir", path=path, parents=parents)
        return await self._call(call, FileEntry)

    async def rm(self, system: str, path: str, *, recursive: bool = False) -> None:
        await self._send(_remove(system, path, recursive))

    async def chmod(self, system: str, path: str, mode: str | int) -> FileEntry:
        call = _body("PUT", system, "chmod", path=path, mode=_mode(mode))
        return await self._call(call, FileEntry)

    async def chown(
        self, system: str, path: str, *, owner: str | None = None, group: str | None = None
    ) -> FileEntry:
        call = _body("PUT", system, "chown", path=path, owner=owner, group=group)
        return await self._call(call, FileEntry)

    async def symlink(self, system: str, path: str, target: str) -> FileEntry:
        call = _body("POST", system, "symlink", path=path, target=target)
        return await self._call(call, FileEntry)

    async def cp(self, system: str, source: str, target: str, *, overwrite: bool = False) -> Task:
        call = _body("POST", system, "cp", source=source, target=target, overwrite=overwrite)
        return await self._call(call, Task)

    async def mv(self, system: str, source: str, target: str, *, overwrite: bool = False) -> Task:
        call = _body("POST", system, "mv", source=source, target=target, overwrite=overwrite)
        return await self._call(call, Task)

    async def compress(
        self,
        system: str,
        source: str,
        target: str,
        *,
        compression: Compression | Literal["auto"] = "auto",
        overwrite: bool = False,
    ) -> Task:
        fields = {"source": source, "target": target, "compression": compression}
        call = _body("POST", system, "compress", **fields, overwrite=overwrite)
        return await self._call(call, Task)

    async def extract(
        self,
        system: str,
        source: str,
        target: str,
        *,
        compression: Compression | Literal["auto"] = "auto",
    ) -> Task:
        fields = {"source": source, "target": target, "compression": compression}
        return await self._call(_body("POST", system, "extract", **fields), Task)
