"""The Anthropic Messages API through the official ``anthropic`` SDK, on the tiny model."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import anthropic
import httpx
import pytest

from tests.support.tinyserver import KEY, MODEL

WEATHER = {
    "name": "get_weather",
    "description": "Forecast",
    "input_schema": {
        "type": "object",
        "properties": {"city": {"enum": ["Paris", "Rome"]}, "days": {"type": "integer"}},
        "required": ["city", "days"],
    },
}
ASK: list[Any] = [{"role": "user", "content": "Weather in Paris?"}]
# This SDK has no sampling arguments; they go in the body, where the server reads them.
GREEDY = {"temperature": 0}
SYSTEM = "You are a careful assistant. " * 40  # long and stable: worth caching


@pytest.fixture(name="claude")
def fixture_claude(tiny_url: str) -> Iterator[anthropic.Anthropic]:
    """The official SDK pointed at the server (it appends /v1/messages itself)."""
    with anthropic.Anthropic(base_url=tiny_url, api_key=KEY, max_retries=0) as client:
        yield client


def test_create_answers_a_message(claude: anthropic.Anthropic) -> None:
    """messages.create: a msg_ message with text, a stop reason and token usage."""
    message = claude.messages.create(model=MODEL, max_tokens=8, messages=ASK, extra_body=GREEDY)
    assert message.id.startswith("msg_")
    assert message.role == "assistant"
    assert message.model == MODEL
    assert message.stop_reason in ("end_turn", "max_tokens")
    assert message.content[0].type == "text"
    assert message.usage.input_tokens + (message.usage.cache_read_input_tokens or 0) > 0
    assert 0 < message.usage.output_tokens <= 8


def test_stream_text_matches_the_final_message(claude: anthropic.Anthropic) -> None:
    """messages.stream: text_stream pieces add up to get_final_message's text and usage."""
    with claude.messages.stream(
        model=MODEL, max_tokens=8, messages=ASK, extra_body=GREEDY, system="Be brief."
    ) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text
    assert final.content[0].type == "text"
    assert final.content[0].text == text
    assert final.stop_reason in ("end_turn", "max_tokens")
    assert final.usage.output_tokens > 0
    assert final.usage.input_tokens > 0


def test_forced_tool_use_and_results_round_trip(claude: anthropic.Anthropic) -> None:
    """tool_choice tool: a tool_use block with an object input; its result goes back in."""
    forced: Any = {"type": "tool", "name": "get_weather", "disable_parallel_tool_use": True}
    message = claude.messages.create(
        model=MODEL, max_tokens=200, messages=ASK, tools=[WEATHER], tool_choice=forced
    )
    assert message.stop_reason == "tool_use"
    (call,) = [b for b in message.content if b.type == "tool_use"]
    assert call.id.startswith("toolu_")
    assert call.name == "get_weather"
    assert call.input["city"] in ("Paris", "Rome")
    assert isinstance(call.input["days"], int)
    result: Any = {"type": "tool_result", "tool_use_id": call.id, "content": "Sunny, 21 C"}
    answer = claude.messages.create(
        model=MODEL,
        max_tokens=8,
        tools=[WEATHER],
        messages=[
            *ASK,
            {"role": "assistant", "content": message.content},
            {"role": "user", "content": [result]},
        ],
    )
    assert answer.stop_reason in ("end_turn", "max_tokens", "tool_use")


def test_forced_tool_use_streams_input_json(claude: anthropic.Anthropic) -> None:
    """Streamed, the forced call's input arrives as JSON deltas and parses to the same object."""
    forced: Any = {"type": "tool", "name": "get_weather", "disable_parallel_tool_use": True}
    with claude.messages.stream(
        model=MODEL, max_tokens=200, messages=ASK, tools=[WEATHER], tool_choice=forced
    ) as stream:
        final = stream.get_final_message()
    (call,) = [b for b in final.content if b.type == "tool_use"]
    assert call.name == "get_weather"
    assert call.input["city"] in ("Paris", "Rome")
    assert final.stop_reason == "tool_use"


def test_count_tokens_matches_the_prompt_of_create(claude: anthropic.Anthropic) -> None:
    """count_tokens counts what create then reports as its input (cached or not)."""
    counted = claude.messages.count_tokens(model=MODEL, messages=ASK, system="Be brief.")
    message = claude.messages.create(
        model=MODEL, max_tokens=1, messages=ASK, system="Be brief.", extra_body=GREEDY
    )
    usage = message.usage
    prompt = usage.input_tokens + (usage.cache_read_input_tokens or 0)
    assert counted.input_tokens == prompt


def test_billing_header_line_does_not_defeat_the_prefix_cache(
    claude: anthropic.Anthropic,
) -> None:
    """Two requests differing only in Claude Code's billing-header line share the cache."""
    usages = []
    for session in ("cch=aaaa1111", "cch=bbbb2222"):
        system: Any = [
            {"type": "text", "text": f"x-anthropic-billing-header: cc_version=2.0.1; {session};"},
            {"type": "text", "text": SYSTEM, "cache_control": {"type": "ephemeral"}},
        ]
        message = claude.messages.create(
            model=MODEL, max_tokens=1, system=system, messages=ASK, extra_body=GREEDY
        )
        usages.append(message.usage)
    first, second = usages
    # The marked system block's state was saved on the first request: cache creation.
    prompt = (
        first.input_tokens
        + (first.cache_read_input_tokens or 0)
        + (first.cache_creation_input_tokens or 0)
    )
    assert prompt > 100
    # All but the last token of the identical prompt come from the cache.
    assert (second.cache_read_input_tokens or 0) >= prompt - 1


def test_wrong_key_is_an_authentication_error(tiny_url: str) -> None:
    """A wrong key is a 401 the SDK raises as AuthenticationError."""
    with (
        anthropic.Anthropic(base_url=tiny_url, api_key="wrong", max_retries=0) as client,
        pytest.raises(anthropic.AuthenticationError) as raised,
    ):
        client.messages.create(model=MODEL, max_tokens=4, messages=ASK)
    assert raised.value.status_code == 401
    assert raised.value.body["error"]["type"] == "authentication_error"  # type: ignore[index]


def test_auth_token_is_sent_as_bearer_and_accepted(tiny_url: str) -> None:
    """ANTHROPIC_AUTH_TOKEN (auth_token) arrives as Authorization: Bearer and works."""
    with anthropic.Anthropic(base_url=tiny_url, auth_token=KEY, max_retries=0) as client:
        message = client.messages.create(model=MODEL, max_tokens=2, messages=ASK)
    assert message.type == "message"


def test_missing_max_tokens_is_a_bad_request(tiny_url: str) -> None:
    """Without max_tokens (the SDK insists on it, so raw HTTP): 400 invalid_request_error."""
    response = httpx.post(
        f"{tiny_url}/v1/messages",
        json={"model": MODEL, "messages": ASK},
        headers={"x-api-key": KEY, "anthropic-version": "2023-06-01"},
    )
    assert response.status_code == 400
    assert response.json()["type"] == "error"
    assert response.json()["error"]["type"] == "invalid_request_error"
    assert "max_tokens" in response.json()["error"]["message"]


def test_sdk_raises_bad_request_for_an_image(claude: anthropic.Anthropic) -> None:
    """An image block is a 400 the SDK raises as BadRequestError."""
    image: Any = {
        "type": "image",
        "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="},
    }
    with pytest.raises(anthropic.BadRequestError) as raised:
        claude.messages.create(
            model=MODEL, max_tokens=4, messages=[{"role": "user", "content": [image]}]
        )
    assert "image" in raised.value.message
