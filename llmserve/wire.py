"""The OpenAI wire format: frozen attrs classes for requests and responses.

Requests are structured from JSON by ``codec``; unknown fields are ignored, as OpenAI does.
Range checks raise ``InvalidRequest`` naming the field, so the 400 says what to fix. Response
fields that default to ``None`` are left out of the JSON when unset, except those marked
``KEEP_NULL``, which OpenAI always writes (``finish_reason`` of a stream chunk, ``logprobs``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal, TypeVar

from attrs import Attribute, field, frozen

from llmserve.engine import protocol
from llmserve.errors import InvalidRequest

KEEP_NULL = "llmserve.keep_null"  # field metadata: write this field even when it is None

Role = Literal["system", "user", "assistant", "developer", "tool"]
FinishReason = Literal["stop", "length"]

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


def _unsupported_if_truthy(_: Any, attribute: Attribute[Any], value: object) -> None:
    if value:
        raise InvalidRequest(
            f"'{attribute.name}' is not supported by this server.", param=attribute.name
        )


def _only_one_choice(_: Any, attribute: Attribute[Any], value: int) -> None:
    if value != 1:
        raise InvalidRequest(
            f"Invalid 'n': this server generates exactly one choice per request (n=1), "
            f"but got {value}.",
            param=attribute.name,
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
    n: int = field(default=1, validator=_only_one_choice)
    user: str | None = None

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
        )
        stop = (self.stop,) if isinstance(self.stop, str) else tuple(self.stop or ())
        return protocol.GenerationRequest(
            prompt=prompt, max_tokens=max_tokens, stop=stop, sampling=sampling
        )


def _or(value: T | None, default: T) -> T:
    return default if value is None else value


@frozen(kw_only=True)
class ChatCompletionRequest(SamplingRequest):
    messages: tuple[ChatMessage, ...] = field(validator=_non_empty)

    def template_messages(self) -> list[dict[str, str]]:
        """Messages as the chat template takes them: role and plain-text content."""
        rendered: list[dict[str, str]] = []
        for i, message in enumerate(self.messages):
            entry = {"role": message.role, "content": _message_text(message, i)}
            if message.name is not None:
                entry["name"] = message.name
            rendered.append(entry)
        return rendered


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
    echo: bool = field(default=False, validator=_unsupported_if_truthy)
    suffix: str | None = field(default=None, validator=_unsupported_if_truthy)


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
class AssistantMessage:
    role: Literal["assistant"] = "assistant"
    content: str


@frozen(kw_only=True)
class ChatChoice:
    index: int
    message: AssistantMessage
    logprobs: None = field(default=None, metadata={KEEP_NULL: True})
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
class Delta:
    role: Literal["assistant"] | None = None
    content: str | None = None


@frozen(kw_only=True)
class ChunkChoice:
    index: int
    delta: Delta
    logprobs: None = field(default=None, metadata={KEEP_NULL: True})
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
class CompletionChoice:
    index: int
    text: str
    logprobs: None = field(default=None, metadata={KEEP_NULL: True})
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
