"""The one exception tree of hpcgate.

Every error a client can cause or see is an :class:`HpcgateError`; each class knows its
HTTP status and its RFC 9457 problem ``type`` slug, so the API layer renders any of them as
``application/problem+json`` without a table of special cases::

    HpcgateError                      500  internal
    ├── ConsentPending                202  consent-pending (model/consents.py: held for
    │                                      its user's consent, answered as the request)
    ├── BadRequest                    400  bad-request
    │   ├── Invalid                   422  invalid
    │   ├── UnsupportedField          422  unsupported-field
    │   └── SchedulerRejected         422  scheduler-rejected
    ├── Unauthenticated               401  unauthenticated
    ├── Forbidden                     403  forbidden
    │   └── LimitExceeded             403  limit-exceeded
    ├── NotFound                      404  not-found
    ├── Conflict                      409  conflict
    │   └── IdempotencyInProgress     409  idempotency-in-progress
    ├── Gone                          410  gone
    ├── PayloadTooLarge               413  payload-too-large
    ├── RangeNotSatisfiable           416  range-not-satisfiable
    ├── RateLimited                   429  too-many-requests
    ├── InsufficientStorage           507  insufficient-storage
    ├── NotImplementedByScheduler     501  not-implemented
    ├── Interrupted                   500  interrupted
    ├── Unavailable                   503  unavailable
    │   ├── SchedulerUnavailable      503  scheduler-unavailable
    │   ├── TransportError            503  transport-error
    │   │   └── ForwardingProhibited  503  transport-error
    │   ├── NoReplica                 503  no-replica
    │   └── DatabaseBusy              503  database-busy
    ├── CommandTimeout                504  command-timeout
    ├── BadGateway                    502  bad-gateway
    └── GatewayTimeout                504  gateway-timeout

Errors from libraries below (OSError, SQLAlchemy, subprocess) are translated where they
are caught, never passed up raw.
"""

from __future__ import annotations

from typing import Any, ClassVar

PROBLEM_BASE = "https://hpcgate.dev/problems/"  # + slug: the ``type`` of a problem document


class HpcgateError(Exception):
    """Base of every hpcgate error. ``detail`` is safe to show to the client."""

    status: ClassVar[int] = 500
    slug: ClassVar[str] = "internal"
    title: ClassVar[str] = "Internal error"

    def __init__(self, detail: str, **extra: Any) -> None:
        super().__init__(detail)
        self.detail = detail
        self.extra = extra
        self.problem: dict[str, Any] | None = None  # the document, when it came over the wire
        self.retry_after: float | None = None  # and the answer's Retry-After, in seconds
        self.headers: dict[str, str] = {}  # further headers of the answer (RateLimit ...)

    @property
    def http_status(self) -> int:
        """The status of the answer this error came in (the SDK), else the class's."""
        answered = self.problem.get("status") if self.problem else None
        return answered if isinstance(answered, int) else self.status


class BadRequest(HpcgateError):
    status = 400
    slug = "bad-request"
    title = "Bad request"


class Invalid(BadRequest):
    """A request whose fields are each valid but do not fit together with what is stored."""

    status = 422
    slug = "invalid"
    title = "Invalid request"


class UnsupportedField(BadRequest):
    """A job-spec field that the system's scheduler cannot honour."""

    status = 422
    slug = "unsupported-field"
    title = "Field not supported by this system's scheduler"


class SchedulerRejected(BadRequest):
    """The scheduler refused the request (bad partition, account, limits, ...)."""

    status = 422
    slug = "scheduler-rejected"
    title = "The scheduler rejected the request"


class Unauthenticated(HpcgateError):
    status = 401
    slug = "unauthenticated"
    title = "Authentication required"


class Forbidden(HpcgateError):
    status = 403
    slug = "forbidden"
    title = "Forbidden"


class LimitExceeded(Forbidden):
    """More than an admin's limit allows (a user's services and their replicas): the
    request is understood and well formed, and refused for this user; ``limit`` and
    ``requested`` say by how much."""

    slug = "limit-exceeded"
    title = "Over a limit set by the admin"


