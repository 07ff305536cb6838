"""The SSH transport's errors in the hpcgate tree, each kind by a table, in one place:

- a failed connection or channel (asyncssh's errors and the network's), :data:`ERRORS`:
  always a TransportError (503), saying what failed;
- an SFTP status about a file, by the errno it stands for (:data:`SFTP_ERRNO`), then
  by :mod:`.os_errors`' table as a local file's error would be (SFTP version 3 names few
  errors; where it says only "failure" the file system asks the host what it meant);
- a failed file command (``tail``, ``getent``, ``du``... run with :data:`C_LOCALE`), by
  the strerror text its complaint ends with (:func:`~.os_errors.complaint_kind`).

Code that talks to asyncssh wraps the talking in :func:`translated` (or calls
:func:`ssh_error` where it must decide what to do first), so no asyncssh error leaves the
transport.
"""

from __future__ import annotations

import contextlib
import errno
from collections.abc import Iterator

import asyncssh

from hpcgate.forced import REFUSED
from hpcgate.model.commands import CommandResult
from hpcgate.model.errors import HpcgateError, TransportError
from hpcgate.transports.os_errors import complaint_kind, errno_error

C_LOCALE = {"LC_ALL": "C"}  # complaints in the words complaint_kind knows, on every host

# The first row whose class matches wins: subclasses before their bases.
ERRORS: tuple[tuple[type[BaseException], str], ...] = (
    (asyncssh.HostKeyNotVerifiable, "the host key of {where} is not the one in known_hosts"),
    (asyncssh.PermissionDenied, "{where} refused the login of {login}"),
    (asyncssh.ConnectionLost, "the connection to {where} was lost"),
    (asyncssh.SFTPConnectionLost, "the connection to {where} was lost"),
    (asyncssh.DisconnectError, "{where} closed the connection"),
    (asyncssh.ChannelOpenError, "{where} refused a new channel"),
    (TimeoutError, "{where} did not answer in time"),
    (asyncssh.Error, "SSH to {where} failed"),
    (OSError, "cannot reach {where}"),
)

SFTP_ERRNO: dict[type[asyncssh.SFTPError], int] = {
    asyncssh.SFTPNoSuchFile: errno.ENOENT,
    asyncssh.SFTPNoSuchPath: errno.ENOENT,
    asyncssh.SFTPPermissionDenied: errno.EACCES,
    asyncssh.SFTPWriteProtect: errno.EROFS,
    asyncssh.SFTPFileAlreadyExists: errno.EEXIST,
    asyncssh.SFTPNotADirectory: errno.ENOTDIR,
    asyncssh.SFTPFileIsADirectory: errno.EISDIR,
    asyncssh.SFTPDirNotEmpty: errno.ENOTEMPTY,
    asyncssh.SFTPNoSpaceOnFilesystem: errno.ENOSPC,
    asyncssh.SFTPQuotaExceeded: errno.EDQUOT,
    asyncssh.SFTPInvalidFilename: errno.EINVAL,
    asyncssh.SFTPLinkLoop: errno.ELOOP,
}

# SFTP statuses that mean the connection (not the file) failed.
SFTP_CONNECTION_ERRORS = (asyncssh.SFTPConnectionLost, asyncssh.SFTPNoConnection)

Foreign = asyncssh.Error | OSError  # what asyncssh and the network raise


def connection_error(exc: BaseException, where: str, login: str) -> HpcgateError:
    """The hpcgate error for an error of asyncssh or of the network (503 transport-error)
    on the connection to ``where`` as ``login``; an hpcgate error stays as it is."""
    if isinstance(exc, HpcgateError):
        return exc
    for kind, text in ERRORS:
        if isinstance(exc, kind):
            reason = str(exc) or type(exc).__name__
            return TransportError(f"{text.format(where=where, login=login)}: {reason}")
    return TransportError(f"SSH to {where} failed: {exc!r}")


def sftp_error(exc: asyncssh.SFTPError, path: str) -> HpcgateError:
    """The hpcgate error for an SFTP status about ``path`` (not a connection failure)."""
    number = SFTP_ERRNO.get(type(exc), errno.EIO)  # EIO: a failure without a name, 503
    return errno_error(number, exc.reason or type(exc).__name__, path)


def lost_connection(exc: Foreign) -> bool:
    """Whether ``exc`` means the connection failed, not the request on it: then a request
    that changes nothing may be made again on a fresh connection."""
    return not isinstance(exc, asyncssh.SFTPError) or isinstance(exc, SFTP_CONNECTION_ERRORS)


def ssh_error(exc: Foreign, where: str, login: str, path: str = "") -> HpcgateError:
    """The hpcgate error for anything asyncssh or the network raised while working on
    ``path`` (if any) on the connection to ``where`` as ``login``."""
    if isinstance(exc, asyncssh.SFTPError) and not lost_connection(exc):
        return sftp_error(exc, path)
    return connection_error(exc, where, login)


@contextlib.contextmanager
def translated(where: str, login: str, path: str = "") -> Iterator[None]:
    """Errors of asyncssh and the network raised in the block, as :func:`ssh_error`'s.
    (A timeout of the caller's own ``asyncio.timeout`` must be outside the block.)"""
    try:
        yield
    except (asyncssh.Error, OSError) as exc:
        raise ssh_error(exc, where, login, path) from exc


def failure(result: CommandResult, program: str, path: str) -> HpcgateError:
    """The error a failed file command means: by the reason ending its stderr, or a
    TransportError naming what it said (hpcgate-forced's refusal among them)."""
    text = result.stderr.decode(errors="replace").strip()
    if result.returncode == REFUSED and text.startswith("hpcgate-forced:"):
        return TransportError(
            f"the host's forced command refused '{program}' ({text}): allow it there"
            " (see hpcgate.forced)"
        )
    reason = text.splitlines()[-1].rpartition(": ")[2] if text else ""
    kind = complaint_kind(reason) if reason else None
    if kind is not None:
        return kind(f"{reason}: {path}")
    return TransportError(
        f"'{program}' failed on {path} (exit status {result.returncode}): {text or 'no message'}"
    )
