"""A Responses request as the shared engine path takes it.

- ``instructions`` become a system turn at the head of this request's prompt (OpenAI does not
  carry an earlier response's instructions over to a continuation, and neither does this).
- Items become chat turns: ``message`` items a turn of their role (``developer`` a system
  turn), ``function_call`` items the ``tool_calls`` of an assistant turn (next to that turn's
  text, if any), ``function_call_output`` items ``tool`` turns; ``reasoning`` items are dropped.
- ``previous_response_id``: the stored conversation (its answer included) comes first, so the
  prompt starts as the last one did and the prefix cache reuses its KV.
- Tools and ``tool_choice`` map onto the chat completions' own (``openai/wire_tools.py``), and
  ``text.format`` onto its ``response_format``: the same grammars force calls and JSON output.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from llmserve.api.generation import ChatInput
from llmserve.api.openai.wire_tools import (
    FunctionDefinition,
    JsonSchemaFormat,
    NamedFunction,
    NamedToolChoice,
    ResponseFormat,
    Tool,
    ToolUse,
    output_grammar,
    tool_use,
)
from llmserve.api.outputs import OutputReading, output_reading
from llmserve.api.responses.wire import (
    FunctionCallItem,
    FunctionCallOutputItem,
    FunctionChoice,
    MessageItem,
    ResponsesInput,
    ResponsesRequest,
    TextPart,
)
from llmserve.engine import protocol
from llmserve.errors import InvalidRequest
from llmserve.prompt import switches, toolformats


def tools_of(request: ResponsesInput) -> ToolUse | None:
    """The request's tool use in chat completions' terms, or None when the model gets none."""
    tools = tuple(
        Tool(
            type="function",
            function=FunctionDefinition(
                name=t.name, description=t.description, parameters=t.parameters, strict=t.strict
            ),
        )
        for t in request.tools or ()
    )
    choice = request.tool_choice
    if isinstance(choice, FunctionChoice):
        return tool_use(
            tools, NamedToolChoice(type="function", function=NamedFunction(choice.name))
        )
    return tool_use(tools, choice)


def template_tools(use: ToolUse | None) -> list[dict[str, Any]] | None:
    if use is None:
        return None
    out = []
    for tool in use.tools:
        function: dict[str, Any] = {"name": tool.function.name}
        if tool.function.description is not None:
            function["description"] = tool.function.description
        if tool.function.parameters is not None:
            function["parameters"] = tool.function.parameters
        out.append({"type": "function", "function": function})
    return out


def input_messages(request: ResponsesInput) -> list[dict[str, Any]]:
    """This request's input items as chat turns (instructions not included)."""
    if isinstance(request.input, str):
        return [{"role": "user", "content": request.input}]
    messages: list[dict[str, Any]] = []
    for item in request.input:
        if isinstance(item, MessageItem):
            role = "system" if item.role == "developer" else item.role
            messages.append({"role": role, "content": _text(item.content)})
        elif isinstance(item, FunctionCallItem):
            last = messages[-1] if messages else None
            if last is None or last["role"] != "assistant":
                last = {"role": "assistant", "content": ""}
                messages.append(last)
            last.setdefault("tool_calls", []).append(
                {
                    "id": item.call_id,
                    "type": "function",
                    "function": {"name": item.name, "arguments": _arguments(item.arguments)},
                }
            )
        elif isinstance(item, FunctionCallOutputItem):
            messages.append(
                {"role": "tool", "tool_call_id": item.call_id, "content": _text(item.output)}
            )
        # reasoning items: an earlier answer's thinking does not go back into the prompt
    if not messages:
        raise InvalidRequest("Invalid 'input': at least one input item is required.", param="input")
    return messages


def chat_input(
    request: ResponsesInput,
    history: Sequence[dict[str, Any]],
    use: ToolUse | None,
) -> tuple[ChatInput, list[dict[str, Any]]]:
    """The chat to render, and the conversation to store (history and input, no instructions)."""
    conversation = [*history, *input_messages(request)]
    _check_calls(conversation)
    system = [{"role": "system", "content": request.instructions}] if request.instructions else []
    effort = request.reasoning.effort if request.reasoning is not None else None
    variables = switches.effort_variables(effort)
    return ChatInput([*system, *conversation], template_tools(use), variables), conversation


def _check_calls(conversation: Sequence[dict[str, Any]]) -> None:
    calls = {c["id"] for m in conversation for c in m.get("tool_calls", ())}
    for m in conversation:
        if m["role"] == "tool" and m["tool_call_id"] not in calls:
            raise InvalidRequest(
                f"No tool call found for function call output with call_id {m['tool_call_id']!r}.",
                param="input",
            )


def _text(content: str | tuple[TextPart, ...]) -> str:
    return content if isinstance(content, str) else "\n".join(p.text for p in content)


def _arguments(arguments: str) -> Any:
    try:
        return json.loads(arguments)  # templates take arguments as objects
    except ValueError:
        return arguments


def response_format(request: ResponsesInput) -> ResponseFormat | None:
    fmt = request.text.format if request.text is not None else None
    if fmt is None or fmt.type != "json_schema":
        return None if fmt is None else ResponseFormat(type=fmt.type)
    if fmt.name is None:
        raise InvalidRequest(
            "Missing required parameter: 'text.format.name'.", param="text.format.name"
        )
    spec = JsonSchemaFormat(
        name=fmt.name, description=fmt.description, schema=fmt.schema, strict=fmt.strict
    )
    return ResponseFormat(type="json_schema", json_schema=spec)


def reading(
    request: ResponsesInput, use: ToolUse | None, family: toolformats.Family
) -> OutputReading:
    parallel = request.parallel_tool_calls is not False
    return output_reading(
        family,
        use.schemas() if use is not None else None,
        single=use is not None and (use.choice not in ("auto", "required") or not parallel),
    )


def generation(
    request: ResponsesRequest, use: ToolUse | None, family: toolformats.Family, prompt: str
) -> protocol.GenerationRequest:
    """The engine request with the request's limit, sampling and output grammar."""
    defaults = protocol.SamplingParams()
    sampling = protocol.SamplingParams(
        temperature=defaults.temperature if request.temperature is None else request.temperature,
        top_p=defaults.top_p if request.top_p is None else request.top_p,
    )
    try:
        # A forced call is the whole answer: text.format shapes text answers, so it yields to
        # the call here (as OpenAI's does) where chat completions refuse the pair.
        forced = use is not None and use.forced
        grammar = output_grammar(
            None if forced else response_format(request),
            use,
            parallel=request.parallel_tool_calls is not False,
            family=family,
            prompt=prompt,
        )
    except InvalidRequest as exc:
        param = (exc.param or "").replace("response_format.json_schema", "text.format")
        message = exc.message.replace("response_format.json_schema", "text.format")
        raise InvalidRequest(
            message.replace("response_format", "text.format"), param=param or None
        ) from None
    return protocol.GenerationRequest(
        prompt=prompt,
        max_tokens=request.max_output_tokens,
        sampling=sampling,
        grammar=grammar,
        special_tokens=use is not None or family.special_always,
    )
