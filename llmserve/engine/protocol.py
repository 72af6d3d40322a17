"""What the HTTP layer sees of an engine: the protocol and its plain data types."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any, Literal, Protocol

from attrs import field, frozen

FinishReason = Literal["stop", "length"]


@frozen
class SamplingParams:
    """Sampling settings of one request; defaults sample from the model unchanged."""

    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0  # 0 disables top-k
    min_p: float = 0.0
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    repeat_penalty: float = 1.0  # 1.0 disables; a llama.cpp extension
    seed: int | None = None  # None: a fresh random seed per request


@frozen
class GenerationRequest:
    """One generation: a prompt (text or token ids) and how to continue it."""

    prompt: str | tuple[int, ...]
    max_tokens: int | None = None  # None: until end of generation or the context is full
    stop: tuple[str, ...] = ()
    sampling: SamplingParams = field(factory=SamplingParams)


@frozen
class Usage:
    """Exact token counts of one finished generation."""

    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


@frozen
class TokenEvent:
    """A piece of generated text; the last event of a generation has finish_reason and usage.

    ``text`` is always whole UTF-8 characters and never contains (part of) a stop string.
    ``tokens`` is how many generated tokens this event accounts for (may be 0 or several).
    ``queue_wait_s``, on the first event only, is how long the request waited for a slot.
    """

    text: str
    tokens: int = 0
    finish_reason: FinishReason | None = None
    usage: Usage | None = None
    queue_wait_s: float | None = None


@frozen
class ModelInfo:
    """A served model as /v1/models lists it."""

    id: str
    created: int
    owned_by: str = "llmserve"
    n_ctx: int = 0
    path: str = ""


@frozen
class CacheSnapshot:
    """Prefix cache counters; ``tier``-keyed maps have "ram" and "disk"."""

    hits: int = 0
    misses: int = 0
    tokens_saved: int = 0
    evictions: Mapping[str, int] = field(factory=dict)
    bytes: Mapping[str, int] = field(factory=dict)
    entries: Mapping[str, int] = field(factory=dict)


@frozen
class EngineStats:
    """A snapshot for /health and /metrics."""

    running: int = 0
    waiting: int = 0
    cache_hit_rate: float = 0.0
    loaded: bool = False
    cache: CacheSnapshot = field(factory=CacheSnapshot)


class Generation(Protocol):
    """A submitted generation: iterate for events; cancel to free its slot early."""

    def __aiter__(self) -> AsyncIterator[TokenEvent]: ...

    def cancel(self) -> None: ...


class Engine(Protocol):
    """The engine as the HTTP layer uses it."""

    @property
    def model_id(self) -> str: ...

    def models(self) -> Sequence[ModelInfo]: ...

    def stats(self) -> EngineStats: ...

    def render_chat(self, messages: Sequence[Mapping[str, Any]]) -> str:
        """Turn chat messages into prompt text with the model's chat template."""
        ...

    async def submit(self, request: GenerationRequest) -> Generation:
        """Validate (tokenize, check the context) and queue a request.

        Raises InvalidRequest / ContextLengthExceeded / EngineOverloaded before anything is
        generated, so a streaming route can still answer with a plain HTTP error.
        """
        ...

    async def start(self) -> None: ...

    async def stop(self) -> None: ...
