"""Clients other than the SDK (the standard library's urllib) see the gateway's answers."""

from __future__ import annotations

import json
import urllib.error
import urllib.request

import pytest

from tests.support.gateway_process import GatewayProcess


@pytest.mark.parametrize("chunked", [False, True], ids=["declared", "chunked"])
def test_urllib_sees_the_413_of_a_body_over_the_limit(
    sdk_gateway: GatewayProcess, alice_token: str, chunked: bool
) -> None:
    """The gateway takes 4 MiB of JSON; urllib sends all 12 MiB before it reads the answer,
    so the gateway must read them rather than reset the connection."""
    body = b'{"script": "' + b"x" * (12 << 20) + b'"}'
    headers = {"Authorization": f"Bearer {alice_token}", "Content-Type": "application/json"}
    data = iter([body[i : i + (1 << 20)] for i in range(0, len(body), 1 << 20)])
    request = urllib.request.Request(  # noqa: S310 (the test gateway's http URL)
        f"{sdk_gateway.url}/api/v1/systems/local/jobs",
        data=data if chunked else body,
        headers=headers if chunked else {**headers, "Content-Length": str(len(body))},
        method="POST",
    )
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=60)  # noqa: S310
    assert refused.value.code == 413
    assert refused.value.headers["Content-Type"] == "application/problem+json"
    assert json.loads(refused.value.read())["status"] == 413
