"""The tool-call convention: reading calls out of output, streamed or whole, and writing tools,
calls and results into messages for templates that know nothing of tools."""

from __future__ import annotations

import json

from hypothesis import given
from hypothesis import strategies as st

from llmserve.prompt.toolcalls import (
    TOOLS_PROMPT,
    ParsedCall,
    ToolCallStream,
    plain_messages,
    split_output,
)

NAMES = frozenset({"get_weather", "get_time"})
CALL = '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Rome"}}\n</tool_call>'
WEATHER = ParsedCall("get_weather", '{"city": "Rome"}')


def test_text_before_a_tagged_call_is_content() -> None:
    """Content is what precedes the call; the call is parsed, arguments as JSON text."""
    assert split_output("Checking. " + CALL, NAMES) == ("Checking. ", [WEATHER])


def test_several_calls_and_string_arguments() -> None:
    """Calls follow one another; arguments already written as a JSON string are kept."""
    second = '<tool_call>{"name": "get_time", "arguments": "{}"}</tool_call>'
    content, calls = split_output(CALL + "\n" + second, NAMES)
    assert (content, calls) == ("", [WEATHER, ParsedCall("get_time", "{}")])


def test_a_bare_json_object_naming_a_tool_is_a_call() -> None:
    """Llama 3 style: the whole output one object with name and parameters."""
    text = ' {"name": "get_time", "parameters": {"zone": "UTC"}}'
    assert split_output(text, NAMES) == ("", [ParsedCall("get_time", '{"zone": "UTC"}')])


def test_what_is_not_a_call_of_a_declared_tool_stays_content() -> None:
    """Unknown names, broken JSON, a cut-off block and plain JSON answers are content."""
    for text in (
        CALL.replace("get_weather", "launch"),
        "<tool_call>{not json}</tool_call>",
        CALL[:-5],
        '{"answer": 42}',
        "a < b and <tool",
    ):
        assert split_output(text, NAMES) == (text, [])


@given(st.lists(st.integers(min_value=1, max_value=len(CALL) + 20), max_size=12))
def test_streaming_splits_like_the_whole_output(cuts: list[int]) -> None:
    """However the text is cut into pieces, the streamed content and calls are the whole
    output's, and no piece of call markup is ever streamed as content."""
    text = "Let me check <b>this</b>: " + CALL
    stream = ToolCallStream(NAMES)
    pieces, start = [], 0
    for cut in sorted(set(cuts)):
        pieces.append(stream.push(text[start:cut]))
        start = max(start, cut)
    pieces.append(stream.push(text[start:]))
    tail, calls = stream.finish()
    assert ("".join(pieces) + tail, calls) == split_output(text, NAMES)
    assert all("<tool" not in piece for piece in pieces)


def test_plain_messages_write_tools_calls_and_results_as_text() -> None:
    """For a template without tools: the tools go into the system prompt, an assistant's
    calls into its text, and consecutive tool results into one user turn."""
    tools = [{"type": "function", "function": {"name": "get_weather"}}]
    call = {"id": "c1", "function": {"name": "get_weather", "arguments": {"city": "Rome"}}}
    messages = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Weather?"},
        {"role": "assistant", "content": "", "tool_calls": [call, call]},
        {"role": "tool", "tool_call_id": "c1", "content": "sunny"},
        {"role": "tool", "tool_call_id": "c1", "content": "warm"},
    ]
    system, user, assistant, results = plain_messages(messages, tools)
    listing = json.dumps(tools[0])
    assert system == {
        "role": "system",
        "content": "Be brief.\n\n" + TOOLS_PROMPT.format(tools=listing),
    }
    assert user == messages[1]
    assert assistant == {"role": "assistant", "content": CALL + "\n" + CALL}
    assert results == {
        "role": "user",
        "content": "<tool_response>\nsunny\n</tool_response>\n"
        "<tool_response>\nwarm\n</tool_response>",
    }


def test_plain_messages_add_a_system_turn_when_there_is_none() -> None:
    """Without a system message, the tools prompt becomes one, first."""
    tools = [{"type": "function", "function": {"name": "f"}}]
    first, second = plain_messages([{"role": "user", "content": "hi"}], tools)
    assert first["role"] == "system"
    assert first["content"].startswith("# Tools")
    assert second == {"role": "user", "content": "hi"}
