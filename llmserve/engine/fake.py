"""FakeEngine: a scripted Engine for HTTP tests — no model, deterministic, instant.

It "generates" a fixed list of text pieces, one token each, honouring ``max_tokens`` (finish
reason ``length``) and stop strings (``stop``; the stop string itself is never emitted, as the
protocol requires). A prompt costs one token per whitespace-separated word, or one per id.
It records what it was asked and how generations ended, and can be told to fail, to load
slowly (``start_gate``) or not at all (``start_error``).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any

from attrs import define, field

from llmserve.engine.protocol import (
    Embeddings,
    EngineStats,
    FinishReason,
    GenerationRequest,
    ModelInfo,
    ReplicaStats,
    TokenEvent,
    Usage,
)
from llmserve.errors import ContextLengthExceeded, InvalidRequest, LLMServeError

DEFAULT_PIECES = ("Hello", ",", " world", "!")
EMBEDDING_DIMENSIONS = 8
FAKE_BOS = 256


def count_prompt_tokens(prompt: str | tuple[int, ...]) -> int:
    """The fake's tokenizer: words of text, or the ids themselves."""
    return len(prompt) if isinstance(prompt, tuple) else len(prompt.split())


def _script(
    pieces: Sequence[str], max_tokens: int | None, stop: tuple[str, ...]
) -> tuple[list[str], FinishReason, str | None]:
    """The pieces to emit, why generation ends and the stop string that ended it, if any."""
    budget = list(pieces if max_tokens is None else pieces[:max_tokens])
    text = "".join(budget)
    found = [(i, s) for s in stop if s and (i := text.find(s)) >= 0]
    if not found:
        return budget, "length" if len(budget) < len(pieces) else "stop", None
    cut, matched = min(found, key=lambda hit: hit[0])
    emitted: list[str] = []
    position = 0
    for piece in budget:
        if position >= cut:
            break
        emitted.append(piece[: cut - position])
        position += len(piece)
    return emitted, "stop", matched


@define
class FakeGeneration:
    """One scripted generation; async-iterate it for events."""

    engine: FakeEngine
    pieces: list[str]
    finish_reason: FinishReason
    prompt_tokens: int
    stop_sequence: str | None = None
    cancelled: bool = False
    finished: bool = False
    released: bool = False

    async def __aiter__(self) -> AsyncIterator[TokenEvent]:
        engine = self.engine
        try:
            for i, piece in enumerate(self.pieces):
                if self.cancelled:
                    return
                if engine.fail_after is not None and i >= engine.fail_after:
                    raise engine.fail_with
                if engine.delay_s:
                    await asyncio.sleep(engine.delay_s)
                last = i == len(self.pieces) - 1 and engine.finish_on_last_piece
                yield TokenEvent(
                    text=piece,
                    tokens=1,
                    finish_reason=self.finish_reason if last else None,
                    usage=self._usage() if last else None,
                    stop_sequence=self.stop_sequence if last else None,
                    queue_wait_s=engine.queue_wait_s if i == 0 else None,
                )
            if not engine.finish_on_last_piece or not self.pieces:
                yield TokenEvent(
                    text="",
                    finish_reason=self.finish_reason,
                    usage=self._usage(),
                    stop_sequence=self.stop_sequence,
                )
            self.finished = True
        finally:
            self._release()

    def _release(self) -> None:
        if not self.released:
            self.released = True
            self.engine.running -= 1

    def _usage(self) -> Usage:
        return Usage(
            prompt_tokens=self.prompt_tokens,
            completion_tokens=len(self.pieces),
            cached_tokens=self.engine.cached_tokens,
            draft_accepted=self.engine.draft_accepted,
            cache_written_tokens=self.engine.cache_written_tokens,
        )

    def cancel(self) -> None:
        self.engine.cancels += 1
        self.cancelled = True
        self._release()


