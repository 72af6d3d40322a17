"""Each family's real output (examples from llama.cpp's tests/test-chat.cpp), streamed in small
pieces through its parser: calls, content, reasoning and every delta; the whole output gives
the same result."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from llmserve.prompt.toolformats import (
    CallArguments,
    CallEnd,
    CallStart,
    Content,
    Reasoning,
    family,
    recognise,
    stream_parser,
)
from tests.support.toolstream import assemble, feed

TOOLS: dict[str, Any] = {
    "special_function": {"type": "object", "properties": {"arg1": {"type": "integer"}}},
    "get_time": {"type": "object", "properties": {"city": {"type": "string"}}},
}
CALL = [("special_function", {"arg1": 1})]
THOUGHTS = "I'm\nthinking"
HELLO = "Hello, world!\nWhat's up?"
# DeepSeek V3.2's and V4's DSML markup, as their templates write calls into history.
DSML = "｜DSML｜"
DSML_CALL = (
    f'<{DSML}invoke name="special_function">\n'
    f'<{DSML}parameter name="arg1" string="false">1</{DSML}parameter>\n</{DSML}invoke>\n'
)
DSML_TIME = (
    f'<{DSML}invoke name="get_time">\n'
    f'<{DSML}parameter name="city" string="true">Paris, "FR" <1></{DSML}parameter>\n'
    f"</{DSML}invoke>\n"
)

# family, output, expected content, expected reasoning, expected calls, prompt
CASES: list[tuple[str, str, str, str, list[tuple[str, Any]], str]] = [
    ("hermes", HELLO, HELLO, "", [], ""),
    (
        "hermes",
        '<tool_call>\n{"name": "special_function", "arguments": {"arg1": 1}}\n</tool_call>',
        "",
        "",
        CALL,
        "",
    ),
    ("hermes", '{"name": "special_function", "arguments": {"arg1": 1}}', "", "", CALL, ""),
    (
        "hermes",
        'Let me check.\n<tool_call>\n{"name": "special_function", "arguments": {"arg1": 1}}\n'
        '</tool_call>\n<tool_call>\n{"name": "get_time", "arguments": {"city": "Paris"}}\n'
        "</tool_call>",
        "Let me check.",
        "",
        [*CALL, ("get_time", {"city": "Paris"})],
        "",
    ),
    (
        "qwen3",
        '<think>\nI\'m\nthinking\n</think>\n\n<tool_call>\n{"name": "special_function", '
        '"arguments": {"arg1": 1}}\n</tool_call>',
        "",
        THOUGHTS,
        CALL,
        "",
    ),
    ("qwen3", f"<think>{THOUGHTS}</think>{HELLO}", HELLO, THOUGHTS, [], ""),
    (
        "qwen3",
        f"{THOUGHTS}</think>{HELLO}",
        HELLO,
        THOUGHTS,
        [],
        "<|im_start|>assistant\n<think>\n",
    ),
    (
        "qwen3_coder",
        "<tool_call>\n<function=special_function>\n<parameter=arg1>\n1\n</parameter>\n"
        "</function>\n</tool_call>",
        "",
        "",
        CALL,
        "",
    ),
    (
        "qwen3_coder",
        "Sure.\n<tool_call>\n<function=get_time>\n<parameter=city>\n12\n</parameter>\n"
        "</function>\n</tool_call>",
        "Sure.",
        "",
        [("get_time", {"city": "12"})],
        "",
    ),
    ("llama3", '{"name": "special_function", "parameters": {"arg1": 1}}', "", "", CALL, ""),
    (
        "llama3",
        '<|python_tag|>{"name": "special_function", "parameters": {"arg1": 1}}',
        "",
        "",
        CALL,
        "",
    ),
    (
        "mistral",
        '[TOOL_CALLS][{"name": "special_function", "arguments": {"arg1": 1}, "id": "123456789"}]',
        "",
        "",
        CALL,
        "",
    ),
    ("mistral", '[TOOL_CALLS]special_function[ARGS]{"arg1":1}', "", "", CALL, ""),
    (
        "mistral",
        '[TOOL_CALLS]special_function[ARGS]{"arg1": 1}[TOOL_CALLS]get_time[ARGS]{"city": "X"}',
        "",
        "",
        [*CALL, ("get_time", {"city": "X"})],
        "",
    ),
    (
        "mistral",
        f'[THINK]{THOUGHTS}[/THINK][TOOL_CALLS]special_function[ARGS]{{"arg1": 1}}',
        "",
        THOUGHTS,
        CALL,
        "",
    ),
    (
        "deepseek",
        '<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>get_time<｜tool▁sep｜>{"city": "XYZCITY"}'
        "<｜tool▁call▁end｜><｜tool▁calls▁end｜>",
        "",
        "",
        [("get_time", {"city": "XYZCITY"})],
        "",
    ),
    (
        "deepseek",
        "REASONING</think><｜tool▁calls▁begin｜><｜tool▁call▁begin｜>get_time<｜tool▁sep｜>"
        '{"city": "Tokyo"}<｜tool▁call▁end｜><｜tool▁calls▁end｜>',
        "",
        "REASONING",
        [("get_time", {"city": "Tokyo"})],
        "<｜Assistant｜><think>\n",
    ),
    (
        "deepseek",
        "<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>function<｜tool▁sep｜>special_function\n"
        '```json\n{"arg1": 1}\n```<｜tool▁call▁end｜><｜tool▁calls▁end｜>',
        "",
        "",
        CALL,
        "",
    ),
    (
        "deepseek_dsml",
        f"Let me check.\n\n<{DSML}function_calls>\n{DSML_CALL}{DSML_TIME}</{DSML}function_calls>",
        "Let me check.",
        "",
        [*CALL, ("get_time", {"city": 'Paris, "FR" <1>'})],
        "",
    ),
    (
        "deepseek_dsml",
        f"{THOUGHTS}</think>\n\n<{DSML}tool_calls>\n{DSML_CALL}</{DSML}tool_calls>",
        "",
        THOUGHTS,
        CALL,
        "<｜User｜>Hi<｜Assistant｜><think>",
    ),
    (
        "deepseek_dsml",
        f'<{DSML}tool_calls>\n<{DSML}invoke name="get_time">\n\n</{DSML}invoke>\n'
        f"</{DSML}tool_calls>",
        "",
        "",
        [("get_time", {})],
        "<｜User｜>Hi<｜Assistant｜></think>",
    ),
    ("deepseek_dsml", f"{THOUGHTS}</think>{HELLO}", HELLO, THOUGHTS, [], "<｜Assistant｜><think>"),
    (
        "harmony",
        f"<|channel|>analysis<|message|>{THOUGHTS}<|end|><|start|>assistant<|channel|>final"
        f"<|message|>{HELLO}",
        HELLO,
        THOUGHTS,
        [],
        "",
    ),
    (
        "harmony",
        f"<|channel|>analysis<|message|>{THOUGHTS}<|end|><|start|>assistant<|channel|>commentary"
        ' to=functions.special_function <|constrain|>json<|message|>{"arg1": 1}<|call|>',
        "",
        THOUGHTS,
        CALL,
        "",
    ),
    (
        "glm",
        "<tool_call>special_function\n<arg_key>arg1</arg_key>\n<arg_value>1</arg_value>\n"
        "</tool_call>",
        "",
        "",
        CALL,
        "",
    ),
    (
        "kimi",
        "<|tool_calls_section_begin|><|tool_call_begin|>functions.special_function:0"
        '<|tool_call_argument_begin|>{"arg1": 1}<|tool_call_end|><|tool_calls_section_end|>',
        "",
        "",
        CALL,
        "",
    ),
    (
        "granite",
        '<|tool_call|>[{"name": "special_function", "arguments": {"arg1": 1}}]',
        "",
        "",
        CALL,
        "",
    ),
    ("granite", f"<think>{THOUGHTS}</think><response>{HELLO}</response>", HELLO, THOUGHTS, [], ""),
    (
        "command_r",
        f"<|START_THINKING|>{THOUGHTS}<|END_THINKING|><|START_ACTION|>[\n"
        '    {"tool_call_id": "0", "tool_name": "special_function", "parameters": {"arg1": 1}}\n'
        "]<|END_ACTION|>",
        "",
        THOUGHTS,
        CALL,
        "",
    ),
    (
        "command_r",
        f"<|START_THINKING|>{THOUGHTS}<|END_THINKING|><|START_RESPONSE|>{HELLO}<|END_RESPONSE|>",
        HELLO,
        THOUGHTS,
        [],
        "",
    ),
    ("functionary", '<function=special_function>{"arg1": 1}</function>', "", "", CALL, ""),
    (
        "functionary",
        'special_function\n{"arg1": 1}',
        "",
        "",
        CALL,
        "<|start_header_id|>assistant<|end_header_id|>\n\n>>>",
    ),
    (
        "functionary",
        f"all\n{HELLO}",
        HELLO,
        "",
        [],
        "<|start_header_id|>assistant<|end_header_id|>\n\n>>>",
    ),
    (
        "phi",
        '<|tool_call|>[{"name": "special_function", "arguments": {"arg1": 1}}]<|/tool_call|>',
        "",
        "",
        CALL,
        "",
    ),
]


def run_stream(name: str, text: str, prompt: str, size: int) -> list[Any]:
    return feed(stream_parser(family(name), TOOLS, prompt=prompt), text, size)


@pytest.mark.parametrize("size", [1, 3, 7, 10_000])
@pytest.mark.parametrize(("name", "text", "content", "reasoning", "calls", "prompt"), CASES)
def test_family_output_parses_streamed_like_whole(
    name: str, text: str, content: str, reasoning: str, calls: Any, prompt: str, size: int
) -> None:
    """Streamed in pieces of any size, an output gives the expected content, reasoning and
    calls (every call started, argued and ended), and the same as the whole output."""
    events = run_stream(name, text, prompt, size)
    got_content, got_reasoning, got_calls, ends = assemble(events)
    assert got_content.strip() == content
    assert got_reasoning.strip() == reasoning
    assert [(n, json.loads(a)) for n, a in got_calls] == calls
    assert ends == [True] * len(calls)
    parser = stream_parser(family(name), TOOLS, prompt=prompt)
    parser.feed(text)
    whole = parser.whole()
    assert [(c.name, c.arguments) for c in whole.calls] == got_calls
    assert whole.content == got_content


@pytest.mark.parametrize(("name", "text", "content", "reasoning", "calls", "prompt"), CASES)
def test_no_markup_ever_reaches_content(
    name: str, text: str, content: str, reasoning: str, calls: Any, prompt: str
) -> None:
    """Fed one character at a time, no content delta carries any part of the family's markup."""
    for event in run_stream(name, text, prompt, 1):
        if isinstance(event, Content) and calls:
            assert not any(ch in event.text for ch in "<[|>{") or event.text.strip() in content


