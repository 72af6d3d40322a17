"""The one engine path of every dialect: resolve the model, render the chat, submit, answer.

A dialect (OpenAI chat and completions, Anthropic Messages) parses its request into a
``ChatInput`` (messages in the shape chat templates take, tools as OpenAI function JSON) and a
``GenerationRequest``, and says how to spell the answer with a ``Reply``; everything between
is here, once: the model a request's name resolves to (the metrics label from then on), the
template rendered off the loop, every engine event counted in the request's record, the
disconnect watch of a whole answer, and the generation cancelled on every way out (finished,
failed, client gone), so that a slot is never left generating for nobody.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from typing import Any, Protocol

import attrs
from attrs import frozen
from litestar import Request, Response
from litestar.background_tasks import BackgroundTask
from litestar.enums import MediaType
from litestar.response import Stream
from litestar.types import Receive

from llmserve.api.observe import RequestRecord, record_of
from llmserve.api.openai import codec  # the one JSON encoder of every dialect
from llmserve.api.state import AppState
from llmserve.engine import protocol
from llmserve.engine.protocol import Generation, GenerationRequest
from llmserve.errors import LLMServeError
from llmserve.prompt import toolformats

log = logging.getLogger("llmserve.http")  # the logger name is part of the log format

SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


def named_event(name: str, data: Mapping[str, Any]) -> bytes:
    """One SSE event with an ``event:`` name, as the Anthropic and Responses streams send them."""
    return b"event: " + name.encode() + b"\ndata: " + codec.dumps(data) + b"\n\n"


# nginx's name for "client closed the request"; nobody reads it, the log and metrics do.
CLIENT_CLOSED_REQUEST = 499


@frozen
class ChatInput:
    """A chat as the chat template takes it, whatever dialect it came in."""

    messages: Sequence[Mapping[str, Any]]  # role, content text, tool_calls, tool_call_id
    tools: Sequence[Mapping[str, Any]] | None  # OpenAI function tools; None: none offered
    # Extra template variables (prompt.switches): chat_template_kwargs, reasoning switches
    variables: Mapping[str, Any] = attrs.field(factory=dict)


class Reply(Protocol):
    """How one dialect spells one answer, as SSE bytes or one JSON body."""

    @property
    def stream(self) -> bool: ...

    def opening(self) -> Iterable[bytes]:
        """SSE bytes before any event."""
        ...

    def feed(self, event: protocol.TokenEvent) -> Iterable[bytes]:
        """Take an event; the SSE bytes it makes (none when not streaming)."""
        ...

    def ending(self, usage: protocol.Usage) -> Iterable[bytes]:
        """SSE bytes after the last event."""
        ...

    def failure(self, exc: Exception) -> bytes:
        """The in-band SSE error once the 200 and its headers are gone."""
        ...

    def body(self, usage: protocol.Usage) -> bytes:
        """The whole answer as JSON, after every event was fed."""
        ...


class CancelOnce:
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


async def resolve_model(request: Request[Any, Any, Any], state: AppState, name: str | None) -> str:
    """The id of the model serving the requested name (loaded); its metrics label from now on."""
    model = await state.engine.resolve(name)
    record_of(request).serve_with(model)
    return model


def model_family(state: AppState, model: str) -> toolformats.Family:
    """The tool-call family ``model`` writes, its calls forced in the syntax its template
    teaches."""
    engine = state.engine
    return toolformats.family(engine.tool_format(model), engine.tool_syntax(model))


async def render_chat(state: AppState, chat: ChatInput, model: str) -> str:
    """The prompt text of ``chat`` with ``model``'s chat template, rendered off the loop."""
    return await state.renderer.render(
        state.engine, chat.messages, model=model, tools=chat.tools, variables=chat.variables
    )


def usage_or_count(usage: protocol.Usage | None, record: RequestRecord) -> protocol.Usage:
    """The engine's final usage or, if it ended without one, what the record saw."""
    if usage is None:
        return protocol.Usage(prompt_tokens=0, completion_tokens=record.completion_tokens)
    return usage


async def _drain(gen: Generation, reply: Reply, record: RequestRecord) -> protocol.Usage:
    usage: protocol.Usage | None = None
    async for event in gen:
        record.add(event)
        reply.feed(event)
        usage = event.usage or usage
    return usage_or_count(usage, record)


async def _until_disconnect(receive: Receive) -> None:
    # The body was read already: the next message is the disconnect (or the response is done).
    while (await receive())["type"] != "http.disconnect":
        pass


async def _collect(
    request: Request[Any, Any, Any], gen: Generation, reply: Reply
) -> protocol.Usage | None:
    """Feed the whole generation to ``reply``; its usage, or None if the client went away."""
    drain = asyncio.ensure_future(_drain(gen, reply, record_of(request)))
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
    gen: Generation, reply: Reply, *, record: RequestRecord, cancel: Callable[[], None]
) -> AsyncIterator[bytes]:
    try:
        for chunk in reply.opening():
            yield chunk
        usage: protocol.Usage | None = None
        async for event in gen:
            record.add(event)
            usage = event.usage or usage
            for chunk in reply.feed(event):
                yield chunk
        for chunk in reply.ending(usage_or_count(usage, record)):
            yield chunk
    except LLMServeError as exc:
        # The 200 and its headers are gone already: report in-band.
        log.warning("generation failed mid-stream: %s", exc)
        yield reply.failure(exc)
    except Exception as exc:
        log.error("generation failed mid-stream", exc_info=exc)
        yield reply.failure(exc)
    finally:
        cancel()


def json_response(content: bytes) -> Response[bytes]:
    return Response(content=content, media_type=MediaType.JSON)


async def serve(
    request: Request[Any, Any, Any],
    state: AppState,
    generation: GenerationRequest,
    reply: Reply,
    model: str,
) -> Response[Any]:
    """Submit ``generation`` to ``model`` and answer as ``reply`` spells it, whole or streamed."""
    gen = await state.engine.submit(attrs.evolve(generation, model=model))
    cancel = CancelOnce(gen)
    if reply.stream:
        events = _stream(gen, reply, record=record_of(request), cancel=cancel)
        # The background task covers a disconnect while the stream sat between two chunks.
        return Stream(
            events,
            media_type="text/event-stream",
            headers=SSE_HEADERS,
            background=BackgroundTask(cancel.after_response),
        )
    try:
        usage = await _collect(request, gen, reply)
    finally:
        cancel()
    if usage is None:
        return Response(content=b"", status_code=CLIENT_CLOSED_REQUEST)
    return json_response(reply.body(usage))
