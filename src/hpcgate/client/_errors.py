"""What the SDK raises.

An answer of the gateway that is a problem document (RFC 9457) becomes the exception the
server raised: the same class from :mod:`hpcgate.model.errors`, found by the problem's ``type``
(or, for a type this SDK does not know, by its status), so ``except NotFound`` works on
both sides of the wire. Its ``detail`` and extension members (``extra``) are the
document's; ``problem`` is the whole document and ``http_status`` the answer's status::

    HpcgateError (hpcgate.model.errors: BadRequest, NotFound, Conflict, Unavailable, ...)
    │     one per problem type the gateway sends; see hpcgate.model.errors
    ├── ValidationFailed   422  validation-error: the request did not match the API's schema
    ├── RateLimited        429  too-many-requests (hpcgate.model.errors; here for old imports)
    └── ClientError             raised by the SDK itself, no answer behind it
        ├── GatewayUnreachable   no connection, or it broke before an answer came
        ├── NotConfigured        no URL or token given, in the environment or a profile
        ├── LoginFailed          the OpenID provider refused a login or a token's refresh
        ├── JobFailed            wait() or the Executor: the job ended but not COMPLETED
        ├── FunctionFailed       a function's invocation ended with an error event
        ├── SealBroken           an encrypted invocation's event was not the next one
        │                        sealed by its worker (or the gateway's own error)
        └── WaitTimeout          wait(): the job or task had not ended in time
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any

from hpcgate.model import errors
from hpcgate.model.errors import PROBLEM_BASE, HpcgateError
from hpcgate.model.errors import RateLimited as RateLimited  # raised for 429s, exported

if TYPE_CHECKING:
    from hpcgate.model.functions import InvocationError
    from hpcgate.model.jobs import Job


class ValidationFailed(errors.BadRequest):
    """The request did not match the API's schema; ``extra["errors"]`` lists each field."""

    status = 422
    slug = "validation-error"
    title = "The request is not valid"


class ClientError(HpcgateError):
    """Raised by the SDK itself, with no problem document behind it."""

    slug = "client-error"
    title = "Client error"


class GatewayUnreachable(ClientError):
    title = "The gateway could not be reached"


class NotConfigured(ClientError):
    title = "No gateway configured"


class LoginFailed(ClientError):
    """The OpenID provider refused a device login or the refresh of a profile's token (run
    ``hpcgate login --oidc`` again)."""

    status = 401


class JobFailed(ClientError):
    """The job ended in a state other than COMPLETED; ``job`` is its last record."""

    title = "The job did not complete"

    def __init__(self, job: Job) -> None:
        code = f", exit code {job.exit_code}" if job.exit_code is not None else ""
        super().__init__(f"job {job.id} ended {job.state.value}{code}")
        self.job = job


class FunctionFailed(ClientError):
    """A function's invocation ended with an ``error`` event: ``type``, ``message`` and
    ``traceback`` are the error's (the traceback only for the function's owner: else None),
    ``invocation`` the invocation's id."""

    title = "The function failed"

    def __init__(self, error: InvocationError, invocation: str | None = None) -> None:
        super().__init__(f"{error.type}: {error.message}")
        self.error = error
        self.invocation = invocation

    @property
    def type(self) -> str:
        return self.error.type

    @property
    def message(self) -> str:
        return self.error.message

    @property
    def traceback(self) -> str | None:
        return self.error.traceback


class SealBroken(ClientError):
    """An encrypted invocation's event that the SDK refuses: out of order (reordered,
    replayed, dropped), failing authentication (altered), or not sealed at all. An error
    the gateway made itself (``WorkerLost``, ``NoWorker``, ``NotEncrypted``) or that the
    worker could not seal (``EncryptionUnavailable``) cannot be authenticated: its claim
    is ``error``, and the invocation is over."""

    title = "An encrypted event was refused"

    def __init__(self, detail: str, error: InvocationError | None = None) -> None:
        super().__init__(detail)
        self.error = error


class WaitTimeout(ClientError):
    title = "The job or task had not ended in time"


@functools.cache
def _by_slug() -> dict[str, type[HpcgateError]]:
    found: dict[str, type[HpcgateError]] = {}
    pending: list[type[HpcgateError]] = [HpcgateError]
    while pending:
        kind = pending.pop()
        found.setdefault(kind.slug, kind)
        pending.extend(kind.__subclasses__())
    return {slug: kind for slug, kind in found.items() if not issubclass(kind, ClientError)}


BY_STATUS: dict[int, type[HpcgateError]] = {
    400: errors.BadRequest,
    401: errors.Unauthenticated,
    403: errors.Forbidden,
    404: errors.NotFound,
    409: errors.Conflict,
    413: errors.PayloadTooLarge,
    416: errors.RangeNotSatisfiable,
    422: ValidationFailed,
    429: RateLimited,
    501: errors.NotImplementedByScheduler,
    503: errors.Unavailable,
    504: errors.CommandTimeout,
    507: errors.InsufficientStorage,
}


def _kind(status: int, type_uri: str) -> type[HpcgateError]:
    """The class for a problem: by its type when known and of this status, else by status."""
    slug = type_uri.removeprefix(PROBLEM_BASE)
    known = _by_slug().get(slug) if type_uri.startswith(PROBLEM_BASE) else None
    if known is not None and known.status == status:
        return known
    if status in BY_STATUS:
        return BY_STATUS[status]
    return errors.BadRequest if status < 500 else errors.Unavailable


def from_problem(status: int, document: dict[str, Any]) -> HpcgateError:
    """The exception for an error answer: ``document`` is its JSON body (or ``{}``)."""
    kind = _kind(status, str(document.get("type", "")))
    detail = document.get("detail") or document.get("title") or f"HTTP {status}"
    known = {"type", "title", "status", "detail"}
    error = kind(str(detail), **{k: v for k, v in document.items() if k not in known})
    error.problem = {**document, "status": status}
    return error
