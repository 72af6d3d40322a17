"""The /v1 routes over a FakeEngine: body shapes, streaming, errors, cancellation."""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import pytest
from attrs import define
from litestar.testing import TestClient

from llmserve.engine.fake import FakeEngine
from llmserve.errors import EngineOverloaded, InvalidRequest
from tests.support.doubles import fake_app

USER = {"role": "user", "content": "say hello"}


@pytest.fixture(name="engine")
def fixture_engine() -> FakeEngine:
    return FakeEngine()


@pytest.fixture(name="client")
def fixture_client(engine: FakeEngine) -> Iterator[TestClient[Any]]:
    with TestClient(fake_app(engine)) as client:
        yield client


def sse_events(text: str) -> list[Any]:
    """The data payloads of an SSE body, [DONE] kept as the string."""
    events = []
    for block in text.split("\n\n"):
        if block.startswith("data: "):
            payload = block.removeprefix("data: ")
            events.append(payload if payload == "[DONE]" else json.loads(payload))
    return events


def test_chat_completion_has_openai_shape(client: TestClient[Any]) -> None:
    """A non-streamed chat answer is one chat.completion with message, finish and usage."""
    response = client.post("/v1/chat/completions", json={"model": "m", "messages": [USER]})
    assert response.status_code == 200
    assert response.json() == {
        "id": "chatcmpl-2",
        "object": "chat.completion",
        "created": 1_700_000_000,
        "model": "fake-model",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "Hello, world!", "refusal": None},
                "logprobs": None,
                "finish_reason": "stop",
            }
        ],
        "usage": {
            "prompt_tokens": 4,
            "completion_tokens": 4,
            "total_tokens": 8,
            "prompt_tokens_details": {"cached_tokens": 0},
        },
    }


def test_any_model_name_is_served_by_the_engine_model(client: TestClient[Any]) -> None:
    """The response names the served model whatever the request asked for."""
    body = {"model": "gpt-4o", "messages": [USER]}
    assert client.post("/v1/chat/completions", json=body).json()["model"] == "fake-model"


def test_chat_messages_go_through_the_chat_template(
    client: TestClient[Any], engine: FakeEngine
) -> None:
    """The engine gets the rendered template of the messages as its prompt."""
    system = {"role": "system", "content": "be brief"}
    client.post("/v1/chat/completions", json={"messages": [system, USER]})
    assert engine.chats == [[system, USER]]
    assert engine.requests[0].prompt == engine.render_chat([system, USER])


def test_request_limits_and_sampling_reach_the_engine(
    client: TestClient[Any], engine: FakeEngine
) -> None:
    """max_tokens, stop, temperature and seed are passed to the engine unchanged."""
    body = {"messages": [USER], "max_tokens": 3, "stop": "END", "temperature": 0.3, "seed": 11}
    client.post("/v1/chat/completions", json=body)
    request = engine.requests[0]
    assert (request.max_tokens, request.stop) == (3, ("END",))
    assert (request.sampling.temperature, request.sampling.seed) == (0.3, 11)


def test_max_tokens_reached_finishes_with_length(client: TestClient[Any]) -> None:
    """Hitting max_tokens ends the answer with finish_reason length."""
    body = {"messages": [USER], "max_tokens": 2}
    choice = client.post("/v1/chat/completions", json=body).json()["choices"][0]
    assert (choice["message"]["content"], choice["finish_reason"]) == ("Hello,", "length")


def test_stop_string_ends_the_answer_before_it(client: TestClient[Any]) -> None:
    """The stop string and what follows are not returned."""
    body = {"messages": [USER], "stop": [" wor"]}
    choice = client.post("/v1/chat/completions", json=body).json()["choices"][0]
    assert (choice["message"]["content"], choice["finish_reason"]) == ("Hello,", "stop")


