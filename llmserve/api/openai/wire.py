"""The OpenAI wire format: frozen attrs classes for requests and responses.

Requests are structured from JSON by ``codec``; unknown fields are ignored, as OpenAI does.
Range checks raise ``InvalidRequest`` naming the field, so the 400 says what to fix. Response
fields that default to ``None`` are left out of the JSON when unset, except those marked
``KEEP_NULL``, which OpenAI always writes (``finish_reason`` of a stream chunk, ``logprobs``).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any, Literal, TypeVar

import attrs
from attrs import Attribute, field, frozen

from llmserve.api.openai.wire_tools import (
    ResponseFormat,
    Tool,
    ToolCall,
    ToolChoice,
    ToolUse,
    output_grammar,
    tool_use,
)
from llmserve.engine import protocol
from llmserve.errors import InvalidRequest
from llmserve.prompt import switches, toolformats

KEEP_NULL = "llmserve.keep_null"  # field metadata: write this field even when it is None

Role = Literal["system", "user", "assistant", "developer", "tool"]
FinishReason = Literal["stop", "length", "tool_calls"]
# OpenAI's bias range; its ends ban or force a token.
LOGIT_BIAS_LIMIT = 100.0
# Stop strings are matched against every generated piece: thousands of them, or long ones, would
# slow every slot's step. OpenAI allows 4; these caps are generous and documented in the README.
MAX_STOP_SEQUENCES = 64
MAX_STOP_CHARS = 256

T = TypeVar("T")
_Validator = Callable[[Any, "Attribute[Any]", Any], None]


def _between(low: float, high: float) -> _Validator:
    """A validator for an optional number in [low, high]; NaN fails both comparisons."""

    def check(_: Any, attribute: Attribute[Any], value: float | None) -> None:
        if value is None:
            return
        if not value >= low:
            raise InvalidRequest(
                f"Invalid '{attribute.name}': value below minimum value. "
                f"Expected a value >= {low}, but got {value} instead.",
                param=attribute.name,
            )
        if not value <= high:
            raise InvalidRequest(
                f"Invalid '{attribute.name}': value above maximum value. "
                f"Expected a value <= {high}, but got {value} instead.",
                param=attribute.name,
            )

    return check


def _at_least(low: float) -> _Validator:
    return _between(low, float("inf"))


def _logit_bias(_: Any, attribute: Attribute[Any], value: Mapping[str, float] | None) -> None:
    for key, bias in (value or {}).items():
        if not key.isdigit():
            raise InvalidRequest(
                f"Invalid 'logit_bias': keys must be token ids, as strings, but got {key!r}.",
                param="logit_bias",
            )
        if not -LOGIT_BIAS_LIMIT <= bias <= LOGIT_BIAS_LIMIT:
            raise InvalidRequest(
                f"Invalid 'logit_bias': the bias of token {key} must be in [-100, 100], "
                f"but got {bias}.",
                param="logit_bias",
            )


def _non_empty(_: Any, attribute: Attribute[Any], value: tuple[object, ...]) -> None:
    if not value:
        raise InvalidRequest(
            f"Invalid '{attribute.name}': empty array. Expected an array with minimum "
            "length 1, but got an empty array instead.",
            param=attribute.name,
        )


def _non_empty_stops(
    _: Any, attribute: Attribute[Any], value: str | tuple[str, ...] | None
) -> None:
    stops = (value,) if isinstance(value, str) else value or ()
    if any(not stop for stop in stops):
        raise InvalidRequest("Invalid 'stop': stop sequences must not be empty.", param="stop")
    if len(stops) > MAX_STOP_SEQUENCES:
        raise InvalidRequest(
            f"Invalid 'stop': at most {MAX_STOP_SEQUENCES} stop sequences are allowed, "
            f"but got {len(stops)}.",
            param="stop",
        )
    if any(len(stop) > MAX_STOP_CHARS for stop in stops):
        raise InvalidRequest(
            f"Invalid 'stop': a stop sequence may be at most {MAX_STOP_CHARS} characters long.",
            param="stop",
        )


# -- requests ---------------------------------------------------------------------------------


@frozen
class ContentPart:
    """One part of a message's content; only ``text`` parts are supported."""

    type: str
    text: str | None = None


@frozen
class ChatMessage:
    role: Role
    content: str | tuple[ContentPart, ...] | None = None
    name: str | None = None
    tool_calls: tuple[ToolCall, ...] | None = None  # an assistant turn's calls
    tool_call_id: str | None = None  # a tool turn: the call it answers


@frozen
class StreamOptions:
    include_usage: bool = False


