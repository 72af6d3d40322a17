"""One Anthropic Messages answer, built from the engine's events: whole, or as Anthropic's SSE.

The stream is Anthropic's sequence, each event an ``event: NAME`` line and a ``data:`` line:

    message_start, (content_block_start, ping once after the first, content_block_delta*,
    content_block_stop)*, message_delta (stop_reason, stop_sequence, usage), message_stop

or, when generation fails after the 200, an ``error`` event. Text goes out as ``text_delta``s
as it is generated; a tool call as a ``tool_use`` block whose input arrives as
``input_json_delta`` pieces (``partial_json``), from the events of the model family's parser
(``prompt.toolformats``); reasoning (``<think>`` and the like) goes out as a ``thinking`` block
of ``thinking_delta``s.
The prompt's token count is known only when the engine finishes, so ``message_start`` says 0
input tokens and ``message_delta`` carries the exact usage (the SDKs take it from there).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from typing import Any

from llmserve.api.anthropic import codec
from llmserve.api.anthropic.errors import stream_error
from llmserve.api.anthropic.wire import (
    ContentBlock,
    MessageResponse,
    StopReason,
    TextContent,
    ThinkingContent,
    ToolUseContent,
    Usage,
)
from llmserve.api.generation import named_event
from llmserve.engine import protocol
from llmserve.prompt.toolformats import (
    CallArguments,
    CallEnd,
    CallStart,
    Content,
    Reasoning,
    ToolParser,
)


def sse(name: str, data: dict[str, Any]) -> bytes:
    return named_event(name, data)


class MessageReply:
    """The ``Reply`` of one Messages request (``api/generation.py``)."""

    def __init__(
        self,
        *,
        id: str,
        model: str,
        stream: bool,
        parser: ToolParser,
        tool_use_id: Callable[[], str],
    ) -> None:
        self.id = id
        self.model = model
        self.stream = stream
        self._tool_use_id = tool_use_id
        self._parser = parser
        self._blocks: list[dict[str, Any]] = []  # text: {"type","text"}; tool_use: +"json"
        self._open: str | None = None  # the type of the open (streamed, unstopped) block
        self._calls: dict[int, int] = {}  # output call index -> block index
        self._pinged = False
        self._finish: protocol.FinishReason | None = None
        self._stop_sequence: str | None = None

    # -- the sequence ---------------------------------------------------------------------

    def opening(self) -> Iterable[bytes]:
        message = {
            "id": self.id,
            "type": "message",
            "role": "assistant",
            "model": self.model,
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": {"input_tokens": 0, "output_tokens": 0},
        }
        return [sse("message_start", {"type": "message_start", "message": message})]

    def feed(self, event: protocol.TokenEvent) -> Iterable[bytes]:
        out = self._take(self._parser.feed(event.text)) if event.text else []
        if event.finish_reason is not None and self._finish is None:
            self._finish = event.finish_reason
            self._stop_sequence = event.stop_sequence
            out += self._take(self._parser.finish())
        return out if self.stream else []

    def ending(self, usage: protocol.Usage) -> Iterable[bytes]:
        out = [] if self._finish is not None else self._take(self._parser.finish())
        out += self._close()
        if not self._pinged:
            out.append(sse("ping", {"type": "ping"}))
        reason, stop_sequence = self._stop_reason()
        delta = {
            "type": "message_delta",
            "delta": {"stop_reason": reason, "stop_sequence": stop_sequence},
            "usage": codec.unstructure(Usage.from_engine(usage)),
        }
        return [*out, sse("message_delta", delta), sse("message_stop", {"type": "message_stop"})]

    def failure(self, exc: Exception) -> bytes:
        return sse("error", stream_error(exc))

    def body(self, usage: protocol.Usage) -> bytes:
        if self._finish is None:
            self._take(self._parser.finish())
        reason, stop_sequence = self._stop_reason()
        return codec.dump_json(
            MessageResponse(
                id=self.id,
                model=self.model,
                content=tuple(
                    _content(b) for b in self._blocks if b["type"] != "text" or b["text"]
                ),
                stop_reason=reason,
                stop_sequence=stop_sequence,
                usage=Usage.from_engine(usage),
            )
        )

    # -- blocks ---------------------------------------------------------------------------

    def _take(self, events: list[Any]) -> list[bytes]:
        out: list[bytes] = []
        for e in events:
            if isinstance(e, Content):
                if self._open != "text":
                    out += self._close()
                    out += self._start({"type": "text", "text": ""})
                self._blocks[-1]["text"] += e.text
                out.append(self._delta({"type": "text_delta", "text": e.text}))
            elif isinstance(e, Reasoning):
                if self._open != "thinking":
                    out += self._close()
                    out += self._start({"type": "thinking", "thinking": "", "signature": ""})
                self._blocks[-1]["thinking"] += e.text
                out.append(self._delta({"type": "thinking_delta", "thinking": e.text}))
            elif isinstance(e, CallStart):
                out += self._close()
                self._calls[e.index] = len(self._blocks)
                out += self._start(
                    {"type": "tool_use", "id": self._tool_use_id(), "name": e.name, "input": {}}
                )
                self._blocks[-1]["json"] = ""
            elif isinstance(e, CallArguments):
                self._blocks[self._calls[e.index]]["json"] += e.text
                out.append(self._delta({"type": "input_json_delta", "partial_json": e.text}))
            elif isinstance(e, CallEnd):
                out += self._close()
        return out

    def _start(self, block: dict[str, Any]) -> list[bytes]:
        self._blocks.append(block)
        self._open = block["type"]
        out = [
            sse(
                "content_block_start",
                {
                    "type": "content_block_start",
                    "index": len(self._blocks) - 1,
                    "content_block": {k: v for k, v in block.items() if k != "json"},
                },
            )
        ]
        if not self._pinged:  # Anthropic pings once, after the first block starts
            self._pinged = True
            out.append(sse("ping", {"type": "ping"}))
        return out

    def _delta(self, delta: dict[str, Any]) -> bytes:
        data = {"type": "content_block_delta", "index": len(self._blocks) - 1, "delta": delta}
        return sse("content_block_delta", data)

    def _close(self) -> list[bytes]:
        if self._open is None:
            return []
        self._open = None
        data = {"type": "content_block_stop", "index": len(self._blocks) - 1}
        return [sse("content_block_stop", data)]

    def _stop_reason(self) -> tuple[StopReason, str | None]:
        if self._calls and self._finish != "length":
            return "tool_use", None
        if self._finish == "length":
            return "max_tokens", None
        if self._stop_sequence is not None:
            return "stop_sequence", self._stop_sequence
        return "end_turn", None


def _content(block: dict[str, Any]) -> ContentBlock:
    if block["type"] == "text":
        return TextContent(text=block["text"])
    if block["type"] == "thinking":
        return ThinkingContent(thinking=block["thinking"])
    try:
        arguments = json.loads(block["json"] or "{}")
    except ValueError:
        arguments = None
    return ToolUseContent(
        id=block["id"],
        name=block["name"],
        # A call's input is an object; arguments that are not one come back as their text.
        input=arguments if isinstance(arguments, dict) else {"arguments": block["json"]},
    )
