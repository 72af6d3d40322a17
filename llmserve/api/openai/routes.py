"""The /v1 routes: parse with the codec, submit to the engine, answer as JSON or SSE.

The engine resolves a request's ``model`` (a name or an alias; with one model, any name) to the
model that serves it, and responses name that model. The generation is cancelled on every way
out of a route (finished, failed, client gone), so a slot is never left generating for nobody.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

import attrs
from litestar import Request, Response, Router, get, post
from litestar.background_tasks import BackgroundTask
from litestar.connection import ASGIConnection
from litestar.enums import MediaType
from litestar.handlers.base import BaseRouteHandler
from litestar.params import FromPath, RawBody
from litestar.response import Stream
from litestar.types import Receive

from llmserve.api.failures import internal_error_envelope
from llmserve.api.guards import limit_rate, require_api_key
from llmserve.api.observe import RequestRecord, record_of
from llmserve.api.openai import codec, wire, wire_embeddings
from llmserve.api.openai.formats import ChatFormat, Meta, ResponseFormat, TextFormat
from llmserve.api.state import AppState, app_state
from llmserve.engine import protocol
from llmserve.engine.protocol import Generation
from llmserve.errors import InvalidRequest, LLMServeError, ModelNotFound
from llmserve.prompt import toolformats

log = logging.getLogger("llmserve.http")  # the logger name is part of the log format

SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
DONE = b"data: [DONE]\n\n"
# nginx's name for "client closed the request"; nobody reads it, the log and metrics do.
CLIENT_CLOSED_REQUEST = 499


class _CancelOnce:
    """Cancel a generation exactly once, from whichever exit path gets there first."""

    __slots__ = ("_done", "_gen")

    def __init__(self, gen: Generation) -> None:
        self._gen = gen
        self._done = False

    def __call__(self) -> None:
        if not self._done:
            self._done = True
            self._gen.cancel()

    async def after_response(self) -> None:
        self()


def _sse(data: object) -> bytes:
    return b"data: " + codec.dumps(data) + b"\n\n"


def _usage_or_count(usage: protocol.Usage | None, record: RequestRecord) -> wire.Usage:
    if usage is None:  # the engine ended without a final event; report what was seen
        usage = protocol.Usage(prompt_tokens=0, completion_tokens=record.completion_tokens)
    return wire.Usage.from_engine(usage)


async def _drain(gen: Generation, fmt: ResponseFormat, record: RequestRecord) -> wire.Usage:
    usage: protocol.Usage | None = None
    async for event in gen:
        record.add(event)
        fmt.feed(event)
        usage = event.usage or usage
    return _usage_or_count(usage, record)


async def _until_disconnect(receive: Receive) -> None:
    # The body was read already: the next message is the disconnect (or the response is done).
    while (await receive())["type"] != "http.disconnect":
        pass


async def _collect(
    request: Request[Any, Any, Any], gen: Generation, fmt: ResponseFormat
) -> wire.Usage | None:
    """Feed the whole generation to ``fmt``; its usage, or None if the client went away first."""
    drain = asyncio.ensure_future(_drain(gen, fmt, record_of(request)))
    watch = asyncio.ensure_future(_until_disconnect(request.receive))
    try:
        await asyncio.wait((drain, watch), return_when=asyncio.FIRST_COMPLETED)
    finally:
        watch.cancel()
        if not drain.done():
            drain.cancel()
    if drain.done() and not drain.cancelled():
        return drain.result()  # re-raises what the engine raised
    return None


async def _stream(
    gen: Generation,
    fmt: ResponseFormat,
    *,
    include_usage: bool,
    record: RequestRecord,
    cancel: Callable[[], None],
) -> AsyncIterator[bytes]:
    try:
        for chunk in fmt.opening():
            yield _sse(codec.unstructure(chunk))
        usage: protocol.Usage | None = None
        async for event in gen:
            record.add(event)
            usage = event.usage or usage
            for chunk in fmt.feed(event):
                yield _sse(codec.unstructure(chunk))
        for chunk in fmt.ending():
            yield _sse(codec.unstructure(chunk))
        if include_usage:
            yield _sse(codec.unstructure(fmt.usage_chunk(_usage_or_count(usage, record))))
        yield DONE
    except LLMServeError as exc:
        # The 200 and its headers are gone already: report in-band, as OpenAI does.
        log.warning("generation failed mid-stream: %s", exc)
        yield _sse(exc.envelope())
    except Exception as exc:
        log.error("generation failed mid-stream", exc_info=exc)
        yield _sse(internal_error_envelope())
    finally:
        cancel()


async def _resolve(request: Request[Any, Any, Any], state: AppState, name: str | None) -> str:
    """The id of the model serving the requested name (loaded); its metrics label from now on."""
    model = await state.engine.resolve(name)
    record_of(request).serve_with(model)
    return model


async def _serve(
    request: Request[Any, Any, Any],
    state: AppState,
    body: wire.SamplingRequest,
    prompt: str | tuple[int, ...],
    fmt: ResponseFormat,
    model: str,
    generation: protocol.GenerationRequest | None = None,
) -> Response[Any]:
    generation = generation or body.generation(prompt)
    gen = await state.engine.submit(attrs.evolve(generation, model=model))
    cancel = _CancelOnce(gen)
    if body.stream:
        events = _stream(
            gen, fmt, include_usage=body.include_usage, record=record_of(request), cancel=cancel
        )
        # The background task covers a disconnect while the stream sat between two chunks.
        return Stream(
            events,
            media_type="text/event-stream",
            headers=SSE_HEADERS,
            background=BackgroundTask(cancel.after_response),
        )
    try:
        usage = await _collect(request, gen, fmt)
    finally:
        cancel()
    if usage is None:
        return Response(content=b"", status_code=CLIENT_CLOSED_REQUEST)
    return _json(fmt.whole(usage))


def _json(obj: object) -> Response[bytes]:
    return Response(content=codec.dump_json(obj), media_type=MediaType.JSON)


@post("/chat/completions", status_code=200)
async def chat_completions(request: Request[Any, Any, Any], body: RawBody) -> Response[Any]:
    """OpenAI chat completions, whole or streamed."""
    state = app_state(request.app)
    parsed = codec.structure_request(body, wire.ChatCompletionRequest)
    model = await _resolve(request, state, parsed.model)
    prompt = await state.renderer.render(
        state.engine, parsed.template_messages(), model=model, tools=parsed.template_tools()
    )
    family = toolformats.family(state.engine.tool_format(model))
    use = parsed.tool_use()
    reading = family
    max_calls = None
    if use is not None:
        if use.forced:  # the grammar writes the calls, in the syntax forcing() picks
            reading = toolformats.forcing(family, use.forced_count())
        if use.choice not in ("auto", "required") or not parsed.parallel_tool_calls:
            max_calls = 1  # a named function, or parallel_tool_calls false: one call at most
    tools = use.schemas() if use is not None else None
    call_id = state.ids.tool_call_id
    if family.call_id_length is not None:  # ids the template takes back in the next turn
        length = family.call_id_length
        call_id = lambda: state.ids.tool_call_id()[-length:]  # noqa: E731
    fmt = ChatFormat(
        Meta(id=state.ids.chat_completion_id(), created=int(state.clock.time()), model=model),
        n=parsed.n,
        stream=parsed.stream,
        include_usage=parsed.include_usage,
        parser=lambda: toolformats.stream_parser(
            reading, tools, prompt=prompt, max_calls=max_calls
        ),
        logprobs=parsed.logprobs,
        call_id=call_id,
    )
    generation = parsed.generation(prompt, family)
    return await _serve(request, state, parsed, prompt, fmt, model, generation)


@post("/completions", status_code=200)
async def completions(request: Request[Any, Any, Any], body: RawBody) -> Response[Any]:
    """OpenAI (legacy) text completions, whole or streamed."""
    state = app_state(request.app)
    parsed = codec.structure_request(body, wire.CompletionRequest)
    model = await _resolve(request, state, parsed.model)
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
    model = await _resolve(request, state, parsed.model)
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


def require_ready(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
    """Litestar guard: 503 service_unavailable while the model loads or the server drains."""
    app_state(connection.app).lifecycle.check_ready()


def openai_router() -> Router:
    """The /v1 routes behind the readiness, API-key and rate guards; a fresh Router per app."""
    return Router(
        path="/v1",
        route_handlers=[chat_completions, completions, embeddings, list_models, retrieve_model],
        guards=[require_ready, require_api_key, limit_rate],
    )
