"""JSON in and out for the Anthropic routes: the OpenAI codec's strict rules, Anthropic's unions.

Content is a string or an array of blocks told apart by ``type``; a block type this server
cannot take (an image, a document) or does not know is a 400 that names it. Every failure is
one ``InvalidRequest`` whose message starts with the path of the bad field, since Anthropic's
envelope has no ``param``.
"""

from __future__ import annotations

from typing import Any, TypeVar

from cattrs import Converter

from llmserve.api.anthropic.wire import (
    UNSUPPORTED_BLOCKS,
    Block,
    TextBlock,
    ThinkingBlock,
    ToolResultBlock,
    ToolUseBlock,
)
from llmserve.api.openai import codec as base
from llmserve.errors import InvalidRequest

T = TypeVar("T")

_BLOCKS: dict[str, type[Any]] = {
    "text": TextBlock,
    "tool_use": ToolUseBlock,
    "tool_result": ToolResultBlock,
    "thinking": ThinkingBlock,
    "redacted_thinking": ThinkingBlock,
}


def _structure_block(value: object, _: type) -> Block:
    if not isinstance(value, dict):
        raise InvalidRequest("Input should be a content block object.")
    kind = value.get("type")
    if kind in UNSUPPORTED_BLOCKS:
        raise InvalidRequest(
            f"Content blocks of type '{kind}' are not supported by this server "
            "(no vision or document input); send the content as text.",
            param="type",
        )
    cls = _BLOCKS.get(kind) if isinstance(kind, str) else None
    if cls is None:
        expected = ", ".join(repr(k) for k in _BLOCKS)
        raise InvalidRequest(
            f"Unknown content block type {kind!r}; expected one of {expected}.", param="type"
        )
    block: Block = converter.structure(value, cls)
    return block


def _structure_blocks(value: object, _: type) -> str | tuple[Block, ...] | None:
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, list):
        return converter.structure(value, tuple[Block, ...])
    raise InvalidRequest("Input should be a string or an array of content blocks.")


def _structure_system(value: object, _: type) -> str | tuple[TextBlock, ...] | None:
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, list):
        return converter.structure(value, tuple[TextBlock, ...])
    raise InvalidRequest("Input should be a string or an array of text blocks.")


def _make_converter() -> Converter:
    conv = base.make_converter()
    conv.register_structure_hook_func(lambda t: t == Block, _structure_block)
    conv.register_structure_hook(str | tuple[Block, ...], _structure_blocks)
    conv.register_structure_hook(str | tuple[Block, ...] | None, _structure_blocks)
    conv.register_structure_hook(str | tuple[TextBlock, ...] | None, _structure_system)
    return conv


converter = _make_converter()


def structure_request(raw: bytes, cls: type[T]) -> T:
    """Parse a JSON request body into ``cls``; any problem is an ``InvalidRequest``."""
    try:
        return base.structure_request(raw, cls, converter)
    except InvalidRequest as exc:
        if exc.param and exc.param not in exc.message:
            raise InvalidRequest(f"{exc.param}: {exc.message}", param=exc.param) from None
        raise


def dump_json(obj: object) -> bytes:
    """A response object as compact UTF-8 JSON, unset optional fields left out."""
    return base.dumps(converter.unstructure(obj))


def unstructure(obj: object) -> Any:
    return converter.unstructure(obj)


dumps = base.dumps
