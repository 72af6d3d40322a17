"""GLM 4.5 / 4.6 / 4.7: ``<think>`` reasoning, then ``<tool_call>NAME\\n<arg_key>K</arg_key>\\n
<arg_value>V</arg_value>...</tool_call>``; arguments stream one value at a time."""

from __future__ import annotations

import json

from llmserve.prompt.toolformats.events import Call
from llmserve.prompt.toolformats.family import GLM_ARGS, GLM_COMPACT_ARGS, Family, Forced
from llmserve.prompt.toolformats.scan import (
    Context,
    Section,
    calls_loop,
    could_begin,
    find_first,
    skip_space,
)
from llmserve.prompt.toolformats.xmlargs import arguments, value_json

OPEN, CLOSE = "<tool_call>", "</tool_call>"
KEY, END_KEY, VALUE, END_VALUE = "<arg_key>", "</arg_key>", "<arg_value>", "</arg_value>"


def read(
    text: str, at: int, opener: str, final: bool, ctx: Context
) -> tuple[list[Call], int | None]:
    def one(text: str, pos: int, final: bool) -> tuple[Call | None, int | None]:
        stop, _ = find_first(text, (KEY, CLOSE, "\n"), pos)
        if stop < 0:
            return None, (len(text) if final else None)
        name = text[pos:stop].strip()
        pos = stop
        pairs: list[str] = []
        while True:
            pos = skip_space(text, pos)
            if text.startswith(CLOSE, pos):
                return Call(name, arguments(pairs, True)), pos + len(CLOSE)
            if not text.startswith(KEY, pos):
                if pos >= len(text) or not final:
                    return Call(name, arguments(pairs, False), False), None
                if could_begin(CLOSE, text[pos:]):  # the end tag cut short: dropped
                    return Call(name, arguments(pairs, True)), len(text)
                if could_begin(KEY, text[pos:]):  # the next argument's tag cut short
                    return Call(name, arguments(pairs, False), False), len(text)
                return Call(name, arguments(pairs, True)), pos
            key_end = text.find(END_KEY, pos)
            value_at = text.find(VALUE, key_end) if key_end >= 0 else -1
            value_end = text.find(END_VALUE, value_at) if value_at >= 0 else -1
            if value_end < 0:
                return Call(name, arguments(pairs, False), False), None
            key = text[pos + len(KEY) : key_end].strip()
            raw = text[value_at + len(VALUE) : value_end]
            pairs.append(f"{json.dumps(key)}: {value_json(ctx, name, key, raw)}")
            pos = value_end + len(END_VALUE)

    return calls_loop(text, at, final, OPEN, one)


FAMILY = Family(
    name="glm",
    title="GLM 4.5, 4.6, 4.7 (<arg_key>/<arg_value>)",
    recognise=lambda t: KEY in t,
    parse=Section(openers=(OPEN,), read=read, reasoning=("<think>", "</think>")),
    forced=(
        # GLM 4.5 and 4.6 write one tag a line, 4.7 its markup without newlines.
        Forced(name="glm", call="<tool_call>{name}\n{args}</tool_call>", args=GLM_ARGS),
        Forced(
            name="glm_compact",
            call="<tool_call>{name}{args}</tool_call>",
            args=GLM_COMPACT_ARGS,
            sep="",
            marker="</arg_key><arg_value>",
        ),
    ),
    reasoning_open="<think>",
    reasoning_close="</think>",
)
