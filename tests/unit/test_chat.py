"""Chat templates: selection order, built-in formats, sandboxing, failure mapping."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import pytest

from llmserve.errors import InvalidRequest, ModelLoadError
from llmserve.prompt.chat import ChatTemplate

CONVERSATION: list[dict[str, Any]] = [
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": "Hi!"},
    {"role": "assistant", "content": "Hello."},
    {"role": "user", "content": "What is 2+2?"},
]


def template(
    *,
    gguf: str | None = None,
    override: str | None = None,
    architecture: str = "llama",
) -> ChatTemplate:
    """A ChatTemplate with fixed special tokens."""
    return ChatTemplate(
        gguf_template=gguf,
        override=override,
        architecture=architecture,
        bos_token="<s>",
        eos_token="</s>",
        clock=lambda: datetime(2025, 3, 14, 15, 9, 26),
    )


def test_gemma_fallback_renders_google_turn_format() -> None:
    """Gemma 3 without a GGUF template gets Google's format, system merged into the user turn."""
    prompt = template(architecture="gemma3").render(CONVERSATION)
    assert prompt == (
        "<start_of_turn>user\nBe brief.\n\nHi!<end_of_turn>\n"
        "<start_of_turn>model\nHello.<end_of_turn>\n"
        "<start_of_turn>user\nWhat is 2+2?<end_of_turn>\n"
        "<start_of_turn>model\n"
    )


def test_gemma_fallback_without_system_message() -> None:
    """Without a system message the first user turn is unchanged."""
    prompt = template(architecture="gemma").render([{"role": "user", "content": "Hi"}])
    assert prompt == "<start_of_turn>user\nHi<end_of_turn>\n<start_of_turn>model\n"


def test_gemma_fallback_with_only_a_system_message() -> None:
    """A lone system message still reaches the model, as a user turn."""
    prompt = template(architecture="gemma2").render([{"role": "system", "content": "Rules."}])
    assert prompt == "<start_of_turn>user\nRules.\n\n<end_of_turn>\n<start_of_turn>model\n"


def test_chatml_fallback_for_other_architectures() -> None:
    """An architecture without a built-in of its own gets ChatML."""
    chat = template(architecture="qwen2")
    prompt = chat.render(CONVERSATION[:2])
    assert chat.source == "builtin:chatml"
    assert prompt == (
        "<|im_start|>system\nBe brief.<|im_end|>\n"
        "<|im_start|>user\nHi!<|im_end|>\n"
        "<|im_start|>assistant\n"
    )


def test_generation_prompt_can_be_left_out() -> None:
    """add_generation_prompt=False ends after the last message."""
    prompt = template().render(CONVERSATION[1:2], add_generation_prompt=False)
    assert prompt == "<|im_start|>user\nHi!<|im_end|>\n"


def test_gguf_template_is_used_when_present() -> None:
    """The GGUF's own template beats the built-in."""
    chat = template(gguf="{{ bos_token }}{% for m in messages %}[{{ m.content }}]{% endfor %}")
    assert chat.source == "gguf"
    assert chat.render(CONVERSATION[1:2]) == "<s>[Hi!]"


def test_override_wins_over_gguf_template() -> None:
    """A configured override beats the GGUF template."""
    chat = template(gguf="GGUF", override="OVERRIDE {{ messages | length }}")
    assert chat.source == "override"
    assert chat.render(CONVERSATION) == "OVERRIDE 4"


def test_blank_override_falls_through_to_gguf() -> None:
    """An empty override counts as unset."""
    assert template(gguf="GGUF", override="  ").source == "gguf"


def test_content_as_text_parts_renders() -> None:
    """Content given as a list of text parts renders as their concatenation."""
    parts = [{"type": "text", "text": "Hello "}, {"type": "text", "text": "there"}]
    prompt = template().render([{"role": "user", "content": parts}])
    assert prompt == "<|im_start|>user\nHello there<|im_end|>\n<|im_start|>assistant\n"


def test_gemma_content_as_text_parts_renders() -> None:
    """The Gemma built-in accepts text parts as well."""
    parts = [{"type": "text", "text": "Hi"}]
    prompt = template(architecture="gemma3").render([{"role": "user", "content": parts}])
    assert prompt == "<start_of_turn>user\nHi<end_of_turn>\n<start_of_turn>model\n"


def test_raise_exception_becomes_invalid_request() -> None:
    """A template's raise_exception is the request's 400, with its message."""
    chat = template(gguf="{{ raise_exception('Roles must alternate') }}")
    with pytest.raises(InvalidRequest, match="Roles must alternate") as info:
        chat.render(CONVERSATION)
    assert info.value.status == 400


@pytest.mark.parametrize(
    "escape",
    [
        "{{ ''.__class__.__mro__[1].__subclasses__() }}",
        "{{ cycler.__init__.__globals__.os.popen('id').read() }}",
        "{{ messages.append(1) }}",
    ],
)
def test_sandbox_escape_is_invalid_request(escape: str) -> None:
    """Attribute escapes and mutation are refused as a 400, never executed."""
    with pytest.raises(InvalidRequest):
        template(gguf=escape).render(CONVERSATION)