def test_chat_stream_chunks_in_openai_order(client: TestClient[Any]) -> None:
    """Role chunk, one chunk per piece, a finish chunk with empty delta, then [DONE]."""
    body = {"messages": [USER], "stream": True}
    response = client.post("/v1/chat/completions", json=body)
    assert response.headers["content-type"].startswith("text/event-stream")
    events = sse_events(response.text)
    assert events[-1] == "[DONE]"
    chunks = events[:-1]
    assert {c["object"] for c in chunks} == {"chat.completion.chunk"}
    assert len({c["id"] for c in chunks}) == 1
    deltas = [(c["choices"][0]["delta"], c["choices"][0]["finish_reason"]) for c in chunks]
    assert deltas == [
        ({"role": "assistant", "content": "", "refusal": None}, None),
        ({"content": "Hello"}, None),
        ({"content": ","}, None),
        ({"content": " world"}, None),
        ({"content": "!"}, None),
        ({}, "stop"),
    ]


def test_stream_without_include_usage_has_no_usage(client: TestClient[Any]) -> None:
    """No chunk carries usage unless stream_options.include_usage asks for it."""
    body = {"messages": [USER], "stream": True}
    events = sse_events(client.post("/v1/chat/completions", json=body).text)
    assert all("usage" not in e for e in events[:-1])


def test_stream_include_usage_adds_a_usage_chunk(client: TestClient[Any]) -> None:
    """include_usage adds one chunk with no choices and the usage, just before [DONE]."""
    body = {"messages": [USER], "stream": True, "stream_options": {"include_usage": True}}
    events = sse_events(client.post("/v1/chat/completions", json=body).text)
    usage_chunk = events[-2]
    assert usage_chunk["choices"] == []
    assert usage_chunk["usage"]["total_tokens"] == 8


def test_stream_handles_finish_on_the_last_text_event() -> None:
    """An engine that puts finish_reason on its last text event still streams every piece."""
    engine = FakeEngine(finish_on_last_piece=True)
    with TestClient(fake_app(engine)) as client:
        body = {"messages": [USER], "stream": True}
        events = sse_events(client.post("/v1/chat/completions", json=body).text)
    contents = [e["choices"][0]["delta"].get("content") for e in events[1:-2]]
    assert "".join(contents) == "Hello, world!"
    assert events[-2]["choices"][0]["finish_reason"] == "stop"


def test_completion_has_text_completion_shape(client: TestClient[Any]) -> None:
    """A non-streamed text completion has text, finish_reason and usage."""
    response = client.post("/v1/completions", json={"model": "m", "prompt": "one two"})
    data = response.json()
    assert (data["object"], data["id"], data["model"]) == (
        "text_completion",
        "cmpl-2",
        "fake-model",
    )
    assert data["choices"] == [
        {"index": 0, "text": "Hello, world!", "logprobs": None, "finish_reason": "stop"}
    ]
    assert data["usage"]["prompt_tokens"] == 2


def test_completion_stream_ends_with_finish_chunk_and_done(client: TestClient[Any]) -> None:
    """Streamed completions send text chunks, an empty finishing chunk, then [DONE]."""
    body = {"prompt": "x", "stream": True, "max_tokens": 2}
    events = sse_events(client.post("/v1/completions", json=body).text)
    texts = [(e["choices"][0]["text"], e["choices"][0]["finish_reason"]) for e in events[:-1]]
    assert texts == [("Hello", None), (",", None), ("", "length")]
    assert events[-1] == "[DONE]"


def test_completion_stream_include_usage(client: TestClient[Any]) -> None:
    """Text completions honour stream_options.include_usage too."""
    body = {"prompt": "x", "stream": True, "stream_options": {"include_usage": True}}
    events = sse_events(client.post("/v1/completions", json=body).text)
    assert events[-2]["choices"] == []
    assert events[-2]["usage"]["completion_tokens"] == 4


def test_token_id_prompt_reaches_the_engine_as_ids(
    client: TestClient[Any], engine: FakeEngine
) -> None:
    """A prompt of token ids is passed as a tuple of ints, not text."""
    client.post("/v1/completions", json={"prompt": [5, 6, 7]})
    assert engine.requests[0].prompt == (5, 6, 7)


def test_invalid_field_is_a_400_envelope_with_param(client: TestClient[Any]) -> None:
    """A validation failure answers 400 in the OpenAI envelope naming the field."""
    body = {"messages": [USER], "temperature": "hot"}
    response = client.post("/v1/chat/completions", json=body)
    assert response.status_code == 400
    error = response.json()["error"]
    assert (error["type"], error["param"]) == ("invalid_request_error", "temperature")


