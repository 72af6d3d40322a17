"""Anthropic cache_control breakpoints: which blocks are marked, and where each marked prefix
ends in prompts rendered by real templates."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from llmserve.api.anthropic import codec, translate
from llmserve.api.anthropic.breakpoints import Mark, common_length, marks, variant
from llmserve.api.anthropic.wire import MessagesInput
from llmserve.errors import InvalidRequest
from llmserve.prompt.chat import ChatTemplate

TEMPLATES = Path(__file__).parents[1] / "data" / "templates"
MARK = {"type": "ephemeral"}
SYSTEM = "You are a careful assistant who answers in one short sentence."
TOOL = {
    "name": "get_weather",
    "description": "Forecast of a city",
    "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}},
}
CLOCK = {**TOOL, "name": "get_time", "description": "The time in a city"}


def request(**fields: Any) -> MessagesInput:
    body = {"model": "m", "messages": [{"role": "user", "content": "Weather in Paris?"}]}
    return codec.structure_request(codec.dumps({**body, **fields}), MessagesInput)


def claude_code_like(user: str = "Weather in Paris?") -> MessagesInput:
    """A system block and the last tool marked, as Claude Code sends them."""
    return request(
        system=[{"type": "text", "text": SYSTEM, "cache_control": MARK}],
        tools=[TOOL, {**CLOCK, "cache_control": MARK}],
        messages=[{"role": "user", "content": user}],
    )


def real(name: str | None, architecture: str = "qwen2") -> ChatTemplate:
    """A real template from tests/data/templates (None: the built-in of ``architecture``)."""
    text = (TEMPLATES / name).read_text() if name else None
    return ChatTemplate(
        gguf_template=text, override=None, architecture=architecture, bos_token="", eos_token=""
    )


def rendered(template: ChatTemplate, parsed: MessagesInput) -> str:
    chat = translate.chat_input(parsed, translate.tool_plan(parsed))
    return template.render(chat.messages, tools=chat.tools, variables=chat.variables)


def marked_prefix(template: ChatTemplate, parsed: MessagesInput, mark: Mark) -> str:
    """The prompt up to where the mark's variant departs from it (what the route computes)."""
    prompt = rendered(template, parsed)
    return prompt[: common_length(prompt, rendered(template, variant(parsed, mark)))]


def test_marks_are_found_on_tools_system_and_message_blocks() -> None:
    """Marked tools, system blocks and content blocks are breakpoints, in prompt order."""
    parsed = request(
        tools=[{**TOOL, "cache_control": MARK}],
        system=[
            {"type": "text", "text": "a"},
            {"type": "text", "text": "b", "cache_control": MARK},
        ],
        messages=[
            {"role": "user", "content": [{"type": "text", "text": "x", "cache_control": MARK}]}
        ],
    )
    assert marks(parsed) == [Mark("tools", 0), Mark("system", 1), Mark("messages", 0, 0)]


def test_unmarked_requests_have_no_breakpoints() -> None:
    """No cache_control: nothing to keep beyond what the prefix cache does anyway."""
    assert marks(request(system="plain", tools=[TOOL])) == []


def test_more_than_four_marks_is_anthropics_400() -> None:
    """Five marked blocks: Anthropic's invalid_request_error message, counting them."""
    blocks = [{"type": "text", "text": str(i), "cache_control": MARK} for i in range(5)]
    with pytest.raises(InvalidRequest) as caught:
        marks(request(system=blocks))
    assert caught.value.message == (
        "A maximum of 4 blocks with cache_control may be provided. Found 5."
    )


