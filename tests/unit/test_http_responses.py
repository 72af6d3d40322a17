"""The OpenAI Responses routes over a FakeEngine: shapes, SSE order, tools, state, errors."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from litestar.testing import TestClient

from llmserve.config import ServerSettings
from llmserve.engine.fake import FakeEngine
from tests.support.doubles import fake_app

BODY: dict[str, Any] = {"model": "m", "input": "say hello"}
WEATHER = {
    "type": "function",
    "name": "get_weather",
    "description": "The weather in a city",
    "parameters": {
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
    },
}
CALL = '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>'


@pytest.fixture(name="engine")
def fixture_engine() -> FakeEngine:
    return FakeEngine()


@pytest.fixture(name="client")
def fixture_client(engine: FakeEngine) -> Iterator[TestClient[Any]]:
    with TestClient(fake_app(engine)) as client:
        yield client


def events(text: str) -> list[dict[str, Any]]:
    """The data of each SSE event, checked against its ``event:`` line."""
    out = []
    for block in text.strip().split("\n\n"):
        name, data = block.split("\n")
        parsed = json.loads(data.removeprefix("data: "))
        assert name == f"event: {parsed['type']}"
        out.append(parsed)
    return out


def post(client: TestClient[Any], body: dict[str, Any], **headers: str) -> Any:
    return client.post("/v1/responses", json=body, headers=headers)


def test_response_has_openai_shape(client: TestClient[Any]) -> None:
    """A whole answer is a completed response with one message item and Responses usage."""
    answer = post(client, {**BODY, "metadata": {"k": "v"}}).json()
    assert answer["id"] == "resp_2"
    assert answer["object"] == "response"
    assert answer["status"] == "completed"
    assert answer["created_at"] == 1_700_000_000
    assert answer["model"] == "fake-model"
    assert answer["error"] is None
    assert answer["incomplete_details"] is None
    assert answer["metadata"] == {"k": "v"}
    assert answer["output"] == [
        {
            "id": "msg_3",
            "type": "message",
            "status": "completed",
            "role": "assistant",
            "content": [{"type": "output_text", "text": "Hello, world!", "annotations": []}],
        }
    ]
    assert answer["usage"] == {
        "input_tokens": 4,  # the fake counts the rendered prompt's words
        "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
        "output_tokens": 4,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": 8,
    }


def test_instructions_and_items_become_chat_turns(
    client: TestClient[Any], engine: FakeEngine
) -> None:
    """instructions lead as a system turn; developer is system; reasoning items are dropped."""
    body = {
        "instructions": "Be brief.",
        "input": [
            {"role": "developer", "content": "Rules."},
            {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "a"}]},
            {"type": "reasoning", "id": "rs_1", "summary": []},
            {"role": "assistant", "content": [{"type": "output_text", "text": "b"}]},
            {"role": "user", "content": "c"},
        ],
    }
    assert post(client, body).status_code == 200
    assert engine.chats[-1] == [
        {"role": "system", "content": "Be brief."},
        {"role": "system", "content": "Rules."},
        {"role": "user", "content": "a"},
        {"role": "assistant", "content": "b"},
        {"role": "user", "content": "c"},
    ]


def test_max_output_tokens_makes_an_incomplete_response(client: TestClient[Any]) -> None:
    """A generation cut by max_output_tokens is incomplete, reason max_output_tokens."""
    answer = post(client, {**BODY, "max_output_tokens": 2}).json()
    assert answer["status"] == "incomplete"
    assert answer["incomplete_details"] == {"reason": "max_output_tokens"}
    assert answer["output"][0]["status"] == "incomplete"


def test_stream_is_the_responses_event_sequence(client: TestClient[Any]) -> None:
    """A stream: created, in_progress, item and part events with ids, then completed."""
    got = events(post(client, {**BODY, "stream": True}).text)
    assert [e["type"] for e in got] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
        *["response.output_text.delta"] * 4,
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]
    assert [e["sequence_number"] for e in got] == list(range(len(got)))
    assert got[0]["response"]["status"] == "in_progress"
    for e in got[2:-1]:
        assert e["output_index"] == 0
    for e in got[3:-2]:
        assert (e["item_id"], e["content_index"]) == ("msg_3", 0)
    assert "".join(e["delta"] for e in got[4:8]) == "Hello, world!"
    assert got[8]["text"] == "Hello, world!"
    assert got[-1]["response"]["output"][0]["content"][0]["text"] == "Hello, world!"
    assert got[-1]["response"]["usage"]["output_tokens"] == 4


def test_stream_cut_by_max_output_tokens_ends_incomplete(client: TestClient[Any]) -> None:
    """A streamed generation cut by max_output_tokens ends with response.incomplete."""
    got = events(post(client, {**BODY, "stream": True, "max_output_tokens": 1}).text)
    assert got[-1]["type"] == "response.incomplete"
    assert got[-1]["response"]["incomplete_details"] == {"reason": "max_output_tokens"}


def test_stream_failure_is_response_failed() -> None:
    """An engine failure after the 200 ends the stream with response.failed and its error."""
    with TestClient(fake_app(FakeEngine(fail_after=2))) as client:
        got = events(post(client, {**BODY, "stream": True}).text)
    assert got[-1]["type"] == "response.failed"
    assert got[-1]["response"]["status"] == "failed"
    assert got[-1]["response"]["error"]["message"] == "scripted failure"


def test_function_call_is_a_function_call_item() -> None:
    """A tool call is a function_call item with call_id, name and JSON arguments."""
    engine = FakeEngine(pieces=(CALL,))
    with TestClient(fake_app(engine)) as client:
        body = {**BODY, "tools": [WEATHER], "tool_choice": "required"}
        answer = post(client, body).json()
    (call,) = answer["output"]
    assert call["type"] == "function_call"
    assert call["id"].startswith("fc_")
    assert call["call_id"].startswith("call_")
    assert call["name"] == "get_weather"
    assert json.loads(call["arguments"]) == {"city": "Paris"}
    assert call["status"] == "completed"
    assert engine.requests[-1].grammar is not None  # required: forced by grammar
    assert engine.tools[-1] == [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "description": "The weather in a city",
                "parameters": WEATHER["parameters"],
            },
        }
    ]
    assert answer["tools"][0]["name"] == "get_weather"
    assert answer["tool_choice"] == "required"


def test_function_call_streams_argument_deltas() -> None:
    """A streamed call: output_item.added, function_call_arguments.delta/.done, item done."""
    with TestClient(fake_app(FakeEngine(pieces=(CALL,)))) as client:
        body = {**BODY, "tools": [WEATHER], "stream": True}
        got = events(post(client, body).text)
    names = [e["type"] for e in got]
    assert names[2] == "response.output_item.added"
    assert got[2]["item"]["type"] == "function_call"
    deltas = [e for e in got if e["type"] == "response.function_call_arguments.delta"]
    (done,) = [e for e in got if e["type"] == "response.function_call_arguments.done"]
    assert "".join(e["delta"] for e in deltas) == done["arguments"]
    assert json.loads(done["arguments"]) == {"city": "Paris"}
    assert done["item_id"] == got[2]["item"]["id"]
    assert names[-2:] == ["response.output_item.done", "response.completed"]


def test_function_call_output_goes_back_as_a_tool_turn(
    client: TestClient[Any], engine: FakeEngine
) -> None:
    """function_call and function_call_output items become tool_calls and a tool turn."""
    body = {
        "tools": [WEATHER],
        "input": [
            {"role": "user", "content": "weather?"},
            {
                "type": "function_call",
                "call_id": "call_9",
                "name": "get_weather",
                "arguments": '{"city": "Paris"}',
            },
            {"type": "function_call_output", "call_id": "call_9", "output": "Sunny"},
        ],
    }
    assert post(client, body).status_code == 200
    assert engine.chats[-1][1:] == [
        {
            "role": "assistant",
            "content": "",
            "tool_calls": [
                {
                    "id": "call_9",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": {"city": "Paris"}},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "call_9", "content": "Sunny"},
    ]


def test_named_tool_choice_forces_that_function(
    client: TestClient[Any], engine: FakeEngine
) -> None:
    """tool_choice {"type": "function", "name"} constrains the output to that call."""
    body = {**BODY, "tools": [WEATHER], "tool_choice": {"type": "function", "name": "get_weather"}}
    answer = post(client, body).json()
    assert engine.requests[-1].grammar is not None
    assert answer["tool_choice"] == {"type": "function", "name": "get_weather"}


def test_tool_choice_none_leaves_tools_out(client: TestClient[Any], engine: FakeEngine) -> None:
    """tool_choice none: the template gets no tools and nothing is forced."""
    post(client, {**BODY, "tools": [WEATHER], "tool_choice": "none"})
    assert engine.tools[-1] is None
    assert engine.requests[-1].grammar is None


def test_reasoning_is_a_reasoning_item_with_reasoning_tokens() -> None:
    """A thinking model's reasoning is a reasoning item, counted in reasoning_tokens."""
    engine = FakeEngine(pieces=("<think>", "hmm", "</think>", "Hi"), family="qwen3")
    with TestClient(fake_app(engine)) as client:
        answer = post(client, BODY).json()
        streamed = events(post(client, {**BODY, "stream": True}).text)
    reasoning, message = answer["output"]
    assert reasoning["type"] == "reasoning"
    assert reasoning["summary"] == []
    assert reasoning["content"] == [{"type": "reasoning_text", "text": "hmm"}]
    assert message["content"][0]["text"] == "Hi"
    assert answer["usage"]["output_tokens_details"]["reasoning_tokens"] == 1
    names = [e["type"] for e in streamed]
    assert "response.reasoning_text.delta" in names
    assert names.index("response.reasoning_text.done") < names.index("response.output_text.delta")


