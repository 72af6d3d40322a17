"""Anthropic ``cache_control`` breakpoints as prefix cache hints.

Claude Code marks the blocks it wants cached: the system prompt, tool definitions, the latest
turns. As with Anthropic, a mark covers the prompt up to the end of its block, in the order
tools, system, messages. The engine gets each as a character offset into the rendered
prompt, saves the KV state there while reading the prompt and keeps it longer than ordinary
entries (``engine/checkpoints.py``), so that the next session's identical system prompt and
tools hit the cache although its conversation differs.

Where a block ends in the rendered prompt depends on the template (Qwen writes the tools after
the system text, Gemma the system text into the first user turn), so it is not searched for:
the request is rendered once more with everything after the mark replaced by a sentinel, and
the offset is where that rendering departs from the real one. That is the end of the marked
block, or later if the template writes more before anything that follows it would show (a
turn's closing tokens), and earlier if the template writes something before it that depends
on what follows: exactly the prefix two requests sharing the marked blocks share. A mark
whose variant the template refuses is dropped; the request never fails for a hint.
"""

from __future__ import annotations

import asyncio
from typing import Literal

import attrs
from attrs import frozen

from llmserve.api.anthropic import translate
from llmserve.api.anthropic.wire import (
    Message,
    MessagesInput,
    TextBlock,
    ToolResultBlock,
)
from llmserve.api.generation import render_chat
from llmserve.api.state import AppState
from llmserve.errors import InvalidRequest

MAX_BREAKPOINTS = 4  # as Anthropic allows
# Text no client sends: a continuation that differs from any real one at its first character.
SENTINEL = "\x00"


@frozen
class Mark:
    """One marked block: tool ``index``, system block ``index``, or block ``block`` of message
    ``index``."""

    part: Literal["tools", "system", "messages"]
    index: int
    block: int = 0


def marks(request: MessagesInput) -> list[Mark]:
    """The request's marked blocks, in prompt order; more than Anthropic's 4 is its 400."""
    found = [Mark("tools", i) for i, tool in enumerate(request.tools or ()) if tool.cache_control]
    if not isinstance(request.system, str | None):
        found += [Mark("system", i) for i, b in enumerate(request.system) if b.cache_control]
    count = len(found) + sum(_inner_marks(b) for m in request.messages for b in _blocks(m))
    for i, message in enumerate(request.messages):
        found += [Mark("messages", i, j) for j, b in enumerate(_blocks(message)) if _marked(b)]
    if count > MAX_BREAKPOINTS:
        raise InvalidRequest(
            f"A maximum of {MAX_BREAKPOINTS} blocks with cache_control may be provided. "
            f"Found {count}."
        )
    return found


def _blocks(message: Message) -> tuple[object, ...]:
    return () if isinstance(message.content, str) else message.content


def _marked(block: object) -> bool:
    return _inner_marks(block) > 0


def _inner_marks(block: object) -> int:
    """Marks on a block and, for a tool_result, on the text blocks it holds."""
    own = int(getattr(block, "cache_control", None) is not None)
    if isinstance(block, ToolResultBlock) and not isinstance(block.content, str | None):
        own += sum(getattr(b, "cache_control", None) is not None for b in block.content)
    return own


def variant(request: MessagesInput, mark: Mark) -> MessagesInput:
    """The request up to the end of the marked block, everything after it the sentinel."""
    asks = (Message(role="user", content=SENTINEL),)
    if mark.part == "tools":
        return attrs.evolve(
            request, tools=(request.tools or ())[: mark.index + 1], system=SENTINEL, messages=asks
        )
    if mark.part == "system":
        assert not isinstance(request.system, str | None)  # marks() found a block there
        kept = request.system[: mark.index + 1]
        if mark.index + 1 < len(request.system):  # later system blocks follow the mark
            kept = (*kept, TextBlock(type="text", text=SENTINEL))
        return attrs.evolve(request, system=kept, messages=asks)
    message = request.messages[mark.index]
    blocks = _blocks(message)[: mark.block + 1]
    earlier = request.messages[: mark.index]
    if message.role == "user":  # the sentinel in the same turn: no two user turns in a row
        tail = (Message(role="user", content=(*blocks, TextBlock(type="text", text=SENTINEL))),)
    else:
        tail = (Message(role="assistant", content=blocks), *asks)
    return attrs.evolve(request, messages=(*earlier, *tail))


def common_length(a: str, b: str) -> int:
    """The length of the common prefix of two texts, by slices compared in C."""
    n = min(len(a), len(b))
    if a[:n] == b[:n]:
        return n
    low, high = 0, n  # a[:low] == b[:low]; a[:high] != b[:high]
    while high - low > 1:
        mid = (low + high) // 2
        if a[low:mid] == b[low:mid]:
            low = mid
        else:
            high = mid
    return low


async def checkpoints(
    state: AppState, request: MessagesInput, found: list[Mark], prompt: str, model: str
) -> tuple[int, ...]:
    """The character offsets in ``prompt`` where the marked prefixes end (sorted, distinct)."""
    offsets = await asyncio.gather(*(_offset(state, request, m, prompt, model) for m in found))
    return tuple(sorted({o for o in offsets if o}))


async def _offset(
    state: AppState, request: MessagesInput, mark: Mark, prompt: str, model: str
) -> int:
    other = variant(request, mark)
    try:
        text = await render_chat(
            state, translate.chat_input(other, translate.tool_plan(other)), model
        )
    except InvalidRequest:  # the template refuses the variant: no hint, the request goes on
        return 0
    return common_length(prompt, text)
