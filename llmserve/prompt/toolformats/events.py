"""What a tool-call parser emits, whatever the model family and whatever the API dialect.

A parser is fed the model's text as it is generated and answers with events: content,
reasoning, and for each call ``CallStart`` (its name), ``CallArguments`` pieces (JSON text, in
the order generated; concatenated they are the call's arguments) and ``CallEnd``. A dialect
(OpenAI chat chunks, Responses items, Anthropic content blocks) turns them into its own wire
form; ``Parsed`` is the same output whole.
"""

from __future__ import annotations

from typing import Protocol

from attrs import frozen


@frozen
class Content:
    """Answer text for the user."""

    text: str


@frozen
class Reasoning:
    """The model's reasoning (``<think>``, gpt-oss's analysis channel, ...)."""

    text: str


@frozen
class CallStart:
    """Call ``index`` (0, 1, ... in the output) begins; its function's name."""

    index: int
    name: str


@frozen
class CallArguments:
    """The next piece of call ``index``'s arguments (JSON text)."""

    index: int
    text: str


@frozen
class CallEnd:
    """Call ``index`` is over; ``complete`` is False for a call cut short (end of output)."""

    index: int
    complete: bool = True


ToolEvent = Content | Reasoning | CallStart | CallArguments | CallEnd


@frozen
class Call:
    """A call read from the output: its name, its arguments (JSON text as written; for a call
    cut short, what was written of them) and whether it was complete."""

    name: str
    arguments: str
    complete: bool = True


@frozen
class Snapshot:
    """What is sure of an output so far: content and reasoning that will not change (only
    grow), and the calls begun (the last one's arguments may still grow)."""

    content: str = ""
    reasoning: str = ""
    calls: tuple[Call, ...] = ()


class ToolParser(Protocol):
    """A streaming parser of one output (one choice)."""

    def feed(self, text: str) -> list[ToolEvent]:
        """Take the next piece of generated text; the events it completes."""
        ...

    def finish(self) -> list[ToolEvent]:
        """The output is over: the events still held back (a call cut short ends here)."""
        ...
