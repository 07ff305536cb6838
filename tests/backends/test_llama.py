"""llama.cpp's server on the tiny model the tests write, through the official ``openai``
client: what the services tier and ``/v1`` will forward, checked here without hpcgate."""

from __future__ import annotations

import httpx
import openai
import pytest

from tests.support.tiny_gguf import MODEL_NAME

MESSAGES: list[openai.types.chat.ChatCompletionMessageParam] = [
    {"role": "user", "content": "hello cat"}
]


@pytest.fixture
def client(llama: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{llama}/v1", api_key="unused", max_retries=0)


def test_models_lists_the_tiny_model(client: openai.OpenAI) -> None:
    assert [model.id for model in client.models.list()] == [MODEL_NAME]


def test_the_tokenizer_in_the_metadata_is_used(llama: str) -> None:
    # BOS, then the word pieces of the vocabulary: the SPM tokenizer merged the letters
    answer = httpx.post(f"{llama}/tokenize", json={"content": "hello world", "with_pieces": True})
    pieces = [token["piece"] for token in answer.json()["tokens"]]
    assert pieces == [" hello", " world"]


def test_chat_completion(client: openai.OpenAI) -> None:
    answer = client.chat.completions.create(
        model=MODEL_NAME, messages=MESSAGES, max_tokens=8, temperature=0
    )
    choice = answer.choices[0]
    assert choice.message.role == "assistant"
    assert choice.message.content
    assert choice.finish_reason == "length"
    assert answer.usage is not None
    assert answer.usage.completion_tokens == 8
    # <|im_start|> user \n hello cat <|im_end|> \n <|im_start|> assistant \n, and BOS
    assert answer.usage.prompt_tokens > 5
    assert answer.usage.total_tokens == answer.usage.prompt_tokens + 8


def test_streamed_chat_completion_has_chunks_and_usage(client: openai.OpenAI) -> None:
    whole = client.chat.completions.create(
        model=MODEL_NAME, messages=MESSAGES, max_tokens=8, temperature=0
    )
    stream = client.chat.completions.create(
        model=MODEL_NAME,
        messages=MESSAGES,
        max_tokens=8,
        temperature=0,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    pieces = [
        c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content
    ]
    assert len(pieces) > 1
    assert "".join(pieces) == whole.choices[0].message.content  # greedy: the same tokens
    finished = [c.choices[0].finish_reason for c in chunks if c.choices]
    assert finished[-1] == "length"
    last = chunks[-1]
    assert last.choices == []
    assert last.usage is not None
    assert last.usage.completion_tokens == 8
    assert whole.usage is not None
    assert last.usage.prompt_tokens == whole.usage.prompt_tokens


def test_completion(client: openai.OpenAI) -> None:
    answer = client.completions.create(
        model=MODEL_NAME, prompt="hello world", max_tokens=5, temperature=0
    )
    assert answer.choices[0].text
    assert answer.usage is not None
    assert (answer.usage.prompt_tokens, answer.usage.completion_tokens) == (3, 5)  # BOS + 2