def test_arguments_stream_as_they_are_generated() -> None:
    """Arguments arrive in several pieces while the call is written, not whole at its end."""
    text = (
        '<tool_call>\n{"name": "get_time", "arguments": {"city": "' + "Paris " * 10 + '"}}'
        "\n</tool_call>"
    )
    pieces = [e for e in run_stream("hermes", text, "", 4) if isinstance(e, CallArguments)]
    assert len(pieces) > 5
    assert json.loads("".join(p.text for p in pieces)) == {"city": "Paris " * 10}


@pytest.mark.parametrize(
    ("name", "text"),
    [
        ("hermes", '<tool_call>\n{"name": "get_time", "arguments": {"city": "Par'),
        ("mistral", '[TOOL_CALLS]get_time[ARGS]{"city": "Par'),
        ("qwen3_coder", "<tool_call>\n<function=get_time>\n<parameter=city>\nPar"),
        (
            "deepseek_dsml",
            f'\n\n<{DSML}tool_calls>\n<{DSML}invoke name="get_time">\n'
            f'<{DSML}parameter name="city" string="true">Par',
        ),
        (
            "kimi",
            '<|tool_call_begin|>functions.get_time:0<|tool_call_argument_begin|>{"city": "Par',
        ),
    ],
)
def test_a_call_cut_short_is_a_call_with_its_arguments_so_far(name: str, text: str) -> None:
    """At the end of output an unfinished call is a call (not content), ended incomplete."""
    content, _, calls, ends = assemble(run_stream(name, text, "", 2))
    assert content == ""
    assert [n for n, _ in calls] == ["get_time"]
    assert ends == [False]


