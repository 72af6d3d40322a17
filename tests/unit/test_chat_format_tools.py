"""Chat completions of a model family's output: tool calls streamed as OpenAI streams them,
reasoning_content, finish reasons, and no markup in content (issue 17.1)."""

from __future__ import annotations

from typing import Any

from llmserve.api.openai import codec, wire
from llmserve.api.openai.formats import ChatFormat, Meta
from llmserve.engine.protocol import TokenEvent
from llmserve.prompt import toolformats

TOOLS: dict[str, Any] = {"get_weather": {"type": "object"}, "get_time": None}
CALL = (
    '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris", "days": 3}}\n</tool_call>'
)
USAGE = wire.Usage(prompt_tokens=1, completion_tokens=1, total_tokens=2)


def chat(
    text: str,
    *,
    stream: bool,
    finish: str = "stop",
    family: str = "hermes",
    max_calls: int | None = None,
    piece: int = 3,
) -> list[dict[str, Any]] | dict[str, Any]:
    ids = iter(range(100))
    fmt = ChatFormat(
        Meta("chatcmpl-1", 0, "m"),
        stream=stream,
        parser=lambda: toolformats.stream_parser(
            toolformats.family(family), TOOLS, max_calls=max_calls
        ),
        call_id=lambda: f"call_{next(ids)}",
    )
    chunks: list[object] = list(fmt.opening())
    pieces = [text[i : i + piece] for i in range(0, len(text), piece)] or [""]
    for i, part in enumerate(pieces):
        last = i == len(pieces) - 1
        chunks += fmt.feed(TokenEvent(part, tokens=1, finish_reason=finish if last else None))  # type: ignore[arg-type]
    if not stream:
        return codec.unstructure(fmt.whole(USAGE))  # type: ignore[no-any-return]
    return [codec.unstructure(c) for c in chunks]


def deltas(chunks: Any) -> list[dict[str, Any]]:
    return [c["choices"][0]["delta"] for c in chunks if c["choices"]]


def test_a_call_streams_id_type_and_name_first_then_arguments_in_pieces() -> None:
    """The first tool_calls delta has the call's id, type and name (arguments ""); the next
    ones only argument pieces, which add up to the call's arguments."""
    chunks = chat(CALL, stream=True)
    calls = [d["tool_calls"][0] for d in deltas(chunks) if "tool_calls" in d]
    assert calls[0] == {
        "index": 0,
        "id": "call_0",
        "type": "function",
        "function": {"name": "get_weather", "arguments": ""},
    }
    assert all(set(c) == {"index", "function"} for c in calls[1:])
    assert all(set(c["function"]) == {"arguments"} for c in calls[1:])
    assert len(calls) > 3
    args = "".join(c["function"]["arguments"] for c in calls)
    assert args == '{"city": "Paris", "days": 3}'
    assert chunks[-1]["choices"][0]["finish_reason"] == "tool_calls"
    assert "".join(d.get("content") or "" for d in deltas(chunks)) == ""


def test_a_call_cut_by_max_tokens_is_a_call_with_finish_length() -> None:
    """A call cut short comes back as a call (arguments so far), finish_reason length, and
    no markup as content, streamed or not."""
    cut = CALL[:40]
    body: Any = chat(cut, stream=False, finish="length")
    choice = body["choices"][0]
    assert choice["finish_reason"] == "length"
    assert choice["message"]["content"] is None
    assert choice["message"]["tool_calls"][0]["function"]["name"] == "get_weather"
    chunks = chat(cut, stream=True, finish="length")
    assert "".join(d.get("content") or "" for d in deltas(chunks)) == ""
    assert chunks[-1]["choices"][0]["finish_reason"] == "length"


def test_a_second_call_started_past_the_limit_leaks_nothing() -> None:
    """Issue 17.1: one call then "<tool" cut by max_tokens gives the call and no content."""
    body: Any = chat(CALL + "\n<tool", stream=False, finish="length", piece=1)
    message = body["choices"][0]["message"]
    assert message["content"] is None
    assert len(message["tool_calls"]) == 1
    chunks = chat(CALL + "\n<tool", stream=True, finish="length", piece=1)
    assert all(not d.get("content") for d in deltas(chunks))


def test_at_most_one_call_when_parallel_calls_are_off() -> None:
    """max_calls 1 (parallel_tool_calls false, a named function): later calls are dropped."""
    second = CALL.replace("get_weather", "get_time")
    body: Any = chat(CALL + "\n" + second, stream=False, max_calls=1)
    calls = body["choices"][0]["message"]["tool_calls"]
    assert [c["function"]["name"] for c in calls] == ["get_weather"]
    assert body["choices"][0]["finish_reason"] == "tool_calls"


def test_reasoning_goes_to_reasoning_content() -> None:
    """<think> text is reasoning_content on the message and on deltas, never content."""
    text = "<think>Let me see.</think>It is sunny."
    body: Any = chat(text, stream=False, family="qwen3")
    message = body["choices"][0]["message"]
    assert (message["reasoning_content"], message["content"]) == ("Let me see.", "It is sunny.")
    chunks = chat(text, stream=True, family="qwen3", piece=2)
    assert "".join(d.get("reasoning_content") or "" for d in deltas(chunks)) == "Let me see."
    assert "".join(d.get("content") or "" for d in deltas(chunks)) == "It is sunny."


def test_plain_content_has_no_reasoning_field() -> None:
    """An answer without reasoning has no reasoning_content key at all."""
    body: Any = chat("Hello", stream=False)
    assert "reasoning_content" not in body["choices"][0]["message"]
    assert body["choices"][0]["message"]["content"] == "Hello"


def test_mistral_calls_stream_from_its_own_markup() -> None:
    """A family's own syntax ([TOOL_CALLS]name[ARGS]...) becomes OpenAI tool calls."""
    body: Any = chat(
        '[TOOL_CALLS]get_weather[ARGS]{"city": "Oslo"}', stream=False, family="mistral"
    )
    (call,) = body["choices"][0]["message"]["tool_calls"]
    assert call["function"] == {"name": "get_weather", "arguments": '{"city": "Oslo"}'}
