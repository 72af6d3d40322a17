"""The reasoning switch of each dialect reaches a real Qwen3 template, through the official SDKs.

The tiny model carries Qwen3's chat template: with ``enable_thinking`` false it ends the
generation prompt with an empty ``<think>\\n\\n</think>\\n\\n`` block, so a switched-off
request's prompt is longer than the template's default by that block's tokens.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anthropic
import openai
import pytest

from tests.support.tinymodel import build_tiny_gguf
from tests.support.tinyserver import KEY, MODEL, client_for, tiny_server

QWEN3 = Path(__file__).parents[1] / "data" / "templates" / "Qwen-Qwen3-0.6B.jinja"
ASK: list[Any] = [{"role": "user", "content": "What is the answer?"}]
GREEDY = {"temperature": 0}


@pytest.fixture(name="qwen3_gguf", scope="module")
def fixture_qwen3_gguf(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny model with Qwen3's real chat template in its GGUF."""
    return build_tiny_gguf(
        tmp_path_factory.mktemp("qwen3") / "m.gguf", chat_template=QWEN3.read_text()
    )


@pytest.fixture(name="qwen3_url", scope="module")
def fixture_qwen3_url(qwen3_gguf: Path) -> Iterator[str]:
    with tiny_server(qwen3_gguf, parallel=2) as url:
        yield url


@pytest.fixture(name="client")
def fixture_client(qwen3_url: str) -> Iterator[openai.OpenAI]:
    with client_for(qwen3_url) as client:
        yield client


def chat_prompt_tokens(client: openai.OpenAI, **kwargs: Any) -> int:
    answer = client.chat.completions.create(
        model=MODEL, messages=ASK, max_tokens=1, temperature=0, **kwargs
    )
    assert answer.usage is not None
    return answer.usage.prompt_tokens


def test_chat_template_kwargs_switch_qwen3_thinking_off(client: openai.OpenAI) -> None:
    """chat_template_kwargs enable_thinking false (extra_body) adds the empty think block."""
    default = chat_prompt_tokens(client)
    off = chat_prompt_tokens(
        client, extra_body={"chat_template_kwargs": {"enable_thinking": False}}
    )
    assert off > default


def test_reasoning_effort_none_is_enable_thinking_false(client: openai.OpenAI) -> None:
    """reasoning_effort none renders the prompt enable_thinking false does; high the default."""
    off = chat_prompt_tokens(
        client, extra_body={"chat_template_kwargs": {"enable_thinking": False}}
    )
    assert chat_prompt_tokens(client, reasoning_effort="none") == off
    assert chat_prompt_tokens(client, reasoning_effort="high") == chat_prompt_tokens(client)


def test_reserved_chat_template_kwargs_are_a_bad_request(client: openai.OpenAI) -> None:
    """The SDK raises BadRequestError for a variable the server sets."""
    with pytest.raises(openai.BadRequestError) as caught:
        chat_prompt_tokens(client, extra_body={"chat_template_kwargs": {"messages": []}})
    assert "chat_template_kwargs" in str(caught.value)


def test_responses_reasoning_effort_none_switches_thinking_off(client: openai.OpenAI) -> None:
    """responses.create with reasoning effort none: a longer prompt than without."""

    def input_tokens(**kwargs: Any) -> int:
        answer = client.responses.create(
            model=MODEL, input="What is the answer?", max_output_tokens=1, store=False, **kwargs
        )
        assert answer.usage is not None
        return answer.usage.input_tokens

    assert input_tokens(reasoning={"effort": "none"}) > input_tokens()


def test_anthropic_thinking_disabled_switches_thinking_off(qwen3_url: str) -> None:
    """thinking disabled counts (and serves) a longer prompt; enabled counts the default."""
    with anthropic.Anthropic(base_url=qwen3_url, api_key=KEY, max_retries=0) as claude:
        default = claude.messages.count_tokens(model=MODEL, messages=ASK).input_tokens
        off = claude.messages.count_tokens(
            model=MODEL, messages=ASK, thinking={"type": "disabled"}
        ).input_tokens
        on = claude.messages.count_tokens(
            model=MODEL, messages=ASK, thinking={"type": "enabled", "budget_tokens": 1024}
        ).input_tokens
        served = claude.messages.create(
            model=MODEL,
            max_tokens=1,
            messages=ASK,
            thinking={"type": "disabled"},
            extra_body=GREEDY,
        ).usage
    assert off > default == on
    assert served.input_tokens + (served.cache_read_input_tokens or 0) == off


def test_anthropic_thinking_budget_under_1024_is_a_bad_request(qwen3_url: str) -> None:
    """The SDK raises BadRequestError with Anthropic's words for a budget under 1024."""
    with (
        anthropic.Anthropic(base_url=qwen3_url, api_key=KEY, max_retries=0) as claude,
        pytest.raises(anthropic.BadRequestError) as caught,
    ):
        claude.messages.create(
            model=MODEL,
            max_tokens=2048,
            messages=ASK,
            thinking={"type": "enabled", "budget_tokens": 512},
        )
    assert "greater than or equal to 1024" in str(caught.value)


def test_model_default_kwargs_apply_and_requests_override_them(qwen3_gguf: Path) -> None:
    """[model] chat_template_kwargs switch every render; a request's own key wins."""
    with (
        tiny_server(qwen3_gguf, parallel=1, chat_template_kwargs={"enable_thinking": False}) as url,
        client_for(url) as client,
    ):
        default_off = chat_prompt_tokens(client)
        on = chat_prompt_tokens(
            client, extra_body={"chat_template_kwargs": {"enable_thinking": True}}
        )
        effort_on = chat_prompt_tokens(client, reasoning_effort="low")
    assert default_off > on == effort_on