@define
class FakeEngine:
    """An Engine for tests. Set ``submit_error`` to make ``submit`` raise it."""

    pieces: Sequence[str] = DEFAULT_PIECES
    model_id: str = "fake-model"
    n_ctx: int = 4096
    created: int = 1_700_000_000
    cached_tokens: int = 0
    draft_accepted: int = 0  # reported in usage, as if speculative drafts were accepted
    cache_written_tokens: int = 0  # reported in usage, as if a checkpoint save stored them
    cache_hit_rate: float = 0.0
    delay_s: float = 0.0  # between pieces, to test disconnects
    finish_on_last_piece: bool = False  # True: no separate empty final event
    submit_error: LLMServeError | None = None
    fail_after: int | None = None  # raise fail_with after this many pieces
    fail_with: LLMServeError = field(factory=lambda: LLMServeError("scripted failure"))
    queue_wait_s: float | None = None  # reported on the first event
    start_gate: threading.Event | None = None  # start() waits for it to be set
    family: str = "hermes"  # the tool-call family tool_format() reports
    syntax: str = ""  # the syntax tool_syntax() reports ("": the family's default)
    render_gate: threading.Event | None = None  # render_chat() waits for it (a slow template)
    start_error: LLMServeError | None = None  # start() raises it
    loaded: bool = False
    stopped: bool = False
    starts: int = 0  # start() calls that loaded
    running: int = 0
    replicas: tuple[ReplicaStats, ...] = ()  # reported as its contexts; their sums as its load
    cancels: int = 0  # cancel() calls over all generations
    requests: list[GenerationRequest] = field(factory=list)
    tools: list[list[dict[str, Any]] | None] = field(factory=list)  # per render_chat call
    chats: list[list[dict[str, Any]]] = field(factory=list)
    variables: list[dict[str, Any]] = field(factory=list)  # per render_chat call
    generations: list[FakeGeneration] = field(factory=list)

    def models(self) -> Sequence[ModelInfo]:
        return (ModelInfo(id=self.model_id, created=self.created, n_ctx=self.n_ctx),)

    def stats(self) -> EngineStats:
        return EngineStats(
            running=self.running + sum(r.running for r in self.replicas),
            waiting=sum(r.waiting for r in self.replicas),
            cache_hit_rate=self.cache_hit_rate,
            loaded=self.loaded,
            replicas=self.replicas,
        )

    def served_id(self, model: str | None) -> str:
        return self.model_id

    async def resolve(self, model: str | None) -> str:
        return self.served_id(model)

    def render_chat(
        self,
        messages: Sequence[Mapping[str, Any]],
        model: str | None = None,
        *,
        tools: Sequence[Mapping[str, Any]] | None = None,
        variables: Mapping[str, Any] | None = None,
    ) -> str:
        self.chats.append([dict(m) for m in messages])
        self.tools.append(None if tools is None else [dict(t) for t in tools])
        self.variables.append(dict(variables or {}))
        if self.render_gate is not None:
            self.render_gate.wait(timeout=60)
        turns = "".join(f"<|{m['role']}|> {m['content']}\n" for m in messages)
        return f"{turns}<|assistant|>"

    def tool_format(self, model: str | None = None) -> str:
        return self.family

    def tool_syntax(self, model: str | None = None) -> str:
        return self.syntax

    async def embed(
        self, inputs: Sequence[str | tuple[int, ...]], model: str | None = None
    ) -> Embeddings:
        """Unit vectors that depend on the input only: one hot at len(input) % dimensions."""
        vectors = tuple(
            tuple(float(i == len(x) % EMBEDDING_DIMENSIONS) for i in range(EMBEDDING_DIMENSIONS))
            for x in inputs
        )
        return Embeddings(vectors, prompt_tokens=sum(map(count_prompt_tokens, inputs)))

    async def tokenize_text(
        self, text: str, *, add_special: bool, model: str | None = None
    ) -> list[int]:
        """The fake's vocabulary is bytes; token 256 is BOS."""
        return [*([FAKE_BOS] if add_special else []), *text.encode()]

    async def token_pieces(self, tokens: Sequence[int], model: str | None = None) -> list[bytes]:
        bad = next((t for t in tokens if not 0 <= t <= FAKE_BOS), None)
        if bad is not None:
            raise InvalidRequest(f"token id {bad} is out of range", param="tokens")
        return [b"" if t == FAKE_BOS else bytes([t]) for t in tokens]

    async def submit(self, request: GenerationRequest) -> FakeGeneration:
        self.requests.append(request)
        if self.submit_error is not None:
            raise self.submit_error
        prompt_tokens = count_prompt_tokens(request.prompt)
        wanted = request.max_tokens or 0
        if prompt_tokens + wanted > self.n_ctx:
            raise ContextLengthExceeded(
                prompt_tokens=prompt_tokens, max_tokens=wanted, n_ctx=self.n_ctx
            )
        pieces, finish, matched = _script(self.pieces, request.max_tokens, request.stop)
        generation = FakeGeneration(self, pieces, finish, prompt_tokens, stop_sequence=matched)
        self.generations.append(generation)
        self.running += 1
        return generation

    async def start(self) -> None:
        if self.start_gate is not None:
            await asyncio.to_thread(self.start_gate.wait)
        if self.start_error is not None:
            raise self.start_error
        self.loaded = True
        self.starts += 1

    async def stop(self) -> None:
        self.loaded = False
        self.stopped = True
