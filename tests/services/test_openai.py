"""``/v1`` through a real gateway, with the official ``openai`` client and an hpcgate token:
llama.cpp's server on a tiny model and the all-MiniLM-L6-v2 embeddings server started as
real jobs on the embedded scheduler; usage and metrics as the backends reported it."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from tests.support.accounts import passable
from tests.support.backends import (
    EMBEDDINGS_MODEL,
    ensure_backends,
    write_embeddings,
    write_llama,
)
from tests.support.gateway_process import GatewayProcess, new_gateway
from tests.support.services import (
    SERVICES,
    admin_token,
    backend_script,
    stop_services,
    toml_string,
    wait_replicas,
)
from tests.support.tiny_gguf import MODEL_NAME

REQUESTS = "hpcgate_openai_requests_total"
MESSAGES: list[openai.types.chat.ChatCompletionMessageParam] = [
    {"role": "user", "content": "hello cat"}
]


def _config(llama: Path, embeddings: Path) -> str:
    return f"""
service_interval = 0.2
service_wait_seconds = 3
max_request_bytes = 65536
max_script_bytes = 4096

[systems.local]
scheduler = "embedded"
status_interval = 0.2
slots = 16

[services.llama]
system = "local"
script = {toml_string(llama.read_text())}
models = ["{MODEL_NAME}"]
min_replicas = 1
max_replicas = 1
users = ["alice"]
run_as = "services"  # no Unix account: the test gateways' fallback account
ready_timeout = 300

