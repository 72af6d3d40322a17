"""Forced tool calls in each family's own syntax: the grammar (compiled as the engine does, then
walked by a small GBNF interpreter instead of a model) only lets out outputs that the family's
parser reads back as calls of the forced tools, with arguments valid against their schemas."""

from __future__ import annotations

import json
import random
import re
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from llmserve.engine.sampling import compile_grammar
from llmserve.prompt import toolformats
from llmserve.prompt.chat import ChatTemplate
from llmserve.prompt.grammar import UnsupportedSchema
from llmserve.prompt.toolformats import (
    CallArguments,
    CallEnd,
    CallStart,
    Content,
    Reasoning,
    deepseek,
    deepseek_dsml,
)
from llmserve.prompt.toolformats.registry import FAMILIES
from llmserve.prompt.toolgrammar import reasoning_closed, text_without, tool_call_grammar
from tests.support.gbnf import Grammar

TEMPLATES = Path(__file__).parents[1] / "data" / "templates"
# Each syntax, and a real template that teaches it (Phi-4's is not in the collection).
SYNTAX_TEMPLATES: dict[str, str | None] = {
    "hermes": "Qwen-Qwen2.5-7B-Instruct.jinja",
    "qwen3_coder": "Qwen3-Coder.jinja",
    "llama3": "meta-llama-Llama-3.1-8B-Instruct.jinja",
    "mistral": "mistralai-Mistral-Nemo-Instruct-2407.jinja",
    "mistral_call_id": "Mistral-Small-3.2-24B-Instruct-2506.jinja",
    "mistral_args": "unsloth-mistral-Devstral-Small-2507.jinja",
    "deepseek_v3_1": "deepseek-ai-DeepSeek-V3.1.jinja",
    "deepseek_r1": "deepseek-ai-DeepSeek-R1-Distill-Qwen-32B.jinja",
    "deepseek_v3_2": "deepseek-ai-DeepSeek-V3.2.jinja",
    "deepseek_v4": "deepseek-ai-DeepSeek-V4.jinja",
    "harmony": "openai-gpt-oss-120b.jinja",
    "glm": "GLM-4.6.jinja",
    "glm_compact": "GLM-4.7-Flash.jinja",
    "kimi": "moonshotai-Kimi-K2.jinja",
    "granite": "ibm-granite-granite-3.3-2B-Instruct.jinja",
    "granite_4": "ibm-granite-granite-4.0.jinja",
    "command_r": "CohereForAI-c4ai-command-r7b-12-2024-tool_use.jinja",
    "functionary_v3_1": "meetkai-functionary-medium-v3.1.jinja",
    "functionary_v3_2": "meetkai-functionary-medium-v3.2.jinja",
    "lfm2": "LFM2.5-8B-A1B.jinja",
    "firefunction": "fireworks-ai-llama-3-firefunction-v2.jinja",
    "phi": None,
}
WEATHER: dict[str, Any] = {
    "type": "object",
    "properties": {
        "city": {"enum": ["Paris", "Rome"]},
        "days": {"type": "integer"},
        "unit": {"type": "string", "enum": ["C", "F"]},
        "note": {"type": "string"},
        "code": {"type": "string", "pattern": "^[A-Z]{3}$"},
        "short": {"type": "string", "maxLength": 4},
        "when": {"type": "string", "format": "date"},
        "tags": {"type": "array", "items": {"type": "string"}, "maxItems": 2},
    },
    "required": ["city", "days", "note"],
}
SCHEMAS: dict[str, dict[str, Any] | None] = {"get_weather": WEATHER, "get_time": None}
TOOLS = [
    {"type": "function", "function": {"name": n, "parameters": s or {"type": "object"}}}
    for n, s in SCHEMAS.items()
]


def test_every_syntax_of_every_family_is_covered() -> None:
    """The table below names every syntax a family forces."""
    assert {f.name for family in FAMILIES for f in family.forced} == set(SYNTAX_TEMPLATES)


@pytest.mark.parametrize(
    "syntax", [s for s, t in SYNTAX_TEMPLATES.items() if t is not None and s != "hermes"]
)
def test_each_real_template_teaches_its_syntax(syntax: str) -> None:
    """A template is read as the syntax its own calls are written in (DeepSeek R1's json
    fence, Mistral Small 3.2's call ids, GLM 4.7's compact markup, Functionary v3.2's >>>)."""
    assert template(syntax).tool_syntax == syntax


