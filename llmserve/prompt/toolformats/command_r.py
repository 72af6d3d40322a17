"""Command R7B: ``<|START_THINKING|>...<|END_THINKING|>`` reasoning, content inside
``<|START_RESPONSE|>...<|END_RESPONSE|>``, calls as ``<|START_ACTION|>[{"tool_call_id": ...,
"tool_name": ..., "parameters": {...}}]<|END_ACTION|>``."""

from __future__ import annotations

from llmserve.prompt.toolformats.events import Call
from llmserve.prompt.toolformats.family import ARGUMENTS, INDEX, NAME, Family, Forced
from llmserve.prompt.toolformats.scan import (
    Context,
    Section,
    could_begin,
    read_objects,
    skip_space,
)

ACTION, END_ACTION = "<|START_ACTION|>", "<|END_ACTION|>"


def read(
    text: str, at: int, opener: str, final: bool, ctx: Context
) -> tuple[list[Call], int | None]:
    calls, end = read_objects(text, at + len(opener), final, ("tool_name",), ("parameters",))
    if end is None:
        return calls, None
    pos = skip_space(text, end)
    if text.startswith(END_ACTION, pos):
        return calls, pos + len(END_ACTION)
    if could_begin(END_ACTION, text[pos:]):  # its end marker arriving, or cut short: dropped
        return calls, (len(text) if final else None)
    return calls, pos


FAMILY = Family(
    name="command_r",
    title="Command R7B (and Command A)",
    recognise=lambda t: ACTION in t,
    parse=Section(
        openers=(ACTION,),
        read=read,
        reasoning=("<|START_THINKING|>", "<|END_THINKING|>"),
        drop=("<|START_RESPONSE|>", "<|END_RESPONSE|>"),
        name_keys=("tool_name",),
        args_keys=("parameters",),
    ),
    forced=(
        Forced(
            name="command_r",
            open="<|START_ACTION|>[",
            call="{object}",
            sep=", ",
            close="]<|END_ACTION|>",
            keys=(("tool_call_id", INDEX), ("tool_name", NAME), ("parameters", ARGUMENTS)),
        ),
    ),
    special_always=True,
)