[services.embed]
system = "local"
script = {toml_string(embeddings.read_text())}
models = ["{EMBEDDINGS_MODEL}"]
min_replicas = 1
max_replicas = 1
users = ["alice", "bob"]
run_as = "services"
ready_timeout = 300
"""


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    ensure_backends()
    backends = tmp_path_factory.mktemp("backends")
    backends.chmod(0o711)  # the replicas run as the fallback account, which reads the models
    passable(backends)
    llama, embeddings = write_llama(backends / "llama"), write_embeddings(backends / "embed")
    server = new_gateway(
        tmp_path_factory.mktemp("gateway"), _config(llama.script, embeddings.script)
    )
    server.start()
    try:
        with server.client(admin_token(server.home)) as admin:
            for name in ("llama", "embed"):
                wait_replicas(
                    admin, name, lambda found: any(r["state"] == "ready" for r in found), 300
                )
        yield server
        stop_services(server.url, admin_token(server.home), [server.token("alice")])
    finally:
        server.stop()


@pytest.fixture(scope="module")
def tokens(gateway: GatewayProcess) -> dict[str, str]:
    return {user: gateway.token(user) for user in ("alice", "bob")}


def _client(gateway: GatewayProcess, token: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{gateway.url}/v1", api_key=token, max_retries=0)


@pytest.fixture(scope="module")
def alice(gateway: GatewayProcess, tokens: dict[str, str]) -> Iterator[openai.OpenAI]:
    with _client(gateway, tokens["alice"]) as client:
        yield client


@pytest.fixture(scope="module")
def bob(gateway: GatewayProcess, tokens: dict[str, str]) -> Iterator[openai.OpenAI]:
    with _client(gateway, tokens["bob"]) as client:
        yield client


def _usage(gateway: GatewayProcess, token: str, **query: str) -> list[dict[str, Any]]:
    answer = httpx.get(
        f"{gateway.url}/api/v1/usage", params=query, headers={"Authorization": f"Bearer {token}"}
    )
    assert answer.status_code == 200, answer.text
    found: list[dict[str, Any]] = answer.json()
    return found


def _totals(gateway: GatewayProcess, token: str, **query: str) -> tuple[int, int, int]:
    rows = _usage(gateway, token, **query)
    return (
        sum(r["requests"] for r in rows),
        sum(r["prompt_tokens"] for r in rows),
        sum(r["completion_tokens"] for r in rows),
    )


def _wait_totals(
    gateway: GatewayProcess, token: str, wanted: tuple[int, int, int], **query: str
) -> None:
    """Usage is stored behind the answers: wait a little for it."""
    deadline = time.monotonic() + 10
    while (found := _totals(gateway, token, **query)) != wanted:
        assert time.monotonic() < deadline, f"usage {found}, wanted {wanted}"
        time.sleep(0.1)


def test_models_lists_the_models_of_the_services_shared_with_the_caller(
    alice: openai.OpenAI, bob: openai.OpenAI
) -> None:
    assert sorted(m.id for m in alice.models.list()) == sorted([MODEL_NAME, EMBEDDINGS_MODEL])
    [only] = bob.models.list().data
    assert (only.id, only.owned_by, only.object) == (EMBEDDINGS_MODEL, "embed", "model")


def test_chat_completion_and_its_usage(
    gateway: GatewayProcess, tokens: dict[str, str], alice: openai.OpenAI
) -> None:
    before = _totals(gateway, tokens["alice"], model=MODEL_NAME)
    answer = alice.chat.completions.create(
        model=MODEL_NAME, messages=MESSAGES, max_tokens=8, temperature=0
    )
    assert answer.choices[0].message.content and answer.usage is not None
    assert answer.usage.completion_tokens == 8
    grown = (before[0] + 1, before[1] + answer.usage.prompt_tokens, before[2] + 8)
    _wait_totals(gateway, tokens["alice"], grown, model=MODEL_NAME)


def test_a_stream_comes_chunk_by_chunk_as_asked_and_its_usage_is_counted(
    gateway: GatewayProcess, tokens: dict[str, str], alice: openai.OpenAI
) -> None:
    whole = alice.chat.completions.create(
        model=MODEL_NAME, messages=MESSAGES, max_tokens=8, temperature=0
    )
    assert whole.usage is not None
    before = _totals(gateway, tokens["alice"], model=MODEL_NAME)
    stream = alice.chat.completions.create(
        model=MODEL_NAME, messages=MESSAGES, max_tokens=8, temperature=0, stream=True
    )
    chunks = list(stream)
    pieces = [
        c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content
    ]
    assert len(pieces) > 1 and "".join(pieces) == whole.choices[0].message.content
    # the client did not ask for usage: the usage-only chunk the gateway asked for is not
    # in its stream, and no chunk carries usage
    assert all(c.choices for c in chunks) and all(c.usage is None for c in chunks)
    grown = (before[0] + 1, before[1] + whole.usage.prompt_tokens, before[2] + 8)
    _wait_totals(gateway, tokens["alice"], grown, model=MODEL_NAME)


def test_a_stream_that_asks_for_usage_gets_it(alice: openai.OpenAI) -> None:
    stream = alice.chat.completions.create(
        model=MODEL_NAME,
        messages=MESSAGES,
        max_tokens=4,
        stream=True,
        stream_options={"include_usage": True},
    )
    last = list(stream)[-1]
    assert last.choices == [] and last.usage is not None and last.usage.completion_tokens == 4


def test_stream_events_are_passed_on_as_they_come(
    gateway: GatewayProcess, tokens: dict[str, str]
) -> None:
    """The test backend sends its events 0.2 s apart: each reaches the client as it is sent
    (a buffering gateway would deliver them together at the end); the usage-only event the
    gateway asked for is not passed on, and its usage is counted."""
    auth = {"Authorization": f"Bearer {tokens['alice']}"}
    body = {"name": "slow", "system": "local", "script": backend_script(), "models": ["slow"]}
    created = httpx.post(f"{gateway.url}{SERVICES}", json={**body, "min_replicas": 1}, headers=auth)
    assert created.status_code == 201, created.text
    with gateway.client(tokens["alice"]) as client:
        wait_replicas(client, "slow", lambda found: any(r["state"] == "ready" for r in found))
    before = _totals(gateway, tokens["alice"], model="slow")
    arrivals, events = [], []
    started = time.monotonic()
    request = {"model": "slow", "prompt": "x", "stream": True}
    url = f"{gateway.url}/v1/completions"
    with httpx.stream("POST", url, json=request, headers=auth, timeout=60) as answer:
        assert answer.headers["content-type"].startswith("text/event-stream")
        for line in answer.iter_lines():
            if line:
                arrivals.append(time.monotonic() - started)
                events.append(line)
    assert len(events) == 6 and events[-1] == "data: [DONE]"
    assert not any("usage" in event for event in events)
    assert arrivals[4] - arrivals[0] > 0.6, arrivals  # sent 0.8 s apart
    _wait_totals(gateway, tokens["alice"], (before[0] + 1, before[1] + 1, 5), model="slow")


def test_completion(alice: openai.OpenAI) -> None:
    answer = alice.completions.create(
        model=MODEL_NAME, prompt="hello world", max_tokens=5, temperature=0
    )
    assert answer.choices[0].text and answer.usage is not None
    assert (answer.usage.prompt_tokens, answer.usage.completion_tokens) == (3, 5)


def test_embeddings(gateway: GatewayProcess, tokens: dict[str, str], bob: openai.OpenAI) -> None:
    before = _totals(gateway, tokens["bob"])
    answer = bob.embeddings.create(model=EMBEDDINGS_MODEL, input=["a cat", "a dog"])
    assert [len(item.embedding) for item in answer.data] == [384, 384]
    chunked = httpx.post(  # a body of unknown length is read whole, then sent with its length
        f"{gateway.url}/v1/embeddings",
        content=iter([b'{"model": "', EMBEDDINGS_MODEL.encode(), b'", "input": "a cat"}']),
        headers={"Authorization": f"Bearer {tokens['bob']}", "Content-Type": "application/json"},
    )
    assert chunked.status_code == 200, chunked.text
    assert len(chunked.json()["data"][0]["embedding"]) == 384
    prompt = answer.usage.prompt_tokens + chunked.json()["usage"]["prompt_tokens"]
    grown = (before[0] + 2, before[1] + prompt, before[2])
    _wait_totals(gateway, tokens["bob"], grown)


def test_an_unknown_model_and_one_not_shared_are_not_found(
    alice: openai.OpenAI, bob: openai.OpenAI
) -> None:
    with pytest.raises(openai.NotFoundError) as unknown:
        alice.chat.completions.create(model="no-such-model", messages=MESSAGES)
    with pytest.raises(openai.NotFoundError) as hidden:
        bob.chat.completions.create(model=MODEL_NAME, messages=MESSAGES)
    assert unknown.value.code == hidden.value.code == "model_not_found"
    assert str(hidden.value.message).replace(MODEL_NAME, "X") == str(unknown.value.message).replace(
        "no-such-model", "X"
    )  # indistinguishable from no such model


def test_bad_requests_get_openai_errors(gateway: GatewayProcess, tokens: dict[str, str]) -> None:
    url = f"{gateway.url}/v1/chat/completions"
    auth = {"Authorization": f"Bearer {tokens['alice']}"}
    cases = [
        (httpx.post(url, json={"messages": []}, headers=auth), 400, "model"),
        (httpx.post(url, content=b"{not json", headers=auth), 400, None),
        (httpx.post(url, json=[1], headers=auth), 400, None),
        (httpx.post(url, json={"model": MODEL_NAME}), 401, None),
        (httpx.post(url, json={"model": "x" * 70_000}, headers=auth), 413, None),
        (httpx.get(f"{gateway.url}/v1/nothing", headers=auth), 404, None),
    ]
    for answer, status, param in cases:
        assert answer.status_code == status, answer.text
        error = answer.json()["error"]
        assert set(error) == {"message", "type", "param", "code"} and error["message"]
        assert error["param"] == param
    with _client(gateway, "not-a-token") as stranger, pytest.raises(openai.AuthenticationError):
        stranger.models.list()


def test_usage_is_each_users_own_and_the_admins_to_see(
    gateway: GatewayProcess, tokens: dict[str, str], alice: openai.OpenAI, bob: openai.OpenAI
) -> None:
    alice.embeddings.create(model=EMBEDDINGS_MODEL, input="alice's")
    bob.embeddings.create(model=EMBEDDINGS_MODEL, input="bob's")
    admin = admin_token(gateway.home)
    deadline = time.monotonic() + 10
    while {r["user"] for r in _usage(gateway, admin, model=EMBEDDINGS_MODEL)} != {"alice", "bob"}:
        assert time.monotonic() < deadline
        time.sleep(0.1)
    assert {r["user"] for r in _usage(gateway, tokens["alice"])} == {"alice"}
    assert {r["user"] for r in _usage(gateway, tokens["bob"])} == {"bob"}
    assert {r["user"] for r in _usage(gateway, admin, user="bob")} == {"bob"}
    [row] = _usage(gateway, admin, user="bob", service="embed")
    assert (row["service"], row["owner"], row["model"]) == ("embed", None, EMBEDDINGS_MODEL)
    assert _usage(gateway, admin, since="2999-01-01T00:00:00Z") == []
    peek = httpx.get(
        f"{gateway.url}/api/v1/usage",
        params={"user": "alice"},
        headers={"Authorization": f"Bearer {tokens['bob']}"},
    )
    assert peek.status_code == 403


def _metric(text: str, name: str, **labels: str) -> float:
    wanted = ",".join(f'{key}="{value}"' for key, value in sorted(labels.items()))
    for line in text.splitlines():
        if line.startswith(name + "{"):
            found = ",".join(sorted(line[len(name) + 1 : line.index("}")].split(",")))
            if found == wanted:
                return float(line.rsplit(" ", 1)[1])
    return 0.0


def _user_requests(text: str) -> float:
    """The requests counted for users' own services, all statuses together."""
    statuses = {
        line[line.index('status="') + 8 :].split('"', 1)[0]
        for line in text.splitlines()
        if line.startswith(REQUESTS + "{") and 'status="' in line
    }
    return sum(
        _metric(text, REQUESTS, service="(user)", model="(user)", status=s) for s in statuses
    )


