"""Forced tool calls in each family's own syntax on the tiny model (its GGUF carrying that
family's real chat template), read back into tool_calls; every syntax's grammar taken by
llama.cpp; and issue 17.1 through the official
client: a named function is exactly one call and the answer ends, a call cut by max_tokens is a
call with finish_reason length, and markup never reaches content, streamed or not."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import openai
import pytest

from llmserve.engine.model import LlamaModel
from llmserve.engine.sampling import check_grammar, compile_grammar
from llmserve.prompt import toolformats
from llmserve.prompt.toolformats.registry import FAMILIES as FAMILY_LIST
from llmserve.prompt.toolgrammar import tool_call_grammar
from tests.support.tinymodel import build_tiny_gguf
from tests.support.tinyserver import MODEL, client_for, tiny_server

TEMPLATES = Path(__file__).parents[1] / "data" / "templates"
WEATHER = {
    "type": "object",
    "properties": {"city": {"enum": ["Paris", "Rome"]}, "days": {"type": "integer"}},
    "required": ["city", "days"],
}
TOOLS: list[Any] = [
    {
        "type": "function",
        "function": {"name": "get_weather", "description": "Forecast", "parameters": WEATHER},
    },
    {
        "type": "function",
        "function": {"name": "get_time", "description": "Clock", "parameters": {"type": "object"}},
    },
]
NAMED: Any = {"type": "function", "function": {"name": "get_weather"}}
ASK = [{"role": "user", "content": "Weather in Paris?"}]
# By the syntax its calls are forced in (a family may have several, by template).
FAMILIES = {
    "hermes": "Qwen-Qwen2.5-7B-Instruct.jinja",
    "mistral": "mistralai-Mistral-Nemo-Instruct-2407.jinja",
    "llama3": "meta-llama-Llama-3.1-8B-Instruct.jinja",
    "kimi": "moonshotai-Kimi-K2.jinja",
    "harmony": "openai-gpt-oss-120b.jinja",
    "qwen3_coder": "Qwen3-Coder.jinja",
    "deepseek_v3_1": "deepseek-ai-DeepSeek-V3.1.jinja",
    # R1's template leaves the prompt inside <think>: the forced call closes it first.
    "deepseek_r1": "llama-cpp-deepseek-r1.jinja",
    "deepseek_v3_2": "deepseek-ai-DeepSeek-V3.2.jinja",
    "deepseek_v4": "deepseek-ai-DeepSeek-V4.jinja",
    "granite": "ibm-granite-granite-3.3-2B-Instruct.jinja",
    "glm": "GLM-4.6.jinja",
    "command_r": "CohereForAI-c4ai-command-r7b-12-2024-tool_use.jinja",
    "functionary_v3_1": "meetkai-functionary-medium-v3.1.jinja",
    "functionary_v3_2": "meetkai-functionary-medium-v3.2.jinja",
    "lfm2": "LFM2.5-8B-A1B.jinja",
    "firefunction": "fireworks-ai-llama-3-firefunction-v2.jinja",
}


@pytest.fixture(name="family_client", scope="module", params=sorted(FAMILIES))
def fixture_family_client(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[openai.OpenAI]:
    """The tiny model served with one family's real chat template."""
    template = (TEMPLATES / FAMILIES[request.param]).read_text()
    # Command R7B's template alone is ~3,400 tokens of the tiny vocabulary.
    path = build_tiny_gguf(
        tmp_path_factory.mktemp(request.param) / "m.gguf",
        chat_template=template,
        context_length=8192,
    )
    with tiny_server(path, parallel=2, max_sequence_length=8192) as url, client_for(url) as client:
        yield client


def chat(client: openai.OpenAI, **kwargs: Any) -> Any:
    options: dict[str, Any] = {"messages": ASK, "max_tokens": 300, "temperature": 0, "tools": TOOLS}
    return client.chat.completions.create(model=MODEL, **{**options, **kwargs})


def streamed(chunks: list[Any]) -> tuple[list[tuple[str, str]], str | None, str]:
    calls: dict[int, list[str]] = {}
    content, finish = "", None
    for chunk in chunks:
        for choice in chunk.choices:
            content += choice.delta.content or ""
            finish = choice.finish_reason or finish
            for call in choice.delta.tool_calls or ():
                entry = calls.setdefault(call.index, ["", ""])
                entry[0] += call.function.name or ""
                entry[1] += call.function.arguments or ""
    return [(n, a) for n, a in calls.values()], finish, content


