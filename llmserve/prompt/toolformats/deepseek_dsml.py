"""DeepSeek V3.2 and V4: DSML markup. After the reasoning, the content, a blank line, then
``<｜DSML｜function_calls>`` (V3.2; V4: ``<｜DSML｜tool_calls>``) holding calls
``<｜DSML｜invoke name="NAME">`` of one ``<｜DSML｜parameter name="P" string="true|false">V
</｜DSML｜parameter>`` per argument: string="true", V is the bare string; "false", JSON.
Arguments stream one parameter at a time."""

from __future__ import annotations

import json
import re

from llmserve.prompt.toolformats.events import Call
from llmserve.prompt.toolformats.family import DSML_ARGS, DSML_V4_ARGS, Family, Forced
from llmserve.prompt.toolformats.scan import Context, Section, calls_loop
from llmserve.prompt.toolformats.xmlargs import json_or_text, tagged_call, value_json

TOKEN = "｜DSML｜"
V3_2_BLOCK, V4_BLOCK = f"<{TOKEN}function_calls>", f"<{TOKEN}tool_calls>"
INVOKE, END_INVOKE = f"<{TOKEN}invoke", f"</{TOKEN}invoke>"
PARAM, END_PARAM = f"<{TOKEN}parameter", f"</{TOKEN}parameter>"
# The templates write a blank line before the block: read as part of its opener, it is held
# back with it and never reaches the content.
BREAK = "\n\n"
OPENERS = (BREAK + V3_2_BLOCK, BREAK + V4_BLOCK, V3_2_BLOCK, V4_BLOCK)
_ATTRIBUTE = re.compile(r'(\w+)\s*=\s*"([^"]*)"')


def param_open(key: str, string: bool) -> str:
    """A parameter's opening tag, as the templates write it."""
    return f'{PARAM} name="{key}" string="{"true" if string else "false"}">'


def closing(block: str) -> str:
    """The tag that closes a block opened by ``block``."""
    return f"</{block.lstrip()[1:]}"


def read(
    text: str, at: int, opener: str, final: bool, ctx: Context
) -> tuple[list[Call], int | None]:
    def one(text: str, pos: int, final: bool) -> tuple[Call | None, int | None]:
        return _invoke(text, pos, final, ctx)

    return calls_loop(text, at + len(opener), final, INVOKE, one, close=closing(opener))


def _invoke(text: str, pos: int, final: bool, ctx: Context) -> tuple[Call | None, int | None]:
    gt = text.find(">", pos)
    if gt < 0:
        return None, (len(text) if final else None)
    name = dict(_ATTRIBUTE.findall(text[pos:gt])).get("name", "")
    if not name:  # a call whose name cannot be read: dropped
        end = text.find(END_INVOKE, gt)
        return None, (end + len(END_INVOKE) if end >= 0 else len(text) if final else None)

    def pair(head: str, raw: str) -> str:
        found = dict(_ATTRIBUTE.findall(head))
        key = found.get("name", "")
        return f"{json.dumps(key)}: {_value(ctx, name, key, raw, found.get('string'))}"

    return tagged_call(text, gt + 1, final, name, (END_INVOKE, PARAM, END_PARAM), pair)


def _value(ctx: Context, tool: str, key: str, raw: str, string: str | None) -> str:
    """A parameter's value as JSON: as its ``string`` attribute says, else by the schema."""
    if string == "true":
        return json.dumps(raw, ensure_ascii=False)
    if string == "false":
        return json_or_text(raw)
    return value_json(ctx, tool, key, raw)


def _syntax(name: str, block: str, args: str, marker: str | None = None) -> Forced:
    return Forced(
        name=name,
        open=f"{BREAK}{block}\n",
        call=f'{INVOKE} name="{{name}}">\n{{args}}{END_INVOKE}\n',
        sep="",
        close=closing(block),
        args=args,
        marker=marker,
    )


PARSE = Section(
    openers=OPENERS,
    read=read,
    reasoning=("<think>", "</think>"),
    # Calls begun inside the reasoning end it (as llama.cpp's parser reads these models).
    reasoning_ends=OPENERS,
)
FAMILY = Family(
    name="deepseek_dsml",
    title="DeepSeek V3.2, V4 (DSML markup)",
    recognise=lambda t: TOKEN in t,
    parse=PARSE,
    forced=(
        _syntax("deepseek_v4", V4_BLOCK, DSML_V4_ARGS),
        # V3.2 names its block function_calls.
        _syntax("deepseek_v3_2", V3_2_BLOCK, DSML_ARGS, marker="function_calls>"),
    ),
    reasoning_open="<think>",
    reasoning_close="</think>",
)