def _metrics_once(
    gateway: GatewayProcess, admin: dict[str, str], moved: Callable[[str], bool]
) -> str:
    """The metrics text once ``moved`` holds for it (a request is counted when its answer's
    body is done, which may be just after the client has it), or after 5 s as it is."""
    deadline = time.monotonic() + 5
    while True:
        text = httpx.get(f"{gateway.url}/metrics", headers=admin).text
        if moved(text) or time.monotonic() > deadline:
            return text
        time.sleep(0.05)


def test_metrics_count_requests_tokens_and_replicas(
    gateway: GatewayProcess, tokens: dict[str, str], alice: openai.OpenAI
) -> None:
    admin = {"Authorization": f"Bearer {admin_token(gateway.home)}"}
    labels = {"service": "llama", "model": MODEL_NAME}
    before = httpx.get(f"{gateway.url}/metrics", headers=admin).text
    alice.completions.create(model=MODEL_NAME, prompt="hello", max_tokens=3)
    requests = REQUESTS
    counted = _metric(before, requests, **labels, status="200")
    after = _metrics_once(
        gateway, admin, lambda text: _metric(text, requests, **labels, status="200") > counted
    )
    assert (
        _metric(after, requests, **labels, status="200")
        == _metric(before, requests, **labels, status="200") + 1
    )
    tokens_name = "hpcgate_openai_tokens_total"
    grown = _metric(after, tokens_name, **labels, kind="completion") - _metric(
        before, tokens_name, **labels, kind="completion"
    )
    assert grown == 3
    assert _metric(after, "hpcgate_service_replicas", service="llama", state="ready") == 1
    assert _metric(after, "hpcgate_openai_wait_seconds_count", service="llama") >= 1
    assert _metric(after, "hpcgate_openai_upstream_seconds_count", service="llama") >= 1
    user = httpx.get(
        f"{gateway.url}/metrics", headers={"Authorization": f"Bearer {tokens['alice']}"}
    )
    assert user.status_code == 403