def test_marks_inside_a_tool_result_count_toward_the_four() -> None:
    """Text blocks inside a tool_result carry marks too; they mark the tool_result block."""
    inner = [{"type": "text", "text": str(i), "cache_control": MARK} for i in range(5)]
    call = {"type": "tool_use", "id": "t1", "name": "get_weather", "input": {}}
    result = {"type": "tool_result", "tool_use_id": "t1", "content": inner[:1]}
    messages = [
        {"role": "user", "content": "Weather?"},
        {"role": "assistant", "content": [call]},
        {"role": "user", "content": [result]},
    ]
    assert marks(request(messages=messages)) == [Mark("messages", 2, 0)]
    crowded = [*messages[:2], {"role": "user", "content": [{**result, "content": inner}]}]
    with pytest.raises(InvalidRequest):
        marks(request(messages=crowded))


def test_a_bad_cache_control_type_is_a_400() -> None:
    """cache_control's type is 'ephemeral', as Anthropic requires."""
    with pytest.raises(InvalidRequest) as caught:
        request(system=[{"type": "text", "text": "a", "cache_control": {"type": "forever"}}])
    assert "ephemeral" in caught.value.message


def test_common_length_of_texts() -> None:
    """The common prefix length: whole, none, and everywhere in between."""
    assert common_length("abcdef", "abcdef") == 6
    assert common_length("abcdef", "abc") == 3
    assert common_length("xbc", "abc") == 0
    text = "a" * 1000
    for cut in (1, 499, 500, 999):
        assert common_length(text, text[:cut] + "b" + text[cut + 1 :]) == cut


def test_system_mark_covers_system_and_tools_in_qwen() -> None:
    """Qwen writes the tools after the system text: a system mark covers both, up to where
    the conversation begins."""
    qwen = real("Qwen-Qwen2.5-7B-Instruct.jinja")
    prefix = marked_prefix(qwen, claude_code_like(), Mark("system", 0))
    assert SYSTEM in prefix
    assert '"get_time"' in prefix
    assert prefix.endswith("<|im_start|>user\n")


def test_system_mark_covers_system_and_tools_in_gemmas_builtin() -> None:
    """Gemma writes the system text (tools as text in it) into the first user turn: the mark
    ends just before the user's own text."""
    gemma = real(None, architecture="gemma3")
    parsed = claude_code_like()
    prefix = marked_prefix(gemma, parsed, Mark("system", 0))
    assert SYSTEM in prefix
    assert '"get_time"' in prefix
    assert (
        rendered(gemma, parsed) == prefix + "Weather in Paris?<end_of_turn>\n<start_of_turn>model\n"
    )


def test_the_marked_prefix_is_what_two_sessions_share() -> None:
    """Two sessions differing only in the first question share exactly the marked prefix."""
    qwen = real("Qwen-Qwen2.5-7B-Instruct.jinja")
    one, two = claude_code_like("Weather in Paris?"), claude_code_like("Time in Rome?")
    prefix = marked_prefix(qwen, one, Mark("system", 0))
    assert prefix == marked_prefix(qwen, two, Mark("system", 0))
    assert rendered(qwen, two).startswith(prefix)


def test_a_system_mark_before_other_system_blocks_stops_at_its_block() -> None:
    """A mark on the first of two system blocks covers that block, not the second."""
    qwen = real("Qwen-Qwen2.5-7B-Instruct.jinja")
    parsed = request(
        system=[
            {"type": "text", "text": "First part.", "cache_control": MARK},
            {"type": "text", "text": "Second part."},
        ]
    )
    prefix = marked_prefix(qwen, parsed, Mark("system", 0))
    assert prefix.endswith("First part.\n")


def test_a_message_mark_ends_with_its_block() -> None:
    """A mark on a user turn's block covers the conversation up to that block's text."""
    qwen = real("Qwen-Qwen2.5-7B-Instruct.jinja")
    parsed = request(
        messages=[
            {"role": "user", "content": "Hi"},
            {"role": "assistant", "content": "Hello."},
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "Weather in Paris?", "cache_control": MARK},
                    {"type": "text", "text": "And tomorrow?"},
                ],
            },
        ]
    )
    prefix = marked_prefix(qwen, parsed, Mark("messages", 2, 0))
    assert prefix.endswith("Weather in Paris?\n")
    assert "And tomorrow?" not in prefix