def test_leftover_markup_after_calls_is_dropped() -> None:
    """A second call's start cut by max_tokens ("<tool") never becomes content."""
    text = '<tool_call>\n{"name": "get_time", "arguments": {"city": "X"}}\n</tool_call>\n<tool'
    content, _, calls, _ = assemble(run_stream("hermes", text, "", 1))
    assert content == ""
    assert len(calls) == 1


def test_max_calls_drops_further_calls() -> None:
    """With at most one call allowed, a second call's markup is dropped, not content."""
    text = (
        '<tool_call>\n{"name": "get_time", "arguments": {}}\n</tool_call>\n'
        '<tool_call>\n{"name": "special_function", "arguments": {}}\n</tool_call>'
    )
    parser = stream_parser(family("hermes"), TOOLS, max_calls=1)
    events = parser.feed(text) + parser.finish()
    content, _, calls, _ = assemble(events)
    assert (content, [n for n, _ in calls]) == ("", ["get_time"])


def test_invalid_arguments_come_back_raw() -> None:
    """Arguments that are not JSON are the call's arguments as written; nothing raises."""
    text = "[TOOL_CALLS]get_time[ARGS]{city: Paris}"
    _, _, calls, _ = assemble(run_stream("mistral", text, "", 3))
    assert calls == [("get_time", "{city: Paris}")]