@frozen(kw_only=True)
class SamplingRequest:
    """Fields shared by chat and text completions."""

    model: str | None = None  # any name is served by the one loaded model
    max_tokens: int | None = field(default=None, validator=_at_least(1))
    max_completion_tokens: int | None = field(default=None, validator=_at_least(1))
    temperature: float | None = field(default=None, validator=_between(0, 2))
    top_p: float | None = field(default=None, validator=_between(0, 1))
    top_k: int | None = field(default=None, validator=_at_least(0))
    min_p: float | None = field(default=None, validator=_between(0, 1))
    presence_penalty: float | None = field(default=None, validator=_between(-2, 2))
    frequency_penalty: float | None = field(default=None, validator=_between(-2, 2))
    repeat_penalty: float | None = field(default=None, validator=_at_least(0))
    seed: int | None = None
    stop: str | tuple[str, ...] | None = field(default=None, validator=_non_empty_stops)
    stream: bool = False
    stream_options: StreamOptions | None = None
    n: int = field(default=1, validator=_between(1, 128))
    logit_bias: dict[str, float] | None = field(default=None, validator=_logit_bias)
    user: str | None = None
    # llama-server's switch: false computes the prompt from scratch (no reused KV), for
    # greedy output that does not depend on the cache; None: [cache] cache_prompt.
    cache_prompt: bool | None = None

    @property
    def include_usage(self) -> bool:
        return self.stream_options is not None and self.stream_options.include_usage

    def generation(self, prompt: str | tuple[int, ...]) -> protocol.GenerationRequest:
        """The engine request for ``prompt`` with this request's limits and sampling."""
        # max_completion_tokens is the newer name; it wins when a client sends both.
        max_tokens = (
            self.max_completion_tokens
            if self.max_completion_tokens is not None
            else self.max_tokens
        )
        defaults = protocol.SamplingParams()
        sampling = protocol.SamplingParams(
            temperature=_or(self.temperature, defaults.temperature),
            top_p=_or(self.top_p, defaults.top_p),
            top_k=_or(self.top_k, defaults.top_k),
            min_p=_or(self.min_p, defaults.min_p),
            presence_penalty=_or(self.presence_penalty, defaults.presence_penalty),
            frequency_penalty=_or(self.frequency_penalty, defaults.frequency_penalty),
            repeat_penalty=_or(self.repeat_penalty, defaults.repeat_penalty),
            seed=self.seed,
            logit_bias=tuple(
                (int(token), _bias(bias)) for token, bias in (self.logit_bias or {}).items()
            ),
        )
        stop = (self.stop,) if isinstance(self.stop, str) else tuple(self.stop or ())
        return protocol.GenerationRequest(
            prompt=prompt,
            max_tokens=max_tokens,
            stop=stop,
            sampling=sampling,
            n=self.n,
            cache_prompt=self.cache_prompt,
        )


def _bias(bias: float) -> float:
    # A bias of -100 bans the token (OpenAI's meaning); a finite one could lose to a large logit.
    return float("-inf") if bias <= -LOGIT_BIAS_LIMIT else bias


def _or(value: T | None, default: T) -> T:
    return default if value is None else value


@frozen(kw_only=True)
class ChatCompletionRequest(SamplingRequest):
    messages: tuple[ChatMessage, ...] = field(validator=_non_empty)
    tools: tuple[Tool, ...] | None = None
    tool_choice: ToolChoice | None = None
    parallel_tool_calls: bool = True
    response_format: ResponseFormat | None = None
    logprobs: bool = False
    top_logprobs: int | None = field(default=None, validator=_between(0, 20))
    # Extra chat template variables (llama-server's and vLLM's field), and OpenAI's reasoning
    # switch, which the template gets as ``reasoning_effort`` and ``enable_thinking``.
    chat_template_kwargs: dict[str, Any] | None = None
    reasoning_effort: switches.ReasoningEffort | None = None

    def template_variables(self) -> dict[str, Any]:
        """The request's extra template variables: its chat_template_kwargs win."""
        return {
            **switches.effort_variables(self.reasoning_effort),
            **switches.request_variables(self.chat_template_kwargs, param="chat_template_kwargs"),
        }

    def tool_use(self) -> ToolUse | None:
        return tool_use(self.tools, self.tool_choice)

    def template_tools(self) -> list[dict[str, Any]] | None:
        """The tools as the chat template takes them (OpenAI's JSON), None if it gets none."""
        use = self.tool_use()
        return None if use is None else [_tool_dict(tool) for tool in use.tools]

    def generation(
        self, prompt: str | tuple[int, ...], family: toolformats.Family | None = None
    ) -> protocol.GenerationRequest:
        """The engine request; ``family`` (the model's tool-call family) shapes forced calls
        and whether control tokens render as text."""
        family = family or toolformats.family("hermes")
        if self.top_logprobs is not None and not self.logprobs:
            raise InvalidRequest(
                "Invalid value for 'top_logprobs': 'logprobs' must be true to use it.",
                param="top_logprobs",
            )
        use = self.tool_use()
        grammar = output_grammar(
            self.response_format,
            use,
            parallel=self.parallel_tool_calls,
            family=family,
            prompt=prompt if isinstance(prompt, str) else "",
        )
        return attrs.evolve(
            super().generation(prompt),
            grammar=grammar,
            special_tokens=use is not None or family.special_always,
            logprobs=(self.top_logprobs or 0) if self.logprobs else None,
        )

    def template_messages(self) -> list[dict[str, Any]]:
        """Messages as the chat template takes them: role, plain-text content, and the tool
        calls and call ids of tool turns (arguments as objects, as templates expect)."""
        rendered: list[dict[str, Any]] = []
        for i, message in enumerate(self.messages):
            entry: dict[str, Any] = {"role": message.role, "content": _message_text(message, i)}
            if message.name is not None:
                entry["name"] = message.name
            if message.tool_calls:
                entry["tool_calls"] = [_call_dict(call) for call in message.tool_calls]
            if message.tool_call_id is not None:
                entry["tool_call_id"] = message.tool_call_id
            rendered.append(entry)
        return rendered