def test_undefined_attribute_use_is_invalid_request() -> None:
    """A template failing on these messages is a 400, not a 500."""
    with pytest.raises(InvalidRequest, match="failed to render"):
        template(gguf="{{ messages[0].content.nope.deeper }}").render(CONVERSATION)


def test_syntax_error_is_model_load_error_at_construction() -> None:
    """A template that does not compile fails the model load, naming its source."""
    with pytest.raises(ModelLoadError, match=r"gguf.*syntax error"):
        template(gguf="{% for m in messages %}no end")


def test_oversized_output_is_invalid_request() -> None:
    """Output past the size bound is refused."""
    chat = template(gguf="{% for i in range(100000) %}{{ 'x' * 100 }}{% endfor %}")
    with pytest.raises(InvalidRequest, match="exceeds"):
        chat.render(CONVERSATION)


def test_huge_string_multiplication_is_refused() -> None:
    """String repetition cannot allocate past the bound."""
    with pytest.raises(InvalidRequest, match="too large"):
        template(gguf="{{ 'x' * 10**12 }}").render(CONVERSATION)


def test_huge_power_is_refused() -> None:
    """Exponentiation cannot burn CPU on an astronomically large integer."""
    with pytest.raises(InvalidRequest, match="too large"):
        template(gguf="{{ 7 ** 100000000 }}").render(CONVERSATION)


def test_strftime_now_uses_the_injected_clock() -> None:
    """strftime_now formats the injected clock's time."""
    chat = template(gguf="{{ strftime_now('%d %b %Y') }}")
    assert chat.render(CONVERSATION) == "14 Mar 2025"


def test_tojson_keeps_characters_verbatim() -> None:
    """tojson does not HTML-escape or ASCII-escape, as in transformers."""
    chat = template(gguf="{{ messages[0] | tojson }}")
    assert chat.render([{"role": "user", "content": "<a & 'é'>"}]) == (
        '{"role": "user", "content": "<a & \'é\'>"}'
    )


def test_tools_are_passed_only_when_given() -> None:
    """Templates see tools when the request has them, and undefined otherwise."""
    chat = template(gguf="{{ 'tools' if tools is defined else 'none' }}")
    assert chat.render(CONVERSATION) == "none"
    assert chat.render(CONVERSATION, tools=[{"type": "function"}]) == "tools"


def test_generation_tag_is_accepted() -> None:
    """transformers' {% generation %} block renders its body."""
    chat = template(gguf="{% generation %}body{% endgeneration %}")
    assert chat.render(CONVERSATION) == "body"


TOOL = {"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}
TOOL_TURNS: list[dict[str, Any]] = [
    {"role": "user", "content": "Weather?"},
    {
        "role": "assistant",
        "content": "",
        "tool_calls": [{"id": "c1", "function": {"name": "get_weather", "arguments": {}}}],
    },
    {"role": "tool", "tool_call_id": "c1", "content": "sunny"},
]


def test_a_template_without_tools_gets_them_as_text() -> None:
    """The built-in ChatML knows no tools: they, the calls and the results go in as text."""
    prompt = template().render(TOOL_TURNS, tools=[TOOL])
    assert prompt.startswith("<|im_start|>system\n# Tools")
    assert '"name": "get_weather"' in prompt
    assert '<tool_call>\n{"name": "get_weather", "arguments": {}}\n</tool_call>' in prompt
    assert "<|im_start|>user\n<tool_response>\nsunny\n</tool_response><|im_end|>" in prompt
    assert "<|im_start|>tool" not in prompt


def test_a_template_with_tools_gets_them_as_data() -> None:
    """A template that handles tools itself sees the tools, calls and tool turns unchanged."""
    chat = template(
        gguf="{{ tools[0].function.name }}|{% for m in messages %}{{ m.role }}"
        "{% if m.tool_calls %}:{{ m.tool_calls[0].function.name }}{% endif %},{% endfor %}"
    )
    assert chat.render(TOOL_TURNS, tools=[TOOL]) == "get_weather|user,assistant:get_weather,tool,"


def test_null_and_undefined_add_to_a_string_as_empty_text() -> None:
    """As in llama.cpp's template engine: "a" + none and "a" + an undefined name are "a"
    (Command R+ adds each parameter's description, FireFunction a "functions" variable)."""
    chat = template(gguf="{{ 'a' + none }}|{{ 'b' + missing + 'c' }}|{{ none + 'd' }}")
    assert chat.render(CONVERSATION) == "a|bc|d"


def test_tojson_writes_a_filters_generator_as_a_list() -> None:
    """``tools | map(attribute='function') | tojson`` (llama.cpp's DeepSeek R1 template)."""
    chat = template(gguf="{{ tools | map(attribute='function') | map(attribute='name') | tojson }}")
    tools = [{"type": "function", "function": {"name": n}} for n in ("a", "b")]
    assert chat.render(CONVERSATION, tools=tools) == '["a", "b"]'