@pytest.mark.parametrize("choice", ["required", "named"])
def test_forced_calls_of_each_family_parse_into_tool_calls(
    family_client: openai.OpenAI, choice: str
) -> None:
    """Forced in the family's syntax, the call comes back as tool_calls (arguments valid for
    the schema), no content, finish_reason tool_calls; streamed the same."""
    tool_choice = NAMED if choice == "named" else "required"
    result = chat(family_client, tool_choice=tool_choice, parallel_tool_calls=False)
    message = result.choices[0].message
    assert result.choices[0].finish_reason == "tool_calls"
    assert not message.content
    (call,) = message.tool_calls
    if choice == "named":
        assert call.function.name == "get_weather"
    if call.function.name == "get_weather":
        jsonschema.validate(json.loads(call.function.arguments), WEATHER)
    chunks = list(
        chat(family_client, tool_choice=tool_choice, parallel_tool_calls=False, stream=True)
    )
    calls, finish, content = streamed(chunks)
    assert calls == [(call.function.name, call.function.arguments)]
    assert (finish, content) == ("tool_calls", "")


def test_a_named_function_is_one_call_then_the_answer_ends(family_client: openai.OpenAI) -> None:
    """Issue 17.1: parallel calls left at the default, a named function still gives exactly one
    call, finish_reason tool_calls, and no "<tool" content, streamed or not."""
    for seed in (1, 2):
        result = chat(family_client, tool_choice=NAMED, temperature=1.0, seed=seed)
        choice = result.choices[0]
        assert (choice.finish_reason, choice.message.content) == ("tool_calls", None)
        assert len(choice.message.tool_calls) == 1
        chunks = list(
            chat(family_client, tool_choice=NAMED, temperature=1.0, seed=seed, stream=True)
        )
        calls, finish, content = streamed(chunks)
        assert (len(calls), finish, content) == (1, "tool_calls", "")


def test_a_call_cut_by_max_tokens_is_a_call_with_finish_length(
    family_client: openai.OpenAI,
) -> None:
    """A forced call cut short returns the call (arguments so far), finish_reason length, and
    no markup as content, streamed or not."""
    whole = chat(family_client, tool_choice=NAMED).usage.completion_tokens
    cut = whole - 3  # inside the arguments, the name written
    result = chat(family_client, tool_choice=NAMED, max_tokens=cut)
    choice = result.choices[0]
    assert choice.finish_reason == "length"
    assert not choice.message.content
    assert [c.function.name for c in choice.message.tool_calls] == ["get_weather"]
    calls, finish, content = streamed(
        list(chat(family_client, tool_choice=NAMED, max_tokens=cut, stream=True))
    )
    assert ([n for n, _ in calls], finish, content) == (["get_weather"], "length", "")


RICH: dict[str, Any] = {
    "type": "object",
    "properties": {
        "city": {"enum": ["Paris", "Rome"]},
        "days": {"type": "integer"},
        "unit": {"type": "string", "enum": ["C", "F"]},
        "note": {"type": "string"},
        "code": {"type": "string", "pattern": "^[A-Z]{3}$"},
        "short": {"type": "string", "maxLength": 4},
        "when": {"type": "string", "format": "date-time"},
        "tags": {"type": "array", "items": {"$ref": "#/$defs/tag"}},
    },
    "required": ["city", "note"],
    "$defs": {"tag": {"type": "string"}},
}
# No parameter required (DeepSeek V4 then forces some of them or its blank line).
OPTIONAL: dict[str, Any] = {
    "type": "object",
    "properties": {"path": {"type": "string"}, "depth": {"type": "integer"}},
}


def test_every_forced_syntax_is_a_grammar_llama_cpp_takes(tiny_gguf: Path) -> None:
    """Each family's forced grammar, over tools with every kind of parameter (bare text,
    patterns, formats, definitions) and one with none required, parses in llama.cpp's
    grammar sampler."""
    model = LlamaModel(tiny_gguf)
    try:
        for family in FAMILY_LIST:
            for syntax in family.forced:
                chosen = toolformats.family(family.name, syntax.name)
                forced = tool_call_grammar(
                    [
                        ("get_weather", RICH, "tools[0]"),
                        ("get_time", None, "tools[1]"),
                        ("list_files", OPTIONAL, "tools[2]"),
                    ],
                    parallel=True,
                    family=chosen,
                    prompt="<think>" if chosen.reasoning_open else "",
                )
                check_grammar(model.vocab, compile_grammar(forced))
    finally:
        model.close()
