"""JSON in and out for the Responses routes: the OpenAI codec's strict rules, Responses' unions.

Input items are told apart by ``type`` (a message may leave it out: a ``role`` says enough);
tools other than function tools (web search, file search, MCP, ...) are a 400 that names them,
as are content parts this server cannot take (images, files).
"""

from __future__ import annotations

from typing import Any, TypeVar

from cattrs import Converter

from llmserve.api.openai import codec as base
from llmserve.api.responses.wire import (
    FunctionCallItem,
    FunctionCallOutputItem,
    FunctionChoice,
    FunctionTool,
    Item,
    MessageItem,
    ReasoningItem,
    TextPart,
    ToolChoice,
)
from llmserve.errors import InvalidRequest

T = TypeVar("T")

_ITEMS: dict[str, type[Any]] = {
    "message": MessageItem,
    "function_call": FunctionCallItem,
    "function_call_output": FunctionCallOutputItem,
    "reasoning": ReasoningItem,
}
_PARTS = ("input_text", "output_text", "text", "summary_text", "reasoning_text")
_CHOICES = ("none", "auto", "required")


def _structure_item(value: object, _: type) -> Item:
    if not isinstance(value, dict):
        raise InvalidRequest("Invalid type: expected an input item object.")
    kind = value.get("type", "message" if "role" in value else None)
    cls = _ITEMS.get(kind) if isinstance(kind, str) else None
    if cls is None:
        expected = ", ".join(repr(k) for k in _ITEMS)
        raise InvalidRequest(
            f"Input items of type {kind!r} are not supported; expected one of {expected}.",
            param="type",
        )
    item: Item = converter.structure(value, cls)
    return item


def _structure_part(value: object, _: type) -> TextPart:
    if isinstance(value, dict) and value.get("type") not in _PARTS:
        raise InvalidRequest(
            f"Content parts of type {value.get('type')!r} are not supported by this server "
            "(no image, file or audio input); only 'input_text' and 'output_text' parts are.",
            param="type",
        )
    return _plain_part(value, TextPart)


def _structure_parts(value: object, _: type) -> str | tuple[TextPart, ...]:
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        return converter.structure(value, tuple[TextPart, ...])
    raise InvalidRequest("Invalid type: expected a string or an array of content parts.")


def _structure_input(value: object, _: type) -> str | tuple[Item, ...]:
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        return converter.structure(value, tuple[Item, ...])
    raise InvalidRequest("Invalid type: expected a string or an array of input items.")


def _structure_tool(value: object, _: type) -> FunctionTool:
    if isinstance(value, dict) and value.get("type") != "function":
        raise InvalidRequest(
            f"Tools of type {value.get('type')!r} are not supported by this server; only "
            "'function' tools are.",
            param="type",
        )
    return _plain_tool(value, FunctionTool)


def _structure_choice(value: object, _: type) -> ToolChoice | None:
    if value is None:
        return None
    if isinstance(value, str):
        if value not in _CHOICES:
            raise InvalidRequest(
                f"Invalid value: {value!r}. Supported values are: 'none', 'auto', 'required', "
                "or a function {'type': 'function', 'name': ...}."
            )
        return value  # type: ignore[return-value]
    if isinstance(value, dict) and value.get("type") != "function":
        raise InvalidRequest(
            f"tool_choice of type {value.get('type')!r} is not supported; only 'function' is."
        )
    choice: FunctionChoice = converter.structure(value, FunctionChoice)
    return choice


def _make_converter() -> Converter:
    conv = base.make_converter()
    conv.register_structure_hook_func(lambda t: t == Item, _structure_item)
    conv.register_structure_hook(TextPart, _structure_part)
    conv.register_structure_hook(str | tuple[TextPart, ...], _structure_parts)
    conv.register_structure_hook(str | tuple[Item, ...], _structure_input)
    conv.register_structure_hook(FunctionTool, _structure_tool)
    conv.register_structure_hook(ToolChoice | None, _structure_choice)
    return conv


converter = _make_converter()
# The attrs structuring the hooks above check the type before (a hook of a class itself
# cannot call the converter for that class).
_plain_part = base._object_factory(TextPart, converter)
_plain_tool = base._object_factory(FunctionTool, converter)


def structure_request(raw: bytes, cls: type[T]) -> T:
    """Parse a JSON request body into ``cls``; any problem is an ``InvalidRequest``."""
    return base.structure_request(raw, cls, converter)


dumps = base.dumps
