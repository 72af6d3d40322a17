"""Hermes / Qwen 2.5 (and the fallback): ``<tool_call>\\n{"name": ..., "arguments": {...}}\\n
</tool_call>``, several in a row; an output that is one bare JSON call object of a declared
tool is a call too."""

from __future__ import annotations

from llmserve.prompt.toolformats.events import Call
from llmserve.prompt.toolformats.family import Family, Forced
from llmserve.prompt.toolformats.scan import Context, Section, calls_loop, read_objects

OPEN, CLOSE = "<tool_call>", "</tool_call>"


def _one(text: str, pos: int, final: bool) -> tuple[Call | None, int | None]:
    calls, end = read_objects(text[: _bound(text, pos)], pos, final)
    if end is None and not final:
        return (calls[0] if calls else None), None
    call = calls[0] if calls else None
    stop = text.find(CLOSE, pos)
    if stop < 0:
        if call is not None and not call.complete:
            return call, None
        return call, (None if not final else len(text))
    return call, stop + len(CLOSE)


def _bound(text: str, pos: int) -> int:
    stop = text.find(CLOSE, pos)
    return stop if stop >= 0 else len(text)


def read(
    text: str, at: int, opener: str, final: bool, ctx: Context
) -> tuple[list[Call], int | None]:
    return calls_loop(text, at, final, OPEN, _one)


FORCED = Forced(name="hermes", call="<tool_call>\n{object}\n</tool_call>")
PARSE = Section(openers=(OPEN,), read=read, bare_json=True)
FAMILY = Family(
    name="hermes",
    title="Hermes 2/3, Qwen 2.5 and any other template (the fallback)",
    recognise=lambda template: OPEN in template,
    parse=PARSE,
    forced=(FORCED,),
)
