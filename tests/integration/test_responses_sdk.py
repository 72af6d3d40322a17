"""The OpenAI Responses API through the official ``openai`` SDK and ``openai-agents``, on the
tiny model."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

import openai
import pytest
from pydantic import BaseModel

from llmserve.api.app import create_app
from llmserve.config import ModelSettings, ServerSettings, Settings
from tests.support.server import serve_app
from tests.support.tinyserver import KEY, MODEL

OTHER_KEY = "sk-other"
WEATHER: Any = {
    "type": "function",
    "name": "get_weather",
    "description": "Forecast",
    "parameters": {
        "type": "object",
        "properties": {"city": {"enum": ["Paris", "Rome"]}, "days": {"type": "integer"}},
        "required": ["city", "days"],
        "additionalProperties": False,
    },
    "strict": True,
}
FORCED: Any = {"type": "function", "name": "get_weather"}
INSTRUCTIONS = "You are a careful assistant. " * 40  # long and stable: worth caching


class Forecast(BaseModel):
    city: Literal["Paris", "Rome"]
    days: int


@pytest.fixture(name="tiny_url", scope="module")
def fixture_tiny_url(tiny_gguf: Path) -> Iterator[str]:
    """The tiny model as ``tiny`` behind two keys (``KEY`` and ``OTHER_KEY``)."""
    settings = Settings(
        server=ServerSettings(api_keys=(KEY, OTHER_KEY)),
        model=ModelSettings(model_path=str(tiny_gguf), name=MODEL, max_sequence_length=1024),
    )
    with serve_app(create_app(settings)) as base_url:
        yield base_url


@pytest.fixture(name="client")
def fixture_client(tiny_url: str) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=f"{tiny_url}/v1", api_key=KEY, max_retries=0) as client:
        yield client


def test_create_answers_a_response(client: openai.OpenAI) -> None:
    """responses.create: a resp_ response with a message item, status and usage."""
    response = client.responses.create(
        model=MODEL, input="Hello?", max_output_tokens=8, temperature=0
    )
    assert response.id.startswith("resp_")
    assert response.object == "response"
    assert response.model == MODEL
    assert response.status in ("completed", "incomplete")
    assert response.output[0].type == "message"
    assert response.usage is not None
    assert response.usage.input_tokens > 0
    assert 0 < response.usage.output_tokens <= 8
    assert response.usage.total_tokens == (
        response.usage.input_tokens + response.usage.output_tokens
    )


def test_stream_deltas_add_up_to_the_final_response(client: openai.OpenAI) -> None:
    """responses.stream: output_text deltas add up to get_final_response()'s text (a schema
    makes the random model finish: the SDK has a final response only after completed)."""
    with client.responses.stream(
        model=MODEL, input="Forecast?", text_format=Forecast, max_output_tokens=200
    ) as stream:
        events = list(stream)
        final = stream.get_final_response()
    text = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert [e.sequence_number for e in events] == list(range(len(events)))
    assert events[0].type == "response.created"
    assert events[-1].type == "response.completed"
    assert text
    assert final.output_text == text
    assert isinstance(final.output_parsed, Forecast)
    assert final.usage is not None
    assert final.usage.output_tokens > 0


def test_parse_fills_a_pydantic_model(client: openai.OpenAI) -> None:
    """responses.parse with a pydantic text_format: the schema is enforced, output_parsed set."""
    response = client.responses.parse(
        model=MODEL, input="Forecast?", text_format=Forecast, max_output_tokens=200
    )
    assert isinstance(response.output_parsed, Forecast)
    assert response.output_parsed.city in ("Paris", "Rome")


def test_forced_function_call_and_its_output_round_trip(client: openai.OpenAI) -> None:
    """tool_choice a function: a function_call item; its output goes back as an input item."""
    ask: list[Any] = [{"role": "user", "content": "Weather in Paris?"}]
    first = client.responses.create(
        model=MODEL, input=ask, tools=[WEATHER], tool_choice=FORCED, max_output_tokens=200
    )
    (call,) = [item for item in first.output if item.type == "function_call"]
    assert call.name == "get_weather"
    assert call.call_id
    assert call.arguments
    result: Any = {"type": "function_call_output", "call_id": call.call_id, "output": "Sunny"}
    again = client.responses.create(
        model=MODEL,
        input=[*ask, *[item.model_dump() for item in first.output], result],
        tools=[WEATHER],
        max_output_tokens=8,
    )
    assert again.status in ("completed", "incomplete")
    chained = client.responses.create(
        model=MODEL,
        previous_response_id=first.id,
        input=[result],
        tools=[WEATHER],
        max_output_tokens=8,
    )
    assert chained.previous_response_id == first.id


def test_continuation_reuses_the_cached_prompt(client: openai.OpenAI) -> None:
    """previous_response_id: the second turn's prompt starts as the first's, from the cache."""
    first = client.responses.create(
        model=MODEL,
        instructions=INSTRUCTIONS,
        input="Hello?",
        max_output_tokens=4,
        temperature=0,
    )
    second = client.responses.create(
        model=MODEL,
        instructions=INSTRUCTIONS,
        previous_response_id=first.id,
        input="And then?",
        max_output_tokens=4,
        temperature=0,
    )
    assert first.usage is not None
    assert second.usage is not None
    assert second.usage.input_tokens > first.usage.input_tokens
    assert second.usage.input_tokens_details.cached_tokens > 100


def test_retrieve_delete_and_another_keys_404(client: openai.OpenAI, tiny_url: str) -> None:
    """retrieve returns the stored response; another key and a deleted one get 404s."""
    created = client.responses.create(model=MODEL, input="Hi", max_output_tokens=4)
    assert client.responses.retrieve(created.id).id == created.id
    with (
        openai.OpenAI(base_url=f"{tiny_url}/v1", api_key=OTHER_KEY, max_retries=0) as other,
        pytest.raises(openai.NotFoundError),
    ):
        other.responses.retrieve(created.id)
    client.responses.delete(created.id)
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(created.id)


def test_input_tokens_counts_what_create_reports(client: openai.OpenAI) -> None:
    """input_tokens.count counts the prompt create then reports as input_tokens."""
    counted = client.responses.input_tokens.count(model=MODEL, input="Hello?")
    response = client.responses.create(model=MODEL, input="Hello?", max_output_tokens=1)
    assert response.usage is not None
    assert counted.input_tokens == response.usage.input_tokens


def test_agents_sdk_runs_a_tool_loop(tiny_url: str) -> None:
    """openai-agents' default (Responses) model runs a tool loop against the server, the model
    named by an alias without '/' (the SDK reads a '/' as a provider prefix). The forced call
    comes first; then (tool choice reset) a structured final output, which the schema makes
    the random model finish (the SDK fails an incomplete response)."""
    import agents  # the test extra installs it: missing, this fails rather than skips

    agents.set_tracing_disabled(True)
    calls: list[str] = []

    @agents.function_tool
    def get_weather(city: Literal["Paris", "Rome"], days: int) -> str:
        """Forecast for a city."""
        calls.append(city)
        return "Sunny"

    client = openai.AsyncOpenAI(base_url=f"{tiny_url}/v1", api_key=KEY, max_retries=0)
    agents.set_default_openai_client(client, use_for_tracing=False)
    agents.set_default_openai_api("responses")
    agent = agents.Agent(
        name="forecaster",
        instructions="Use the tool.",
        model=MODEL,
        tools=[get_weather],
        model_settings=agents.ModelSettings(tool_choice="get_weather", max_tokens=200),
        output_type=Forecast,
    )
    result = agents.Runner.run_sync(agent, "Weather in Paris?", max_turns=4)
    assert calls  # the forced call ran, and its output went back to the model
    kinds = [item.type for item in result.new_items]
    assert "tool_call_item" in kinds
    assert "tool_call_output_item" in kinds
    assert isinstance(result.final_output, Forecast)
