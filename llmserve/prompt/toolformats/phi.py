"""Phi-4 (mini, with tools): ``<|tool_call|>[{"name": ..., "arguments": {...}}]
<|/tool_call|>``."""

from __future__ import annotations

from llmserve.prompt.toolformats.events import Call
from llmserve.prompt.toolformats.family import Family, Forced
from llmserve.prompt.toolformats.scan import Context, Section, past_close, read_objects

OPEN, CLOSE = "<|tool_call|>", "<|/tool_call|>"


def read(
    text: str, at: int, opener: str, final: bool, ctx: Context
) -> tuple[list[Call], int | None]:
    calls, end = read_objects(text, at + len(opener), final)
    return calls, (None if end is None else past_close(text, end, CLOSE, final))


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