def template(syntax: str) -> ChatTemplate:
    name = SYNTAX_TEMPLATES[syntax]
    text = (TEMPLATES / name).read_text() if name else None
    return ChatTemplate(
        gguf_template=text, override=None, architecture="x", bos_token="<s>", eos_token="</s>"
    )


def family_and_prompt(syntax: str) -> tuple[toolformats.Family, str]:
    """The family forcing ``syntax`` and the prompt its real template renders with the tools."""
    if SYNTAX_TEMPLATES[syntax] is None:
        return toolformats.family("phi"), ""
    chat = template(syntax)
    prompt = chat.render([{"role": "user", "content": "Weather in Paris?"}], tools=TOOLS)
    return toolformats.family(chat.tool_format, chat.tool_syntax), prompt


def grammar_of(
    family: toolformats.Family, names: list[str], parallel: bool, prompt: str
) -> Grammar:
    tools = [(n, SCHEMAS[n], f"tools[{i}].function.parameters") for i, n in enumerate(names)]
    forced = tool_call_grammar(tools, parallel=parallel, family=family, prompt=prompt)
    return Grammar(compile_grammar(forced).text)


def read(family: toolformats.Family, prompt: str, text: str) -> dict[str, Any]:
    """The output streamed through the family's parser in 3-character pieces."""
    parser = toolformats.stream_parser(family, SCHEMAS, prompt=prompt)
    events = [e for i in range(0, len(text), 3) for e in parser.feed(text[i : i + 3])]
    events += parser.finish()
    out: dict[str, Any] = {"content": "", "reasoning": "", "calls": []}
    for event in events:
        if isinstance(event, Content):
            out["content"] += event.text
        elif isinstance(event, Reasoning):
            out["reasoning"] += event.text
        elif isinstance(event, CallStart):
            out["calls"].append({"name": event.name, "arguments": "", "complete": None})
        elif isinstance(event, CallArguments):
            out["calls"][event.index]["arguments"] += event.text
        elif isinstance(event, CallEnd):
            out["calls"][event.index]["complete"] = event.complete
    return out


@pytest.mark.parametrize("parallel", [True, False], ids=["parallel", "one-call"])
@pytest.mark.parametrize("syntax", list(SYNTAX_TEMPLATES))
def test_whatever_the_forced_grammar_lets_out_reads_back_as_valid_calls(
    syntax: str, parallel: bool
) -> None:
    """Random outputs of the grammar (as a model of random weights would write) stream through
    the family's parser as calls of declared tools, complete, with arguments valid against
    the schema, and nothing else: no content, no reasoning; one call unless parallel."""
    family, prompt = family_and_prompt(syntax)
    grammar = grammar_of(family, ["get_weather", "get_time"], parallel, prompt)
    rng = random.Random(7)
    counts = set()
    for _ in range(25):
        text = grammar.sample(rng)
        assert grammar.matches(text)
        out = read(family, prompt, text)
        assert (out["content"].strip(), out["reasoning"].strip()) == ("", ""), text
        assert out["calls"], text
        counts.add(len(out["calls"]))
        for call in out["calls"]:
            assert call["complete"] is True, text
            arguments = json.loads(call["arguments"])
            jsonschema.validate(arguments, SCHEMAS[call["name"]] or {"type": "object"})
    assert counts == {1} if not parallel or not family.syntax.repeat else max(counts) > 1


@pytest.mark.parametrize("syntax", list(SYNTAX_TEMPLATES))
def test_a_named_function_is_the_only_call_forced(syntax: str) -> None:
    """Forced to one tool, every output calls that tool, once."""
    family, prompt = family_and_prompt(syntax)
    grammar = grammar_of(family, ["get_time"], False, prompt)
    rng = random.Random(3)
    for _ in range(10):
        calls = read(family, prompt, grammar.sample(rng))["calls"]
        assert [c["name"] for c in calls] == ["get_time"]


def forced_text(family: toolformats.Family, prompt: str, call: dict[str, Any]) -> str:
    """``call`` as a forced output writes it: after closing the reasoning a prompt opened."""
    return reasoning_closed(family, prompt) + toolformats.write_calls(family.syntax, [call])


CALL = {
    "id": "abc123def",
    "type": "function",
    "function": {
        "name": "get_weather",
        "arguments": {"city": "Paris", "days": 3, "note": "a <b> c", "tags": ["x"]},
    },
}