def test_json_schema_format_is_enforced_by_grammar(
    client: TestClient[Any], engine: FakeEngine
) -> None:
    """text.format json_schema becomes a grammar on the generation and is echoed."""
    fmt = {"type": "json_schema", "name": "city", "schema": {"type": "object"}, "strict": True}
    answer = post(client, {**BODY, "text": {"format": fmt}}).json()
    assert engine.requests[-1].grammar is not None
    assert answer["text"] == {"format": fmt}


def test_stored_response_is_retrieved_and_deleted(client: TestClient[Any]) -> None:
    """GET returns a stored response as answered; DELETE removes it, then GET is a 404."""
    answer = post(client, BODY).json()
    assert client.get(f"/v1/responses/{answer['id']}").json() == answer
    deleted = client.delete(f"/v1/responses/{answer['id']}")
    assert deleted.json() == {"id": answer["id"], "object": "response.deleted", "deleted": True}
    gone = client.get(f"/v1/responses/{answer['id']}")
    assert gone.status_code == 404
    assert gone.json()["error"]["code"] == "not_found"
    assert client.delete(f"/v1/responses/{answer['id']}").status_code == 404


def test_store_false_keeps_nothing(client: TestClient[Any]) -> None:
    """store: false answers as usual and keeps nothing to retrieve."""
    answer = post(client, {**BODY, "store": False}).json()
    assert answer["store"] is False
    assert client.get(f"/v1/responses/{answer['id']}").status_code == 404


