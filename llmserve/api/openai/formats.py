"""How each endpoint spells its answer: one JSON body, or stream chunks, for n choices.

A format is fed the engine's events in order (the choices' events interleave) and keeps what
each choice needs: its text, its logprobs, its finish reason and, for chat with tools, the
separation of content, reasoning and tool calls (``prompt.toolformats``). Streaming, ``feed``
returns the chunks to send now; collecting, it returns none and ``whole`` builds the body.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from attrs import define, field, frozen

from llmserve.api.openai import wire
from llmserve.api.openai.wire_tools import FunctionCall, ToolCall
from llmserve.engine.protocol import TokenEvent
from llmserve.prompt import toolformats


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
class _Call:
    id: str
    name: str
    arguments: list[str] = field(factory=list)


@define
class _ChatChoice:
    index: int
    parser: toolformats.ToolParser
    content: list[str] = field(factory=list)
    reasoning: list[str] = field(factory=list)
    logprobs: list[wire.LogprobEntry] = field(factory=list)
    calls: list[_Call] = field(factory=list)
    finish: wire.FinishReason | None = None


# Makes the parser of one choice's output (``toolformats.stream_parser`` for the model's family).
ParserFactory = Callable[[], toolformats.ToolParser]


def _plain_parser() -> toolformats.ToolParser:
    return toolformats.stream_parser(toolformats.family("hermes"), None)


class ChatFormat:
    """Chat completions: ``message`` / ``delta`` with content, reasoning, tool calls and
    logprobs. Each choice's text goes through its family's parser (``prompt.toolformats``):
    a call streams as OpenAI's do, id, type and name first, then its arguments in pieces."""

    def __init__(
        self,
        meta: Meta,
        *,
        n: int = 1,
        stream: bool = False,
        include_usage: bool = False,
        parser: ParserFactory = _plain_parser,
        logprobs: bool = False,
        call_id: Callable[[], str] = lambda: "call_0",
    ) -> None:
        self.meta = meta
        self.stream = stream
        self.chunk_type = (
            wire.ChatCompletionChunkBeforeUsage if include_usage else wire.ChatCompletionChunk
        )
        self.logprobs = logprobs
        self.call_id = call_id
        self.choices = [_ChatChoice(i, parser()) for i in range(n)]

    def _chunk(
        self, choices: tuple[wire.ChunkChoice, ...], usage: wire.Usage | None = None
    ) -> wire.ChatCompletionChunk:
        return self.chunk_type(
            id=self.meta.id,
            created=self.meta.created,
            model=self.meta.model,
            choices=choices,
            usage=usage,
        )

    def _delta(
        self,
        index: int,
        delta: wire.Delta | wire.OpeningDelta,
        entries: tuple[wire.LogprobEntry, ...] = (),
    ) -> wire.ChatCompletionChunk:
        logprobs = wire.ChatLogprobs(content=entries) if entries else None
        return self._chunk((wire.ChunkChoice(index=index, delta=delta, logprobs=logprobs),))

    def opening(self) -> list[object]:
        return [self._delta(c.index, wire.OpeningDelta()) for c in self.choices]

    def feed(self, event: TokenEvent) -> list[object]:
        choice = self.choices[event.index]
        entries = (
            tuple(wire.LogprobEntry.from_engine(e) for e in event.logprobs) if self.logprobs else ()
        )
        choice.logprobs.extend(entries)
        deltas = self._take(choice, choice.parser.feed(event.text))
        chunks: list[object] = []
        if self.stream:
            if entries and not deltas:
                deltas = [wire.Delta(content="")]  # the logprobs of held-back text
            for i, delta in enumerate(deltas):
                chunks.append(self._delta(choice.index, delta, entries if i == 0 else ()))
        if event.finish_reason is not None:
            chunks += self._finish(choice, event.finish_reason)
        return chunks

    def _take(self, choice: _ChatChoice, events: list[toolformats.ToolEvent]) -> list[wire.Delta]:
        """Record a parser's events; the deltas they stream as."""
        deltas: list[wire.Delta] = []
        for event in events:
            match event:
                case toolformats.Content(text=text):
                    choice.content.append(text)
                    deltas.append(wire.Delta(content=text))
                case toolformats.Reasoning(text=text):
                    choice.reasoning.append(text)
                    deltas.append(wire.Delta(reasoning_content=text))
                case toolformats.CallStart(index=index, name=name):
                    call = _Call(self.call_id(), name)
                    choice.calls.append(call)
                    piece = wire.ToolCallDelta(
                        index=index,
                        id=call.id,
                        type="function",
                        function=wire.FunctionCallDelta(name=name, arguments=""),
                    )
                    deltas.append(wire.Delta(tool_calls=(piece,)))
                case toolformats.CallArguments(index=index, text=text):
                    choice.calls[index].arguments.append(text)
                    piece = wire.ToolCallDelta(
                        index=index, function=wire.FunctionCallDelta(arguments=text)
                    )
                    deltas.append(wire.Delta(tool_calls=(piece,)))
        return deltas

    def _finish(self, choice: _ChatChoice, reason: wire.FinishReason) -> list[object]:
        deltas = self._take(choice, choice.parser.finish())
        # Calls made: "tool_calls", unless max_tokens cut the output ("length", as OpenAI
        # does; the call cut short is still returned).
        if choice.calls and reason == "stop":
            reason = "tool_calls"
        choice.finish = reason
        if not self.stream:
            return []
        chunks: list[object] = [self._delta(choice.index, d) for d in deltas]
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
            if c.finish is None:
                self._finish(c, "stop")
            content = "".join(c.content)
            reasoning = "".join(c.reasoning).strip()
            calls = tuple(
                ToolCall(
                    id=k.id, function=FunctionCall(name=k.name, arguments="".join(k.arguments))
                )
                for k in c.calls
            )
            message = wire.AssistantMessage(
                content=None if calls and not content.strip() else content,
                reasoning_content=reasoning or None,
                tool_calls=calls or None,
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
        include_usage: bool = False,
        logprobs: bool = False,
        echo: str = "",
    ) -> None:
        self.meta = meta
        self.stream = stream
        self.chunk_type = wire.CompletionChunkBeforeUsage if include_usage else wire.CompletionChunk
        self.logprobs = logprobs
        self.echo = echo
        self.choices = [_TextChoice(i, offset=len(echo)) for i in range(n)]

    def _chunk(
        self, choices: tuple[wire.CompletionChoice, ...], usage: wire.Usage | None = None
    ) -> wire.CompletionChunk:
        return self.chunk_type(
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
