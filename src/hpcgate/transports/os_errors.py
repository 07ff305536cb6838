"""OS errors in the hpcgate tree: one table, by errno number and by the text ``strerror``
gives that number.

The local file system meets OS errors as exceptions with a number; programs (``cp``,
``tar``, the coreutils a functional account runs over SSH) print the same errors as text
at the end of their complaints ("cp: cannot stat 'x': No such file or directory"). Both
become the same hpcgate error here.
"""

from __future__ import annotations

import errno
import os

from hpcgate.model.errors import (
    BadRequest,
    CommandTimeout,
    Conflict,
    Forbidden,
    HpcgateError,
    InsufficientStorage,
    NotFound,
    TransportError,
)

BY_ERRNO: dict[int, type[HpcgateError]] = {
    errno.ENOENT: NotFound,
    errno.EACCES: Forbidden,
    errno.EPERM: Forbidden,
    errno.EROFS: Forbidden,
    errno.EEXIST: Conflict,
    errno.ENOTDIR: Conflict,
    errno.EISDIR: Conflict,
    errno.ENOTEMPTY: Conflict,
    errno.EXDEV: Conflict,
    errno.EBUSY: Conflict,
    errno.ENOSPC: InsufficientStorage,
    errno.EDQUOT: InsufficientStorage,
    errno.EFBIG: InsufficientStorage,
    errno.ENAMETOOLONG: BadRequest,
    errno.ELOOP: BadRequest,
    errno.EINVAL: BadRequest,
    errno.EFAULT: BadRequest,
    errno.ETIMEDOUT: CommandTimeout,
}

_BY_MESSAGE: dict[str, type[HpcgateError]] = {os.strerror(n): k for n, k in BY_ERRNO.items()}


def errno_error(number: int, message: str, path: str) -> HpcgateError:
    """The hpcgate error for OS error ``number`` met on ``path`` (an unknown number: 503)."""
    kind = BY_ERRNO.get(number, TransportError)
    return kind(f"{message}: {path}" if path else message)


def os_error(exc: OSError, path: str) -> HpcgateError:
    """The hpcgate error for an :class:`OSError` met on ``path``."""
    return errno_error(exc.errno or errno.EIO, exc.strerror or str(exc), path)


def complaint_kind(text: str) -> type[HpcgateError] | None:
    """The hpcgate error a program's complaint names by its strerror text, if any."""
    return next((kind for message, kind in _BY_MESSAGE.items() if message in text), None)