def test_previous_response_id_continues_the_conversation(
    client: TestClient[Any], engine: FakeEngine
) -> None:
    """A continuation renders the stored conversation, its answer, then the new input."""
    first = post(client, {**BODY, "instructions": "Be brief."}).json()
    second = post(client, {"input": "and again", "previous_response_id": first["id"]})
    assert second.json()["previous_response_id"] == first["id"]
    assert engine.chats[-1] == [
        {"role": "user", "content": "say hello"},
        {"role": "assistant", "content": "Hello, world!"},
        {"role": "user", "content": "and again"},
    ]


def test_unknown_previous_response_id_is_a_404(client: TestClient[Any]) -> None:
    """previous_response_id naming nothing stored is a 404 naming the parameter."""
    answer = post(client, {**BODY, "previous_response_id": "resp_nope"})
    assert answer.status_code == 404
    assert answer.json()["error"]["param"] == "previous_response_id"


def test_cached_prompt_tokens_are_reported() -> None:
    """The prefix cache's tokens are input_tokens_details.cached_tokens."""
    with TestClient(fake_app(FakeEngine(cached_tokens=3))) as client:
        usage = post(client, BODY).json()["usage"]
    assert usage["input_tokens_details"]["cached_tokens"] == 3
    assert usage["input_tokens"] == 4


