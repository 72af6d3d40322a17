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
    ("deepseek_dsml", "deepseek-ai-DeepSeek-V3.2.jinja"),
    ("deepseek_dsml", "deepseek-ai-DeepSeek-V4.jinja"),
    ("deepseek_dsml", "deepseek-ai-DeepSeek-V4-Flash-0731.jinja"),
    ("harmony", "openai-gpt-oss-120b.jinja"),
    ("glm", "GLM-4.6.jinja"),
    ("kimi", "moonshotai-Kimi-K2.jinja"),
    ("granite", "ibm-granite-granite-4.0.jinja"),
    ("command_r", "CohereForAI-c4ai-command-r7b-12-2024-tool_use.jinja"),
    ("functionary", "meetkai-functionary-medium-v3.1.jinja"),
    ("functionary", "meetkai-functionary-medium-v3.2.jinja"),
    ("lfm2", "LFM2-8B-A1B.jinja"),
    ("lfm2", "LFM2.5-8B-A1B.jinja"),
    ("lfm2", "LFM2.5-Instruct.jinja"),
    ("firefunction", "fireworks-ai-llama-3-firefunction-v2.jinja"),
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
    """Granite 3.3's template is Granite."""
    text = (TEMPLATES / "ibm-granite-granite-3.3-2B-Instruct.jinja").read_text()
    common = {"override": None, "architecture": "x", "bos_token": "", "eos_token": ""}
    assert ChatTemplate(gguf_template=text, **common).tool_format == "granite"


def chat_template(text: str) -> ChatTemplate:
    return ChatTemplate(
        gguf_template=text, override=None, architecture="x", bos_token="<s>", eos_token="</s>"
    )


def render(text: str, messages: list[dict[str, Any]]) -> str:
    return chat_template(text).render(copy.deepcopy(messages), tools=TOOLS)


def with_arguments(arguments: Any) -> list[dict[str, Any]]:
    messages = copy.deepcopy(MESSAGES)
    messages[1]["tool_calls"][0]["function"]["arguments"] = arguments
    return messages


@pytest.mark.parametrize(("family", "name"), FAMILY_TEMPLATES)
def test_real_template_is_recognised_and_carries_tools_calls_and_results(
    family: str, name: str
) -> None:
    """The family is recognised, and the prompt holds the tool, the call and its result."""
    text = (TEMPLATES / name).read_text()
    assert chat_template(text).tool_format == family
    prompt = render(text, MESSAGES)
    assert "get_weather" in prompt
    assert "Forecast for a city" in prompt or "city" in prompt
    assert "Reykjavik" in prompt.split("Weather in Reykjavik?", 1)[1]
    assert "Sleet, 2 degrees" in prompt


ALL_TEMPLATES = sorted(p.name for p in TEMPLATES.glob("*.jinja"))


@pytest.mark.parametrize("arguments", ["object", "text"])
@pytest.mark.parametrize("name", ALL_TEMPLATES)
def test_every_template_shows_a_call_and_its_result_in_the_history(
    name: str, arguments: str
) -> None:
    """Every template in the collection, given a user turn, an assistant turn with a call and
    the tool's result (arguments as an object or as JSON text), puts the call's name, its
    argument and the result after the user's question: natively, as text for templates that
    leave calls out (Granite 3.3, LFM2), or in the plain convention for templates that know
    nothing of tools (Gemma 2, Phi 3.5, RWKV)."""
    value = {"city": "Reykjavik"} if arguments == "object" else '{"city": "Reykjavik"}'
    prompt = render((TEMPLATES / name).read_text(), with_arguments(value))
    after = prompt.split("Weather in Reykjavik?", 1)[1]
    assert "get_weather" in after
    assert "Reykjavik" in after
    assert "Sleet, 2 degrees" in after


def test_granite_3_3_history_has_its_calls_in_granite_syntax() -> None:
    """Granite 3.3's template renders only an assistant's content: the call goes into it as
    the model writes calls, <|tool_call|> and a JSON list."""
    chat = chat_template((TEMPLATES / "ibm-granite-granite-3.3-2B-Instruct.jinja").read_text())
    prompt = chat.render(copy.deepcopy(MESSAGES), tools=TOOLS)
    assert not chat.shows_calls
    assert (
        '<|start_of_role|>assistant<|end_of_role|><|tool_call|>[{"name": "get_weather", '
        '"arguments": {"city": "Reykjavik"}}]<|end_of_text|>'
    ) in prompt
    assert "<|start_of_role|>tool<|end_of_role|>Sleet, 2 degrees<|end_of_text|>" in prompt


