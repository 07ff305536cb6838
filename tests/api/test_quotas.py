"""Per-user rate limits and quotas (``[rate_limits]``) on a real gateway: requests per
minute on any route, streams held at once (an SSE route and a streamed ``/v1`` answer),
and LLM tokens per day counted from the usage a real backend (the test backend, a real
HTTP server started as a declared service's job) reported; and a bad table refused at
start. Every refusal is a 429 with Retry-After and the draft's RateLimit fields."""

from __future__ import annotations

import re
import time
import tomllib
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from hpcgate.config import Settings
from tests.support.gateway_process import GatewayProcess, cli, user_client
from tests.support.services import (
    backend_script,
    ready,
    services_gateway,
    toml_string,
    wait_replicas,
)

#: The length of the users' requests-per-minute window here, in seconds.
WINDOW = 5
CONFIG = f"""
service_interval = 0.2
service_wait_seconds = 30

[systems.local]
scheduler = "embedded"
status_interval = 0.2
slots = 4

[services.llm]
system = "local"
script = {toml_string(backend_script())}
models = ["clock"]
min_replicas = 1
max_replicas = 1
users = ["alice", "bob", "dave"]
run_as = "services"  # no Unix account of that name: the test gateways' fallback account
ready_timeout = 30

[rate_limits]
requests_per_minute = 1000
window_seconds = {WINDOW}  # a "minute" that turns while the test waits

[rate_limits.users.carol]
requests_per_minute = 3

[rate_limits.users.dave]
requests_per_minute = "unlimited"
concurrent_streams = 1

[rate_limits.users.alice]
llm_tokens_per_day = 10
"""
SYSTEMS = "/api/v1/systems"
JOBS = "/api/v1/systems/local/jobs"
COMPLETIONS = "/v1/completions"
#: What the test backend reports for one streamed completion: 1 prompt and 5 completion.
TOKENS_EACH = 6
Answer = httpx.Response
STREAMED = {"model": "clock", "prompt": "tick", "stream": True}


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    with services_gateway(tmp_path_factory.mktemp("gateway"), CONFIG) as server:
        yield server


alice = user_client("alice")
bob = user_client("bob")
carol = user_client("carol")
dave = user_client("dave")


@pytest.fixture(scope="module")
def llm(gateway: GatewayProcess, alice: httpx.Client) -> str:
    """The declared service's replica, ready."""
    wait_replicas(alice, "llm", lambda found: bool(ready(found)))
    return "llm"


def fields(answer: httpx.Response) -> tuple[str, str]:
    return answer.headers["ratelimit-policy"], answer.headers["ratelimit"]


def _just_past_a_turn() -> None:
    """A user's window turns at each whole multiple of WINDOW seconds since the epoch:
    start a count just after one, with the whole window ahead of it."""
    time.sleep(WINDOW - time.time() % WINDOW + 0.05)


def test_a_user_past_its_requests_per_minute_is_refused_until_the_window_turns(
    carol: httpx.Client, bob: httpx.Client
) -> None:
    _just_past_a_turn()
    for left in (2, 1, 0):
        answer = carol.get(SYSTEMS)
        assert answer.status_code == 200, answer.text
        policy, rest = fields(answer)
        assert policy == f'"user-per-minute";q=3;w={WINDOW}'
        assert re.fullmatch(rf'"user-per-minute";r={left};t=\d+', rest), rest
    refused = carol.get(SYSTEMS)
    assert refused.status_code == 429
    assert refused.headers["content-type"] == "application/problem+json"
    assert f"3 requests in {WINDOW} s" in refused.json()["detail"]
    retry = int(refused.headers["retry-after"])
    policy, rest = fields(refused)
    assert policy == f'"user-per-minute";q=3;w={WINDOW}'
    assert rest == f'"user-per-minute";r=0;t={retry}' and 1 <= retry <= WINDOW
    mine = bob.get(SYSTEMS)  # another user: the default, untouched by carol's
    assert mine.status_code == 200 and fields(mine)[0] == f'"user-per-minute";q=1000;w={WINDOW}'
    with httpx.Client(base_url=str(carol.base_url)) as anyone:  # no token: nothing counted
        health = anyone.get("/api/v1/health")
        assert health.status_code == 200 and "ratelimit" not in health.headers
    time.sleep(retry)  # as the refusal said: the window has turned
    assert carol.get(SYSTEMS).status_code == 200


@pytest.fixture
def long_job(dave: httpx.Client) -> Iterator[str]:
    """A job of dave's that runs on: its events stream stays open while it does."""
    answer = dave.post(JOBS, json={"script": "#!/bin/sh\nsleep 300\n"})
    assert answer.status_code == 201, answer.text
    job: str = answer.json()["id"]
    yield job
    dave.delete(f"{JOBS}/{job}")


def test_a_user_holds_at_most_its_streams_and_gets_one_back_when_a_stream_ends(
    dave: httpx.Client, llm: str, long_job: str
) -> None:
    with dave.stream("GET", f"{JOBS}/{long_job}/events") as first:
        assert first.status_code == 200
        assert fields(first) == (
            '"user-streams";q=1;qu="concurrent-requests"',
            '"user-streams";r=0',
        )
        refused = dave.post(COMPLETIONS, json=STREAMED)  # a streamed /v1 answer is a stream
        assert refused.status_code == 429, refused.text
        assert refused.json()["error"]["code"] == "too-many-requests"  # OpenAI's format
        assert refused.headers["retry-after"] == "5"
        assert fields(refused) == (
            '"user-streams";q=1;qu="concurrent-requests"',
            '"user-streams";r=0',
        )
        output = dave.get(f"{JOBS}/{long_job}/output", headers={"Accept": "text/event-stream"})
        assert output.status_code == 429
        assert dave.get(SYSTEMS).status_code == 200  # not a stream: no limit for dave
    answer = _once_admitted(dave, STREAMED)  # the first one's ended: its stream is back
    assert answer.text.rstrip().endswith("data: [DONE]")
    assert fields(answer)[0] == '"user-streams";q=1;qu="concurrent-requests"'


