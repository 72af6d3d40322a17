"""LFM2 / LFM2.5 calls (Python calls between <|tool_call_start|> and <|tool_call_end|>): real
outputs (llama.cpp's tests/test-chat.cpp LFM2 cases, and the LFM2.5-8B-A1B output of llama.cpp
issue 23838), streamed in pieces through the family's parser; Python values read into JSON
without evaluating anything; bad output never raises and never leaks markup."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from llmserve.prompt import toolformats
from llmserve.prompt.chat import ChatTemplate
from llmserve.prompt.grammar import UnsupportedSchema
from llmserve.prompt.toolformats import (
    CallArguments,
    CallStart,
    Content,
    family,
    stream_parser,
)
from llmserve.prompt.toolgrammar import tool_call_grammar
from tests.support.toolstream import assemble, feed

TEMPLATES = Path(__file__).parents[1] / "data" / "templates"
LFM2 = family("lfm2")
TOOLS: dict[str, Any] = {
    "special_function": {"type": "object", "properties": {"arg1": {"type": "integer"}}},
    "get_time": {"type": "object", "properties": {"city": {"type": "string"}}},
}
START, END = "<|tool_call_start|>", "<|tool_call_end|>"

# output, expected content, expected reasoning, expected calls (name, arguments)
CASES: list[tuple[str, str, str, list[tuple[str, Any]]]] = [
    ("Hello, world!\nWhat's up?", "Hello, world!\nWhat's up?", "", []),
    (f"{START}[special_function(arg1=1)]{END}", "", "", [("special_function", {"arg1": 1})]),
    (f'{START}[get_time(city="XYZCITY")]{END}', "", "", [("get_time", {"city": "XYZCITY"})]),
    (f"{START}[toggle(enabled=True)]{END}", "", "", [("toggle", {"enabled": True})]),
    (f"{START}[set_nullable(value=None)]{END}", "", "", [("set_nullable", {"value": None})]),
    (
        f'{START}[set_config(config={{"enabled": True, "count": 3}})]{END}',
        "",
        "",
        [("set_config", {"config": {"enabled": True, "count": 3}})],
    ),
    (
        f'{START}[set_config(config={{"enabled": true, "note": null}})]{END}',
        "",
        "",
        [("set_config", {"config": {"enabled": True, "note": None}})],
    ),
    (
        f'{START}[Calendar.create_event(title="demo", participants=["Alice", "Bob"], '
        f'metadata={{"priority": "high", "reminder": true}})]{END}',
        "",
        "",
        [
            (
                "Calendar.create_event",
                {
                    "title": "demo",
                    "participants": ["Alice", "Bob"],
                    "metadata": {"priority": "high", "reminder": True},
                },
            )
        ],
    ),
    (
        "Use this format: [link text](url). Example: [Wikipedia](https://www.wikipedia.org).",
        "Use this format: [link text](url). Example: [Wikipedia](https://www.wikipedia.org).",
        "",
        [],
    ),
    (
        f"{START}[python(code=\"def hello():\\n    print('hey')\")]{END}",
        "",
        "",
        [("python", {"code": "def hello():\n    print('hey')"})],
    ),
    (
        f'{START}[python(code="print(\\"hi\\")")]{END}',
        "",
        "",
        [("python", {"code": 'print("hi")'})],
    ),
    (
        f'Let me check the time.{START}[get_time(city="Paris")]{END}',
        "Let me check the time.",
        "",
        [("get_time", {"city": "Paris"})],
    ),
    (
        f"{START}[special_function(arg1=1), special_function_with_opt(arg1=1, arg2=2)]{END}",
        "",
        "",
        [("special_function", {"arg1": 1}), ("special_function_with_opt", {"arg1": 1, "arg2": 2})],
    ),
    (f"{START}[empty_args()]{END}", "", "", [("empty_args", {})]),
    (
        f"{START}[web_search_exa(query='current temperature in Mexico City', numResults=5)]{END}",
        "",
        "",
        [("web_search_exa", {"query": "current temperature in Mexico City", "numResults": 5})],
    ),
    (
        f"<think>I'm\nthinking</think>{START}[get_time(city='Paris')]{END}",
        "",
        "I'm\nthinking",
        [("get_time", {"city": "Paris"})],
    ),
    (
        f'{START}[{{"name": "get_time", "arguments": {{"city": "Paris"}}}}]{END}',
        "",
        "",
        [("get_time", {"city": "Paris"})],
    ),
]


def run_stream(text: str, size: int) -> list[Any]:
    return feed(stream_parser(LFM2, TOOLS), text, size)


def whole(text: str) -> toolformats.Snapshot:
    parser = stream_parser(LFM2, TOOLS)
    parser.feed(text)
    return parser.whole()


@pytest.mark.parametrize("size", [1, 3, 7, 10_000])
@pytest.mark.parametrize(("text", "content", "reasoning", "calls"), CASES)
def test_lfm2_output_parses_streamed_like_whole(
    text: str, content: str, reasoning: str, calls: Any, size: int
) -> None:
    """Streamed in pieces of any size, an output gives the expected content, reasoning and
    calls (Python values as JSON, every call ended complete), and the same as whole."""
    got_content, got_reasoning, got_calls, ends = assemble(run_stream(text, size))
    assert (got_content, got_reasoning.strip()) == (content, reasoning)
    assert [(n, json.loads(a)) for n, a in got_calls] == calls
    assert ends == [True] * len(calls)
    snap = whole(text)
    assert [(c.name, c.arguments) for c in snap.calls] == got_calls
    assert snap.content == got_content


@pytest.mark.parametrize(("text", "content", "reasoning", "calls"), CASES)
def test_no_lfm2_markup_reaches_content(
    text: str, content: str, reasoning: str, calls: Any
) -> None:
    """Fed one character at a time, every content delta is a piece of the expected content:
    none carries any of the call markup, not even while it could still be markup."""
    for event in run_stream(text, 1):
        if isinstance(event, Content):
            assert event.text in content


def test_the_name_comes_first_and_a_string_value_streams_as_it_is_written() -> None:
    """The call's name is its first event; a long string argument arrives in many pieces,
    before its closing quote, escapes decoded."""
    text = f'{START}[python(code="' + "print(1)\\n" * 12 + f'")]{END}'
    events = run_stream(text, 4)
    calls = [e for e in events if isinstance(e, CallStart | CallArguments)]
    assert calls[0] == CallStart(0, "python")
    pieces = [e.text for e in calls[1:]]
    assert len(pieces) > 10
    assert json.loads("".join(pieces)) == {"code": "print(1)\n" * 12}


@pytest.mark.parametrize(
    ("text", "arguments"),
    [
        (f'{START}[get_time(city="Par', '{"city": "Par'),
        (f"{START}[get_time(city='Paris', n=1", '{"city": "Paris"'),
        (f"{START}[get_time(", ""),
        (f'{START}[get_time(city="a\\', '{"city": "a'),
        (f'{START}[get_time(city="\\ud83d', '{"city": "'),
    ],
)
def test_a_call_cut_short_is_a_call_with_its_arguments_so_far(text: str, arguments: str) -> None:
    """At the end of output an unfinished call is a call with the arguments written so far (a
    string as far as written, an escape cut in half held back), ended incomplete."""
    content, _, calls, ends = assemble(run_stream(text, 2))
    assert (content, calls, ends) == ("", [("get_time", arguments)], [False])


@pytest.mark.parametrize(
    "text",
    [
        f'{START}[get_time(city="X")]<|tool_call_e',
        f'{START}[get_time(city="X"), get_ti',
        f'{START}[get_time(city="X")]{END}<|tool_call_st',
    ],
)
def test_leftover_markup_after_calls_is_dropped(text: str) -> None:
    """Markup cut by max_tokens after a complete call (the end marker, another call's name,
    another section's start) never becomes content."""
    content, _, calls, ends = assemble(run_stream(text, 1))
    assert (content, calls, ends) == ("", [("get_time", '{"city": "X"}')], [True])


@pytest.mark.parametrize(
    ("text", "calls", "content"),
    [
        # Positional arguments: the text between the parentheses, as written.
        (f'{START}[f("Paris"), g({{"a": 1}})]{END}', [("f", '"Paris"'), ("g", '{"a": 1}')], ""),
        # A value that is no literal: its text, as a string.
        (f"{START}[f(x=os.getcwd(), y=2)]{END}", [("f", '{"x": "os.getcwd()", "y": 2}')], ""),
        # Anything else after a value ends the call; the rest up to ")" is dropped.
        (f'{START}[f(x="a" + "b", y=2)]{END}ok', [("f", '{"x": "a"}')], "ok"),
        # Not a call at all: dropped up to the end marker.
        (f"{START}[123]{END}ok", [], "ok"),
        (f"{START}[f(x=1) oops g(y=2)]{END}ok", [("f", '{"x": 1}')], "ok"),
    ],
)
def test_bad_calls_never_raise_and_leak_no_markup(
    text: str, calls: list[tuple[str, str]], content: str
) -> None:
    """Output that is not keyword calls comes back as calls with their raw text, or is
    dropped; content outside the markup stays content."""
    for size in (1, 5, 10_000):
        got_content, _, got_calls, _ = assemble(run_stream(text, size))
        assert (got_calls, got_content) == (calls, content)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("'single'", "single"),
        ("""'it\\'s "x"'""", 'it\'s "x"'),
        ('"""tri"ple"""', 'tri"ple'),
        (r'"\u00e9\x41\101\/\q"', "éAA/\\q"),
        (r'"\ud83d\ude00"', "😀"),
        ('r"a\\nb"', "a\\nb"),
        ("(1, 2.5, -3e2)", [1, 2.5, -300.0]),
        ("{'a': [True, False, None]}", {"a": [True, False, None]}),
        ("1_000", 1000),
        ("1e999", "1e999"),  # no JSON number: its text
        ("[[[[1]]]]", [[[[1]]]]),
    ],
)
def test_python_values_become_json(value: str, expected: Any) -> None:
    """Python literals (quotes of every kind, escapes, tuples, True/None) are read into the
    JSON values they mean; what no JSON value can hold is its text."""
    _, _, calls, _ = assemble(run_stream(f"{START}[f(v={value})]{END}", 3))
    assert json.loads(calls[0][1]) == {"v": expected}


