"""Mistral: ``[TOOL_CALLS]`` then a JSON array of call objects (Nemo), or
``[TOOL_CALLS]NAME[ARGS]{...}`` per call (Small 3.2, Devstral, Ministral 3, Magistral; a
``[CALL_ID]id`` after the name is skipped); ``[THINK]...[/THINK]`` reasoning."""

from __future__ import annotations

from llmserve.prompt.toolformats.events import Call
from llmserve.prompt.toolformats.family import ARGUMENTS, ID, NAME, Family, Forced
from llmserve.prompt.toolformats.scan import (
    Context,
    Section,
    json_args,
    read_objects,
    skip_space,
)

TOOL_CALLS, ARGS, CALL_ID = "[TOOL_CALLS]", "[ARGS]", "[CALL_ID]"


def read(
    text: str, at: int, opener: str, final: bool, ctx: Context
) -> tuple[list[Call], int | None]:
    pos = skip_space(text, at + len(opener))
    if pos >= len(text):
        return [], (len(text) if final else None)
    if text[pos] in "[{":
        return read_objects(text, pos, final)
    args_at = text.find(ARGS, pos)
    if args_at < 0:
        return [], (len(text) if final else None)
    name = text[pos:args_at].split(CALL_ID)[0].strip()
    arguments, end = json_args(text, args_at + len(ARGS), final)
    if end is None:
        return [Call(name, arguments, False)], None
    return [Call(name, arguments)], end


FAMILY = Family(
    name="mistral",
    title="Mistral Nemo, Small 3.x, Devstral, Ministral, Magistral ([TOOL_CALLS])",
    recognise=lambda t: TOOL_CALLS in t,
    parse=Section(openers=(TOOL_CALLS,), read=read, reasoning=("[THINK]", "[/THINK]")),
    forced=(
        # Nemo: a JSON list of call objects; Small 3.2: name, call id, arguments; Devstral,
        # Ministral 3, Magistral: name, arguments.
        Forced(
            name="mistral",
            open=f"{TOOL_CALLS}[",
            call="{object}",
            sep=", ",
            close="]",
            keys=(("name", NAME), ("arguments", ARGUMENTS), ("id", ID)),
        ),
        Forced(
            name="mistral_call_id",
            call=f"{TOOL_CALLS}{{name}}{CALL_ID}{{id}}{ARGS}{{args}}",
            sep="",
            marker=CALL_ID,
        ),
        Forced(
            name="mistral_args", call=f"{TOOL_CALLS}{{name}}{ARGS}{{args}}", sep="", marker=ARGS
        ),
    ),
    call_id_length=9,
)
