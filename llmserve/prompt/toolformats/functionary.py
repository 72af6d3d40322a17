"""Functionary v3.1 (Llama 3.1 based): ``<function=NAME>{...}</function>``; v3.2: the answer
is ``>>>RECIPIENT\\n...`` segments (the prompt ends with the first ``>>>``), ``all`` being
content and any other recipient a call with the JSON after it."""

from __future__ import annotations

from llmserve.prompt.toolformats.events import Call, Snapshot
from llmserve.prompt.toolformats.family import Family, Forced
from llmserve.prompt.toolformats.scan import Context, Section, args_until, held

FUNCTION, END_FUNCTION, SEGMENT = "<function=", "</function>", ">>>"


def _read_v31(
    text: str, at: int, opener: str, final: bool, ctx: Context
) -> tuple[list[Call], int | None]:
    gt = text.find(">", at + len(opener))
    if gt < 0:
        return [], (len(text) if final else None)
    name = text[at + len(opener) : gt].strip()
    arguments, end = args_until(text, gt + 1, END_FUNCTION, final)
    return [Call(name, arguments, end is not None)], end


_V31 = Section(openers=(FUNCTION,), read=_read_v31)


def parse(text: str, final: bool, ctx: Context) -> Snapshot:
    if not ctx.prompt_tail.endswith(SEGMENT):
        return _V31(text, final, ctx)
    full = SEGMENT + text
    content: list[str] = []
    calls: list[Call] = []
    pos = 0
    while pos < len(full):
        line = full.find("\n", pos + len(SEGMENT))
        if line < 0:
            break
        recipient = full[pos + len(SEGMENT) : line].strip()
        start = line + 1
        nxt = full.find(SEGMENT, start)
        end = nxt if nxt >= 0 else len(full) - (0 if final else held(full, (SEGMENT,), start))
        body = full[start:end]
        if recipient == "all" or not ctx.calls:
            content.append(body)
        else:
            done = nxt >= 0 or final
            calls.append(Call(recipient, body.strip() if done else body.lstrip().rstrip(), done))
        if nxt < 0:
            break
        pos = nxt
    return Snapshot("".join(content), "", tuple(calls))


FAMILY = Family(
    name="functionary",
    title="Functionary v3.1, v3.2",
    recognise=lambda t: ">>>all" in t or (FUNCTION in t and "<|python_tag|>" in t),
    parse=parse,
    forced=(
        Forced(name="functionary_v3_1", call="<function={name}>{args}</function>", sep=""),
        # v3.2: the prompt ends with the first ">>>"; each further call starts with one.
        Forced(name="functionary_v3_2", call="{name}\n{args}", sep=SEGMENT, marker=">>>all"),
    ),
)
