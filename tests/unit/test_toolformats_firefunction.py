"""FireFunction v2 calls (`` functools[{...}, ...]``): llama.cpp's test outputs and variants,
streamed in pieces through the family's parser; its template given the tools and the date the
way llama.cpp gives them."""

from __future__ import annotations

import copy
import json
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from llmserve.prompt import toolformats
from llmserve.prompt.chat import ChatTemplate
from llmserve.prompt.toolformats import Content, stream_parser
from tests.support.toolstream import assemble, feed

TEMPLATE = Path(__file__).parents[1] / "data/templates/fireworks-ai-llama-3-firefunction-v2.jinja"
FIREFUNCTION = toolformats.family("firefunction")
TOOLS: dict[str, Any] = {
    "special_function": {"type": "object", "properties": {"arg1": {"type": "integer"}}},
    "get_time": {"type": "object", "properties": {"city": {"type": "string"}}},
}
CALL = '{"name": "special_function", "arguments": {"arg1": 1}}'

# output, expected content, expected calls (name, arguments)
CASES: list[tuple[str, str, list[tuple[str, Any]]]] = [
    ("Hello, world!\nWhat's up?", "Hello, world!\nWhat's up?", []),
    (f" functools[{CALL}]", "", [("special_function", {"arg1": 1})]),
    (f"functools[{CALL}]", "", [("special_function", {"arg1": 1})]),
    (
        f'Sure. functools[{CALL}, {{"name": "get_time", "arguments": {{"city": "Paris"}}}}]',
        "Sure.",
        [("special_function", {"arg1": 1}), ("get_time", {"city": "Paris"})],
    ),
]


def run_stream(text: str, size: int) -> list[Any]:
    return feed(stream_parser(FIREFUNCTION, TOOLS), text, size)


@pytest.mark.parametrize("size", [1, 4, 10_000])
@pytest.mark.parametrize(("text", "content", "calls"), CASES)
def test_firefunction_output_parses_streamed(
    text: str, content: str, calls: Any, size: int
) -> None:
    """Calls after " functools[" (its space markup, not content), content before them; every
    content delta a piece of the content, none of the marker."""
    events = run_stream(text, size)
    got_content, _, got_calls, ends = assemble(events)
    assert (got_content, [(n, json.loads(a)) for n, a in got_calls]) == (content, calls)
    assert ends == [True] * len(calls)
    assert all(e.text in content for e in events if isinstance(e, Content))


def test_a_cut_call_is_a_call_and_a_cut_marker_no_content() -> None:
    """A call cut by max_tokens is a call with its arguments so far; a marker cut short after
    content is not content."""
    _, _, calls, ends = assemble(run_stream(' functools[{"name": "get_time", "arguments": {"ci', 3))
    assert (calls, ends) == ([("get_time", '{"ci')], [False])
    content, _, calls, _ = assemble(run_stream(f" functools[{CALL}, {{", 1))
    assert (content, [n for n, _ in calls]) == ("", ["special_function"])


def test_the_template_gets_the_tools_as_functions_and_the_date() -> None:
    """The template reads ``functions`` (the tools as indented JSON) and ``datetime``, as
    llama.cpp fills them; the assistant's call is written back in its own syntax."""
    chat = ChatTemplate(
        gguf_template=TEMPLATE.read_text(),
        override=None,
        architecture="llama",
        bos_token="<|begin_of_text|>",
        eos_token="<|eot_id|>",
        clock=lambda: datetime(2025, 3, 4, 5, 6, 7),
    )
    assert chat.tool_format == "firefunction"
    tools = [
        {"type": "function", "function": {"name": "get_time", "parameters": TOOLS["get_time"]}}
    ]
    messages: list[dict[str, Any]] = [
        {"role": "user", "content": "Time?"},
        {
            "role": "assistant",
            "content": "",
            "tool_calls": [
                {
                    "id": "c1",
                    "type": "function",
                    "function": {"name": "get_time", "arguments": '{"city": "Paris"}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "c1", "content": "noon"},
    ]
    prompt = chat.render(copy.deepcopy(messages), tools=tools)
    assert f"Available functions as JSON spec:\n{json.dumps(tools, indent=2)}\n" in prompt
    assert "Today is Mar 04 2025 05:06:07 GMT." in prompt
    assert ' functools[{"name": "get_time", "arguments": {"city": "Paris"}}]<|eot_id|>' in prompt
