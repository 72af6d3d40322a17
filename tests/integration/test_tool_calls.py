"""Tools through the official client: forced calls on the real engine, parsed calls on a
scripted one, streamed and not, and tool results going back in."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import jsonschema
import openai
import pytest

from llmserve.engine.fake import FakeEngine
from tests.support.doubles import fake_app
from tests.support.server import serve_app
from tests.support.tinyserver import MODEL, client_for

WEATHER = {
    "type": "object",
    "properties": {
        "city": {"enum": ["Paris", "Rome", "Oslo"]},
        "days": {"type": "integer"},
        "metric": {"type": "boolean"},
    },
    "required": ["city", "days"],
}
TOOLS: list[Any] = [
    {
        "type": "function",
        "function": {"name": "get_weather", "description": "Forecast", "parameters": WEATHER},
    },
    {"type": "function", "function": {"name": "get_time", "parameters": {"type": "object"}}},
]
ASK = [{"role": "user", "content": "Weather in Paris?"}]


def chat(tiny_client: openai.OpenAI, **kwargs: Any) -> Any:
    options: dict[str, Any] = {"messages": ASK, "max_tokens": 200, "temperature": 0}
    return tiny_client.chat.completions.create(model=MODEL, **{**options, **kwargs})


def streamed_calls(chunks: list[Any]) -> tuple[list[tuple[str, str]], str | None, str]:
    """The (name, arguments) of the calls in a chat stream, its finish reason, its content."""
    calls: dict[int, list[str]] = {}
    content = ""
    finish = None
    for chunk in chunks:
        for choice in chunk.choices:
            content += choice.delta.content or ""
            finish = choice.finish_reason or finish
            for call in choice.delta.tool_calls or ():
                entry = calls.setdefault(call.index, ["", ""])
                entry[0] += call.function.name or ""
                entry[1] += call.function.arguments or ""
    return [(name, args) for name, args in calls.values()], finish, content


def test_required_tool_choice_gives_a_valid_call(tiny_client: openai.OpenAI) -> None:
    """tool_choice required: a well-formed call of a declared tool whose arguments validate,
    finish_reason tool_calls, no content."""
    result = chat(tiny_client, tools=TOOLS, tool_choice="required", parallel_tool_calls=False)
    choice = result.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content is None
    (call,) = choice.message.tool_calls
    assert call.type == "function"
    assert call.id.startswith("call_")
    schemas = {t["function"]["name"]: t["function"]["parameters"] for t in TOOLS}
    jsonschema.validate(json.loads(call.function.arguments), schemas[call.function.name])


def test_required_call_streams_as_tool_call_deltas(tiny_client: openai.OpenAI) -> None:
    """Streamed, the same call arrives as tool_calls deltas, then finish_reason tool_calls."""
    options: dict[str, Any] = {"tools": TOOLS, "tool_choice": "required"}
    whole = chat(tiny_client, parallel_tool_calls=False, **options).choices[0].message.tool_calls
    chunks = list(chat(tiny_client, parallel_tool_calls=False, stream=True, **options))
    calls, finish, content = streamed_calls(chunks)
    assert calls == [(c.function.name, c.function.arguments) for c in whole]
    assert finish == "tool_calls"
    assert content == ""


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_named_tool_choice_calls_that_function(tiny_client: openai.OpenAI, seed: int) -> None:
    """A named function is the one called, with arguments valid for its schema, however sampled."""
    choice = chat(
        tiny_client,
        tools=TOOLS,
        tool_choice={"type": "function", "function": {"name": "get_weather"}},
        parallel_tool_calls=False,
        temperature=1.0,
        seed=seed,
    ).choices[0]
    (call,) = choice.message.tool_calls
    assert call.function.name == "get_weather"
    jsonschema.validate(json.loads(call.function.arguments), WEATHER)


def test_tools_reach_the_prompt_unless_tool_choice_is_none(tiny_client: openai.OpenAI) -> None:
    """Tools are rendered into the prompt (auto); tool_choice none leaves them out."""
    bare = chat(tiny_client, max_tokens=1).usage.prompt_tokens
    with_tools = chat(tiny_client, max_tokens=1, tools=TOOLS).usage.prompt_tokens
    without = chat(tiny_client, max_tokens=1, tools=TOOLS, tool_choice="none").usage.prompt_tokens
    assert with_tools > bare
    assert without == bare


def test_tool_results_flow_back_in(tiny_client: openai.OpenAI) -> None:
    """An assistant turn with tool_calls and the tool's answer are accepted and reach the
    prompt: a longer result costs more prompt tokens."""
    call = {
        "id": "call_1",
        "type": "function",
        "function": {"name": "get_weather", "arguments": '{"city": "Paris", "days": 1}'},
    }

    def prompt_tokens(result: str) -> int:
        messages = [
            *ASK,
            {"role": "assistant", "content": None, "tool_calls": [call]},
            {"role": "tool", "tool_call_id": "call_1", "content": result},
        ]
        answer = chat(tiny_client, messages=messages, tools=TOOLS, max_tokens=1)
        return int(answer.usage.prompt_tokens)

    assert prompt_tokens("sunny and warm all day") > prompt_tokens("sunny")


def test_forced_call_with_an_unsupported_parameter_schema_is_a_400(
    tiny_client: openai.OpenAI,
) -> None:
    """A forced call's parameters must be enforceable: the 400 names the keyword and the tool."""
    tools = [
        {
            "type": "function",
            "function": {
                "name": "f",
                "parameters": {"type": "object", "properties": {"n": {"not": {}}}},
            },
        }
    ]
    with pytest.raises(openai.BadRequestError) as caught:
        chat(tiny_client, tools=tools, tool_choice="required")
    body: Any = caught.value.body
    assert "'not'" in body["message"]
    assert body["param"] == "tools[0].function.parameters"


