"""Phi-4 (mini, with tools): ``<|tool_call|>[{"name": ..., "arguments": {...}}]
<|/tool_call|>``."""

from __future__ import annotations

from llmserve.prompt.toolformats.events import Call
from llmserve.prompt.toolformats.family import Family, Forced
from llmserve.prompt.toolformats.scan import (
    Context,
    Section,
    could_begin,
    read_objects,
    skip_space,
)

OPEN, CLOSE = "<|tool_call|>", "<|/tool_call|>"


def read(
    text: str, at: int, opener: str, final: bool, ctx: Context
) -> tuple[list[Call], int | None]:
    calls, end = read_objects(text, at + len(opener), final)
    if end is None:
        return calls, None
    pos = skip_space(text, end)
    if text.startswith(CLOSE, pos):
        return calls, pos + len(CLOSE)
    if could_begin(CLOSE, text[pos:]):  # its end marker arriving, or cut short: dropped at the end
        return calls, (len(text) if final else None)
    return calls, pos


FAMILY = Family(
    name="phi",
    title="Phi-4 (mini) with tools",
    recognise=lambda t: "<|tool|>" in t or (OPEN in t and "<|/tool_call|>" in t),
    parse=Section(openers=(OPEN,), read=read),
    forced=(
        Forced(
            name="phi", open="<|tool_call|>[", call="{object}", sep=", ", close="]<|/tool_call|>"
        ),
    ),
)