def test_context_length_exceeded_is_a_400_with_its_code() -> None:
    """The engine's ContextLengthExceeded reaches the client as 400 context_length_exceeded."""
    with TestClient(fake_app(FakeEngine(n_ctx=8))) as client:
        response = client.post("/v1/completions", json={"prompt": "a b c", "max_tokens": 6})
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "context_length_exceeded"


def test_overloaded_engine_is_a_429_with_retry_after() -> None:
    """EngineOverloaded becomes 429 rate_limit_error with a Retry-After header."""
    engine = FakeEngine(submit_error=EngineOverloaded("queue full", retry_after_s=3))
    with TestClient(fake_app(engine)) as client:
        response = client.post("/v1/chat/completions", json={"messages": [USER], "stream": True})
    assert response.status_code == 429
    assert response.headers["retry-after"] == "3"
    assert response.json()["error"]["type"] == "rate_limit_error"


def test_failure_mid_stream_is_reported_in_band() -> None:
    """An engine error after the stream started is an SSE error event, with no [DONE]."""
    engine = FakeEngine(fail_after=2, fail_with=InvalidRequest("bad token"))
    with TestClient(fake_app(engine)) as client:
        body = {"messages": [USER], "stream": True}
        events = sse_events(client.post("/v1/chat/completions", json=body).text)
    assert events[-1] == {
        "error": {
            "message": "bad token",
            "type": "invalid_request_error",
            "param": None,
            "code": "invalid_value",
        }
    }
    assert "[DONE]" not in events


@define
class BrokenTemplateEngine(FakeEngine):
    """A FakeEngine whose chat template has a bug."""

    def render_chat(
        self, messages: Sequence[Mapping[str, Any]], model: str | None = None, **_: Any
    ) -> str:
        raise RuntimeError("secret internals")


def test_unexpected_error_is_a_500_envelope_without_details() -> None:
    """A bug answers 500 server_error with a generic message: no traceback, no exception text."""
    with TestClient(fake_app(BrokenTemplateEngine())) as client:
        response = client.post("/v1/chat/completions", json={"messages": [USER]})
    assert response.status_code == 500
    assert response.json()["error"]["type"] == "server_error"
    assert "secret" not in response.text


def test_generation_is_cancelled_once_after_a_whole_answer(
    client: TestClient[Any], engine: FakeEngine
) -> None:
    """Even a finished generation is released exactly once."""
    client.post("/v1/chat/completions", json={"messages": [USER]})
    assert engine.cancels == 1


def test_generation_is_cancelled_once_after_a_stream(
    client: TestClient[Any], engine: FakeEngine
) -> None:
    """The stream's finally and its background task together cancel exactly once."""
    client.post("/v1/chat/completions", json={"messages": [USER], "stream": True})
    assert engine.cancels == 1


def test_models_lists_the_served_model(client: TestClient[Any]) -> None:
    """/v1/models is a list object with the engine's model."""
    assert client.get("/v1/models").json() == {
        "object": "list",
        "data": [
            {
                "id": "fake-model",
                "object": "model",
                "created": 1_700_000_000,
                "owned_by": "llmserve",
            }
        ],
    }


def test_model_can_be_retrieved_by_id(client: TestClient[Any]) -> None:
    """/v1/models/{id} returns the one model card."""
    assert client.get("/v1/models/fake-model").json()["id"] == "fake-model"


def test_model_ids_may_contain_slashes() -> None:
    """Hugging Face style ids (org/name) are found, not routed away."""
    with TestClient(fake_app(FakeEngine(model_id="org/tiny"))) as client:
        assert client.get("/v1/models/org/tiny").json()["id"] == "org/tiny"


def test_any_model_name_retrieves_the_one_served_model(client: TestClient[Any]) -> None:
    """With one model, /v1/models/{any name} answers its card, as chat serves any name."""
    for name in ("gpt-3.5-turbo", "org/other", "nope"):
        response = client.get(f"/v1/models/{name}")
        assert response.status_code == 200
        assert response.json()["id"] == "fake-model"


def test_unknown_route_is_a_404_envelope(client: TestClient[Any]) -> None:
    """Litestar's NotFound comes out in the OpenAI envelope."""
    response = client.get("/v1/nothing-here")
    assert response.status_code == 404
    assert response.json()["error"]["message"] == "Invalid URL (GET /v1/nothing-here)"


