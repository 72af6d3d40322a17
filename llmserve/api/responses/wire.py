"""The OpenAI Responses wire format of requests: frozen attrs classes, structured by ``codec``.

``input`` is a string or a list of items told apart by ``type`` (a message may leave it out);
unknown fields are ignored, as OpenAI's are. Responses themselves are plain JSON built by
``events`` (they are stored and sent back as they were built).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

from attrs import Attribute, field, frozen

from llmserve.api.openai.wire_tools import _function_name
from llmserve.errors import InvalidRequest
from llmserve.prompt import switches

_Validator = Callable[[Any, "Attribute[Any]", Any], None]


def _between(low: float, high: float) -> _Validator:
    def check(_: Any, attribute: Attribute[Any], value: float | None) -> None:
        if value is not None and not low <= value <= high:
            raise InvalidRequest(
                f"Invalid '{attribute.name}': should be between {low} and {high}, got {value}.",
                param=attribute.name,
            )

    return check


@frozen(kw_only=True)
class TextPart:
    """A text content part of an input message (``output_text``: an earlier answer's)."""

    type: Literal["input_text", "output_text", "text", "summary_text", "reasoning_text"]
    text: str


@frozen(kw_only=True)
class MessageItem:
    role: Literal["user", "assistant", "system", "developer"]
    content: str | tuple[TextPart, ...]
    type: Literal["message"] = "message"


@frozen(kw_only=True)
class FunctionCallItem:
    """A call the model made, sent back as part of the conversation."""

    type: Literal["function_call"]
    call_id: str
    name: str
    arguments: str
    id: str | None = None


@frozen(kw_only=True)
class FunctionCallOutputItem:
    """What a call returned: text, or text parts."""

    type: Literal["function_call_output"]
    call_id: str
    output: str | tuple[TextPart, ...]


@frozen(kw_only=True)
class ReasoningItem:
    """An earlier answer's reasoning; it does not reach the prompt."""

    type: Literal["reasoning"]


Item = MessageItem | FunctionCallItem | FunctionCallOutputItem | ReasoningItem


@frozen(kw_only=True)
class FunctionTool:
    """A function tool, in the Responses API's flat shape."""

    type: Literal["function"]
    name: str = field(validator=_function_name)
    description: str | None = None
    parameters: dict[str, Any] | None = None
    strict: bool | None = None


@frozen(kw_only=True)
class FunctionChoice:
    type: Literal["function"]
    name: str


ToolChoice = Literal["none", "auto", "required"] | FunctionChoice


@frozen(kw_only=True)
class TextFormat:
    type: Literal["text", "json_object", "json_schema"]
    name: str | None = None
    description: str | None = None
    schema: dict[str, Any] | None = None
    strict: bool | None = None


@frozen(kw_only=True)
class TextConfig:
    format: TextFormat | None = None
    verbosity: str | None = None


@frozen(kw_only=True)
class ReasoningConfig:
    """The reasoning switch: ``effort`` reaches the chat template (``prompt.switches``)."""

    effort: switches.ReasoningEffort | None = None
    summary: str | None = None


@frozen(kw_only=True)
class ResponsesInput:
    """What a prompt is made of: the fields ``input_tokens`` takes too."""

    model: str | None = None
    input: str | tuple[Item, ...] = ()
    instructions: str | None = None
    tools: tuple[FunctionTool, ...] | None = None
    tool_choice: ToolChoice | None = None
    parallel_tool_calls: bool | None = None
    previous_response_id: str | None = None
    text: TextConfig | None = None
    reasoning: ReasoningConfig | None = None


@frozen(kw_only=True)
class ResponsesRequest(ResponsesInput):
    max_output_tokens: int | None = field(default=None, validator=_between(1, float("inf")))
    temperature: float | None = field(default=None, validator=_between(0, 2))
    top_p: float | None = field(default=None, validator=_between(0, 1))
    stream: bool = False
    store: bool = True
    metadata: dict[str, Any] | None = None
