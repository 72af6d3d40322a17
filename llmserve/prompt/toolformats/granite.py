"""Granite 3.3: ``<think>``/``<response>`` and ``<|tool_call|>`` then a JSON array of call
objects; Granite 4.x writes Hermes ``<tool_call>`` blocks (both are read)."""

from __future__ import annotations

from llmserve.prompt.toolformats import hermes
from llmserve.prompt.toolformats.events import Call
from llmserve.prompt.toolformats.family import Family, Forced
from llmserve.prompt.toolformats.scan import Context, Section, read_objects

TOOL_CALL = "<|tool_call|>"


def read(
    text: str, at: int, opener: str, final: bool, ctx: Context
) -> tuple[list[Call], int | None]:
    if opener == hermes.OPEN:
        return hermes.read(text, at, opener, final, ctx)
    return read_objects(text, at + len(opener), final)


FAMILY = Family(
    name="granite",
    title="Granite 3.3, 4.x",
    recognise=lambda t: "<|start_of_role|>" in t,
    parse=Section(
        openers=(TOOL_CALL, hermes.OPEN),
        read=read,
        reasoning=("<think>", "</think>"),
        drop=("<response>", "</response>"),
    ),
    forced=(
        # Granite 3.3 writes a JSON list after <|tool_call|>; 4.x templates teach Hermes blocks.
        Forced(name="granite", open="<|tool_call|>[", call="{object}", sep=", ", close="]"),
        Forced(name="granite_4", call=hermes.FORCED.call, marker=hermes.OPEN),
    ),
)
