"""How each endpoint spells its answer: one JSON body, or stream chunks, for n choices.

A format is fed the engine's events in order (the choices' events interleave) and keeps what
each choice needs: its text, its logprobs, its finish reason and, for chat with tools, the
separation of content from tool calls (``api/outputs.py``). Streaming, ``feed``
returns the chunks to send now; collecting, it returns none and ``whole`` builds the body.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from attrs import define, field, frozen

from llmserve.api.openai import wire
from llmserve.api.openai.wire_tools import FunctionCall, ToolCall, ToolUse
from llmserve.api.outputs import CallArguments, CallStart, Content, OutputEvent, OutputSplitter
from llmserve.engine.protocol import TokenEvent


class ResponseFormat(Protocol):
    """One response being built, whole or streamed."""

    def opening(self) -> list[object]:
        """Chunks before any event (streaming only)."""
        ...

    def feed(self, event: TokenEvent) -> list[object]:
        """Take an event; the chunks it makes (none when not streaming)."""
        ...

    def ending(self) -> list[object]:
        """Closing chunks of choices the engine left without a finish (streaming only)."""
        ...

    def usage_chunk(self, usage: wire.Usage) -> object: ...

    def whole(self, usage: wire.Usage) -> object: ...


@frozen
class Meta:
    """What every chunk and body of one response repeats."""

    id: str
    created: int
    model: str


# -- chat -------------------------------------------------------------------------------------


@define
class _ChatChoice:
    index: int
    splitter: OutputSplitter | None
    content: list[str] = field(factory=list)
    logprobs: list[wire.LogprobEntry] = field(factory=list)
    calls: tuple[ToolCall, ...] = ()
    finish: wire.FinishReason | None = None


class ChatFormat:
    """Chat completions: ``message`` / ``delta`` with content, tool calls and logprobs."""

    def __init__(
        self,
        meta: Meta,
        *,
        n: int = 1,
        stream: bool = False,
        tools: ToolUse | None = None,
        logprobs: bool = False,
        call_id: Callable[[], str] = lambda: "call_0",
    ) -> None:
        self.meta = meta
        self.stream = stream
        self.tools = tools
        self.logprobs = logprobs
        self.call_id = call_id
        names = tools.names if tools is not None else None
        self.choices = [
            _ChatChoice(i, OutputSplitter(names) if names is not None else None) for i in range(n)
        ]

    def _chunk(
        self, choices: tuple[wire.ChunkChoice, ...], usage: wire.Usage | None = None
    ) -> wire.ChatCompletionChunk:
        return wire.ChatCompletionChunk(
            id=self.meta.id,
            created=self.meta.created,
            model=self.meta.model,
            choices=choices,
            usage=usage,
        )

    def _delta(
        self, index: int, delta: wire.Delta, entries: tuple[wire.LogprobEntry, ...] = ()
    ) -> wire.ChatCompletionChunk:
        logprobs = wire.ChatLogprobs(content=entries) if entries else None
        return self._chunk((wire.ChunkChoice(index=index, delta=delta, logprobs=logprobs),))

    def opening(self) -> list[object]:
        return [
            self._delta(c.index, wire.Delta(role="assistant", content="")) for c in self.choices
        ]

    def feed(self, event: TokenEvent) -> list[object]:
        choice = self.choices[event.index]
        entries = (
            tuple(wire.LogprobEntry.from_engine(e) for e in event.logprobs) if self.logprobs else ()
        )
        choice.logprobs.extend(entries)
        text = _content(choice.splitter.push(event.text)) if choice.splitter else event.text
        chunks: list[object] = []
        if text:
            choice.content.append(text)
        if self.stream and (text or entries):
            chunks.append(self._delta(choice.index, wire.Delta(content=text), entries))
        if event.finish_reason is not None:
            chunks += self._finish(choice, event.finish_reason)
        return chunks

    def _finish(self, choice: _ChatChoice, reason: wire.FinishReason) -> list[object]:
        chunks: list[object] = []
        if choice.splitter is not None:
            events = choice.splitter.finish()
            tail = _content(events)
            if tail:
                choice.content.append(tail)
                if self.stream:
                    chunks.append(self._delta(choice.index, wire.Delta(content=tail)))
            choice.calls = tuple(
                ToolCall(id=self.call_id(), function=function) for function in _calls(events)
            )
            if choice.calls and reason == "stop":
                reason = "tool_calls"
            if choice.calls and self.stream:
                deltas = tuple(
                    wire.ToolCallDelta(index=i, id=call.id, function=call.function)
                    for i, call in enumerate(choice.calls)
                )
                chunks.append(self._delta(choice.index, wire.Delta(tool_calls=deltas)))
        choice.finish = reason
        if self.stream:
            chunks.append(self._closing(choice.index, reason))
        return chunks

    def _closing(self, index: int, reason: wire.FinishReason) -> wire.ChatCompletionChunk:
        return self._chunk(
            (wire.ChunkChoice(index=index, delta=wire.Delta(), finish_reason=reason),)
        )

    def ending(self) -> list[object]:
        return [self._closing(c.index, "stop") for c in self.choices if c.finish is None]

    def usage_chunk(self, usage: wire.Usage) -> object:
        return self._chunk((), usage)

    def whole(self, usage: wire.Usage) -> object:
        choices = []
        for c in self.choices:
            if c.finish is None and c.splitter is not None:
                self._finish(c, "stop")
            content = "".join(c.content)
            message = wire.AssistantMessage(
                content=None if c.calls and not content.strip() else content,
                tool_calls=c.calls or None,
            )
            logprobs = wire.ChatLogprobs(content=tuple(c.logprobs)) if self.logprobs else None
            choices.append(
                wire.ChatChoice(
                    index=c.index,
                    message=message,
                    logprobs=logprobs,
                    finish_reason=c.finish or "stop",
                )
            )
        return wire.ChatCompletion(
            id=self.meta.id,
            created=self.meta.created,
            model=self.meta.model,
            choices=tuple(choices),
            usage=usage,
        )


def _content(events: list[OutputEvent]) -> str:
    return "".join(e.text for e in events if isinstance(e, Content))


def _calls(events: list[OutputEvent]) -> list[FunctionCall]:
    """The whole calls among ``events`` (OpenAI chat sends each call in one delta)."""
    names: dict[int, str] = {}
    arguments: dict[int, list[str]] = {}
    for e in events:
        if isinstance(e, CallStart):
            names[e.index], arguments[e.index] = e.name, []
        elif isinstance(e, CallArguments):
            arguments[e.index].append(e.json)
    return [FunctionCall(name=names[i], arguments="".join(arguments[i])) for i in names]


# -- text completions -------------------------------------------------------------------------


@define
class _TextChoice:
    index: int
    offset: int  # where the next token starts in the choice's text (echo included)
    text: list[str] = field(factory=list)
    tokens: list[str] = field(factory=list)
    token_logprobs: list[float] = field(factory=list)
    top_logprobs: list[dict[str, float]] = field(factory=list)
    text_offset: list[int] = field(factory=list)
    finish: wire.FinishReason | None = None

    def add_logprobs(self, event: TokenEvent) -> wire.CompletionLogprobs:
        """Record the event's logprobs; the part of the legacy lists they make."""
        start = len(self.tokens)
        for entry in event.logprobs:
            token = wire.token_text(entry.piece)
            self.tokens.append(token)
            self.token_logprobs.append(entry.logprob)
            self.top_logprobs.append({wire.token_text(t.piece): t.logprob for t in entry.top})
            self.text_offset.append(self.offset)
            self.offset += len(token)
        return self.logprobs(start)

    def logprobs(self, start: int = 0) -> wire.CompletionLogprobs:
        return wire.CompletionLogprobs(
            tokens=tuple(self.tokens[start:]),
            token_logprobs=tuple(self.token_logprobs[start:]),
            top_logprobs=tuple(self.top_logprobs[start:]),
            text_offset=tuple(self.text_offset[start:]),
        )