def _tool_dict(tool: Tool) -> dict[str, Any]:
    function: dict[str, Any] = {"name": tool.function.name}
    if tool.function.description is not None:
        function["description"] = tool.function.description
    if tool.function.parameters is not None:
        function["parameters"] = tool.function.parameters
    return {"type": "function", "function": function}


def _call_dict(call: ToolCall) -> dict[str, Any]:
    try:
        arguments: Any = json.loads(call.function.arguments)
    except ValueError:
        arguments = call.function.arguments  # not JSON: the template gets the text
    return {
        "id": call.id,
        "type": "function",
        "function": {"name": call.function.name, "arguments": arguments},
    }


def _message_text(message: ChatMessage, index: int) -> str:
    if message.content is None:
        return ""  # an assistant turn that only carried tool calls
    if isinstance(message.content, str):
        return message.content
    texts: list[str] = []
    for j, part in enumerate(message.content):
        if part.type != "text":
            raise InvalidRequest(
                f"Content parts of type '{part.type}' are not supported; only 'text' parts are.",
                param=f"messages[{index}].content[{j}].type",
            )
        if part.text is None:
            raise InvalidRequest(
                "Missing required parameter: 'text' of a text content part.",
                param=f"messages[{index}].content[{j}].text",
            )
        texts.append(part.text)
    return "\n".join(texts)


@frozen(kw_only=True)
class CompletionRequest(SamplingRequest):
    # codec normalises str | [str] | [int] | [[int]] to one prompt: text or token ids
    prompt: str | tuple[int, ...]
    echo: bool = False
    suffix: str | None = None  # fill-in-the-middle models only
    logprobs: int | None = field(default=None, validator=_between(0, 5))

    def generation(self, prompt: str | tuple[int, ...]) -> protocol.GenerationRequest:
        if self.echo and self.logprobs is not None:
            raise InvalidRequest(
                "'echo' together with 'logprobs' is not supported: this server does not "
                "compute log-probabilities of prompt tokens.",
                param="echo",
            )
        return attrs.evolve(super().generation(prompt), logprobs=self.logprobs, suffix=self.suffix)


# -- responses --------------------------------------------------------------------------------


@frozen(kw_only=True)
class PromptTokensDetails:
    cached_tokens: int


@frozen(kw_only=True)
class Usage:
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    prompt_tokens_details: PromptTokensDetails | None = None

    @classmethod
    def from_engine(cls, usage: protocol.Usage) -> Usage:
        return cls(
            prompt_tokens=usage.prompt_tokens,
            completion_tokens=usage.completion_tokens,
            total_tokens=usage.total_tokens,
            prompt_tokens_details=PromptTokensDetails(cached_tokens=usage.cached_tokens),
        )


@frozen(kw_only=True)
class TopLogprob:
    token: str
    logprob: float
    bytes: tuple[int, ...]


@frozen(kw_only=True)
class LogprobEntry:
    token: str
    logprob: float
    bytes: tuple[int, ...]
    top_logprobs: tuple[TopLogprob, ...]

    @classmethod
    def from_engine(cls, entry: protocol.TokenLogprob) -> LogprobEntry:
        return cls(
            token=token_text(entry.piece),
            logprob=entry.logprob,
            bytes=tuple(entry.piece),
            top_logprobs=tuple(
                TopLogprob(token=token_text(t.piece), logprob=t.logprob, bytes=tuple(t.piece))
                for t in entry.top
            ),
        )


def token_text(piece: bytes) -> str:
    """A token as text; bytes of a partial UTF-8 character show as \\xNN, as OpenAI's do."""
    return piece.decode("utf-8", errors="backslashreplace")


