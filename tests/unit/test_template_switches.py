"""A request's switches reach real chat templates: extra variables and the reasoning switch."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from llmserve.errors import InvalidRequest
from llmserve.prompt import switches
from llmserve.prompt.chat import ChatTemplate

TEMPLATES = Path(__file__).parents[1] / "data" / "templates"
ASK: list[dict[str, Any]] = [{"role": "user", "content": "What is 2+2?"}]
EMPTY_THINK = "<|im_start|>assistant\n<think>\n\n</think>\n\n"


def real(name: str, defaults: dict[str, Any] | None = None) -> ChatTemplate:
    """The real template ``name`` from tests/data/templates, as a GGUF would carry it."""
    return ChatTemplate(
        gguf_template=(TEMPLATES / name).read_text(),
        override=None,
        architecture="qwen3",
        bos_token="",
        eos_token="<|im_end|>",
        defaults=defaults,
    )


def inline(text: str, defaults: dict[str, Any] | None = None) -> ChatTemplate:
    """A template written in the test, to see exactly which variables it gets."""
    return ChatTemplate(
        gguf_template=text,
        override=None,
        architecture="llama",
        bos_token="",
        eos_token="",
        defaults=defaults,
    )


def test_qwen3_enable_thinking_false_writes_an_empty_think_block() -> None:
    """Qwen3 with enable_thinking false ends its generation prompt with an empty think block."""
    qwen3 = real("Qwen-Qwen3-0.6B.jinja")
    off = qwen3.render(ASK, variables={"enable_thinking": False})
    assert off.endswith(EMPTY_THINK)
    assert not qwen3.render(ASK).endswith(EMPTY_THINK)


def test_qwen3_enable_thinking_true_is_the_templates_default() -> None:
    """enable_thinking true renders as no switch at all (Qwen3 thinks by default)."""
    qwen3 = real("Qwen-Qwen3-0.6B.jinja")
    assert qwen3.render(ASK, variables={"enable_thinking": True}) == qwen3.render(ASK)


def test_gpt_oss_reads_reasoning_effort() -> None:
    """gpt-oss writes the requested effort into its system message (medium by default)."""
    gpt_oss = real("openai-gpt-oss-120b.jinja")
    assert "Reasoning: medium" in gpt_oss.render(ASK)
    high = gpt_oss.render(ASK, variables=switches.effort_variables("high"))
    assert "Reasoning: high" in high
    assert "Reasoning: medium" not in high


def test_cohere2moe_effort_none_turns_reasoning_off() -> None:
    """Cohere2MoE reads reasoning_effort none as no reasoning: the prompts differ."""
    cohere = real("Cohere2MoE.jinja")
    assert cohere.render(ASK, variables=switches.effort_variables("none")) != cohere.render(ASK)


def test_model_defaults_reach_every_render() -> None:
    """[model] chat_template_kwargs are variables of a render that sends none."""
    qwen3 = real("Qwen-Qwen3-0.6B.jinja", defaults={"enable_thinking": False})
    assert qwen3.render(ASK).endswith(EMPTY_THINK)


def test_request_variables_override_model_defaults_key_by_key() -> None:
    """A request's variable wins over the model default of the same name; others stay."""
    qwen3 = real("Qwen-Qwen3-0.6B.jinja", defaults={"enable_thinking": False, "other": 1})
    assert not qwen3.render(ASK, variables={"enable_thinking": True}).endswith(EMPTY_THINK)
    probe = inline("{{ a }}-{{ b }}", defaults={"a": 1, "b": 2})
    assert probe.render(ASK, variables={"b": 3}) == "1-3"


def test_effort_none_switches_thinking_off_and_others_on() -> None:
    """reasoning_effort none: enable_thinking false; any other effort: true; absent: nothing."""
    assert switches.effort_variables("none") == {
        "reasoning_effort": "none",
        "enable_thinking": False,
    }
    assert switches.effort_variables("low") == {"reasoning_effort": "low", "enable_thinking": True}
    assert switches.effort_variables(None) == {}


def test_thinking_switch_sets_enable_thinking_only_when_given() -> None:
    """Anthropic thinking: on or off as asked; absent leaves the template's default."""
    assert switches.thinking_variables(False) == {"enable_thinking": False}
    assert switches.thinking_variables(True) == {"enable_thinking": True}
    assert switches.thinking_variables(None) == {}


@pytest.mark.parametrize("name", ["messages", "tools", "add_generation_prompt", "bos_token"])
def test_a_name_the_server_sets_is_refused(name: str) -> None:
    """chat_template_kwargs may not replace a variable the server sets: a 400 naming it."""
    with pytest.raises(InvalidRequest) as caught:
        switches.request_variables({name: 1, "enable_thinking": False}, param="p")
    assert caught.value.param == "p"
    assert repr(name) in caught.value.message


def test_a_template_reading_a_variable_gets_its_json_value() -> None:
    """Variables arrive as the JSON values sent: objects and arrays included."""
    probe = inline("{{ opts['depth'] }} {{ tags | join(',') }}")
    variables = switches.request_variables({"opts": {"depth": 2}, "tags": ["a", "b"]}, param="p")
    assert probe.render(ASK, variables=variables) == "2 a,b"