def test_wrong_method_is_a_405_envelope(client: TestClient[Any]) -> None:
    """Litestar's MethodNotAllowed comes out in the OpenAI envelope."""
    response = client.get("/v1/chat/completions")
    assert response.status_code == 405
    assert response.json()["error"]["code"] == "method_not_allowed"


def test_oversized_body_is_a_413_envelope(client: TestClient[Any]) -> None:
    """A body over Litestar's limit is refused in the OpenAI envelope."""
    response = client.post("/v1/chat/completions", content=b"x" * 11_000_000)
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "request_too_large"


def test_responses_carry_a_request_id(client: TestClient[Any]) -> None:
    """Every routed response has an x-request-id header."""
    assert client.get("/v1/models").headers["x-request-id"].startswith("req_")


def test_client_request_id_is_echoed(client: TestClient[Any]) -> None:
    """A well-formed X-Request-ID from the client is kept, for tracing across services."""
    response = client.get("/v1/models", headers={"X-Request-ID": "trace-42"})
    assert response.headers["x-request-id"] == "trace-42"


def test_chat_template_kwargs_reach_the_template(
    client: TestClient[Any], engine: FakeEngine
) -> None:
    """chat_template_kwargs become variables of the render, values as sent."""
    kwargs = {"enable_thinking": False, "opts": {"depth": [1, 2]}}
    body = {"messages": [USER], "chat_template_kwargs": kwargs}
    assert client.post("/v1/chat/completions", json=body).status_code == 200
    assert engine.variables == [kwargs]


def test_chat_template_kwargs_naming_a_server_variable_is_a_400(
    client: TestClient[Any], engine: FakeEngine
) -> None:
    """A key the server sets (messages, bos_token...) is a 400 naming it; nothing renders."""
    body = {"messages": [USER], "chat_template_kwargs": {"bos_token": "x"}}
    response = client.post("/v1/chat/completions", json=body)
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["param"] == "chat_template_kwargs"
    assert "'bos_token'" in error["message"]
    assert engine.chats == []


def test_chat_template_kwargs_must_be_an_object(client: TestClient[Any]) -> None:
    """chat_template_kwargs that is not an object is a 400 naming it."""
    body = {"messages": [USER], "chat_template_kwargs": ["enable_thinking"]}
    response = client.post("/v1/chat/completions", json=body)
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "chat_template_kwargs"


def test_reasoning_effort_reaches_the_template(client: TestClient[Any], engine: FakeEngine) -> None:
    """reasoning_effort is a template variable; none also switches enable_thinking off."""
    for effort in ("none", "high"):
        body = {"messages": [USER], "reasoning_effort": effort}
        assert client.post("/v1/chat/completions", json=body).status_code == 200
    assert engine.variables == [
        {"reasoning_effort": "none", "enable_thinking": False},
        {"reasoning_effort": "high", "enable_thinking": True},
    ]


def test_explicit_chat_template_kwargs_win_over_reasoning_effort(
    client: TestClient[Any], engine: FakeEngine
) -> None:
    """A request sending both: its chat_template_kwargs decide enable_thinking."""
    body = {
        "messages": [USER],
        "reasoning_effort": "none",
        "chat_template_kwargs": {"enable_thinking": True},
    }
    assert client.post("/v1/chat/completions", json=body).status_code == 200
    assert engine.variables == [{"reasoning_effort": "none", "enable_thinking": True}]


def test_unknown_reasoning_effort_is_a_400(client: TestClient[Any]) -> None:
    """reasoning_effort outside OpenAI's values is a 400 listing them."""
    body = {"messages": [USER], "reasoning_effort": "extreme"}
    response = client.post("/v1/chat/completions", json=body)
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["param"] == "reasoning_effort"
    assert "'minimal'" in error["message"]


def test_a_chat_without_switches_renders_with_no_variables(
    client: TestClient[Any], engine: FakeEngine
) -> None:
    """No chat_template_kwargs and no reasoning_effort: the template's own defaults."""
    assert client.post("/v1/chat/completions", json={"messages": [USER]}).status_code == 200
    assert engine.variables == [{}]