def test_a_users_own_service_answers_its_model_and_its_errors_pass_as_they_are(
    gateway: GatewayProcess, tokens: dict[str, str], alice: openai.OpenAI, bob: openai.OpenAI
) -> None:
    """The test backend answers 404 (text) to /v1/chat/completions: the backend's own
    answer comes back as it sent it; with no replica within the wait, OpenAI's 503 with
    Retry-After. The models follow the services' writes (the routing is kept between
    them): one created is listed, one deleted is not found."""
    auth = {"Authorization": f"Bearer {tokens['alice']}"}
    assert "own-model" not in {m.id for m in alice.models.list()}  # the routing now kept
    spec = {"system": "local", "script": backend_script(), "models": ["mine"]}
    for name, high in (("own", 1), ("cold", 0)):
        body = {**spec, "name": name, "max_replicas": high, "min_replicas": high}
        body["models"] = [f"{name}-model"]
        created = httpx.post(f"{gateway.url}{SERVICES}", json=body, headers=auth)
        assert created.status_code == 201, created.text
    with gateway.client(tokens["alice"]) as client:
        wait_replicas(client, "own", lambda found: any(r["state"] == "ready" for r in found))
    assert {"own-model", "cold-model"} <= {m.id for m in alice.models.list()}
    assert "own-model" not in {m.id for m in bob.models.list()}
    url = f"{gateway.url}/v1/chat/completions"  # the test backend has none
    admin = {"Authorization": f"Bearer {admin_token(gateway.home)}"}
    start = _user_requests(httpx.get(f"{gateway.url}/metrics", headers=admin).text)
    passed = httpx.post(url, json={"model": "own-model", "prompt": "x"}, headers=auth)
    assert (passed.status_code, passed.content) == (404, b"no such path")
    # each request is counted once its answer is done, which may be after the client has it
    before = _user_requests(_metrics_once(gateway, admin, lambda t: _user_requests(t) > start))
    assert before == start + 1
    again = httpx.post(url, json={"model": "own-model", "prompt": "x"}, headers=auth)
    moved = _metrics_once(gateway, admin, lambda text: _user_requests(text) > before)
    # a user's services count under one bounded label, whatever the answer's status
    assert again.status_code == 404, again.text  # the same answer on a kept connection
    assert _user_requests(moved) == before + 1
    cold = httpx.post(url, json={"model": "cold-model", "prompt": "x"}, headers=auth, timeout=30)
    assert cold.status_code == 503 and int(cold.headers["retry-after"]) > 0
    assert cold.json()["error"]["type"] == "server_error"
    assert cold.json()["error"]["code"] == "no-replica"
    deleted = httpx.delete(f"{gateway.url}{SERVICES}/cold", headers=auth)
    assert deleted.status_code in (200, 202, 204), deleted.text
    gone = httpx.post(url, json={"model": "cold-model", "prompt": "x"}, headers=auth)
    assert gone.status_code == 404, gone.text
    assert gone.json()["error"]["code"] == "model_not_found"


