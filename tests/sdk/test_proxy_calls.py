"""The pure side of requests through a service's proxy: the URL they go to, which answers
are the gateway's refusals (raised, retried) and which the service's own (returned)."""

from __future__ import annotations

import httpx
import pytest

from hpcgate.client import Retry
from hpcgate.client._base import BaseClient, gateways_own
from hpcgate.client._services import proxy_call
from hpcgate.model.errors import PROBLEM_BASE, NotFound

RETRY = Retry(attempts=3, backoff=0.01)
PROBLEM = {"Content-Type": "application/problem+json"}


def test_the_path_and_query_are_sent_as_given_and_the_name_as_one_segment() -> None:
    call = proxy_call("lab", "get", "/a b/%2F/é?x=1&y=%20")
    assert (call.method, call.proxied) == ("GET", True)
    assert call.path == "/api/v1/services/lab/proxy/a%20b/%2F/%C3%A9?x=1&y=%20"
    assert proxy_call("../jobs", "GET", "").path == "/api/v1/services/..%2Fjobs/proxy/"
    assert proxy_call("lab", "GET", "#frag").path == "/api/v1/services/lab/proxy/%23frag"


@pytest.mark.parametrize("path", ["..", "/a/../b", "./x", "a/./b?q=1", "a/..?q"])
def test_dot_segments_are_refused(path: str) -> None:
    with pytest.raises(ValueError, match="segments do not go through the proxy"):
        proxy_call("lab", "GET", path)


def test_only_the_gateways_problem_documents_are_its_refusals() -> None:
    ours = httpx.Response(404, headers=PROBLEM, json={"type": PROBLEM_BASE + "not-found"})
    theirs = httpx.Response(404, headers=PROBLEM, json={"type": "https://x.example/p"})
    for response in (theirs, httpx.Response(404, text="no such path")):
        assert not gateways_own(response)
        BaseClient._check(response, proxy_call("lab", "GET", "/"))  # returned, not raised
    assert gateways_own(ours)
    with pytest.raises(NotFound):
        BaseClient._check(ours, proxy_call("lab", "GET", "/"))


def test_the_services_own_503_is_not_retried_the_gateways_is() -> None:
    call = proxy_call("lab", "POST", "/x", json={"a": 1})
    gateways = httpx.Response(503, headers={**PROBLEM, "Retry-After": "2"}, json={})
    assert RETRY.delay(0, call, gateways) == 2.0  # no replica yet: nothing was forwarded
    assert RETRY.delay(0, call, httpx.Response(503, text="busy")) is None