def _once_admitted(
    client: httpx.Client, body: dict[str, Any], timeout: float = 10
) -> httpx.Response:
    """The answer to ``body`` on /v1 once a closed stream's end has reached the gateway."""
    deadline = time.monotonic() + timeout
    while (answer := client.post(COMPLETIONS, json=body)).status_code == 429:
        assert time.monotonic() < deadline, answer.text
        time.sleep(0.1)
    assert answer.status_code == 200, answer.text
    return answer


def _chunks(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith("data: ")]


def test_past_its_llm_tokens_of_the_day_a_user_is_refused_and_a_running_answer_is_not_cut(
    alice: httpx.Client, bob: httpx.Client, llm: str
) -> None:
    first = alice.post(COMPLETIONS, json=STREAMED)
    assert first.status_code == 200, first.text
    policy, rest = fields(first)
    assert '"llm-tokens-per-day";q=10;w=86400' in policy
    assert re.search(r'"llm-tokens-per-day";r=10;t=\d+', rest), rest
    # Two at once, both admitted with 6 of 10 used: the first to end spends the day ...
    with (
        alice.stream("POST", COMPLETIONS, json=STREAMED) as one,
        alice.stream("POST", COMPLETIONS, json=STREAMED) as two,
    ):
        assert (one.status_code, two.status_code) == (200, 200)
        assert re.search(r'"llm-tokens-per-day";r=4;t=\d+', fields(two)[1])
        one.read()
        later = two.read().decode()  # ... and the other runs on to its end
    assert len(_chunks(later)) == 6 and later.rstrip().endswith("data: [DONE]")
    refused = alice.post(COMPLETIONS, json=STREAMED)
    assert refused.status_code == 429, refused.text
    error = refused.json()["error"]
    assert "used 18 of its 10 LLM tokens today" in error["message"]
    midnight = datetime.now(UTC).replace(hour=0, minute=0, second=0) + timedelta(days=1)
    retry = int(refused.headers["retry-after"])
    assert abs(retry - (midnight - datetime.now(UTC)).total_seconds()) <= 3
    assert fields(refused) == (
        '"llm-tokens-per-day";q=10;w=86400',
        f'"llm-tokens-per-day";r=0;t={retry}',
    )
    assert alice.get("/v1/models").status_code == 200  # the rest of the API goes on
    assert bob.post(COMPLETIONS, json=STREAMED).status_code == 200  # no quota of bob's
    assert _tokens_recorded(alice) == 3 * TOKENS_EACH  # what the quota counted


def test_a_restarted_gateway_reads_the_days_tokens_from_the_store(
    gateway: GatewayProcess, alice: httpx.Client
) -> None:
    """After the test above: the day's tokens were stored, and a new process reads them."""
    assert _tokens_recorded(alice) >= 10  # the test above spent alice's day
    gateway.stop()
    gateway.start()
    refused = alice.post(COMPLETIONS, json=STREAMED)
    assert refused.status_code == 429, refused.text
    assert "of its 10 LLM tokens today" in refused.json()["error"]["message"]


def _tokens_recorded(client: httpx.Client, timeout: float = 10) -> int:
    """The caller's tokens in /api/v1/usage once the ledger has written the three answers."""
    deadline = time.monotonic() + timeout
    while True:
        rows = client.get("/api/v1/usage").json()
        if sum(row["requests"] for row in rows) >= 3 or time.monotonic() > deadline:
            return sum(row["prompt_tokens"] + row["completion_tokens"] for row in rows)
        time.sleep(0.1)


def test_a_bad_rate_limits_table_is_refused_at_start_naming_each_bad_field(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text(
        "[rate_limits]\nrequests_per_minute = 0\nconcurrent_streams = 'lots'\n"
        "requests_a_minute = 5\n[rate_limits.users.bob]\nllm_tokens_per_day = -1\n"
    )
    done = cli(tmp_path, "serve", "--config", str(config), "--port", "1", check=False)
    assert done.returncode == 2, done.stderr
    text = " ".join(done.stderr.split())
    assert "configuration error" in text
    for field in (
        "rate_limits.requests_per_minute",
        "rate_limits.concurrent_streams",
        "rate_limits.requests_a_minute",
        "rate_limits.users.bob.llm_tokens_per_day",
    ):
        assert field in text, (field, text)
    assert "must be a whole number from 1 to 1000000, or 'unlimited'" in text
    assert "must be a whole number from 0 to" in text and "Extra inputs are not permitted" in text


def test_the_readmes_rate_limits_example_is_a_valid_table() -> None:
    readme = (Path(__file__).parents[2] / "README.md").read_text()
    found = re.search(r"```toml\n(\[rate_limits\].*?)```", readme, re.DOTALL)
    assert found is not None
    limits = Settings.model_validate(tomllib.loads(found[1])).rate_limits
    assert limits.limited and limits.of("ci-portal") != limits.of("nobody-special")
