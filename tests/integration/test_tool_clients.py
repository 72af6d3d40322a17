"""Issue 17.1 through real client libraries: LangChain's ChatOpenAI with bound tools gets one
clean tool call (no stray markup as the message content), whole and streamed."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from langchain_core.messages import AIMessage, AIMessageChunk
from langchain_openai import ChatOpenAI

from tests.support.tinymodel import build_tiny_gguf
from tests.support.tinyserver import KEY, MODEL, tiny_server

TEMPLATE = Path(__file__).parents[1] / "data" / "templates" / "Qwen-Qwen2.5-7B-Instruct.jinja"
WEATHER = {
    "name": "get_weather",
    "description": "The forecast for a city",
    "parameters": {
        "type": "object",
        "properties": {"city": {"enum": ["Paris", "Rome"]}},
        "required": ["city"],
    },
}


@pytest.fixture(name="chat_model", scope="module")
def fixture_chat_model(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """LangChain's ChatOpenAI on the tiny model (Qwen 2.5's real template), get_weather bound
    and forced by name, as an agent binds a tool it needs called."""
    path = build_tiny_gguf(
        tmp_path_factory.mktemp("lc") / "m.gguf", chat_template=TEMPLATE.read_text()
    )
    with tiny_server(path, parallel=2, max_sequence_length=2048) as url:
        model = ChatOpenAI(
            base_url=f"{url}/v1", api_key=KEY, model=MODEL, temperature=0, max_tokens=200,
            max_retries=0,
        )  # fmt: skip
        yield model.bind_tools(
            [{"type": "function", "function": WEATHER}], tool_choice="get_weather"
        )


def test_langchain_bound_tool_is_one_call_and_no_content(chat_model: Any) -> None:
    """invoke(): exactly one get_weather call with valid arguments, empty content, finish
    reason tool_calls (today's bug: content "<tool" and finish length)."""
    message = chat_model.invoke("Weather in Paris?")
    assert isinstance(message, AIMessage)
    assert message.content == ""
    assert [call["name"] for call in message.tool_calls] == ["get_weather"]
    assert message.tool_calls[0]["args"]["city"] in ("Paris", "Rome")
    assert message.invalid_tool_calls == []
    assert message.response_metadata["finish_reason"] == "tool_calls"


def test_langchain_streamed_bound_tool_is_one_call_and_no_content(chat_model: Any) -> None:
    """stream(): the chunks add up to one call and no content; no chunk carries markup."""
    chunks = list(chat_model.stream("Weather in Paris?"))
    assert all("<tool" not in str(chunk.content) for chunk in chunks)
    total = chunks[0]
    for chunk in chunks[1:]:
        total = total + chunk
    assert isinstance(total, AIMessageChunk)
    assert total.content == ""
    assert [call["name"] for call in total.tool_calls] == ["get_weather"]
    assert total.tool_calls[0]["args"]["city"] in ("Paris", "Rome")
