"""A generation's text as output events: content, and tool calls as start / arguments / end.

This is the one adapter between the tool-call parser (``prompt/toolcalls.py``) and the
dialects that render calls (OpenAI chat, Anthropic Messages). Today's parser holds a call back
until the output ends and gives each call whole, so a call comes out as ``CallStart``, one
``CallArguments`` with all its JSON and ``CallEnd``, after the content. A streaming parser per
model family would emit the same events as they happen; only this module would change.
"""

from __future__ import annotations

from attrs import frozen

from llmserve.prompt.toolcalls import ToolCallStream


@frozen
class Content:
    """Text of the answer (never part of a call)."""

    text: str


@frozen
class CallStart:
    """Call number ``index`` (of this output) to the tool ``name`` begins."""

    index: int
    name: str


@frozen
class CallArguments:
    """A piece of call ``index``'s arguments, JSON text; the pieces concatenate to an object."""

    index: int
    json: str


@frozen
class CallEnd:
    """Call ``index`` is complete."""

    index: int


OutputEvent = Content | CallStart | CallArguments | CallEnd


class OutputSplitter:
    """Splits one choice's streamed text into output events; without tools, all is content."""

    __slots__ = ("_calls", "_parser")

    def __init__(self, tool_names: frozenset[str] | None) -> None:
        self._parser = ToolCallStream(tool_names) if tool_names is not None else None
        self._calls = 0

    def push(self, text: str) -> list[OutputEvent]:
        """The events that ``text``, the next piece of output, settles."""
        content = self._parser.push(text) if self._parser is not None else text
        return [Content(content)] if content else []

    def finish(self) -> list[OutputEvent]:
        """The events still held when the output ends: the rest of the content, then calls."""
        if self._parser is None:
            return []
        tail, calls = self._parser.finish()
        events: list[OutputEvent] = [Content(tail)] if tail else []
        for call in calls:
            index, self._calls = self._calls, self._calls + 1
            events += [
                CallStart(index, call.name),
                CallArguments(index, call.arguments),
                CallEnd(index),
            ]
        return events
