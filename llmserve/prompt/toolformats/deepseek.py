"""DeepSeek V3 / R1 / V3.1: ``<think>`` reasoning (R1 templates open it in the prompt), then
``<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>NAME<｜tool▁sep｜>{...}<｜tool▁call▁end｜>
<｜tool▁calls▁end｜>`` (V3.1), or per call ``function<｜tool▁sep｜>NAME\\n```json\\n{...}\\n```
`` (V3, R1). V3.2 and V4 write DSML markup: ``deepseek_dsml``."""

from __future__ import annotations

from llmserve.prompt.toolformats.events import Call
from llmserve.prompt.toolformats.family import Family, Forced
from llmserve.prompt.toolformats.scan import (
    Context,
    Section,
    args_until,
    calls_loop,
    could_begin,
    skip_space,
)

CALLS_BEGIN, CALLS_END = "<｜tool▁calls▁begin｜>", "<｜tool▁calls▁end｜>"
CALL_BEGIN, CALL_END, SEP = "<｜tool▁call▁begin｜>", "<｜tool▁call▁end｜>", "<｜tool▁sep｜>"
FENCE = "```"


def _one(text: str, pos: int, final: bool) -> tuple[Call | None, int | None]:
    sep = text.find(SEP, pos)
    if sep < 0:
        return None, (len(text) if final else None)
    head = text[pos:sep].strip()
    if head == "function":  # V3 / R1: the name, then the arguments in a json fence
        start = sep + len(SEP)
        fence = text.find(FENCE, start)
        if fence < 0:
            return None, (len(text) if final else None)
        name = text[start:fence].strip()
        body = fence + len(FENCE)
        if not final and len(text) - body < 4 and "json".startswith(text[body:]):
            return None, None  # the fence's "json" may be arriving
        body = body + 4 if text.startswith("json", body) else body
        arguments, end = args_until(text, body, FENCE, final)
        if end is None:
            return Call(name, arguments, False), None
        rest = skip_space(text, end)
        if text.startswith(CALL_END, rest):
            return Call(name, arguments), rest + len(CALL_END)
        if not final and could_begin(CALL_END, text[rest:]):
            return Call(name, arguments), None  # its end marker may be arriving
        return Call(name, arguments), rest
    arguments, end = args_until(text, sep + len(SEP), CALL_END, final)
    return Call(head, arguments, end is not None), end


def read(
    text: str, at: int, opener: str, final: bool, ctx: Context
) -> tuple[list[Call], int | None]:
    pos = at + len(CALLS_BEGIN) if opener == CALLS_BEGIN else at
    # A call's end marker left over (cut short after an R1 fence) is dropped too.
    return calls_loop(text, pos, final, CALL_BEGIN, _one, skip=(CALL_END,), close=CALLS_END)


FAMILY = Family(
    name="deepseek",
    title="DeepSeek V3, V3.1, R1 and its distills",
    recognise=lambda t: "tool▁call" in t or "<｜Assistant｜>" in t,
    parse=Section(openers=(CALLS_BEGIN, CALL_BEGIN), read=read, reasoning=("<think>", "</think>")),
    forced=(
        # V3.1: the name, then the arguments.
        Forced(
            name="deepseek_v3_1",
            open=CALLS_BEGIN,
            call=f"{CALL_BEGIN}{{name}}{SEP}{{args}}{CALL_END}",
            sep="",
            close=CALLS_END,
        ),
        # V3 and R1 (and their distills): "function", the name, and a json fence.
        Forced(
            name="deepseek_r1",
            open=CALLS_BEGIN,
            call=f"{CALL_BEGIN}function{SEP}{{name}}\n```json\n{{args}}\n```{CALL_END}",
            close=CALLS_END,
            marker="```json",
        ),
    ),
    reasoning_open="<think>",
    reasoning_close="</think>",
)