@pytest.mark.parametrize("syntax", list(SYNTAX_TEMPLATES))
def test_a_call_written_into_history_is_what_the_grammar_forces(syntax: str) -> None:
    """History written in a syntax (for templates that drop calls) is an output the forced
    grammar allows, and reads back as the same call."""
    family, prompt = family_and_prompt(syntax)
    text = forced_text(family, prompt, CALL)
    assert grammar_of(family, ["get_weather", "get_time"], True, prompt).matches(text), text
    (call,) = read(family, prompt, text)["calls"]
    assert call["name"] == "get_weather"
    assert json.loads(call["arguments"]) == CALL["function"]["arguments"]


def test_a_prompt_left_in_reasoning_gets_it_closed_first() -> None:
    """llama.cpp's DeepSeek R1 template ends the prompt inside <think>: the forced output
    closes it, empty, then calls (else the call would be read as reasoning)."""
    text = (TEMPLATES / "llama-cpp-deepseek-r1.jinja").read_text()
    chat = ChatTemplate(
        gguf_template=text, override=None, architecture="x", bos_token="", eos_token=""
    )
    prompt = chat.render([{"role": "user", "content": "Weather?"}], tools=TOOLS)
    assert prompt.rstrip().endswith("<think>")
    family = toolformats.family(chat.tool_format, chat.tool_syntax)
    output = grammar_of(family, ["get_time"], False, prompt).sample(random.Random(1))
    assert output.startswith(f"</think>\n\n{deepseek.CALLS_BEGIN}{deepseek.CALL_BEGIN}function")
    assert [c["name"] for c in read(family, prompt, output)["calls"]] == ["get_time"]


def test_free_text_never_holds_its_closing_tag() -> None:
    """A string parameter's bare text may hold "<", even most of "</parameter>", never all."""
    grammar = Grammar("\n".join(["root ::= t-0", *text_without("t", "</parameter>")]))
    for text in ("", "a < b", "<</param", "x </parameter y", "</parameter"):
        assert grammar.matches(text), text
    for text in ("</parameter>", "x</parameter>y", "<</parameter>"):
        assert not grammar.matches(text), text
    rng = random.Random(5)
    assert all("</parameter>" not in grammar.sample(rng) for _ in range(50))


def test_tagged_arguments_need_an_object_schema() -> None:
    """Qwen3-Coder writes one value per parameter: parameters that are not an object are a
    400 naming the tool's field."""
    with pytest.raises(UnsupportedSchema) as caught:
        tool_call_grammar(
            [("f", {"type": "array"}, "tools[2].function.parameters")],
            parallel=False,
            family=toolformats.family("qwen3_coder"),
        )
    assert caught.value.param == "tools[2].function.parameters"


def test_a_tool_whose_parameters_are_unsupported_is_named() -> None:
    """The 400 of a forced call names the tool's parameters field."""
    with pytest.raises(UnsupportedSchema) as caught:
        tool_call_grammar(
            [("f", {"type": "integer", "minimum": 1}, "tools[3].x")],
            parallel=True,
            family=toolformats.family("hermes"),
        )
    assert caught.value.param == "tools[3].x"


def test_definitions_of_two_tools_do_not_clash() -> None:
    """Two tools may both define "#/$defs/item" differently: each call follows its own."""
    schemas = {
        "a": {"$defs": {"item": {"type": "integer"}}, "type": "object",
              "properties": {"x": {"$ref": "#/$defs/item"}}, "required": ["x"]},
        "b": {"$defs": {"item": {"type": "boolean"}}, "type": "object",
              "properties": {"x": {"$ref": "#/$defs/item"}}, "required": ["x"]},
    }  # fmt: skip
    family = toolformats.family("hermes")
    forced = tool_call_grammar(
        [(n, s, f"tools[{i}]") for i, (n, s) in enumerate(schemas.items())],
        parallel=True,
        family=family,
    )
    grammar = Grammar(compile_grammar(forced).text)
    rng = random.Random(2)
    seen = set()
    for _ in range(30):
        parser = toolformats.stream_parser(family, schemas)
        parser.feed(grammar.sample(rng))
        for call in parser.whole().calls:
            jsonschema.validate(json.loads(call.arguments), schemas[call.name])
            seen.add(call.name)
    assert seen == {"a", "b"}