@pytest.mark.parametrize("name", ["Kimi-K2-Instruct.jinja", "Kimi-K2-Thinking.jinja"])
def test_kimi_k2_renders_calls_and_results(name: str) -> None:
    """Kimi K2's templates queue call ids in a list of their own (append, pop): the call is
    written with its id, and the result answers that id."""
    prompt = render((TEMPLATES / name).read_text(), MESSAGES)
    assert (
        "<|tool_calls_section_begin|><|tool_call_begin|>functions.get_weather:0"
        '<|tool_call_argument_begin|>{"city": "Reykjavik"}<|tool_call_end|>'
        "<|tool_calls_section_end|>"
    ) in prompt
    assert "## Return of functions.get_weather:0\nSleet, 2 degrees" in prompt


DSML = "｜DSML｜"
DSML_PARAM = f'<{DSML}parameter name="city" string="true">Reykjavik</{DSML}parameter>\n'


@pytest.mark.parametrize(
    ("name", "written"),
    [
        (
            "deepseek-ai-DeepSeek-V3.2.jinja",
            f'<｜Assistant｜></think>\n\n<{DSML}function_calls>\n<{DSML}invoke name="get_weather">'
            f"\n{DSML_PARAM}</{DSML}invoke>\n</{DSML}function_calls><｜end▁of▁sentence｜>\n\n"
            "<function_results>\n<result>Sleet, 2 degrees</result>\n</function_results>\n\n"
            "<think></think>",
        ),
        (
            "deepseek-ai-DeepSeek-V4.jinja",
            f'<｜Assistant｜></think>\n\n<{DSML}tool_calls>\n<{DSML}invoke name="get_weather">\n'
            f"{DSML_PARAM}</{DSML}invoke>\n</{DSML}tool_calls><｜end▁of▁sentence｜><｜User｜>"
            "<tool_result>Sleet, 2 degrees</tool_result><｜Assistant｜></think>",
        ),
        (
            "deepseek-ai-DeepSeek-V4-Flash-0731.jinja",
            f'<｜Assistant｜></think>\n\n<{DSML}tool_calls>\n<{DSML}invoke name="get_weather">\n'
            f"{DSML_PARAM}</{DSML}invoke>\n</{DSML}tool_calls><｜end▁of▁sentence｜><｜User｜>"
            "<tool_result>Sleet, 2 degrees</tool_result><｜Assistant｜></think>",
        ),
    ],
)
@pytest.mark.parametrize("arguments", ["object", "text"])
def test_deepseek_dsml_templates_render_calls_and_results(
    name: str, written: str, arguments: str
) -> None:
    """DeepSeek V3.2 and V4 write the call in DSML (the arguments walked as an object, even
    given as JSON text), then the result, and leave the prompt after the closed reasoning."""
    value = {"city": "Reykjavik"} if arguments == "object" else '{"city": "Reykjavik"}'
    prompt = render((TEMPLATES / name).read_text(), with_arguments(value))
    assert prompt.endswith("Weather in Reykjavik?" + written)


def test_functionary_v3_2_takes_the_arguments_as_text() -> None:
    """Functionary v3.2 concatenates the arguments to its markup: they go in as JSON text."""
    chat = chat_template((TEMPLATES / "meetkai-functionary-medium-v3.2.jinja").read_text())
    prompt = chat.render(copy.deepcopy(MESSAGES), tools=TOOLS)
    assert chat.string_arguments
    assert '>>>get_weather\n{"city": "Reykjavik"}<|eot_id|>' in prompt


def test_glm_takes_the_arguments_as_an_object_even_given_text() -> None:
    """GLM walks the arguments' items: JSON text becomes the object it holds."""
    chat = chat_template((TEMPLATES / "GLM-4.6.jinja").read_text())
    prompt = chat.render(with_arguments('{"city": "Reykjavik"}'), tools=TOOLS)
    assert not chat.string_arguments
    assert "<arg_key>city</arg_key>\n<arg_value>Reykjavik</arg_value>" in prompt


def test_a_template_refusing_system_turns_gets_the_system_text_in_the_first_user_turn() -> None:
    """Gemma 2 raises on a system turn: its text goes at the start of the first user turn."""
    chat = chat_template((TEMPLATES / "google-gemma-2-2b-it.jinja").read_text())
    prompt = chat.render(
        [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}]
    )
    assert "<start_of_turn>user\nBe brief.\nHi<end_of_turn>" in prompt