@frozen(kw_only=True)
class ChatLogprobs:
    content: tuple[LogprobEntry, ...]
    refusal: None = field(default=None, metadata={KEEP_NULL: True})


@frozen(kw_only=True)
class AssistantMessage:
    role: Literal["assistant"] = "assistant"
    content: str | None = field(metadata={KEEP_NULL: True})
    # OpenAI's schema requires it (string or null); schema-generated clients reject its absence.
    # This server never refuses, so it is always null.
    refusal: None = field(default=None, metadata={KEEP_NULL: True})
    reasoning_content: str | None = None  # <think> and the like, as llama-server sends it
    tool_calls: tuple[ToolCall, ...] | None = None


@frozen(kw_only=True)
class ChatChoice:
    index: int
    message: AssistantMessage
    logprobs: ChatLogprobs | None = field(default=None, metadata={KEEP_NULL: True})
    finish_reason: FinishReason | None = field(default=None, metadata={KEEP_NULL: True})


@frozen(kw_only=True)
class ChatCompletion:
    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int
    model: str
    choices: tuple[ChatChoice, ...]
    usage: Usage


@frozen(kw_only=True)
class FunctionCallDelta:
    """A call's name (first delta only) and the next piece of its arguments."""

    name: str | None = None
    arguments: str = ""


@frozen(kw_only=True)
class ToolCallDelta:
    """A piece of a call, as OpenAI streams it: the first has the call's id, type and name,
    the next ones only (pieces of) its arguments."""

    index: int
    id: str | None = None
    type: Literal["function"] | None = None
    function: FunctionCallDelta


@frozen(kw_only=True)
class Delta:
    role: Literal["assistant"] | None = None
    content: str | None = None
    reasoning_content: str | None = None
    tool_calls: tuple[ToolCallDelta, ...] | None = None


@frozen(kw_only=True)
class OpeningDelta:
    """A choice's first delta: its role, and ``"refusal": null`` as OpenAI's first delta has
    (the schema's delta lists refusal, string or null; this server never refuses)."""

    role: Literal["assistant"] = "assistant"
    content: str = ""
    refusal: None = field(default=None, metadata={KEEP_NULL: True})


@frozen(kw_only=True)
class ChunkChoice:
    index: int
    # A union, so that the codec writes each delta by its own class.
    delta: Delta | OpeningDelta
    logprobs: ChatLogprobs | None = field(default=None, metadata={KEEP_NULL: True})
    finish_reason: FinishReason | None = field(default=None, metadata={KEEP_NULL: True})


@frozen(kw_only=True)
class ChatCompletionChunk:
    id: str
    object: Literal["chat.completion.chunk"] = "chat.completion.chunk"
    created: int
    model: str
    choices: tuple[ChunkChoice, ...]
    usage: Usage | None = None


@frozen(kw_only=True)
class ChatCompletionChunkBeforeUsage(ChatCompletionChunk):
    """A chunk of a stream that asked for usage (``stream_options.include_usage``): every
    chunk before the usage chunk carries ``"usage": null``, as OpenAI's schema describes."""

    usage: Usage | None = field(default=None, metadata={KEEP_NULL: True})


@frozen(kw_only=True)
class CompletionLogprobs:
    """The legacy completions' logprobs: parallel lists, one entry per generated token."""

    tokens: tuple[str, ...]
    token_logprobs: tuple[float, ...]
    top_logprobs: tuple[dict[str, float], ...]
    text_offset: tuple[int, ...]


@frozen(kw_only=True)
class CompletionChoice:
    index: int
    text: str
    logprobs: CompletionLogprobs | None = field(default=None, metadata={KEEP_NULL: True})
    finish_reason: FinishReason | None = field(default=None, metadata={KEEP_NULL: True})


@frozen(kw_only=True)
class Completion:
    id: str
    object: Literal["text_completion"] = "text_completion"
    created: int
    model: str
    choices: tuple[CompletionChoice, ...]
    usage: Usage


@frozen(kw_only=True)
class CompletionChunk:
    id: str
    object: Literal["text_completion"] = "text_completion"
    created: int
    model: str
    choices: tuple[CompletionChoice, ...]
    usage: Usage | None = None


@frozen(kw_only=True)
class CompletionChunkBeforeUsage(CompletionChunk):
    """A text completion chunk of a stream that asked for usage: ``"usage": null``."""

    usage: Usage | None = field(default=None, metadata={KEEP_NULL: True})


@frozen(kw_only=True)
class ModelCard:
    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str

    @classmethod
    def from_engine(cls, info: protocol.ModelInfo) -> ModelCard:
        return cls(id=info.id, created=info.created, owned_by=info.owned_by)


@frozen(kw_only=True)
class ModelList:
    object: Literal["list"] = "list"
    data: tuple[ModelCard, ...]