class TextFormat:
    """Legacy completions: ``text``, optionally after the echoed prompt, and logprobs."""

    def __init__(
        self,
        meta: Meta,
        *,
        n: int = 1,
        stream: bool = False,
        logprobs: bool = False,
        echo: str = "",
    ) -> None:
        self.meta = meta
        self.stream = stream
        self.logprobs = logprobs
        self.echo = echo
        self.choices = [_TextChoice(i, offset=len(echo)) for i in range(n)]

    def _chunk(
        self, choices: tuple[wire.CompletionChoice, ...], usage: wire.Usage | None = None
    ) -> wire.CompletionChunk:
        return wire.CompletionChunk(
            id=self.meta.id,
            created=self.meta.created,
            model=self.meta.model,
            choices=choices,
            usage=usage,
        )

    def opening(self) -> list[object]:
        if not self.echo:
            return []
        return [
            self._chunk((wire.CompletionChoice(index=c.index, text=self.echo),))
            for c in self.choices
        ]

    def feed(self, event: TokenEvent) -> list[object]:
        choice = self.choices[event.index]
        logprobs = choice.add_logprobs(event) if self.logprobs else None
        if event.text:
            choice.text.append(event.text)
        chunks: list[object] = []
        if self.stream and (event.text or (event.logprobs and self.logprobs)):
            piece = wire.CompletionChoice(index=choice.index, text=event.text, logprobs=logprobs)
            chunks.append(self._chunk((piece,)))
        if event.finish_reason is not None:
            choice.finish = event.finish_reason
            if self.stream:
                chunks.append(self._closing(choice.index, event.finish_reason))
        return chunks

    def _closing(self, index: int, reason: wire.FinishReason) -> wire.CompletionChunk:
        return self._chunk((wire.CompletionChoice(index=index, text="", finish_reason=reason),))

    def ending(self) -> list[object]:
        return [self._closing(c.index, "stop") for c in self.choices if c.finish is None]

    def usage_chunk(self, usage: wire.Usage) -> object:
        return self._chunk((), usage)

    def whole(self, usage: wire.Usage) -> object:
        choices = tuple(
            wire.CompletionChoice(
                index=c.index,
                text=self.echo + "".join(c.text),
                logprobs=c.logprobs() if self.logprobs else None,
                finish_reason=c.finish or "stop",
            )
            for c in self.choices
        )
        return wire.Completion(
            id=self.meta.id,
            created=self.meta.created,
            model=self.meta.model,
            choices=choices,
            usage=usage,
        )
