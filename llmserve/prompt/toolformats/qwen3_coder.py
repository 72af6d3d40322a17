"""Qwen3-Coder (and Qwen3.5, Nemotron 3 and others with its template):
``<tool_call>\\n<function=NAME>\\n<parameter=P>\\nVALUE\\n</parameter>\\n</function>\\n
</tool_call>``. Arguments stream one parameter at a time (a value is typed when it closes)."""

from __future__ import annotations

import json

from llmserve.prompt.toolformats.events import Call
from llmserve.prompt.toolformats.family import XML_ARGS, Family, Forced
from llmserve.prompt.toolformats.scan import Context, Section, could_begin, skip_space
from llmserve.prompt.toolformats.xmlargs import tagged_call, value_json

OPEN, CLOSE = "<tool_call>", "</tool_call>"
FUNCTION, END_FUNCTION = "<function=", "</function>"
PARAM, END_PARAM = "<parameter=", "</parameter>"


def read(
    text: str, at: int, opener: str, final: bool, ctx: Context
) -> tuple[list[Call], int | None]:
    calls: list[Call] = []
    pos = at if opener == FUNCTION else at + len(opener)
    while True:
        pos = skip_space(text, pos)
        if text.startswith(OPEN, pos):
            pos += len(OPEN)
            continue
        if text.startswith(CLOSE, pos):
            pos += len(CLOSE)
            continue
        if not text.startswith(FUNCTION, pos):
            rest = text[pos:]
            if any(could_begin(m, rest) for m in (OPEN, CLOSE, FUNCTION)):
                # Markup being written; at the end, cut short by max_tokens: dropped.
                return calls, (len(text) if final else None)
            return calls, pos
        call, end = _function(text, pos + len(FUNCTION), final, ctx)
        if call is not None:
            calls.append(call)
        if end is None:
            return calls, None
        pos = end


def _function(text: str, pos: int, final: bool, ctx: Context) -> tuple[Call | None, int | None]:
    gt = text.find(">", pos)
    if gt < 0:
        return None, None
    name = text[pos:gt].strip()

    def pair(head: str, raw: str) -> str:
        key = head.strip()
        return f"{json.dumps(key)}: {value_json(ctx, name, key, raw)}"

    return tagged_call(text, gt + 1, final, name, (END_FUNCTION, PARAM, END_PARAM), pair)


PARSE = Section(openers=(OPEN, FUNCTION), read=read, reasoning=("<think>", "</think>"))
FAMILY = Family(
    name="qwen3_coder",
    title="Qwen3-Coder, Qwen3.5, Nemotron 3 (<function=...><parameter=...> XML)",
    recognise=lambda t: "<parameter=" in t and FUNCTION in t,
    parse=PARSE,
    forced=(
        Forced(
            name="qwen3_coder",
            call="<tool_call>\n<function={name}>\n{args}</function>\n</tool_call>",
            args=XML_ARGS,
        ),
    ),
    reasoning_open="<think>",
    reasoning_close="</think>",
)
