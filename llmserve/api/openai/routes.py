"""The /v1 routes: parse with the codec, submit to the engine, answer as JSON or SSE.

The engine resolves a request's ``model`` (a name or an alias; with one model, any name) to the
model that serves it, and responses name that model. Submitting, streaming and cancelling is
the shared engine path (``api/generation.py``); this module only says how OpenAI spells it.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from attrs import frozen
from litestar import Request, Response, Router, get, post
from litestar.params import FromPath, RawBody

from llmserve.api.failures import internal_error_envelope
from llmserve.api.generation import (
    ChatInput,
    json_response,
    model_family,
    render_chat,
    resolve_model,
    serve,
)
from llmserve.api.guards import openai_guard
from llmserve.api.observe import record_of
from llmserve.api.openai import codec, wire, wire_embeddings
from llmserve.api.openai.formats import ChatFormat, Meta, ResponseFormat, TextFormat
from llmserve.api.outputs import output_reading
from llmserve.api.state import AppState, app_state
from llmserve.engine import protocol
from llmserve.errors import InvalidRequest, LLMServeError, ModelNotFound

DONE = b"data: [DONE]\n\n"


@frozen
class _Reply:
    """An OpenAI response format as the shared engine path takes it: SSE ``data:`` chunks
    ending in ``[DONE]`` (a usage chunk first if asked), or one JSON body."""

    fmt: ResponseFormat
    stream: bool
    include_usage: bool

    def opening(self) -> Iterable[bytes]:
        return [_sse(codec.unstructure(chunk)) for chunk in self.fmt.opening()]

    def feed(self, event: protocol.TokenEvent) -> Iterable[bytes]:
        return [_sse(codec.unstructure(chunk)) for chunk in self.fmt.feed(event)]

    def ending(self, usage: protocol.Usage) -> Iterable[bytes]:
        chunks = [_sse(codec.unstructure(chunk)) for chunk in self.fmt.ending()]
        if self.include_usage:
            usage_chunk = self.fmt.usage_chunk(wire.Usage.from_engine(usage))
            chunks.append(_sse(codec.unstructure(usage_chunk)))
        return [*chunks, DONE]

    def failure(self, exc: Exception) -> bytes:
        # In-band, as OpenAI does; an unexpected failure's details stay in the log.
        if isinstance(exc, LLMServeError):
            return _sse(exc.envelope())
        return _sse(internal_error_envelope())

    def body(self, usage: protocol.Usage) -> bytes:
        return codec.dump_json(self.fmt.whole(wire.Usage.from_engine(usage)))


def _sse(data: object) -> bytes:
    return b"data: " + codec.dumps(data) + b"\n\n"


async def _serve(
    request: Request[Any, Any, Any],
    state: AppState,
    body: wire.SamplingRequest,
    prompt: str | tuple[int, ...],
    fmt: ResponseFormat,
    model: str,
    generation: protocol.GenerationRequest | None = None,
) -> Response[Any]:
    reply = _Reply(fmt, stream=body.stream, include_usage=body.include_usage)
    return await serve(request, state, generation or body.generation(prompt), reply, model)


def _json(obj: object) -> Response[bytes]:
    return json_response(codec.dump_json(obj))


@post("/chat/completions", status_code=200)
async def chat_completions(request: Request[Any, Any, Any], body: RawBody) -> Response[Any]:
    """OpenAI chat completions, whole or streamed."""
    state = app_state(request.app)
    parsed = codec.structure_request(body, wire.ChatCompletionRequest)
    chat = ChatInput(
        parsed.template_messages(), parsed.template_tools(), parsed.template_variables()
    )
    model = await resolve_model(request, state, parsed.model)
    prompt = await render_chat(state, chat, model)
    family = model_family(state, model)
    use = parsed.tool_use()
    reading = output_reading(
        family,
        use.schemas() if use is not None else None,
        # a named function, or parallel_tool_calls false: one call at most
        single=use is not None
        and (use.choice not in ("auto", "required") or not parsed.parallel_tool_calls),
    )
    fmt = ChatFormat(
        Meta(id=state.ids.chat_completion_id(), created=int(state.clock.time()), model=model),
        n=parsed.n,
        stream=parsed.stream,
        include_usage=parsed.include_usage,
        parser=lambda: reading.parser(prompt),
        logprobs=parsed.logprobs,
        call_id=reading.call_ids(state.ids.tool_call_id),
    )
    generation = parsed.generation(prompt, family)
    return await _serve(request, state, parsed, prompt, fmt, model, generation)


@post("/completions", status_code=200)
async def completions(request: Request[Any, Any, Any], body: RawBody) -> Response[Any]:
    """OpenAI (legacy) text completions, whole or streamed."""
    state = app_state(request.app)
    parsed = codec.structure_request(body, wire.CompletionRequest)
    model = await resolve_model(request, state, parsed.model)
    echo = ""
    if parsed.echo:
        prompt = parsed.prompt
        if isinstance(prompt, str):
            echo = prompt
        else:
            try:
                pieces = await state.engine.token_pieces(prompt, model=model)
            except InvalidRequest as exc:  # an id outside the vocabulary: the prompt's fault
                raise InvalidRequest(exc.message, param="prompt") from None
            echo = b"".join(pieces).decode("utf-8", errors="replace")
    fmt = TextFormat(
        Meta(id=state.ids.completion_id(), created=int(state.clock.time()), model=model),
        n=parsed.n,
        stream=parsed.stream,
        include_usage=parsed.include_usage,
        logprobs=parsed.logprobs is not None,
        echo=echo,
    )
    return await _serve(request, state, parsed, parsed.prompt, fmt, model)


@post("/embeddings", status_code=200)
async def embeddings(request: Request[Any, Any, Any], body: RawBody) -> Response[bytes]:
    """OpenAI embeddings: pooled, L2-normalized vectors of each input, as floats or base64."""
    state = app_state(request.app)
    parsed = codec.structure_request(body, wire_embeddings.EmbeddingRequest)
    model = await resolve_model(request, state, parsed.model)
    result = await state.engine.embed(parsed.input, model=model)
    parsed.check_dimensions(len(result.vectors[0]))
    record_of(request).prompt_tokens = result.prompt_tokens
    return _json(
        wire_embeddings.EmbeddingList.from_engine(
            result, model=model, encoding=parsed.encoding_format
        )
    )


@get("/models")
async def list_models(request: Request[Any, Any, Any]) -> Response[bytes]:
    """The served models."""
    engine = app_state(request.app).engine
    return _json(wire.ModelList(data=tuple(wire.ModelCard.from_engine(m) for m in engine.models())))


@get("/models/{model_id:path}")
async def retrieve_model(
    request: Request[Any, Any, Any], model_id: FromPath[str]
) -> Response[bytes]:
    """The model a completion naming ``model_id`` would be served by (ids may contain slashes,
    like Hugging Face repo names): any name with one model, a name or an alias with several.

    The card names the served model (its id), as the completion would. Nothing is loaded.
    """
    engine = app_state(request.app).engine
    served = engine.served_id(model_id.lstrip("/"))  # ModelNotFound: a 404 in the envelope
    for info in engine.models():
        if info.id == served:
            return _json(wire.ModelCard.from_engine(info))
    raise ModelNotFound(f"The model '{served}' does not exist.", param="model")


def openai_router() -> Router:
    """The /v1 routes behind the readiness, API-key and rate guards; a fresh Router per app."""
    return Router(
        path="/v1",
        route_handlers=[chat_completions, completions, embeddings, list_models, retrieve_model],
        guards=[openai_guard],
    )
