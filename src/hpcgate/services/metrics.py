"""The Prometheus metrics of services and of the OpenAI-compatible routes.

Labels are bounded: a declared service and its models are named by the configuration; every
user-created service (whose names and models any user chooses) counts under
:data:`USER_SERVICE`, so no user can grow the metrics without end.
"""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client import Counter, Gauge, Histogram

USER_SERVICE = "(user)"
STATES = ("starting", "ready", "draining")
SECONDS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)

REQUESTS = Counter(
    "hpcgate_openai_requests",
    "Requests on /v1 routed to a service, by service, model and answer status",
    ["service", "model", "status"],
)
TOKENS = Counter(
    "hpcgate_openai_tokens",
    "Tokens the backends reported on /v1 answers, by service, model and kind",
    ["service", "model", "kind"],
)
IN_FLIGHT = Gauge(
    "hpcgate_openai_in_flight", "Requests on /v1 that a service is serving now", ["service"]
)
REPLICAS = Gauge(
    "hpcgate_service_replicas", "A service's live replicas, by state", ["service", "state"]
)
WAIT = Histogram(
    "hpcgate_openai_wait_seconds",
    "How long a request on /v1 waited for a ready replica",
    ["service"],
    buckets=SECONDS,
)
UPSTREAM = Histogram(
    "hpcgate_openai_upstream_seconds",
    "From sending a /v1 request to a replica to its answer's status and headers",
    ["service"],
    buckets=SECONDS,
)


def label(owner: str, name: str) -> str:
    """The ``service`` label: the name of a declared one, else :data:`USER_SERVICE`."""
    return USER_SERVICE if owner else name


def model_label(owner: str, model: str) -> str:
    return USER_SERVICE if owner else model


def replicas(owner: str, name: str, states: Iterable[str]) -> None:
    """The live replicas of a declared service, as the controller saw them this round
    (user services are not shown: one gauge cannot hold all of theirs)."""
    if owner:
        return
    service = name
    found = list(states)
    for state in STATES:
        REPLICAS.labels(service, state).set(found.count(state))