def test_a_backend_that_breaks_or_hangs_is_a_502_or_504_in_openai_format(
    gateway: GatewayProcess, tokens: dict[str, str]
) -> None:
    auth = {"Authorization": f"Bearer {tokens['alice']}"}
    body: dict[str, object] = {"name": "faulty", "system": "local", "script": backend_script()}
    body |= {"models": ["faulty"], "min_replicas": 1, "request_timeout": 1}
    created = httpx.post(f"{gateway.url}{SERVICES}", json=body, headers=auth)
    assert created.status_code == 201, created.text
    with gateway.client(tokens["alice"]) as client:
        wait_replicas(client, "faulty", lambda found: any(r["state"] == "ready" for r in found))
    url = f"{gateway.url}/v1/completions"
    for prompt, status, code in (("garbage", 502, "bad-gateway"), ("hang", 504, "gateway-timeout")):
        deadline = time.monotonic() + 30
        while True:  # after a failure the replica waits for a good health check
            answer = httpx.post(url, json={"model": "faulty", "prompt": prompt}, headers=auth)
            if answer.status_code != 503 or time.monotonic() > deadline:
                break
        assert answer.status_code == status, answer.text
        assert answer.json()["error"]["type"] == "server_error"
        assert answer.json()["error"]["code"] == code