def test_another_key_gets_404_never_the_content() -> None:
    """A response is scoped to its key: another key's GET and continuation are 404s."""
    server = ServerSettings(api_keys=("sk-a", "sk-b"))
    with TestClient(fake_app(server=server)) as client:
        a = {"Authorization": "Bearer sk-a"}
        b = {"Authorization": "Bearer sk-b"}
        answer = post(client, BODY, **a).json()
        assert client.get(f"/v1/responses/{answer['id']}", headers=a).status_code == 200
        other = client.get(f"/v1/responses/{answer['id']}", headers=b)
        assert other.status_code == 404
        assert "Hello" not in other.text
        follow = {"input": "x", "previous_response_id": answer["id"]}
        assert post(client, follow, **b).status_code == 404
        assert client.delete(f"/v1/responses/{answer['id']}", headers=b).status_code == 404


def test_input_tokens_counts_the_prompt(client: TestClient[Any]) -> None:
    """POST /v1/responses/input_tokens: the token count of the prompt a request makes."""
    answer = client.post("/v1/responses/input_tokens", json={"input": "one two"})
    prompt = "<|user|> one two\n<|assistant|>"  # the fake's template; its tokens are bytes
    assert answer.json() == {"object": "response.input_tokens", "input_tokens": 1 + len(prompt)}


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"input": [{"role": "user", "content": [{"type": "input_image"}]}]}, "input[0]"),
        ({"tools": [{"type": "web_search"}]}, "tools[0].type"),
        ({"input": 5}, "input"),
        ({"input": [{"role": "robot", "content": "x"}]}, "input[0].role"),
        ({"input": [{"type": "function_call_output", "call_id": "c", "output": "x"}]}, "input"),
        ({"input": []}, "input"),
        ({"tool_choice": "required"}, "tool_choice"),
        ({"text": {"format": {"type": "json_schema", "schema": {}}}}, "text.format.name"),
        ({"temperature": 3}, "temperature"),
        ({"max_output_tokens": 0}, "max_output_tokens"),
    ],
)
def test_bad_input_is_a_400_naming_the_field(
    client: TestClient[Any], body: dict[str, Any], param: str
) -> None:
    """Malformed requests get a 400 in OpenAI's envelope whose param names the field."""
    answer = post(client, {**BODY, **body})
    assert answer.status_code == 400
    error = answer.json()["error"]
    assert error["type"] == "invalid_request_error"
    assert error["param"].startswith(param)


def test_forced_call_wins_over_text_format(client: TestClient[Any], engine: FakeEngine) -> None:
    """A forced function call with a json_schema text.format: the call's grammar applies."""
    fmt = {"type": "json_schema", "name": "city", "schema": {"type": "object"}}
    body = {**BODY, "tools": [WEATHER], "tool_choice": "required", "text": {"format": fmt}}
    assert post(client, body).status_code == 200
    grammar = engine.requests[-1].grammar
    assert grammar is not None
    assert "get_weather" in str(grammar)


def test_reasoning_effort_reaches_the_template(client: TestClient[Any], engine: FakeEngine) -> None:
    """reasoning.effort is a template variable; none also switches enable_thinking off."""
    assert post(client, {**BODY, "reasoning": {"effort": "none"}}).status_code == 200
    assert post(client, {**BODY, "reasoning": {"effort": "low"}}).status_code == 200
    assert post(client, BODY).status_code == 200
    assert engine.variables == [
        {"reasoning_effort": "none", "enable_thinking": False},
        {"reasoning_effort": "low", "enable_thinking": True},
        {},
    ]


def test_input_tokens_count_the_prompt_with_the_reasoning_switch(
    client: TestClient[Any], engine: FakeEngine
) -> None:
    """/v1/responses/input_tokens renders the prompt create would, reasoning switch included."""
    body = {**BODY, "reasoning": {"effort": "none"}}
    assert client.post("/v1/responses/input_tokens", json=body).status_code == 200
    assert engine.variables == [{"reasoning_effort": "none", "enable_thinking": False}]


def test_unknown_reasoning_effort_is_a_400(client: TestClient[Any]) -> None:
    """reasoning.effort outside OpenAI's values is a 400 naming the field."""
    response = post(client, {**BODY, "reasoning": {"effort": "extreme"}})
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "reasoning.effort"