def test_bare_json_naming_no_declared_tool_is_content() -> None:
    """A JSON answer that is not a call of a declared tool stays content."""
    text = '{"name": "Alice", "age": 3}'
    content, _, calls, _ = assemble(run_stream("hermes", text, "", 2))
    assert (content, calls) == (text, [])


def test_without_tools_reasoning_is_still_split_and_markup_stays_content() -> None:
    """No tools in the request: calls are not parsed, reasoning still is."""
    parser = stream_parser(family("qwen3"), None)
    text = "<think>hm</think><tool_call>x</tool_call>"
    content, reasoning, calls, _ = assemble(parser.feed(text) + parser.finish())
    assert (content, reasoning, calls) == ("<tool_call>x</tool_call>", "hm", [])


def test_unknown_template_falls_back_to_hermes() -> None:
    """A template of no known family is read in the Hermes convention."""
    assert recognise("{{ messages }}").name == "hermes"
    assert recognise(None).name == "hermes"


@settings(max_examples=25, deadline=None)
@given(st.data())
def test_any_cutting_of_any_family_output_streams_like_the_whole(data: st.DataObject) -> None:
    """However an output is cut into pieces, the events add up to the whole output's result."""
    name, text, _, _, _, prompt = data.draw(st.sampled_from(CASES))
    cuts = sorted(data.draw(st.lists(st.integers(0, len(text)), max_size=15)))
    parser = stream_parser(family(name), TOOLS, prompt=prompt)
    events: list[Any] = []
    for start, end in zip([0, *cuts], [*cuts, len(text)], strict=True):
        events += parser.feed(text[start:end])
    events += parser.finish()
    content, reasoning, calls, _ = assemble(events)
    whole = stream_parser(family(name), TOOLS, prompt=prompt)
    whole.feed(text)
    snap = whole.whole()
    assert (content, reasoning.strip()) == (snap.content, snap.reasoning.strip())
    assert calls == [(c.name, c.arguments) for c in snap.calls]


@pytest.mark.parametrize(
    ("name", "text"),
    [
        (
            "kimi",
            "<|tool_calls_section_begin|><|tool_call_begin|>functions.get_time:0"
            "<|tool_call_argument_begin|>{}<|tool_call_end|><|tool_calls_section_en",
        ),
        ("phi", '<|tool_call|>[{"name": "get_time", "arguments": {}}]<|/tool_ca'),
        (
            "command_r",
            '<|START_ACTION|>[{"tool_name": "get_time", "parameters": {}}]<|END_ACT',
        ),
        (
            "deepseek_dsml",
            f'<{DSML}tool_calls>\n<{DSML}invoke name="get_time">\n\n</{DSML}invoke>\n</{DSML}too',
        ),
        (
            "deepseek_dsml",
            f'<{DSML}function_calls>\n<{DSML}invoke name="get_time">\n</{DSML}invoke>\n'
            f"</{DSML}function_calls>\n\n<{DSML}funct",
        ),
    ],
)
def test_a_closing_marker_cut_short_is_dropped(name: str, text: str) -> None:
    """max_tokens cutting a section's closing marker leaves the call and no content."""
    content, _, calls, _ = assemble(run_stream(name, text, "", 5))
    assert (content, [n for n, _ in calls]) == ("", ["get_time"])


