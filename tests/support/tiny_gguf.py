"""A tiny llama-architecture model in GGUF, written by the tests themselves (no model hub).

Random weights (seeded, so every run writes the same file), two layers of width 64, and a
real SentencePiece-style tokenizer in the metadata: control tokens, the 256 byte tokens that
let any text be tokenized, and word pieces with scores, so llama.cpp's server loads it,
tokenizes prompts, applies the ChatML chat template, generates, streams and counts tokens.

What it generates is word salad, never an end token: the output rows of the control and byte
tokens are zero, every other logit is random, and greedy decoding (``temperature=0``) picks
the largest, which is a word piece. A request therefore always yields ``max_tokens`` tokens.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import gguf
import numpy as np

MODEL_NAME = "tiny-llama"
CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
    "{{ message['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
_CONTROL = ["<unk>", "<s>", "</s>", "<|im_start|>", "<|im_end|>"]
_WORDS = (  # noqa: SIM905 (a sentence of words reads better than a column of them)
    "the a an of to and in is it that on for with as was at by hello world cat dog sat mat "
    "user assistant system say tell me about one two three cluster node job gateway model "
    "token count stream chunk answer question please thank you yes no"
).split()


@dataclass(frozen=True)
class Shape:
    """The model's sizes: small enough to write and load in well under a second."""

    embedding: int = 64
    layers: int = 2
    heads: int = 4
    feed_forward: int = 128
    context: int = 512


def vocabulary() -> list[tuple[str, float, gguf.TokenType]]:
    """Tokens with their scores and types: control tokens, byte tokens, then word pieces
    (every prefix of every word after the SentencePiece space mark, so that merging pairs
    of symbols, as the SPM tokenizer does, can reach each whole word)."""
    tokens = [(text, 0.0, gguf.TokenType.CONTROL) for text in _CONTROL]
    tokens[0] = ("<unk>", 0.0, gguf.TokenType.UNKNOWN)
    tokens += [(f"<0x{byte:02X}>", 0.0, gguf.TokenType.BYTE) for byte in range(256)]
    pieces = {"\u2581"} | {chr(c) for c in range(ord("a"), ord("z") + 1)}
    for word in _WORDS:
        marked = "\u2581" + word
        pieces |= {marked[:end] for end in range(2, len(marked) + 1)}
    ordered = sorted(pieces, key=lambda piece: (len(piece), piece))
    tokens += [(piece, float(len(piece)), gguf.TokenType.NORMAL) for piece in ordered]
    return tokens


def write_tiny_llama(path: Path, shape: Shape = Shape(), seed: int = 1234) -> Path:
    """Write the model to ``path`` (about 0.3 MB) and return ``path``."""
    vocab = vocabulary()
    writer = gguf.GGUFWriter(str(path), "llama")
    _add_metadata(writer, shape, len(vocab))
    _add_tokenizer(writer, vocab)
    for name, tensor in _tensors(shape, vocab, np.random.default_rng(seed)):
        writer.add_tensor(name, tensor)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def _add_metadata(writer: gguf.GGUFWriter, shape: Shape, vocab_size: int) -> None:
    writer.add_name(MODEL_NAME)
    writer.add_file_type(gguf.LlamaFileType.ALL_F32)
    writer.add_vocab_size(vocab_size)
    writer.add_context_length(shape.context)
    writer.add_embedding_length(shape.embedding)
    writer.add_block_count(shape.layers)
    writer.add_feed_forward_length(shape.feed_forward)
    writer.add_head_count(shape.heads)
    writer.add_head_count_kv(shape.heads)
    writer.add_rope_dimension_count(shape.embedding // shape.heads)
    writer.add_layer_norm_rms_eps(1e-5)


def _add_tokenizer(writer: gguf.GGUFWriter, vocab: list[tuple[str, float, gguf.TokenType]]) -> None:
    writer.add_tokenizer_model("llama")
    writer.add_token_list([text for text, _, _ in vocab])
    writer.add_token_scores([score for _, score, _ in vocab])
    writer.add_token_types([kind for _, _, kind in vocab])
    writer.add_unk_token_id(0)
    writer.add_bos_token_id(1)
    writer.add_eos_token_id(2)
    writer.add_eot_token_id(_CONTROL.index("<|im_end|>"))
    writer.add_add_bos_token(True)
    writer.add_add_space_prefix(True)
    writer.add_chat_template(CHAT_TEMPLATE)


def _tensors(
    shape: Shape, vocab: list[tuple[str, float, gguf.TokenType]], rng: np.random.Generator
) -> list[tuple[str, np.ndarray]]:
    """Every tensor a llama model needs, in numpy's order (rows, columns): GGUF's first
    dimension is numpy's last."""
    width, ff = shape.embedding, shape.feed_forward

    def weights(*dims: int) -> np.ndarray:
        return rng.normal(0.0, 0.5, size=dims).astype(np.float32)

    output = weights(len(vocab), width)
    output[[i for i, (_, _, kind) in enumerate(vocab) if kind != gguf.TokenType.NORMAL]] = 0.0
    tensors = [
        ("token_embd.weight", weights(len(vocab), width)),
        ("output_norm.weight", np.ones(width, dtype=np.float32)),
        ("output.weight", output),
    ]
    for layer in range(shape.layers):
        block = f"blk.{layer}"
        tensors += [
            (f"{block}.attn_norm.weight", np.ones(width, dtype=np.float32)),
            (f"{block}.attn_q.weight", weights(width, width)),
            (f"{block}.attn_k.weight", weights(width, width)),
            (f"{block}.attn_v.weight", weights(width, width)),
            (f"{block}.attn_output.weight", weights(width, width)),
            (f"{block}.ffn_norm.weight", np.ones(width, dtype=np.float32)),
            (f"{block}.ffn_gate.weight", weights(ff, width)),
            (f"{block}.ffn_up.weight", weights(ff, width)),
            (f"{block}.ffn_down.weight", weights(width, ff)),
        ]
    return tensors
