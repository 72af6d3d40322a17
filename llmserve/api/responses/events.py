"""One Responses answer, built from the engine's events: whole, or as the Responses SSE stream.

The stream, each event an ``event: NAME`` line and a ``data:`` line whose JSON has ``type`` and
a ``sequence_number`` counting from 0:

    response.created, response.in_progress,
    per output item: response.output_item.added,
        message:   content_part.added, output_text.delta*, output_text.done, content_part.done
        reasoning: content_part.added, reasoning_text.delta*, reasoning_text.done,
                   content_part.done
        function_call: function_call_arguments.delta*, function_call_arguments.done
    response.output_item.done,
    response.completed | response.incomplete (max_output_tokens) | response.failed

Items come from the model family's parser (``prompt.toolformats``): content text is a
``message`` item, reasoning (``<think>`` and the like) a ``reasoning`` item, each call a
``function_call`` item. ``reasoning_tokens`` counts the tokens of the engine events whose text
the parser read as reasoning only: exact for a model that thinks, then answers (an event that
holds both the end of its thinking and the start of its answer counts as answer).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from typing import Any

from llmserve.api.failures import internal_error_envelope
from llmserve.api.generation import named_event
from llmserve.api.responses import codec
from llmserve.engine import protocol
from llmserve.errors import LLMServeError
from llmserve.prompt.toolformats import (
    CallArguments,
    CallEnd,
    CallStart,
    Content,
    Reasoning,
    ToolParser,
)

Keep = Callable[[dict[str, Any], dict[str, Any]], None]


def sse(data: dict[str, Any]) -> bytes:
    return named_event(str(data["type"]), data)


def usage_json(usage: protocol.Usage, reasoning_tokens: int) -> dict[str, Any]:
    return {
        "input_tokens": usage.prompt_tokens,
        "input_tokens_details": {
            "cached_tokens": min(usage.cached_tokens, usage.prompt_tokens),
            "cache_write_tokens": 0,
        },
        "output_tokens": usage.completion_tokens,
        "output_tokens_details": {
            "reasoning_tokens": min(reasoning_tokens, usage.completion_tokens)
        },
        "total_tokens": usage.total_tokens,
    }


class ResponseReply:
    """The ``Reply`` of one Responses request (``api/generation.py``).

    ``response`` is the response object as created (status ``in_progress``, no output, the
    request's echo fields); ``keep`` is called with the finished response and the assistant
    turn it adds to the conversation, when the response is to be stored.
    """

    def __init__(
        self,
        *,
        response: dict[str, Any],
        stream: bool,
        parser: ToolParser,
        call_id: Callable[[], str],
        item_id: Callable[[str], str],
        keep: Keep | None,
    ) -> None:
        self.stream = stream
        self._response = response
        self._parser = parser
        self._call_id = call_id
        self._item_id = item_id
        self._keep = keep
        self._items: list[dict[str, Any]] = []
        self._open: dict[str, Any] | None = None  # the item being written
        self._calls: dict[int, dict[str, Any]] = {}  # parser call index -> its item
        self._seq = 0
        self._finish: protocol.FinishReason | None = None
        self._reasoning_tokens = 0

    # -- the Reply protocol ---------------------------------------------------------------

    def opening(self) -> Iterable[bytes]:
        return [
            self._event("response.created", response=self._response),
            self._event("response.in_progress", response=self._response),
        ]

    def feed(self, event: protocol.TokenEvent) -> Iterable[bytes]:
        parsed = self._parser.feed(event.text) if event.text else []
        if parsed and all(isinstance(e, Reasoning) for e in parsed):
            self._reasoning_tokens += event.tokens
        out = self._take(parsed)
        if event.finish_reason is not None and self._finish is None:
            self._finish = event.finish_reason
            out += self._take(self._parser.finish())
        return out if self.stream else []

    def ending(self, usage: protocol.Usage) -> Iterable[bytes]:
        out = [] if self._finish is not None else self._take(self._parser.finish())
        out += self._close()
        final = self._final(usage)
        name = "response.incomplete" if final["status"] == "incomplete" else "response.completed"
        return [*out, self._event(name, response=final)]

    def failure(self, exc: Exception) -> bytes:
        if isinstance(exc, LLMServeError):
            message = exc.message
        else:
            message = internal_error_envelope()["error"]["message"]
        failed = {
            **self._response,
            "status": "failed",
            "output": self._items,
            "error": {"code": "server_error", "message": message},
        }
        return self._event("response.failed", response=failed)

    def body(self, usage: protocol.Usage) -> bytes:
        if self._finish is None:
            self._take(self._parser.finish())
        self._close()
        return codec.dumps(self._final(usage))

    # -- the finished response ------------------------------------------------------------

    def _final(self, usage: protocol.Usage) -> dict[str, Any]:
        incomplete = self._finish == "length"
        final = {
            **self._response,
            "status": "incomplete" if incomplete else "completed",
            "incomplete_details": {"reason": "max_output_tokens"} if incomplete else None,
            "output": self._items,
            "usage": usage_json(usage, self._reasoning_tokens),
        }
        if self._keep is not None:
            self._keep(final, self._assistant_turn())
        return final

    def _assistant_turn(self) -> dict[str, Any]:
        """The answer as a chat turn, for the conversation a continuation renders."""
        text = "".join(
            part["text"]
            for item in self._items
            if item["type"] == "message"
            for part in item["content"]
        )
        turn: dict[str, Any] = {"role": "assistant", "content": text}
        calls = [item for item in self._items if item["type"] == "function_call"]
        if calls:
            turn["tool_calls"] = [
                {
                    "id": c["call_id"],
                    "type": "function",
                    "function": {"name": c["name"], "arguments": _object(c["arguments"])},
                }
                for c in calls
            ]
        return turn

    # -- items ----------------------------------------------------------------------------

    def _take(self, events: list[Any]) -> list[bytes]:
        out: list[bytes] = []
        for e in events:
            if isinstance(e, Content):
                out += self._text("message", e.text)
            elif isinstance(e, Reasoning):
                out += self._text("reasoning", e.text)
            elif isinstance(e, CallStart):
                out += self._close()
                item = {
                    "id": self._item_id("fc"),
                    "type": "function_call",
                    "status": "in_progress",
                    "call_id": self._call_id(),
                    "name": e.name,
                    "arguments": "",
                }
                self._calls[e.index] = item
                out += self._add(item)
            elif isinstance(e, CallArguments):
                item = self._calls[e.index]
                item["arguments"] += e.text
                out.append(
                    self._event(
                        "response.function_call_arguments.delta",
                        item_id=item["id"],
                        output_index=self._items.index(item),
                        delta=e.text,
                    )
                )
            elif isinstance(e, CallEnd):
                out += self._close()
        return out

    def _text(self, kind: str, text: str) -> list[bytes]:
        out: list[bytes] = []
        if self._open is None or self._open["type"] != kind:
            out += self._close()
            if kind == "message":
                item = {
                    "id": self._item_id("msg"),
                    "type": "message",
                    "status": "in_progress",
                    "role": "assistant",
                    "content": [],
                }
                part = {"type": "output_text", "text": "", "annotations": []}
            else:
                item = {
                    "id": self._item_id("rs"),
                    "type": "reasoning",
                    "summary": [],
                    "content": [],
                }
                part = {"type": "reasoning_text", "text": ""}
            out += self._add(item)
            item["content"].append(part)
            out.append(self._part_event("response.content_part.added", item, dict(part)))
        item = self._open
        assert item is not None
        item["content"][0]["text"] += text
        delta = (
            "response.output_text.delta" if kind == "message" else "response.reasoning_text.delta"
        )
        extra = {"logprobs": []} if kind == "message" else {}
        out.append(self._part_event(delta, item, None, delta=text, **extra))
        return out

    def _add(self, item: dict[str, Any]) -> list[bytes]:
        self._items.append(item)
        self._open = item
        return [
            self._event(
                "response.output_item.added", output_index=len(self._items) - 1, item=dict(item)
            )
        ]

    def _close(self) -> list[bytes]:
        item = self._open
        if item is None:
            return []
        self._open = None
        out: list[bytes] = []
        index = self._items.index(item)
        if item["type"] == "function_call":
            out.append(
                self._event(
                    "response.function_call_arguments.done",
                    item_id=item["id"],
                    output_index=index,
                    arguments=item["arguments"],
                )
            )
            item["status"] = "completed"
        else:
            part = item["content"][0]
            if item["type"] == "message":
                out.append(
                    self._part_event(
                        "response.output_text.done", item, None, text=part["text"], logprobs=[]
                    )
                )
                item["status"] = "incomplete" if self._finish == "length" else "completed"
            else:
                out.append(
                    self._part_event("response.reasoning_text.done", item, None, text=part["text"])
                )
            out.append(self._part_event("response.content_part.done", item, dict(part)))
        out.append(self._event("response.output_item.done", output_index=index, item=item))
        return out

    # -- events ---------------------------------------------------------------------------

    def _part_event(
        self, name: str, item: dict[str, Any], part: dict[str, Any] | None, **fields: Any
    ) -> bytes:
        if part is not None:
            fields["part"] = part
        return self._event(
            name,
            item_id=item["id"],
            output_index=self._items.index(item),
            content_index=0,
            **fields,
        )

    def _event(self, name: str, **fields: Any) -> bytes:
        if not self.stream:
            return b""
        data = {"type": name, "sequence_number": self._seq, **fields}
        self._seq += 1
        return sse(data)


def _object(arguments: str) -> Any:
    try:
        return json.loads(arguments or "{}")
    except ValueError:
        return arguments
