"""gpt-oss (harmony): messages ``<|channel|>CHANNEL[ to=functions.NAME][ <|constrain|>json]
<|message|>BODY`` ended by ``<|end|>`` / ``<|call|>`` / ``<|return|>``, the next one after
``<|start|>assistant``. The analysis channel is reasoning, final (and commentary without a
recipient) is content, a message to ``functions.NAME`` is a call with BODY as its arguments.
An output with no harmony markup at all is plain content."""

from __future__ import annotations

import re

from llmserve.prompt.toolformats.events import Call, Snapshot
from llmserve.prompt.toolformats.family import Family, Forced
from llmserve.prompt.toolformats.scan import Context, find_first, held

CHANNEL, MESSAGE, START = "<|channel|>", "<|message|>", "<|start|>"
ENDS = ("<|end|>", "<|call|>", "<|return|>", START)
HEADS = (CHANNEL, START, " to=", "to=")
_RECIPIENT = re.compile(r"to=functions\.([^\s<]+)")


def parse(text: str, final: bool, ctx: Context) -> Snapshot:
    if not text.lstrip().startswith(HEADS):
        head = text.lstrip()
        if not final and (not head or any(h.startswith(head) for h in HEADS)):
            return Snapshot()
        return Snapshot(content=text)
    content: list[str] = []
    reasoning: list[str] = []
    calls: list[Call] = []
    pos = 0
    while pos < len(text):
        mark = text.find(MESSAGE, pos)
        if mark < 0:
            break  # a header still being written
        header = text[pos:mark]
        start = mark + len(MESSAGE)
        end, marker = find_first(text, ENDS, start)
        done = end >= 0
        if not done:
            end = len(text) if final else len(text) - held(text, ENDS, start)
        body = text[start:end]
        recipient = _RECIPIENT.search(header)
        if recipient and ctx.calls:
            calls.append(
                Call(
                    recipient.group(1),
                    body.strip() if done or final else body.lstrip().rstrip(),
                    done,
                )
            )
        elif "analysis" in header:
            reasoning.append(body)
        elif not recipient:
            content.append(body)
        if not done:
            break
        pos = end + len(marker)
        if marker == START or text.startswith(START, pos):
            pos = text.find(CHANNEL, pos) if CHANNEL in text[pos:] else len(text)
            if pos < 0:
                pos = len(text)
    return Snapshot("".join(content), "".join(reasoning), tuple(calls))


FAMILY = Family(
    name="harmony",
    title="gpt-oss (harmony channels; analysis = reasoning)",
    recognise=lambda t: CHANNEL in t,
    parse=parse,
    forced=(
        # <|call|> ends the turn: one call.
        Forced(
            name="harmony",
            call=(
                "<|channel|>commentary to=functions.{name} <|constrain|>json<|message|>"
                "{args}<|call|>"
            ),
            repeat=False,
        ),
    ),
    special_always=True,
)