def test_deep_nesting_is_text_not_a_crash() -> None:
    """A value nested past any sensible depth is passed on as its text."""
    value = "[" * 500 + "]" * 500
    _, _, calls, _ = assemble(run_stream(f"{START}[f(v={value})]{END}", 10_000))
    assert json.loads(calls[0][1]) == {"v": value}


@settings(max_examples=40, deadline=None)
@given(st.data())
def test_any_cutting_of_any_lfm2_output_streams_like_the_whole(data: st.DataObject) -> None:
    """However an output is cut into pieces, the events add up to the whole output's result."""
    text = data.draw(st.sampled_from(CASES))[0]
    cuts = sorted(data.draw(st.lists(st.integers(0, len(text)), max_size=15)))
    parser = stream_parser(LFM2, TOOLS)
    events: list[Any] = []
    for start, end in zip([0, *cuts], [*cuts, len(text)], strict=True):
        events += parser.feed(text[start:end])
    content, _, calls, _ = assemble(events + parser.finish())
    snap = whole(text)
    assert (content, calls) == (snap.content, [(c.name, c.arguments) for c in snap.calls])


PIECES = [*"[](){}'\",=.:\\ -_1aeTrux<|>", START, END]


@settings(max_examples=60, deadline=None)
@given(st.lists(st.sampled_from(PIECES), max_size=40).map("".join))
def test_any_text_after_the_start_marker_never_raises(tail: str) -> None:
    """Whatever follows the start marker, the parser answers (streamed as whole)."""
    text = START + tail
    content, _, calls, _ = assemble(run_stream(text, 2))
    snap = whole(text)
    assert (content, calls) == (snap.content, [(c.name, c.arguments) for c in snap.calls])