@pytest.mark.parametrize(
    "options",
    [
        {"tool_choice": "required"},
        {"tools": TOOLS, "tool_choice": {"type": "function", "function": {"name": "x"}}},
    ],
)
def test_tool_choice_without_its_tool_is_a_400(
    tiny_client: openai.OpenAI, options: dict[str, Any]
) -> None:
    """tool_choice needs tools, and a named function must be one of them."""
    with pytest.raises(openai.BadRequestError) as caught:
        chat(tiny_client, **options)
    assert caught.value.param == "tool_choice"


# -- tool_choice auto: calls parsed from what the model writes (a scripted engine) -------------

CALL = (
    '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Rome", "days": 2}}\n</tool_call>'
)


@pytest.fixture(name="scripted")
def fixture_scripted(request: pytest.FixtureRequest) -> Iterator[openai.OpenAI]:
    engine = FakeEngine(pieces=request.param)
    with serve_app(fake_app(engine)) as base_url, client_for(base_url) as client:
        yield client


def split(text: str, size: int = 5) -> tuple[str, ...]:
    return tuple(text[i : i + size] for i in range(0, len(text), size))


@pytest.mark.parametrize("scripted", [split("Let me look. " + CALL)], indirect=True)
def test_auto_parses_a_tagged_call_after_text(scripted: openai.OpenAI) -> None:
    """tool_choice auto: a <tool_call> block is a call; the text before it is the content."""
    choice = chat(scripted, tools=TOOLS).choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content == "Let me look. "  # as streamed: text is never trimmed
    (call,) = choice.message.tool_calls
    assert (call.function.name, json.loads(call.function.arguments)) == (
        "get_weather",
        {"city": "Rome", "days": 2},
    )


@pytest.mark.parametrize("scripted", [split("Let me look. " + CALL + "\n" + CALL)], indirect=True)
def test_auto_streams_text_then_the_calls(scripted: openai.OpenAI) -> None:
    """Streamed: the content before the calls streams as text, never the call markup; then
    each call is one tool_calls delta with its own index."""
    calls, finish, content = streamed_calls(list(chat(scripted, tools=TOOLS, stream=True)))
    assert content == "Let me look. "
    assert [name for name, _ in calls] == ["get_weather", "get_weather"]
    assert finish == "tool_calls"


@pytest.mark.parametrize(
    "scripted", [split('{"name": "get_time", "parameters": {"zone": "UTC"}}')], indirect=True
)
def test_auto_parses_a_bare_json_call(scripted: openai.OpenAI) -> None:
    """An output that is one JSON object naming a declared tool is a call (Llama 3 style)."""
    choice = chat(scripted, tools=TOOLS).choices[0]
    assert choice.message.tool_calls[0].function.name == "get_time"
    assert json.loads(choice.message.tool_calls[0].function.arguments) == {"zone": "UTC"}


@pytest.mark.parametrize("scripted", [split("I <3 tools, but no call here.")], indirect=True)
def test_auto_without_a_call_is_plain_content(scripted: openai.OpenAI) -> None:
    """Text that only looks a little like markup stays content, streamed or not."""
    choice = chat(scripted, tools=TOOLS).choices[0]
    assert (choice.message.content, choice.message.tool_calls) == (
        "I <3 tools, but no call here.",
        None,
    )
    assert choice.finish_reason == "stop"
    _, finish, content = streamed_calls(list(chat(scripted, tools=TOOLS, stream=True)))
    assert (content, finish) == ("I <3 tools, but no call here.", "stop")
