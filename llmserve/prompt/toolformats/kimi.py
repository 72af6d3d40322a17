"""Kimi K2: ``<|tool_calls_section_begin|><|tool_call_begin|>functions.NAME:0
<|tool_call_argument_begin|>{...}<|tool_call_end|><|tool_calls_section_end|>``; ``<think>``
reasoning (K2 Thinking)."""

from __future__ import annotations

import re

from llmserve.prompt.toolformats.events import Call
from llmserve.prompt.toolformats.family import Family, Forced
from llmserve.prompt.toolformats.scan import Context, Section, args_until, calls_loop

SECTION, END_SECTION = "<|tool_calls_section_begin|>", "<|tool_calls_section_end|>"
CALL, ARGS, END_CALL = "<|tool_call_begin|>", "<|tool_call_argument_begin|>", "<|tool_call_end|>"
_ID = re.compile(r"^(?:functions\.)?(.*?)(?::\d+)?$")


def _one(text: str, pos: int, final: bool) -> tuple[Call | None, int | None]:
    args_at = text.find(ARGS, pos)
    if args_at < 0:
        return None, (len(text) if final else None)
    name = _ID.match(text[pos:args_at].strip()).group(1)  # type: ignore[union-attr]
    arguments, end = args_until(text, args_at + len(ARGS), END_CALL, final)
    return Call(name, arguments, end is not None), end


def read(
    text: str, at: int, opener: str, final: bool, ctx: Context
) -> tuple[list[Call], int | None]:
    pos = at + len(SECTION) if opener == SECTION else at
    return calls_loop(text, pos, final, CALL, _one, close=END_SECTION)


FAMILY = Family(
    name="kimi",
    title="Kimi K2 (Instruct, Thinking)",
    recognise=lambda t: SECTION in t,
    parse=Section(openers=(SECTION, CALL), read=read, reasoning=("<think>", "</think>")),
    forced=(
        Forced(
            name="kimi",
            open=SECTION,
            call=f"{CALL}functions.{{name}}:{{index}}{ARGS}{{args}}{END_CALL}",
            sep="",
            close=END_SECTION,
        ),
    ),
    reasoning_open="<think>",
    reasoning_close="</think>",
)
