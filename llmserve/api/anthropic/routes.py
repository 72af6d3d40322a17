"""The Anthropic Messages routes: ``POST /v1/messages`` and ``/v1/messages/count_tokens``.

Parsed with the Anthropic codec, translated to the shared engine path (``api/generation.py``:
the same model resolution, templates, prefix cache, metrics and cancellation as the OpenAI
routes) and answered in Anthropic's shapes. Behind the same readiness, key and rate guards,
with keys taken from ``x-api-key`` or ``Authorization: Bearer``; ``anthropic-version`` and
``anthropic-beta`` headers are accepted and need not be sent. Every error is in Anthropic's
envelope (``anthropic/errors.py``).
"""

from __future__ import annotations

from typing import Any

import attrs
from litestar import Request, Response, Router, post
from litestar.params import RawBody

from llmserve.api.anthropic import breakpoints, codec, translate
from llmserve.api.anthropic.errors import handle_anthropic_exception
from llmserve.api.anthropic.events import MessageReply
from llmserve.api.anthropic.wire import MessagesInput, MessagesRequest, TokenCount
from llmserve.api.generation import json_response, model_family, render_chat, resolve_model, serve
from llmserve.api.guards import anthropic_guard
from llmserve.api.observe import record_of
from llmserve.api.outputs import output_reading
from llmserve.api.state import app_state


@post("/messages", status_code=200)
async def create_message(request: Request[Any, Any, Any], body: RawBody) -> Response[Any]:
    """Anthropic Messages, whole or streamed."""
    state = app_state(request.app)
    parsed = codec.structure_request(body, MessagesRequest)
    plan = translate.tool_plan(parsed)
    chat = translate.chat_input(parsed, plan)
    marks = breakpoints.marks(parsed)
    model = await resolve_model(request, state, parsed.model)
    family = model_family(state, model)
    prompt = await render_chat(state, chat, model)
    checkpoints = await breakpoints.checkpoints(state, parsed, marks, prompt, model)
    generation = translate.generation(parsed, plan, family, prompt)
    reading = (
        plan.reading(family) if plan is not None else output_reading(family, None, single=False)
    )
    reply = MessageReply(
        id=state.ids.message_id(),
        model=model,
        stream=parsed.stream,
        parser=reading.parser(prompt),
        tool_use_id=state.ids.tool_use_id,
    )
    generation = attrs.evolve(generation, checkpoints=checkpoints)
    return await serve(request, state, generation, reply, model)


@post("/messages/count_tokens", status_code=200)
async def count_tokens(request: Request[Any, Any, Any], body: RawBody) -> Response[bytes]:
    """The token count of the prompt a Messages request would make."""
    state = app_state(request.app)
    parsed = codec.structure_request(body, MessagesInput)
    plan = translate.tool_plan(parsed)
    chat = translate.chat_input(parsed, plan)
    breakpoints.marks(parsed)  # too many is a 400 here too, as with Anthropic
    model = await resolve_model(request, state, parsed.model)
    prompt = await render_chat(state, chat, model)
    tokens = await state.engine.tokenize_text(prompt, add_special=True, model=model)
    record_of(request).prompt_tokens = len(tokens)
    return json_response(codec.dump_json(TokenCount(input_tokens=len(tokens))))


def anthropic_router() -> Router:
    """The Anthropic routes under /v1, behind the /v1 guards; a fresh Router per app."""
    return Router(
        path="/v1",
        route_handlers=[create_message, count_tokens],
        guards=[anthropic_guard],
        exception_handlers={Exception: handle_anthropic_exception},
    )
