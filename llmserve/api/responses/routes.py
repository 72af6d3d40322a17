"""The Responses routes: ``POST /v1/responses``, ``GET|DELETE /v1/responses/{id}`` and
``POST /v1/responses/input_tokens``.

Parsed with the Responses codec, translated to the shared engine path (``api/generation.py``:
the same model resolution, templates, prefix cache, metrics and cancellation as every route)
and answered in the Responses shapes, behind the same readiness, key and rate guards as the
other /v1 routes; errors in OpenAI's envelope. Stored responses (``store``, on by default)
are kept in the app's ``ResponseStore``, in the scope of the key that made them.
"""

from __future__ import annotations

from typing import Any

from litestar import Request, Response, Router, delete, get, post
from litestar.params import FromPath, RawBody

from llmserve.api.auth import bearer_key
from llmserve.api.generation import json_response, model_family, render_chat, resolve_model, serve
from llmserve.api.guards import openai_guard
from llmserve.api.observe import record_of
from llmserve.api.responses import codec, translate
from llmserve.api.responses.events import ResponseReply
from llmserve.api.responses.store import Stored, scope_of
from llmserve.api.responses.wire import FunctionChoice, ResponsesInput, ResponsesRequest
from llmserve.api.state import AppState, app_state
from llmserve.errors import NotFound


def _scope(request: Request[Any, Any, Any], state: AppState) -> str:
    if not state.keys.enabled:
        return scope_of(None)
    return scope_of(bearer_key(request.headers.get("authorization")))


def _not_found(response_id: str, param: str | None = None) -> NotFound:
    return NotFound(f"Response with id '{response_id}' not found.", param=param)


def _history(
    request: Request[Any, Any, Any], state: AppState, parsed: ResponsesInput
) -> list[dict[str, Any]]:
    """The stored conversation ``previous_response_id`` continues (none: empty)."""
    if parsed.previous_response_id is None:
        return []
    found = state.responses.get(_scope(request, state), parsed.previous_response_id)
    if found is None:
        raise _not_found(parsed.previous_response_id, "previous_response_id")
    return list(found.conversation)


def _created(
    state: AppState, parsed: ResponsesRequest, model: str, response_id: str
) -> dict[str, Any]:
    """The response object as created: in progress, no output, the request's echo fields."""
    choice = parsed.tool_choice
    fmt = parsed.text.format if parsed.text is not None else None
    return {
        "id": response_id,
        "object": "response",
        "created_at": int(state.clock.time()),
        "status": "in_progress",
        "background": False,
        "error": None,
        "incomplete_details": None,
        "instructions": parsed.instructions,
        "max_output_tokens": parsed.max_output_tokens,
        "model": model,
        "output": [],
        "parallel_tool_calls": parsed.parallel_tool_calls is not False,
        "previous_response_id": parsed.previous_response_id,
        "reasoning": {
            "effort": parsed.reasoning.effort if parsed.reasoning else None,
            "summary": parsed.reasoning.summary if parsed.reasoning else None,
        },
        "store": parsed.store,
        "temperature": 1.0 if parsed.temperature is None else parsed.temperature,
        "text": {"format": _format_json(fmt)},
        "tool_choice": (
            {"type": "function", "name": choice.name}
            if isinstance(choice, FunctionChoice)
            else choice or "auto"
        ),
        "tools": [
            {
                "type": "function",
                "name": t.name,
                "description": t.description,
                "parameters": t.parameters,
                "strict": t.strict,
            }
            for t in parsed.tools or ()
        ],
        "top_p": 1.0 if parsed.top_p is None else parsed.top_p,
        "truncation": "disabled",
        "usage": None,
        "metadata": parsed.metadata or {},
    }


def _format_json(fmt: Any) -> dict[str, Any]:
    if fmt is None or fmt.type != "json_schema":
        return {"type": "text" if fmt is None else fmt.type}
    out = {"type": "json_schema", "name": fmt.name, "schema": fmt.schema, "strict": fmt.strict}
    if fmt.description is not None:
        out["description"] = fmt.description
    return out


@post("/responses", status_code=200)
async def create_response(request: Request[Any, Any, Any], body: RawBody) -> Response[Any]:
    """OpenAI Responses, whole or streamed; stored unless ``store`` is false."""
    state = app_state(request.app)
    parsed = codec.structure_request(body, ResponsesRequest)
    history = _history(request, state, parsed)
    use = translate.tools_of(parsed)
    chat, conversation = translate.chat_input(parsed, history, use)
    model = await resolve_model(request, state, parsed.model)
    family = model_family(state, model)
    prompt = await render_chat(state, chat, model)
    generation = translate.generation(parsed, use, family, prompt)
    reading = translate.reading(parsed, use, family)
    scope = _scope(request, state)

    def keep(final: dict[str, Any], answer: dict[str, Any]) -> None:
        state.responses.put(scope, Stored(final, (*conversation, answer)))

    reply = ResponseReply(
        response=_created(state, parsed, model, state.ids.response_id()),
        stream=parsed.stream,
        parser=reading.parser(prompt),
        call_id=reading.call_ids(state.ids.tool_call_id),
        item_id=state.ids.item_id,
        keep=keep if parsed.store else None,
    )
    return await serve(request, state, generation, reply, model)


@post("/responses/input_tokens", status_code=200)
async def count_input_tokens(request: Request[Any, Any, Any], body: RawBody) -> Response[bytes]:
    """The token count of the prompt a Responses request would make."""
    state = app_state(request.app)
    parsed = codec.structure_request(body, ResponsesInput)
    history = _history(request, state, parsed)
    use = translate.tools_of(parsed)
    chat, _ = translate.chat_input(parsed, history, use)
    model = await resolve_model(request, state, parsed.model)
    prompt = await render_chat(state, chat, model)
    tokens = await state.engine.tokenize_text(prompt, add_special=True, model=model)
    record_of(request).prompt_tokens = len(tokens)
    answer = {"object": "response.input_tokens", "input_tokens": len(tokens)}
    return json_response(codec.dumps(answer))


@get("/responses/{response_id:str}")
async def retrieve_response(
    request: Request[Any, Any, Any], response_id: FromPath[str]
) -> Response[bytes]:
    """A stored response, as it was answered."""
    state = app_state(request.app)
    found = state.responses.get(_scope(request, state), response_id)
    if found is None:
        raise _not_found(response_id)
    return json_response(codec.dumps(found.response))


@delete("/responses/{response_id:str}", status_code=200)
async def delete_response(
    request: Request[Any, Any, Any], response_id: FromPath[str]
) -> Response[bytes]:
    """Forget a stored response (a continuation of it is then a 404)."""
    state = app_state(request.app)
    if not state.responses.delete(_scope(request, state), response_id):
        raise _not_found(response_id)
    answer = {"id": response_id, "object": "response.deleted", "deleted": True}
    return json_response(codec.dumps(answer))


def responses_router() -> Router:
    """The Responses routes under /v1, behind the /v1 guards; a fresh Router per app."""
    return Router(
        path="/v1",
        route_handlers=[create_response, count_input_tokens, retrieve_response, delete_response],
        guards=[openai_guard],
    )
