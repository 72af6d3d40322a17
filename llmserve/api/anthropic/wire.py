"""The Anthropic Messages wire format: frozen attrs classes for requests and responses.

Requests are structured from JSON by ``anthropic.codec`` (unknown fields are ignored);
content blocks are a union told apart by ``type``. ``cache_control`` marks on tools, system
blocks and content blocks are kept: they are prefix cache hints (``anthropic/breakpoints.py``).
Range checks raise ``InvalidRequest`` naming the field. Response fields that default to
``None`` are left out of the JSON when unset, except those marked ``KEEP_NULL``, which
Anthropic always writes (``stop_reason``, ``stop_sequence``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

from attrs import Attribute, field, frozen

from llmserve.api.openai.wire import KEEP_NULL, MAX_STOP_CHARS, MAX_STOP_SEQUENCES
from llmserve.engine import protocol
from llmserve.errors import InvalidRequest

_Validator = Callable[[Any, "Attribute[Any]", Any], None]


def _between(low: float, high: float) -> _Validator:
    """A validator for an optional number in [low, high]; NaN fails both comparisons."""

    def check(_: Any, attribute: Attribute[Any], value: float | None) -> None:
        if value is not None and not low <= value <= high:
            raise InvalidRequest(
                f"{attribute.name}: Input should be between {low} and {high}, got {value}.",
                param=attribute.name,
            )

    return check


def _non_empty(_: Any, attribute: Attribute[Any], value: tuple[object, ...]) -> None:
    if not value:
        raise InvalidRequest(
            f"{attribute.name}: at least one message is required.", param=attribute.name
        )


def _stops(_: Any, attribute: Attribute[Any], value: tuple[str, ...] | None) -> None:
    stops = value or ()
    if any(not stop for stop in stops):
        raise InvalidRequest("stop_sequences: a stop sequence must not be empty.")
    if len(stops) > MAX_STOP_SEQUENCES:
        raise InvalidRequest(
            f"stop_sequences: at most {MAX_STOP_SEQUENCES} are allowed, got {len(stops)}."
        )
    if any(len(stop) > MAX_STOP_CHARS for stop in stops):
        raise InvalidRequest(
            f"stop_sequences: a stop sequence may be at most {MAX_STOP_CHARS} characters long."
        )


# -- request content blocks -------------------------------------------------------------------


@frozen(kw_only=True)
class CacheControl:
    """A cache breakpoint: the prompt up to the end of the marked block is worth keeping."""

    type: Literal["ephemeral"]
    ttl: Literal["5m", "1h"] | None = None  # accepted; kept entries stay while they fit


@frozen(kw_only=True)
class TextBlock:
    type: Literal["text"]
    text: str
    cache_control: CacheControl | None = None


@frozen(kw_only=True)
class ToolUseBlock:
    """A call the assistant made, sent back in the conversation."""

    type: Literal["tool_use"]
    id: str
    name: str
    input: dict[str, Any]
    cache_control: CacheControl | None = None


@frozen(kw_only=True)
class ToolResultBlock:
    """What a call returned, in a user turn; ``content`` is text or text blocks."""

    type: Literal["tool_result"]
    tool_use_id: str
    content: str | tuple[Block, ...] | None = None
    is_error: bool = False
    cache_control: CacheControl | None = None


@frozen(kw_only=True)
class ThinkingBlock:
    """An earlier turn's reasoning, sent back by clients; it does not reach the prompt."""

    type: Literal["thinking", "redacted_thinking"]


Block = TextBlock | ToolUseBlock | ToolResultBlock | ThinkingBlock
# Block types Anthropic has that this server cannot take (no vision, no documents yet).
UNSUPPORTED_BLOCKS = frozenset({"image", "document", "search_result", "container_upload"})


@frozen(kw_only=True)
class Message:
    role: Literal["user", "assistant"]
    content: str | tuple[Block, ...]


@frozen(kw_only=True)
class Tool:
    """A client tool; ``type`` is absent or ``custom`` (server tools are not served here)."""

    name: str
    input_schema: dict[str, Any]
    description: str | None = None
    type: Literal["custom"] | None = None
    cache_control: CacheControl | None = None


@frozen(kw_only=True)
class ToolChoice:
    type: Literal["auto", "any", "tool", "none"]
    name: str | None = None
    disable_parallel_tool_use: bool = False


# Anthropic's floor for a thinking budget, and its words when a request breaks it or the
# budget leaves max_tokens no room.
MIN_THINKING_BUDGET = 1024
THINKING_DOCS = (
    "https://docs.claude.com/en/docs/build-with-claude/extended-thinking"
    "#max-tokens-and-context-window-size"
)