# DeepSeek V3.2 in thinking mode, token by token: what each token makes the parser emit.
DSML_TOKENS: list[tuple[str, list[Any]]] = [
    ("Need", [Reasoning("Need")]),
    (" weather", [Reasoning(" weather")]),
    ("</think>", []),
    ("Checking", [Content("Checking")]),
    (".", [Content(".")]),
    ("\n\n", []),
    ("<", []),
    (DSML, []),
    ("function_calls", []),
    (">", []),
    ("\n<", []),
    (DSML, []),
    ("invoke", []),
    (' name="get', []),
    ("_time", []),
    ('">', [CallStart(0, "get_time"), CallArguments(0, "{")]),
    ("\n<", []),
    (DSML, []),
    ('parameter name="city" string="true">', []),
    ("Paris", []),
    ("</", []),
    (DSML, []),
    ("parameter", []),
    (">", [CallArguments(0, '"city": "Paris"')]),
    ("\n<", []),
    (DSML, []),
    ('parameter name="days" string="false">', []),
    ("3", []),
    ("</", []),
    (DSML, []),
    ("parameter>\n", [CallArguments(0, ', "days": 3')]),
    ("</", []),
    (DSML, []),
    ("invoke>\n", [CallArguments(0, "}"), CallEnd(0, True)]),
    ("</", []),
    (DSML, []),
    ("function_calls>", []),
]


def test_dsml_streams_reasoning_content_and_each_parameter_as_it_closes() -> None:
    """Fed the tokens of a DeepSeek V3.2 answer (the prompt opened <think>), the parser emits
    the reasoning, the content without the blank line before the calls, the call's name as
    soon as it is read, and its arguments one parameter at a time; markup never."""
    parser = stream_parser(
        family("deepseek_dsml"), TOOLS, prompt="<｜User｜>Time?<｜Assistant｜><think>"
    )
    for token, expected in DSML_TOKENS:
        assert parser.feed(token) == expected, token
    assert parser.finish() == []


@pytest.mark.parametrize(
    ("attribute", "raw", "value"),
    [
        ('string="true"', "123", "123"),
        ('string="true"', " spaced\n", " spaced\n"),
        ('string="false"', "123", 123),
        ('string="false"', '{"a": [1, true]}', {"a": [1, True]}),
        ('string="false"', "{oops", "{oops"),
        ('string="false"', "NaN", "NaN"),
        ("", "7", 7),
    ],
)
def test_dsml_values_are_typed_by_their_string_attribute(
    attribute: str, raw: str, value: Any
) -> None:
    """string="true": the raw text; "false": JSON, or the raw text where it is not JSON (never
    an error); no attribute: typed by the tool's schema."""
    text = (
        f'<{DSML}tool_calls>\n<{DSML}invoke name="special_function">\n'
        f'<{DSML}parameter name="arg1" {attribute}>{raw}</{DSML}parameter>\n</{DSML}invoke>\n'
        f"</{DSML}tool_calls>"
    )
    _, _, calls, ends = assemble(run_stream("deepseek_dsml", text, "", 2))
    assert [(n, json.loads(a)) for n, a in calls] == [("special_function", {"arg1": value})]
    assert ends == [True]


def test_dsml_calls_begun_inside_the_reasoning_end_it() -> None:
    """A DSML block written before </think> is calls, not reasoning (as llama.cpp reads it)."""
    text = f"{THOUGHTS}\n\n<{DSML}function_calls>\n{DSML_CALL}</{DSML}function_calls>"
    content, reasoning, calls, _ = assemble(
        run_stream("deepseek_dsml", text, "<｜Assistant｜><think>", 3)
    )
    assert (content, reasoning, [(n, json.loads(a)) for n, a in calls]) == ("", THOUGHTS, CALL)


def test_deepseek_v3_2_and_v4_templates_are_read_as_dsml() -> None:
    """The DSML token in a template picks the DSML family (not DeepSeek V3.1's)."""
    assert recognise("{%- set dsml_token = '｜DSML｜' -%}<｜Assistant｜>").name == "deepseek_dsml"


def test_dsml_call_without_a_readable_name_is_dropped() -> None:
    """An invoke with no name attribute is dropped whole; the calls after it are read."""
    text = (
        f'<{DSML}function_calls>\n<{DSML}invoke>\n<{DSML}parameter name="x" string="true">1'
        f"</{DSML}parameter>\n</{DSML}invoke>\n{DSML_CALL}</{DSML}function_calls>"
    )
    content, _, calls, _ = assemble(run_stream("deepseek_dsml", text, "", 4))
    assert (content, [(n, json.loads(a)) for n, a in calls]) == ("", CALL)
