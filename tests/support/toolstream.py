"""An output fed to a tool-call parser in pieces, and what its events add up to."""

from __future__ import annotations

from llmserve.prompt.toolformats import (
    CallArguments,
    CallEnd,
    CallStart,
    Content,
    Reasoning,
    ToolEvent,
    ToolParser,
)


def feed(parser: ToolParser, text: str, size: int) -> list[ToolEvent]:
    """The events of ``text`` fed in pieces of ``size`` characters, then finished."""
    events: list[ToolEvent] = []
    for i in range(0, len(text), size):
        events += parser.feed(text[i : i + size])
    return events + parser.finish()


def assemble(events: list[ToolEvent]) -> tuple[str, str, list[tuple[str, str]], list[bool]]:
    """Content, reasoning, calls (name, arguments) and each call's end (complete or not)."""
    content = "".join(e.text for e in events if isinstance(e, Content))
    reasoning = "".join(e.text for e in events if isinstance(e, Reasoning))
    calls: dict[int, list[str]] = {}
    ends: list[bool] = []
    for e in events:
        if isinstance(e, CallStart):
            assert e.index == len(calls), "calls start in order, once"
            calls[e.index] = [e.name, ""]
        elif isinstance(e, CallArguments):
            assert e.index in calls, "arguments only after the call's start"
            calls[e.index][1] += e.text
        elif isinstance(e, CallEnd):
            ends.append(e.complete)
    return content, reasoning, [(n, a) for n, a in calls.values()], ends