class NotFound(HpcgateError):
    status = 404
    slug = "not-found"
    title = "Not found"


class Conflict(HpcgateError):
    status = 409
    slug = "conflict"
    title = "Conflict"


class IdempotencyInProgress(Conflict):
    """A request with the same Idempotency-Key is still being processed."""

    slug = "idempotency-in-progress"
    title = "A request with this Idempotency-Key is in progress"


class Gone(HpcgateError):
    """What was asked for existed but is kept no longer (an invocation's older events)."""

    status = 410
    slug = "gone"
    title = "No longer kept"


class PayloadTooLarge(HpcgateError):
    status = 413
    slug = "payload-too-large"
    title = "Payload too large"


class RangeNotSatisfiable(HpcgateError):
    """A download's Range lies outside the file."""

    status = 416
    slug = "range-not-satisfiable"
    title = "Range not satisfiable"


class RateLimited(HpcgateError):
    """Over a rate limit (an API key's requests per minute or unended invocations): nothing
    was done; ``retry_after`` says when to retry, ``headers`` carry the RateLimit fields."""

    status = 429
    slug = "too-many-requests"
    title = "Too many requests"

    def __init__(
        self,
        detail: str,
        retry_after: float | None = None,
        headers: dict[str, str] | None = None,
        **extra: Any,
    ) -> None:
        super().__init__(detail, **extra)
        self.retry_after = retry_after
        self.headers = dict(headers or {})


class InsufficientStorage(HpcgateError):
    """The filesystem is full, or the account's quota is exhausted."""

    status = 507
    slug = "insufficient-storage"
    title = "Insufficient storage"


class NotImplementedByScheduler(HpcgateError):
    """The system's scheduler has no such thing (e.g. partitions on the embedded one)."""

    status = 501
    slug = "not-implemented"
    title = "Not implemented by this scheduler"


class Interrupted(HpcgateError):
    """The gateway stopped (shut down or crashed) while a long operation ran."""

    status = 500
    slug = "interrupted"
    title = "Interrupted by a gateway stop"


class Unavailable(HpcgateError):
    status = 503
    slug = "unavailable"
    title = "Service unavailable"


class SchedulerUnavailable(Unavailable):
    """The scheduler could not be reached or did not answer in time."""

    slug = "scheduler-unavailable"
    title = "The scheduler is unavailable"


class TransportError(Unavailable):
    """A command could not be started or the system could not be reached."""

    slug = "transport-error"
    title = "The system could not be reached"


class ForwardingProhibited(TransportError):
    """The login node does not let this login open connections onward (sshd's
    AllowTcpForwarding, the key's or certificate's restrictions); a functional account's
    streams may take hpcgate-forced's relay instead."""


class CommandTimeout(HpcgateError):
    """A command on the system did not finish in time; it was killed."""

    status = 504
    slug = "command-timeout"
    title = "The system did not answer in time"


class DatabaseBusy(Unavailable):
    """Every connection of the database's pool stayed taken for its whole wait (SQLAlchemy's
    ``TimeoutError``, translated at the API's boundary): what waited for one did not run;
    retry later."""

    slug = "database-busy"
    title = "The database is busy"

    def __init__(self, detail: str, retry_after: float | None = None, **extra: Any) -> None:
        super().__init__(detail, **extra)
        self.retry_after = retry_after


class NoReplica(Unavailable):
    """A service had no ready replica within the wait; ``retry_after`` says when to retry."""

    slug = "no-replica"
    title = "The service has no ready replica"

    def __init__(self, detail: str, retry_after: float | None = None, **extra: Any) -> None:
        super().__init__(detail, **extra)
        self.retry_after = retry_after


class BadGateway(HpcgateError):
    """A service's replica refused the connection or answered something that is not HTTP."""

    status = 502
    slug = "bad-gateway"
    title = "The service's replica failed"


class GatewayTimeout(HpcgateError):
    """A service's replica did not answer in time."""

    status = 504
    slug = "gateway-timeout"
    title = "The service's replica did not answer in time"
