"""What the HTTP layer sees of an engine: the protocol and its plain data types."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from typing import Any, Literal, Protocol

from attrs import field, frozen

# Defined in ops (metrics read them without the engine); the engine fills them in.
from llmserve.ops.stats import CacheSnapshot as CacheSnapshot
from llmserve.ops.stats import EngineStats as EngineStats
from llmserve.ops.stats import KvSnapshot as KvSnapshot
from llmserve.ops.stats import ModelStats as ModelStats
from llmserve.ops.stats import ReplicaStats as ReplicaStats

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
    logit_bias: tuple[tuple[int, float], ...] = ()  # (token id, bias); -inf bans a token


@frozen
class JsonGrammar:
    """Constrain the output to JSON valid against ``schema`` (JSON text, checked by
    ``prompt.grammar``)."""

    schema: str


@frozen
class SchemaRule:
    """A rule of a ``GbnfGrammar`` that the engine writes from a JSON schema (JSON text,
    checked by ``prompt.grammar``): a JSON value valid against it; ``raw``: a string schema
    with a ``pattern``, written as its bare characters (no quotes, no escapes)."""

    name: str
    schema: str
    raw: bool = False


@frozen
class GbnfGrammar:
    """Constrain the output to a GBNF grammar whose start rule is ``root`` (forced tool calls
    in a model family's syntax, ``prompt.toolgrammar``); the rules in ``rules`` are written by
    the engine's JSON-schema converter."""

    text: str
    rules: tuple[SchemaRule, ...] = ()


@frozen
class GenerationRequest:
    """One generation: a prompt (text or token ids) and how to continue it."""

    prompt: str | tuple[int, ...]
    max_tokens: int | None = None  # None: until end of generation or the context is full
    stop: tuple[str, ...] = ()
    sampling: SamplingParams = field(factory=SamplingParams)
    model: str | None = None  # the requested model's name or alias; None: the default model
    n: int = 1  # choices, all from one decode of the prompt
    logprobs: int | None = None  # alternatives per token to report; None: no logprobs
    grammar: JsonGrammar | GbnfGrammar | None = None
    # Control tokens render as their text (``<|python_tag|>``, ``[TOOL_CALLS]``, harmony's
    # ``<|channel|>``): tool-call and reasoning markup is often made of them.
    special_tokens: bool = False
    suffix: str | None = None  # fill in the middle between prompt and suffix (FIM models)
    # False: compute the prompt from scratch in batches of its own (reproducible greedy
    # output); None: the server's [cache] cache_prompt.
    cache_prompt: bool | None = None
    # Where a text prompt's KV is worth keeping (Anthropic cache_control breakpoints), as
    # character offsets into it: the engine saves the state there while reading the prompt.
    checkpoints: tuple[int, ...] = ()


@frozen
class Usage:
    """Exact token counts of one finished generation."""

    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int = 0
    draft_accepted: int = 0  # completion tokens that came from accepted speculative drafts
    # Prompt tokens beyond cached_tokens that a checkpoint save put into the prefix cache
    cache_written_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


@frozen
class TokenEvent:
    """A piece of generated text of choice ``index``; the last event of each choice has its
    finish_reason, and the last event of the whole generation (every choice done) has usage.

    ``text`` is always whole UTF-8 characters and never contains (part of) a stop string.
    ``tokens`` is how many generated tokens this event accounts for (may be 0 or several).
    ``queue_wait_s``, on the first event only, is how long the request waited for a slot.
    ``stop_sequence``, on a finish by a stop string, is that string (Anthropic reports it).
    """

    text: str
    tokens: int = 0
    finish_reason: FinishReason | None = None
    usage: Usage | None = None
    queue_wait_s: float | None = None
    index: int = 0  # the choice (of n) this event belongs to
    logprobs: tuple[TokenLogprob, ...] = ()  # one per token of this event, when asked for
    stop_sequence: str | None = None


@frozen
class TopLogprob:
    """One candidate for a generated position: its token, bytes and log-probability."""

    token: int
    piece: bytes
    logprob: float


@frozen
class TokenLogprob:
    """The log-probability of a generated token under the model (before sampling settings),
    and the ``top`` most likely tokens at its position."""

    token: int
    piece: bytes
    logprob: float
    top: tuple[TopLogprob, ...] = ()


@frozen
class Embeddings:
    """Pooled, L2-normalized embeddings of some inputs, and the tokens they took."""

    vectors: tuple[tuple[float, ...], ...]
    prompt_tokens: int


@frozen
class ModelInfo:
    """A served model as /v1/models lists it."""

    id: str
    created: int
    owned_by: str = "llmserve"
    n_ctx: int = 0
    path: str = ""


@frozen
class TemplateSource:
    """What a loaded model says about its chat template; the prompt layer compiles it."""

    gguf_template: str | None  # tokenizer.chat_template from the GGUF
    override: str | None  # [model] chat_template
    architecture: str
    bos_token: str
    eos_token: str
    tool_format: str | None = None  # [model] tool_format; None: recognised from the template
    # [model] chat_template_kwargs: extra variables of every render
    variables: Mapping[str, Any] = field(factory=dict, hash=False)


class ChatRenderer(Protocol):
    """A compiled chat template (``prompt.chat.ChatTemplate``)."""

    # The tool-call family the prompt layer chose for this template (a name only: the engine
    # knows nothing of families, the API layer reads outputs with it), and the syntax of the
    # family's calls the template teaches (forced calls are written in it).
    tool_format: str
    tool_syntax: str

    def render(
        self,
        messages: Sequence[Mapping[str, Any]],
        *,
        tools: Sequence[Mapping[str, Any]] | None = None,
        variables: Mapping[str, Any] | None = None,
    ) -> str: ...


# Builds a model's renderer when it loads; given to the engine by the app, so that the engine
# needs nothing of the prompt layer above it.
TemplateFactory = Callable[[TemplateSource], ChatRenderer]


class Generation(Protocol):
    """A submitted generation: iterate for events; cancel to free its slot early."""

    def __aiter__(self) -> AsyncIterator[TokenEvent]: ...

    def cancel(self) -> None: ...


class Engine(Protocol):
    """The engine as the HTTP layer uses it."""

    @property
    def model_id(self) -> str:
        """The served model's id; with several, the default (first) one's."""
        ...

    def models(self) -> Sequence[ModelInfo]: ...

    def stats(self) -> EngineStats: ...

    def served_id(self, model: str | None) -> str:
        """The id of the model that would serve the requested name, without loading it.

        Raises ModelNotFound for a name no model has (with one model, every name is its).
        """
        ...

    async def resolve(self, model: str | None) -> str:
        """The id of the model that serves the requested name, once it can serve.

        Raises ModelNotFound for a name no model has (with one model, every name is its);
        a model not in memory is loaded first.
        """
        ...

    def render_chat(
        self,
        messages: Sequence[Mapping[str, Any]],
        model: str | None = None,
        *,
        tools: Sequence[Mapping[str, Any]] | None = None,
        variables: Mapping[str, Any] | None = None,
    ) -> str:
        """Turn chat messages (and the tools the model may call) into prompt text with the
        chat template of ``model``; ``variables``: the request's extra template variables."""
        ...

    def tool_format(self, model: str | None = None) -> str:
        """The tool-call family of ``model``'s chat template (``prompt.toolformats``)."""
        ...

    def tool_syntax(self, model: str | None = None) -> str:
        """The syntax of that family's calls ``model``'s chat template teaches."""
        ...

    async def embed(
        self, inputs: Sequence[str | tuple[int, ...]], model: str | None = None
    ) -> Embeddings:
        """Pooled embeddings of texts or token ids; InvalidRequest for empty or too long."""
        ...

    async def tokenize_text(
        self, text: str, *, add_special: bool, model: str | None = None
    ) -> list[int]:
        """Token ids of ``text`` (special tokens in it parsed), BOS added if ``add_special``."""
        ...

    async def token_pieces(self, tokens: Sequence[int], model: str | None = None) -> list[bytes]:
        """The bytes of each token as output; InvalidRequest for an id outside the vocabulary."""
        ...

    async def submit(self, request: GenerationRequest) -> Generation:
        """Validate (tokenize, check the context) and queue a request.

        Raises InvalidRequest / ContextLengthExceeded / EngineOverloaded before anything is
        generated, so a streaming route can still answer with a plain HTTP error.
        """
        ...

    async def start(self) -> None: ...

    async def stop(self) -> None: ...