@pytest.mark.parametrize(
    "name", ["LFM2-8B-A1B.jinja", "LFM2.5-8B-A1B.jinja", "LFM2.5-Instruct.jinja"]
)
def test_lfm2_templates_are_recognised(name: str) -> None:
    """LFM2's template (tool list markers) and LFM2.5's ("List of tools: [") are lfm2."""
    assert toolformats.recognise((TEMPLATES / name).read_text()).name == "lfm2"


def chat_template(name: str) -> ChatTemplate:
    return ChatTemplate(
        gguf_template=(TEMPLATES / name).read_text(),
        override=None,
        architecture="lfm2",
        bos_token="<|startoftext|>",
        eos_token="<|im_end|>",
    )


CALL_TURN: list[dict[str, Any]] = [
    {"role": "user", "content": "Weather?"},
    {
        "role": "assistant",
        "content": "",
        "tool_calls": [
            {
                "id": "c1",
                "type": "function",
                "function": {
                    "name": "get_time",
                    "arguments": {"city": "Paris", "days": 3, "metric": True, "tags": ["a"]},
                },
            }
        ],
    },
]


@pytest.mark.parametrize(
    "name", ["LFM2-8B-A1B.jinja", "LFM2.5-8B-A1B.jinja", "LFM2.5-Instruct.jinja"]
)
def test_a_call_in_the_history_reads_back_as_the_same_call(name: str) -> None:
    """The call as each template puts it in the prompt (LFM2.5-8B-A1B's own Python form with
    single quotes and True; the others' content, written in the family's syntax) is read by
    the parser as the call it was."""
    prompt = chat_template(name).render(copy.deepcopy(CALL_TURN), tools=None)
    section = prompt[prompt.index(START) : prompt.index(END) + len(END)]
    _, _, calls, _ = assemble(run_stream(section, 3))
    arguments = CALL_TURN[1]["tool_calls"][0]["function"]["arguments"]
    assert [(n, json.loads(a)) for n, a in calls] == [("get_time", arguments)]


def test_forced_keyword_names_must_be_writable() -> None:
    """A parameter whose name cannot be a keyword argument (a space in it) is a 400 naming the
    tool's field, not a call the parser could not read back."""
    schema = {"type": "object", "properties": {"a b": {"type": "string"}}}
    with pytest.raises(UnsupportedSchema) as caught:
        tool_call_grammar(
            [("f", schema, "tools[1].function.parameters")], parallel=False, family=LFM2
        )
    assert caught.value.param == "tools[1].function.parameters"
