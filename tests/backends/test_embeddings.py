"""The real all-MiniLM-L6-v2 behind the test embeddings server, through the official
``openai`` client (which asks for base64 unless told ``float``)."""

from __future__ import annotations

import numpy as np
import openai
import pytest

from tests.support.backends import EMBEDDINGS_MODEL

CAT, KITTEN, MARKETS = (
    "A cat sits on the mat.",
    "A kitten is sitting on a rug.",
    "Stock markets fell sharply on Monday.",
)


@pytest.fixture
def client(embeddings: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{embeddings}/v1", api_key="unused", max_retries=0)


def vectors(answer: openai.types.CreateEmbeddingResponse) -> list[np.ndarray]:
    return [np.asarray(item.embedding) for item in sorted(answer.data, key=lambda i: i.index)]


def test_models_lists_the_model(client: openai.OpenAI) -> None:
    assert [model.id for model in client.models.list()] == [EMBEDDINGS_MODEL]


def test_similar_sentences_are_closer(client: openai.OpenAI) -> None:
    answer = client.embeddings.create(model=EMBEDDINGS_MODEL, input=[CAT, KITTEN, MARKETS])
    cat, kitten, markets = vectors(answer)
    assert {v.shape for v in (cat, kitten, markets)} == {(384,)}
    assert np.allclose([np.linalg.norm(v) for v in (cat, kitten, markets)], 1.0, atol=1e-5)
    assert cat @ kitten > cat @ markets + 0.3


def test_usage_counts_the_model_tokens(client: openai.OpenAI) -> None:
    # [CLS] a cat sits on the mat [SEP]: BERT's WordPiece, as the model reads it
    answer = client.embeddings.create(model=EMBEDDINGS_MODEL, input="a cat sits on the mat")
    assert (answer.usage.prompt_tokens, answer.usage.total_tokens) == (8, 8)


def test_float_and_base64_give_the_same_vector(client: openai.OpenAI) -> None:
    floats = client.embeddings.create(model=EMBEDDINGS_MODEL, input=CAT, encoding_format="float")
    packed = client.embeddings.create(model=EMBEDDINGS_MODEL, input=CAT)
    assert np.allclose(vectors(floats)[0], vectors(packed)[0], atol=1e-6)


def test_an_unknown_model_is_not_found(client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError):
        client.embeddings.create(model="text-embedding-3-small", input=CAT)


def test_empty_input_is_a_bad_request(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError):
        client.embeddings.create(model=EMBEDDINGS_MODEL, input=[])
