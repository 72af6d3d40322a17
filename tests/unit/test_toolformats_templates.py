"""Each family's real chat template (tests/data/templates, from llama.cpp) is recognised as
that family, and renders tools, an assistant's tool call and the tool's result into the prompt."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest

from llmserve.prompt.chat import ChatTemplate

TEMPLATES = Path(__file__).parents[1] / "data" / "templates"

FAMILY_TEMPLATES = [
    ("hermes", "Qwen-Qwen2.5-7B-Instruct.jinja"),
    ("hermes", "NousResearch-Hermes-3-Llama-3.1-8B-tool_use.jinja"),
    ("qwen3", "Qwen-Qwen3-0.6B.jinja"),
    ("qwen3", "Qwen-QwQ-32B.jinja"),
    ("qwen3_coder", "Qwen3-Coder.jinja"),
    ("llama3", "meta-llama-Llama-3.1-8B-Instruct.jinja"),
    ("llama3", "meta-llama-Llama-3.2-3B-Instruct.jinja"),
    ("llama3", "meta-llama-Llama-3.3-70B-Instruct.jinja"),
    ("mistral", "mistralai-Mistral-Nemo-Instruct-2407.jinja"),
    ("mistral", "Mistral-Small-3.2-24B-Instruct-2506.jinja"),
    ("mistral", "unsloth-mistral-Devstral-Small-2507.jinja"),
    ("mistral", "mistralai-Ministral-3-14B-Reasoning-2512.jinja"),
    ("deepseek", "deepseek-ai-DeepSeek-V3.1.jinja"),
    ("deepseek", "deepseek-ai-DeepSeek-R1-Distill-Qwen-32B.jinja"),
    ("harmony", "openai-gpt-oss-120b.jinja"),
    ("glm", "GLM-4.6.jinja"),
    ("kimi", "moonshotai-Kimi-K2.jinja"),
    ("granite", "ibm-granite-granite-4.0.jinja"),
    ("command_r", "CohereForAI-c4ai-command-r7b-12-2024-tool_use.jinja"),
    ("functionary", "meetkai-functionary-medium-v3.1.jinja"),
    ("functionary", "meetkai-functionary-medium-v3.2.jinja"),
]
TOOLS: list[dict[str, Any]] = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Forecast for a city",
            "parameters": {
                "type": "object",
                "properties": {"city": {"type": "string"}},
                "required": ["city"],
            },
        },
    }
]
MESSAGES: list[dict[str, Any]] = [
    {"role": "user", "content": "Weather in Reykjavik?"},
    {
        "role": "assistant",
        "content": "",
        "tool_calls": [
            {
                "id": "abc123def",
                "type": "function",
                "function": {"name": "get_weather", "arguments": '{"city": "Reykjavik"}'},
            }
        ],
    },
    {"role": "tool", "tool_call_id": "abc123def", "content": "Sleet, 2 degrees"},
]


def test_granite_3_3_is_recognised() -> None:
    """Granite 3.3's template (which drops an assistant's calls from the prompt) is Granite."""
    text = (TEMPLATES / "ibm-granite-granite-3.3-2B-Instruct.jinja").read_text()
    common = {"override": None, "architecture": "x", "bos_token": "", "eos_token": ""}
    assert ChatTemplate(gguf_template=text, **common).tool_format == "granite"


def render(text: str, messages: list[dict[str, Any]]) -> str:
    template = ChatTemplate(
        gguf_template=text, override=None, architecture="x", bos_token="<s>", eos_token="</s>"
    )
    return template.render(copy.deepcopy(messages), tools=TOOLS)


@pytest.mark.parametrize(("family", "name"), FAMILY_TEMPLATES)
def test_real_template_is_recognised_and_carries_tools_calls_and_results(
    family: str, name: str
) -> None:
    """The family is recognised, and the prompt holds the tool, the call and its result."""
    text = (TEMPLATES / name).read_text()
    template = ChatTemplate(
        gguf_template=text, override=None, architecture="x", bos_token="<s>", eos_token="</s>"
    )
    assert template.tool_format == family
    try:
        prompt = render(text, MESSAGES)
    except Exception:
        # Some templates want the arguments as an object (as transformers passes them).
        messages = copy.deepcopy(MESSAGES)
        messages[1]["tool_calls"][0]["function"]["arguments"] = {"city": "Reykjavik"}
        prompt = render(text, messages)
    assert "get_weather" in prompt
    assert "Forecast for a city" in prompt or "city" in prompt
    assert "Reykjavik" in prompt.split("Weather in Reykjavik?", 1)[1]
    assert "Sleet, 2 degrees" in prompt
