"""llama-server's ``/tokenize`` and ``/detokenize``, for clients that count tokens themselves.

Same bodies as llama-server: ``{"content", "add_special", "with_pieces"}`` -> ``{"tokens"}``
and ``{"tokens"}`` -> ``{"content"}``, with the default model's vocabulary. Behind the same
readiness, API-key and rate guards as /v1.
"""

from __future__ import annotations

from typing import Any

from litestar import Request, Response, Router, post
from litestar.enums import MediaType
from litestar.params import RawBody

from llmserve.api.guards import openai_guard
from llmserve.api.openai import codec
from llmserve.api.openai.wire_embeddings import (
    DetokenizeRequest,
    DetokenizeResponse,
    TokenizeRequest,
    TokenizeResponse,
    TokenPiece,
)
from llmserve.api.state import app_state


def _json(obj: object) -> Response[bytes]:
    return Response(content=codec.dump_json(obj), media_type=MediaType.JSON)


def _piece(piece: bytes) -> str | tuple[int, ...]:
    try:
        return piece.decode("utf-8")
    except UnicodeDecodeError:  # part of a character: llama-server gives the bytes
        return tuple(piece)


@post("/tokenize", status_code=200)
async def tokenize(request: Request[Any, Any, Any], body: RawBody) -> Response[bytes]:
    """Text -> token ids (special tokens in the text parsed; BOS if ``add_special``)."""
    engine = app_state(request.app).engine
    parsed = codec.structure_request(body, TokenizeRequest)
    tokens = await engine.tokenize_text(parsed.content, add_special=parsed.add_special)
    if not parsed.with_pieces:
        return _json(TokenizeResponse(tokens=tuple(tokens)))
    pieces = await engine.token_pieces(tokens)
    return _json(
        TokenizeResponse(
            tokens=tuple(
                TokenPiece(id=t, piece=_piece(p)) for t, p in zip(tokens, pieces, strict=True)
            )
        )
    )


@post("/detokenize", status_code=200)
async def detokenize(request: Request[Any, Any, Any], body: RawBody) -> Response[bytes]:
    """Token ids -> text (control tokens render empty, as in generated output)."""
    engine = app_state(request.app).engine
    parsed = codec.structure_request(body, DetokenizeRequest)
    pieces = await engine.token_pieces(parsed.tokens)
    return _json(DetokenizeResponse(content=b"".join(pieces).decode("utf-8", errors="replace")))


def tokens_router() -> Router:
    """/tokenize and /detokenize behind the /v1 guards; a fresh Router per app."""
    return Router(
        path="/",
        route_handlers=[tokenize, detokenize],
        guards=[openai_guard],
    )