@pytest.mark.parametrize("syntax", list(SYNTAX_TEMPLATES))
def test_a_call_cut_in_its_arguments_is_a_call_and_leaks_no_markup(syntax: str) -> None:
    """A call cut short anywhere from its first argument on (max_tokens), even in the middle
    of a character of its markup (spelled in bytes: the decoder ends it with U+FFFD), is a
    call of that name, and no markup reaches the content."""
    family, prompt = family_and_prompt(syntax)
    text = forced_text(family, prompt, CALL)
    for cut in range(text.index("Paris"), len(text)):
        ends = [text[:cut]] + ([text[:cut] + "\ufffd"] if ord(text[cut]) > 127 else [])
        for output in ends:
            out = read(family, prompt, output)
            assert (out["content"], out["reasoning"]) == ("", ""), output
            assert [c["name"] for c in out["calls"]] == ["get_weather"], output


JSON_VALUE = re.compile(f'(string="false">)(.*?)({re.escape(deepseek_dsml.END_PARAM)})', re.S)
# Parameters all optional, of the kinds the DSML templates write each way.
OPTIONAL: dict[str, Any] = {
    "type": "object",
    "properties": {
        "path": {"type": "string"},
        "depth": {"type": "integer"},
        "mode": {"enum": ["fast", "full"]},
        "flags": {"type": "array", "items": {"type": "boolean"}, "maxItems": 2},
    },
}


@pytest.mark.parametrize("syntax", ["deepseek_v3_2", "deepseek_v4"])
def test_dsml_forced_output_is_exactly_what_the_template_writes_for_that_call(
    syntax: str,
) -> None:
    """DeepSeek V3.2 / V4: every forced output, read back, is written again to the same text
    by the template itself (its own history rendering; JSON values up to the spaces the JSON
    grammar allows): strings bare with string="true", other values JSON with string="false",
    V4's blank line in a call without arguments."""
    family, prompt = family_and_prompt(syntax)
    chat = template(syntax)
    schemas = {"list_files": OPTIONAL, "get_time": None}
    forced = tool_call_grammar(
        [(n, s, f"tools[{i}]") for i, (n, s) in enumerate(schemas.items())],
        parallel=True,
        family=family,
        prompt=prompt,
    )
    grammar = Grammar(compile_grammar(forced).text)
    rng = random.Random(11)
    blank = 0
    for _ in range(40):
        text = grammar.sample(rng)
        parser = toolformats.stream_parser(family, schemas, prompt=prompt)
        parser.feed(text)
        calls = [
            {"id": f"call{i}", "type": "function",
             "function": {"name": c.name, "arguments": json.loads(c.arguments)}}
            for i, c in enumerate(parser.whole().calls)
        ]  # fmt: skip
        history = [{"role": "user", "content": "Files?"}]
        history.append({"role": "assistant", "content": "", "tool_calls": calls})
        rendered = chat.render(history, tools=TOOLS, add_generation_prompt=False)
        compact = JSON_VALUE.sub(
            lambda m: m[1] + json.dumps(json.loads(m[2]), ensure_ascii=False) + m[3], text
        )
        assert f"<｜Assistant｜></think>{compact}<｜end▁of▁sentence｜>" in rendered, text
        blank += f'">\n\n{deepseek_dsml.END_INVOKE[:2]}' in text
    assert blank > 0 if syntax == "deepseek_v4" else blank == 0


def test_dsml_prompt_left_thinking_gets_the_reasoning_closed_then_the_block() -> None:
    """DeepSeek V3.2 thinking (the prompt ends with <think>): the forced output closes the
    reasoning and opens the block on the blank line the template writes after it."""
    chat = template("deepseek_v3_2")
    prompt = chat.render(
        [{"role": "user", "content": "Weather?"}],
        tools=TOOLS,
        variables={"enable_thinking": True},
    )
    assert prompt.endswith("<｜Assistant｜><think>")
    family = toolformats.family(chat.tool_format, chat.tool_syntax)
    output = grammar_of(family, ["get_time"], False, prompt).sample(random.Random(1))
    assert output == (
        f"</think>\n\n{deepseek_dsml.V3_2_BLOCK}\n"
        f'{deepseek_dsml.INVOKE} name="get_time">\n{deepseek_dsml.END_INVOKE}\n'
        f"{deepseek_dsml.closing(deepseek_dsml.V3_2_BLOCK)}"
    )
    out = read(family, prompt, output)
    assert (out["reasoning"], out["content"]) == ("", "")
    assert [(c["name"], c["arguments"]) for c in out["calls"]] == [("get_time", "{}")]
