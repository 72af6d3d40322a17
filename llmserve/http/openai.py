"""The /v1 routes: parse with the codec, submit to the engine, answer as JSON or SSE.

The engine resolves a request's ``model`` (a name or an alias; with one model, any name) to the
model that serves it, and responses name that model. The generation is cancelled on every way
out of a route (finished, failed, client gone), so a slot is never left generating for nobody.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any, Protocol

import attrs
from attrs import frozen
from litestar import Request, Response, Router, get, post
from litestar.background_tasks import BackgroundTask
from litestar.connection import ASGIConnection
from litestar.enums import MediaType
from litestar.handlers.base import BaseRouteHandler
from litestar.params import FromPath, RawBody
from litestar.response import Stream
from litestar.types import Receive

from llmserve import codec, wire
from llmserve.engine import protocol
from llmserve.engine.protocol import Generation
from llmserve.errors import LLMServeError, ModelNotFound
from llmserve.http.auth import require_api_key
from llmserve.http.failures import internal_error_envelope
from llmserve.http.observe import RequestRecord, record_of
from llmserve.http.ratelimit import limit_rate
from llmserve.http.state import AppState, app_state

log = logging.getLogger("llmserve.http")

SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
DONE = b"data: [DONE]\n\n"
# nginx's name for "client closed the request"; nobody reads it, the log and metrics do.
CLIENT_CLOSED_REQUEST = 499


@frozen
class Outcome:
    """A finished generation, collected."""

    text: str
    finish_reason: wire.FinishReason
    usage: wire.Usage


class ResponseFormat(Protocol):
    """How one endpoint spells its stream chunks and its whole response."""

    def opening(self) -> object | None: ...

    def piece(self, text: str) -> object: ...

    def closing(self, finish_reason: wire.FinishReason) -> object: ...

    def usage_chunk(self, usage: wire.Usage) -> object: ...

    def whole(self, outcome: Outcome) -> object: ...


@frozen
class ChatFormat:
    id: str
    created: int
    model: str

    def _chunk(
        self, choices: tuple[wire.ChunkChoice, ...], usage: wire.Usage | None = None
    ) -> wire.ChatCompletionChunk:
        return wire.ChatCompletionChunk(
            id=self.id, created=self.created, model=self.model, choices=choices, usage=usage
        )

    def opening(self) -> object:
        return self._chunk(
            (wire.ChunkChoice(index=0, delta=wire.Delta(role="assistant", content="")),)
        )

    def piece(self, text: str) -> object:
        return self._chunk((wire.ChunkChoice(index=0, delta=wire.Delta(content=text)),))

    def closing(self, finish_reason: wire.FinishReason) -> object:
        return self._chunk(
            (wire.ChunkChoice(index=0, delta=wire.Delta(), finish_reason=finish_reason),)
        )

    def usage_chunk(self, usage: wire.Usage) -> object:
        return self._chunk((), usage)

    def whole(self, outcome: Outcome) -> object:
        choice = wire.ChatChoice(
            index=0,
            message=wire.AssistantMessage(content=outcome.text),
            finish_reason=outcome.finish_reason,
        )
        return wire.ChatCompletion(
            id=self.id,
            created=self.created,
            model=self.model,
            choices=(choice,),
            usage=outcome.usage,
        )


@frozen
class TextFormat:
    id: str
    created: int
    model: str

    def _chunk(
        self, choices: tuple[wire.CompletionChoice, ...], usage: wire.Usage | None = None
    ) -> wire.CompletionChunk:
        return wire.CompletionChunk(
            id=self.id, created=self.created, model=self.model, choices=choices, usage=usage
        )

    def opening(self) -> object | None:
        return None

    def piece(self, text: str) -> object:
        return self._chunk((wire.CompletionChoice(index=0, text=text),))

    def closing(self, finish_reason: wire.FinishReason) -> object:
        return self._chunk((wire.CompletionChoice(index=0, text="", finish_reason=finish_reason),))

    def usage_chunk(self, usage: wire.Usage) -> object:
        return self._chunk((), usage)

    def whole(self, outcome: Outcome) -> object:
        choice = wire.CompletionChoice(
            index=0, text=outcome.text, finish_reason=outcome.finish_reason
        )
        return wire.Completion(
            id=self.id,
            created=self.created,
            model=self.model,
            choices=(choice,),
            usage=outcome.usage,
        )


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


async def _drain(gen: Generation, record: RequestRecord) -> Outcome:
    parts: list[str] = []
    finish: wire.FinishReason = "stop"
    usage: protocol.Usage | None = None
    async for event in gen:
        record.add(event)
        parts.append(event.text)
        if event.finish_reason is not None:
            finish, usage = event.finish_reason, event.usage
    return Outcome(text="".join(parts), finish_reason=finish, usage=_usage_or_count(usage, record))


async def _until_disconnect(receive: Receive) -> None:
    # The body was read already: the next message is the disconnect (or the response is done).
    while (await receive())["type"] != "http.disconnect":
        pass


async def _collect(request: Request[Any, Any, Any], gen: Generation) -> Outcome | None:
    """Collect the whole generation, or None if the client went away first."""
    drain = asyncio.ensure_future(_drain(gen, record_of(request)))
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
        if (opening := fmt.opening()) is not None:
            yield _sse(codec.unstructure(opening))
        finish: wire.FinishReason = "stop"
        usage: protocol.Usage | None = None
        async for event in gen:
            record.add(event)
            if event.text:
                yield _sse(codec.unstructure(fmt.piece(event.text)))
            if event.finish_reason is not None:
                finish, usage = event.finish_reason, event.usage
        yield _sse(codec.unstructure(fmt.closing(finish)))
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
) -> Response[Any]:
    gen = await state.engine.submit(attrs.evolve(body.generation(prompt), model=model))
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
        outcome = await _collect(request, gen)
    finally:
        cancel()
    if outcome is None:
        return Response(content=b"", status_code=CLIENT_CLOSED_REQUEST)
    return _json(fmt.whole(outcome))


def _json(obj: object) -> Response[bytes]:
    return Response(content=codec.dump_json(obj), media_type=MediaType.JSON)


@post("/chat/completions", status_code=200)
async def chat_completions(request: Request[Any, Any, Any], body: RawBody) -> Response[Any]:
    """OpenAI chat completions, whole or streamed."""
    state = app_state(request.app)
    parsed = codec.structure_request(body, wire.ChatCompletionRequest)
    model = await _resolve(request, state, parsed.model)
    prompt = state.engine.render_chat(parsed.template_messages(), model=model)
    fmt = ChatFormat(
        id=state.ids.chat_completion_id(), created=int(state.clock.time()), model=model
    )
    return await _serve(request, state, parsed, prompt, fmt, model)


@post("/completions", status_code=200)
async def completions(request: Request[Any, Any, Any], body: RawBody) -> Response[Any]:
    """OpenAI (legacy) text completions, whole or streamed."""
    state = app_state(request.app)
    parsed = codec.structure_request(body, wire.CompletionRequest)
    model = await _resolve(request, state, parsed.model)
    fmt = TextFormat(id=state.ids.completion_id(), created=int(state.clock.time()), model=model)
    return await _serve(request, state, parsed, parsed.prompt, fmt, model)


@get("/models")
async def list_models(request: Request[Any, Any, Any]) -> Response[bytes]:
    """The served models."""
    engine = app_state(request.app).engine
    return _json(wire.ModelList(data=tuple(wire.ModelCard.from_engine(m) for m in engine.models())))


@get("/models/{model_id:path}")
async def retrieve_model(
    request: Request[Any, Any, Any], model_id: FromPath[str]
) -> Response[bytes]:
    """One served model, by id (ids may contain slashes, like Hugging Face repo names)."""
    model_id = model_id.lstrip("/")
    for info in app_state(request.app).engine.models():
        if info.id == model_id:
            return _json(wire.ModelCard.from_engine(info))
    raise ModelNotFound(f"The model '{model_id}' does not exist.", param="model")


def require_ready(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
    """Litestar guard: 503 service_unavailable while the model loads or the server drains."""
    app_state(connection.app).lifecycle.check_ready()


def openai_router() -> Router:
    """The /v1 routes behind the readiness, API-key and rate guards; a fresh Router per app."""
    return Router(
        path="/v1",
        route_handlers=[chat_completions, completions, list_models, retrieve_model],
        guards=[require_ready, require_api_key, limit_rate],
    )