@frozen(kw_only=True)
class Thinking:
    """The reasoning switch: ``enabled`` (with a budget, checked as Anthropic checks it) and
    ``adaptive`` turn the template's thinking on, ``disabled`` off (``prompt.switches``).
    The budget itself is not enforced: the answer's max_tokens bounds the thinking too."""

    type: Literal["enabled", "disabled", "adaptive"]
    budget_tokens: int | None = None

    def __attrs_post_init__(self) -> None:
        if self.type != "enabled":
            return
        # No param: the codec names the field "thinking", and the message says the rest.
        if self.budget_tokens is None:
            raise InvalidRequest("thinking.enabled.budget_tokens: Field required")
        if self.budget_tokens < MIN_THINKING_BUDGET:
            raise InvalidRequest(
                "thinking.enabled.budget_tokens: Input should be greater than or equal to "
                f"{MIN_THINKING_BUDGET}"
            )

    @property
    def enabled(self) -> bool:
        return self.type != "disabled"


@frozen(kw_only=True)
class MessagesInput:
    """What a prompt is made of: the fields ``count_tokens`` takes too."""

    model: str
    messages: tuple[Message, ...] = field(validator=_non_empty)
    system: str | tuple[TextBlock, ...] | None = None
    tools: tuple[Tool, ...] | None = None
    tool_choice: ToolChoice | None = None
    thinking: Thinking | None = None


@frozen(kw_only=True)
class MessagesRequest(MessagesInput):
    max_tokens: int = field(validator=_between(1, float("inf")))
    stop_sequences: tuple[str, ...] | None = field(default=None, validator=_stops)
    temperature: float | None = field(default=None, validator=_between(0, 1))
    top_p: float | None = field(default=None, validator=_between(0, 1))
    top_k: int | None = field(default=None, validator=_between(0, float("inf")))
    metadata: dict[str, Any] | None = None
    stream: bool = False

    def __attrs_post_init__(self) -> None:
        thinking = self.thinking
        if (
            thinking is not None
            and thinking.budget_tokens is not None
            and thinking.type == "enabled"
            and self.max_tokens <= thinking.budget_tokens
        ):
            raise InvalidRequest(
                "`max_tokens` must be greater than `thinking.budget_tokens`. Please consult "
                f"our documentation at {THINKING_DOCS}",
                param="max_tokens",
            )


# -- responses --------------------------------------------------------------------------------

StopReason = Literal["end_turn", "max_tokens", "stop_sequence", "tool_use"]


@frozen(kw_only=True)
class Usage:
    """Anthropic's counts: ``cache_read_input_tokens`` came from the prefix cache,
    ``cache_creation_input_tokens`` were saved into it at a cache_control breakpoint, and
    ``input_tokens`` are the rest, so the three add up to the prompt."""

    input_tokens: int
    output_tokens: int
    cache_creation_input_tokens: int = 0
    cache_read_input_tokens: int = 0

    @classmethod
    def from_engine(cls, usage: protocol.Usage) -> Usage:
        cached = min(usage.cached_tokens, usage.prompt_tokens)
        written = min(usage.cache_written_tokens, usage.prompt_tokens - cached)
        return cls(
            input_tokens=usage.prompt_tokens - cached - written,
            output_tokens=usage.completion_tokens,
            cache_creation_input_tokens=written,
            cache_read_input_tokens=cached,
        )


@frozen(kw_only=True)
class TextContent:
    type: Literal["text"] = "text"
    text: str


@frozen(kw_only=True)
class ToolUseContent:
    type: Literal["tool_use"] = "tool_use"
    id: str
    name: str
    input: dict[str, Any]


@frozen(kw_only=True)
class ThinkingContent:
    """The model's reasoning; no signature (nothing here is signed), sent as an empty one."""

    type: Literal["thinking"] = "thinking"
    thinking: str
    signature: str = ""


ContentBlock = TextContent | ThinkingContent | ToolUseContent


@frozen(kw_only=True)
class MessageResponse:
    id: str
    type: Literal["message"] = "message"
    role: Literal["assistant"] = "assistant"
    model: str
    content: tuple[ContentBlock, ...]
    stop_reason: StopReason | None = field(default=None, metadata={KEEP_NULL: True})
    stop_sequence: str | None = field(default=None, metadata={KEEP_NULL: True})
    usage: Usage


@frozen(kw_only=True)
class TokenCount:
    input_tokens: int
