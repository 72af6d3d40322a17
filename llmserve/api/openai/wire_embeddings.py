"""The wire format of ``/v1/embeddings`` and of llama-server's ``/tokenize`` and ``/detokenize``."""

from __future__ import annotations

import base64
import struct
from collections.abc import Sequence
from typing import Literal

from attrs import field, frozen

from llmserve.engine import protocol
from llmserve.errors import InvalidRequest

# OpenAI's limit on inputs per request.
MAX_INPUTS = 2048

EmbeddingInput = tuple[str | tuple[int, ...], ...]  # codec: str | [str] | [int] | [[int]]


def _input_count(_: object, __: object, value: EmbeddingInput) -> None:
    if not value:
        raise InvalidRequest("Invalid 'input': expected at least one input.", param="input")
    if len(value) > MAX_INPUTS:
        raise InvalidRequest(
            f"Invalid 'input': at most {MAX_INPUTS} inputs per request, got {len(value)}.",
            param="input",
        )
    empty = next((i for i, item in enumerate(value) if not item), None)
    if empty is not None:
        raise InvalidRequest(
            "Invalid 'input': an input is empty; embeddings need text or tokens.",
            param="input" if len(value) == 1 else f"input[{empty}]",
        )


@frozen(kw_only=True)
class EmbeddingRequest:
    input: EmbeddingInput = field(validator=_input_count)
    model: str | None = None
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: int | None = None
    user: str | None = None

    def check_dimensions(self, size: int) -> None:
        """Vectors have the model's size: other ``dimensions`` cannot be served."""
        if self.dimensions is not None and self.dimensions != size:
            raise InvalidRequest(
                f"Invalid 'dimensions': this model's embeddings have {size} dimensions and "
                f"cannot be shortened; leave 'dimensions' out or set it to {size}.",
                param="dimensions",
            )


@frozen(kw_only=True)
class Embedding:
    object: Literal["embedding"] = "embedding"
    index: int
    embedding: tuple[float, ...] | str  # floats, or base64 of little-endian float32


@frozen(kw_only=True)
class EmbeddingUsage:
    prompt_tokens: int
    total_tokens: int


@frozen(kw_only=True)
class EmbeddingList:
    object: Literal["list"] = "list"
    data: tuple[Embedding, ...]
    model: str
    usage: EmbeddingUsage

    @classmethod
    def from_engine(
        cls, result: protocol.Embeddings, *, model: str, encoding: Literal["float", "base64"]
    ) -> EmbeddingList:
        return cls(
            data=tuple(
                Embedding(index=i, embedding=_encode(vector, encoding))
                for i, vector in enumerate(result.vectors)
            ),
            model=model,
            usage=EmbeddingUsage(
                prompt_tokens=result.prompt_tokens, total_tokens=result.prompt_tokens
            ),
        )


def _encode(
    vector: Sequence[float], encoding: Literal["float", "base64"]
) -> tuple[float, ...] | str:
    if encoding == "float":
        return tuple(vector)
    return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode("ascii")


@frozen(kw_only=True)
class TokenizeRequest:
    content: str
    add_special: bool = False
    with_pieces: bool = False


@frozen(kw_only=True)
class TokenPiece:
    id: int
    piece: str | tuple[int, ...]  # the text, or its bytes when not valid UTF-8 on its own


@frozen(kw_only=True)
class TokenizeResponse:
    tokens: tuple[int, ...] | tuple[TokenPiece, ...]


@frozen(kw_only=True)
class DetokenizeRequest:
    tokens: tuple[int, ...]


@frozen(kw_only=True)
class DetokenizeResponse:
    content: str
