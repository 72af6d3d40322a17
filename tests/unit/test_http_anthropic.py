"""The Anthropic Messages routes over a FakeEngine: translation, shapes, SSE order, errors."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from litestar.testing import TestClient

from llmserve.api.anthropic.translate import system_text
from llmserve.config import ServerSettings
from llmserve.engine.fake import FakeEngine
from llmserve.errors import EngineOverloaded, LLMServeError, ModelNotFound, ServiceUnavailable
from tests.support.doubles import fake_app

USER = {"role": "user", "content": "say hello"}
BODY: dict[str, Any] = {"model": "m", "max_tokens": 16, "messages": [USER]}
WEATHER = {
    "name": "get_weather",
    "description": "The weather in a city",
    "input_schema": {
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
    },
}
CACHED_SYSTEM = "You are a careful assistant who answers in one short sentence."
CALL = '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>'


@pytest.fixture(name="engine")
def fixture_engine() -> FakeEngine:
    return FakeEngine()


@pytest.fixture(name="client")
def fixture_client(engine: FakeEngine) -> Iterator[TestClient[Any]]:
    with TestClient(fake_app(engine)) as client:
        yield client


def events(text: str) -> list[tuple[str, dict[str, Any]]]:
    """(event name, data) of each SSE event."""
    out = []
    for block in text.strip().split("\n\n"):
        name, data = block.split("\n")
        out.append((name.removeprefix("event: "), json.loads(data.removeprefix("data: "))))
    return out


def post(client: TestClient[Any], body: dict[str, Any], **headers: str) -> Any:
    return client.post("/v1/messages", json=body, headers=headers)


def test_message_has_anthropic_shape(client: TestClient[Any]) -> None:
    """A whole answer is one message with text content, stop_reason and Anthropic usage."""
    response = post(client, BODY)
    assert response.status_code == 200
    assert response.json() == {
        "id": "msg_2",
        "type": "message",
        "role": "assistant",
        "model": "fake-model",
        "content": [{"type": "text", "text": "Hello, world!"}],
        "stop_reason": "end_turn",
        "stop_sequence": None,
        "usage": {
            "input_tokens": 4,
            "output_tokens": 4,
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": 0,
        },
    }


def test_cached_prompt_tokens_are_cache_reads() -> None:
    """The prefix cache's tokens are cache_read_input_tokens, the rest input_tokens."""
    with TestClient(fake_app(FakeEngine(cached_tokens=3))) as client:
        usage = post(client, BODY).json()["usage"]
    assert usage["cache_read_input_tokens"] == 3
    assert usage["input_tokens"] == 1


def test_system_and_blocks_reach_the_template(client: TestClient[Any], engine: FakeEngine) -> None:
    """system (string or blocks) is a system turn; text blocks of a turn are its content."""
    body = {
        **BODY,
        "system": [{"type": "text", "text": "be brief"}, {"type": "text", "text": "be kind"}],
        "messages": [
            {
                "role": "user",
                "content": [{"type": "text", "text": "hi", "cache_control": {"type": "ephemeral"}}],
            },
            {"role": "assistant", "content": "hello"},
            {"role": "user", "content": "again"},
        ],
    }
    post(client, body)
    assert engine.chats[0] == [
        {"role": "system", "content": "be brief\nbe kind"},
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": "hello"},
        {"role": "user", "content": "again"},
    ]


def test_claude_code_billing_header_line_never_reaches_the_prompt(
    client: TestClient[Any], engine: FakeEngine
) -> None:
    """The per-conversation x-anthropic-billing-header line is dropped from the system prompt."""
    line = "x-anthropic-billing-header: cc_version=2.0.1; cc_entrypoint=cli; cch=abc123;"
    assert system_text(f"{line}\nYou are Claude Code.") == "You are Claude Code."
    system = [{"type": "text", "text": line}, {"type": "text", "text": "You are Claude Code."}]
    post(client, {**BODY, "system": system})
    assert engine.chats[0][0] == {"role": "system", "content": "You are Claude Code."}


def test_limits_and_sampling_reach_the_engine(client: TestClient[Any], engine: FakeEngine) -> None:
    """max_tokens, stop_sequences, temperature, top_p and top_k go to the engine request."""
    body = {
        **BODY,
        "stop_sequences": ["END"],
        "temperature": 0.5,
        "top_p": 0.9,
        "top_k": 40,
        "metadata": {"user_id": "u"},
    }
    assert post(client, body).status_code == 200
    request = engine.requests[0]
    assert (request.max_tokens, request.stop) == (16, ("END",))
    assert (request.sampling.temperature, request.sampling.top_p, request.sampling.top_k) == (
        0.5,
        0.9,
        40,
    )


def test_max_tokens_reached_is_stop_reason_max_tokens(client: TestClient[Any]) -> None:
    """A generation cut by max_tokens ends with stop_reason max_tokens."""
    assert post(client, {**BODY, "max_tokens": 2}).json()["stop_reason"] == "max_tokens"


def test_stop_sequence_is_reported(client: TestClient[Any]) -> None:
    """A stop sequence ends with stop_reason stop_sequence naming it."""
    answer = post(client, {**BODY, "stop_sequences": ["nope", "world"]}).json()
    assert (answer["stop_reason"], answer["stop_sequence"]) == ("stop_sequence", "world")
    assert answer["content"] == [{"type": "text", "text": "Hello, "}]


def test_stream_events_in_anthropic_order(client: TestClient[Any]) -> None:
    """message_start, content_block_start, ping, text deltas, block stop, message_delta, stop."""
    response = post(client, {**BODY, "stream": True})
    assert response.headers["content-type"].startswith("text/event-stream")
    got = events(response.text)
    assert [name for name, _ in got] == [
        "message_start",
        "content_block_start",
        "ping",
        *["content_block_delta"] * 4,
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    assert all(data["type"] == name for name, data in got)
    assert got[0][1]["message"]["id"] == "msg_2"
    assert got[1][1]["content_block"] == {"type": "text", "text": ""}
    assert "".join(d["delta"]["text"] for n, d in got if n == "content_block_delta") == (
        "Hello, world!"
    )
    assert got[-2][1]["delta"] == {"stop_reason": "end_turn", "stop_sequence": None}
    assert got[-2][1]["usage"]["output_tokens"] == 4


def test_tool_call_is_a_tool_use_block() -> None:
    """A Hermes call in the output becomes a tool_use block with an object input."""
    engine = FakeEngine(pieces=(CALL,))
    with TestClient(fake_app(engine)) as client:
        answer = post(client, {**BODY, "tools": [WEATHER]}).json()
    assert answer["stop_reason"] == "tool_use"
    assert answer["content"] == [
        {"type": "tool_use", "id": "toolu_3", "name": "get_weather", "input": {"city": "Paris"}}
    ]
    assert engine.tools[0] == [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "description": "The weather in a city",
                "parameters": WEATHER["input_schema"],
            },
        }
    ]


def test_streamed_tool_call_sends_input_json_deltas() -> None:
    """A streamed call is a tool_use block whose input arrives as input_json_delta pieces."""
    engine = FakeEngine(pieces=("Let me check. ", CALL))
    with TestClient(fake_app(engine)) as client:
        got = events(post(client, {**BODY, "tools": [WEATHER], "stream": True}).text)
    starts = [d["content_block"] for n, d in got if n == "content_block_start"]
    assert [s["type"] for s in starts] == ["text", "tool_use"]
    assert starts[1]["name"] == "get_weather"
    assert starts[1]["input"] == {}
    pieces = [d["delta"]["partial_json"] for n, d in got if d.get("delta", {}).get("partial_json")]
    assert json.loads("".join(pieces)) == {"city": "Paris"}
    stops = [d["index"] for n, d in got if n == "content_block_stop"]
    assert stops == [0, 1]
    assert got[-2][1]["delta"]["stop_reason"] == "tool_use"


def test_forced_tool_choice_constrains_the_output(
    client: TestClient[Any], engine: FakeEngine
) -> None:
    """tool_choice tool (or any) asks the engine for a tool-call grammar; auto does not."""
    post(
        client, {**BODY, "tools": [WEATHER], "tool_choice": {"type": "tool", "name": "get_weather"}}
    )
    post(client, {**BODY, "tools": [WEATHER], "tool_choice": {"type": "any"}})
    post(client, {**BODY, "tools": [WEATHER], "tool_choice": {"type": "auto"}})
    grammars = [r.grammar for r in engine.requests]
    assert grammars[0] is not None
    assert grammars[1] is not None
    assert grammars[2] is None


def test_tool_choice_none_leaves_the_tools_out(client: TestClient[Any], engine: FakeEngine) -> None:
    """tool_choice none renders no tools."""
    post(client, {**BODY, "tools": [WEATHER], "tool_choice": {"type": "none"}})
    assert engine.tools == [None]


def test_tool_use_and_results_become_tool_turns(
    client: TestClient[Any], engine: FakeEngine
) -> None:
    """tool_use blocks are the assistant's tool_calls; tool_result blocks are tool turns."""
    body = {
        **BODY,
        "tools": [WEATHER],
        "messages": [
            USER,
            {
                "role": "assistant",
                "content": [
                    {"type": "text", "text": "Checking."},
                    {"type": "tool_use", "id": "t1", "name": "get_weather", "input": {"city": "P"}},
                ],
            },
            {
                "role": "user",
                "content": [
                    {
                        "type": "tool_result",
                        "tool_use_id": "t1",
                        "content": [{"type": "text", "text": "sunny"}],
                    },
                    {"type": "text", "text": "and?"},
                ],
            },
            {"role": "assistant", "content": [{"type": "thinking", "thinking": "x"}]},
            {
                "role": "user",
                "content": [
                    {"type": "tool_result", "tool_use_id": "t1", "content": "no", "is_error": True}
                ],
            },
        ],
    }
    assert post(client, body).status_code == 200
    assert engine.chats[0] == [
        USER,
        {
            "role": "assistant",
            "content": "Checking.",
            "tool_calls": [
                {
                    "id": "t1",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": {"city": "P"}},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "t1", "content": "sunny"},
        {"role": "user", "content": "and?"},
        {"role": "assistant", "content": ""},
        {"role": "tool", "tool_call_id": "t1", "content": "Error: no"},
    ]


@pytest.mark.parametrize(
    ("body", "says"),
    [
        ({"model": "m", "messages": [USER]}, "max_tokens"),
        ({**BODY, "messages": [{"role": "system", "content": "x"}]}, "role"),
        ({**BODY, "messages": [{"role": "user", "content": [{"type": "video"}]}]}, "video"),
        (
            {**BODY, "messages": [{"role": "user", "content": [{"type": "image", "source": {}}]}]},
            "image",
        ),
        (
            {
                **BODY,
                "messages": [{"role": "user", "content": [{"type": "document", "source": {}}]}],
            },
            "document",
        ),
        (
            {
                **BODY,
                "messages": [
                    {
                        "role": "user",
                        "content": [{"type": "tool_result", "tool_use_id": "x", "content": "r"}],
                    }
                ],
            },
            "tool_use",
        ),
        ({**BODY, "max_tokens": 0}, "max_tokens"),
        ({**BODY, "temperature": 1.5}, "temperature"),
        ({**BODY, "messages": []}, "messages"),
        ({**BODY, "tool_choice": {"type": "any"}}, "tools"),
        ({**BODY, "tools": [WEATHER], "tool_choice": {"type": "tool", "name": "nope"}}, "nope"),
    ],
)
def test_bad_request_is_a_400_in_anthropic_envelope(
    client: TestClient[Any], body: dict[str, Any], says: str
) -> None:
    """Bad input is a 400 invalid_request_error in Anthropic's envelope naming the problem."""
    response = post(client, body)
    assert response.status_code == 400
    answer = response.json()
    assert answer["type"] == "error"
    assert answer["error"]["type"] == "invalid_request_error"
    assert says in answer["error"]["message"]


def test_unparseable_body_is_a_400_in_anthropic_envelope(client: TestClient[Any]) -> None:
    """A body that is not JSON is a 400 in Anthropic's envelope."""
    response = client.post("/v1/messages", content=b"{nope")
    assert response.status_code == 400
    assert response.json()["error"]["type"] == "invalid_request_error"


def test_x_api_key_and_bearer_both_authenticate() -> None:
    """With keys on, x-api-key and Authorization: Bearer both work; none or a wrong one is 401."""
    with TestClient(fake_app(api_key="sk-1")) as client:
        assert post(client, BODY, **{"x-api-key": "sk-1"}).status_code == 200
        ok = post(client, BODY, authorization="Bearer sk-1", **{"anthropic-version": "2023-06-01"})
        assert ok.status_code == 200
        for headers in ({}, {"x-api-key": "wrong"}):
            response = post(client, BODY, **headers)
            assert response.status_code == 401
            assert response.json()["error"]["type"] == "authentication_error"
        assert client.post("/v1/chat/completions", json={"messages": [USER]}).status_code == 401


def test_openai_routes_keep_bearer_only() -> None:
    """x-api-key is an Anthropic header: the OpenAI routes still want Bearer."""
    with TestClient(fake_app(api_key="sk-1")) as client:
        response = client.post(
            "/v1/chat/completions", json={"messages": [USER]}, headers={"x-api-key": "sk-1"}
        )
    assert response.status_code == 401
    assert "error" in response.json()
    assert "type" not in response.json()


@pytest.mark.parametrize(
    ("error", "status", "type_"),
    [
        (ModelNotFound("no such model"), 404, "not_found_error"),
        (EngineOverloaded("busy", retry_after_s=3), 529, "overloaded_error"),
        (ServiceUnavailable("loading"), 503, "overloaded_error"),
        (LLMServeError("boom"), 500, "api_error"),
    ],
)
def test_engine_errors_map_to_anthropic_types(
    error: LLMServeError, status: int, type_: str
) -> None:
    """Each error of the tree has its Anthropic status and type (overload: 529, retry-after)."""
    with TestClient(fake_app(FakeEngine(submit_error=error))) as client:
        response = post(client, BODY)
    assert response.status_code == status
    assert response.json() == {"type": "error", "error": {"type": type_, "message": error.message}}
    if isinstance(error, EngineOverloaded):
        assert response.headers["retry-after"] == "3"


def test_rate_limit_is_a_429_rate_limit_error() -> None:
    """Over [server] rate_limit_rpm, a 429 rate_limit_error with retry-after."""
    server = ServerSettings(rate_limit_rpm=1, api_key="k")
    with TestClient(fake_app(server=server)) as client:
        assert post(client, BODY, **{"x-api-key": "k"}).status_code == 200
        response = post(client, BODY, **{"x-api-key": "k"})
    assert response.status_code == 429
    assert response.json()["error"]["type"] == "rate_limit_error"
    assert "retry-after" in response.headers


def test_failure_mid_stream_is_an_error_event() -> None:
    """A failure after the 200 ends the stream with an error event in Anthropic's envelope."""
    engine = FakeEngine(fail_after=2, fail_with=EngineOverloaded("busy"))
    with TestClient(fake_app(engine)) as client:
        got = events(post(client, {**BODY, "stream": True}).text)
    assert got[-1] == (
        "error",
        {"type": "error", "error": {"type": "overloaded_error", "message": "busy"}},
    )
    assert engine.cancels == 1


def test_count_tokens_counts_the_rendered_prompt(
    client: TestClient[Any], engine: FakeEngine
) -> None:
    """count_tokens answers the token count of the prompt the request renders to."""
    body = {"model": "m", "system": "be brief", "messages": [USER]}
    response = client.post("/v1/messages/count_tokens", json=body)
    assert response.status_code == 200
    prompt = engine.render_chat([{"role": "system", "content": "be brief"}, USER])
    assert response.json() == {"input_tokens": len(prompt.encode()) + 1}  # bytes and BOS
    assert engine.requests == []


def test_messages_are_counted_in_request_metrics(client: TestClient[Any]) -> None:
    """/v1/messages requests show in the request metrics like the OpenAI routes."""
    post(client, BODY)
    metrics = client.get("/metrics").text
    assert 'endpoint="/v1/messages"' in metrics


def test_reasoning_is_a_thinking_block_before_the_text() -> None:
    """A reasoning model's <think> section is a thinking block, never part of the text."""
    engine = FakeEngine(pieces=("<think>Paris is ", "in France.</think>", "It is sunny."))
    engine.family = "qwen3"
    with TestClient(fake_app(engine)) as client:
        answer = post(client, BODY).json()
    assert answer["content"] == [
        {"type": "thinking", "thinking": "Paris is in France.", "signature": ""},
        {"type": "text", "text": "It is sunny."},
    ]


def test_streamed_reasoning_sends_thinking_deltas() -> None:
    """Streamed, the reasoning is a thinking block of thinking_delta events, then the text."""
    engine = FakeEngine(pieces=("<think>Paris is ", "in France.</think>", "It is sunny."))
    engine.family = "qwen3"
    with TestClient(fake_app(engine)) as client:
        got = events(post(client, {**BODY, "stream": True}).text)
    starts = [d["content_block"]["type"] for n, d in got if n == "content_block_start"]
    assert starts == ["thinking", "text"]
    thinking = [d["delta"]["thinking"] for n, d in got if d.get("delta", {}).get("thinking")]
    assert "".join(thinking) == "Paris is in France."
    text = [d["delta"]["text"] for n, d in got if d.get("delta", {}).get("type") == "text_delta"]
    assert "".join(text) == "It is sunny."


def test_thinking_switch_reaches_the_template(client: TestClient[Any], engine: FakeEngine) -> None:
    """thinking disabled: enable_thinking false; enabled (with a budget): true; absent: none."""
    enabled = {"type": "enabled", "budget_tokens": 1024}
    assert post(client, {**BODY, "thinking": {"type": "disabled"}}).status_code == 200
    assert post(client, {**BODY, "max_tokens": 2048, "thinking": enabled}).status_code == 200
    assert post(client, BODY).status_code == 200
    assert engine.variables == [{"enable_thinking": False}, {"enable_thinking": True}, {}]


def test_count_tokens_renders_with_the_thinking_switch(
    client: TestClient[Any], engine: FakeEngine
) -> None:
    """count_tokens counts the prompt create would make, thinking switch included."""
    body = {"model": "m", "messages": [USER], "thinking": {"type": "disabled"}}
    assert client.post("/v1/messages/count_tokens", json=body).status_code == 200
    assert engine.variables == [{"enable_thinking": False}]


def test_thinking_budget_below_1024_is_refused_as_anthropic_does(client: TestClient[Any]) -> None:
    """budget_tokens under 1024: Anthropic's invalid_request_error, in its words."""
    thinking = {"type": "enabled", "budget_tokens": 1023}
    response = post(client, {**BODY, "max_tokens": 4096, "thinking": thinking})
    assert response.status_code == 400
    assert response.json()["error"] == {
        "type": "invalid_request_error",
        "message": "thinking.enabled.budget_tokens: Input should be greater than or equal to 1024",
    }


def test_thinking_budget_not_below_max_tokens_is_refused_as_anthropic_does(
    client: TestClient[Any],
) -> None:
    """budget_tokens must stay under max_tokens: Anthropic's message, naming both."""
    thinking = {"type": "enabled", "budget_tokens": 2048}
    response = post(client, {**BODY, "max_tokens": 2048, "thinking": thinking})
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error"
    assert error["message"].startswith(
        "`max_tokens` must be greater than `thinking.budget_tokens`."
    )


def test_enabled_thinking_without_a_budget_is_refused(client: TestClient[Any]) -> None:
    """thinking enabled needs budget_tokens, as Anthropic requires it."""
    response = post(client, {**BODY, "thinking": {"type": "enabled"}})
    assert response.status_code == 400
    assert response.json()["error"]["message"] == "thinking.enabled.budget_tokens: Field required"


def test_marked_prefixes_reach_the_engine_as_offsets(
    client: TestClient[Any], engine: FakeEngine
) -> None:
    """/v1/messages sends the engine the character offset where the system mark ends."""
    body = {
        "model": "m",
        "max_tokens": 4,
        "system": [{"type": "text", "text": CACHED_SYSTEM, "cache_control": {"type": "ephemeral"}}],
        "messages": [{"role": "user", "content": "Weather in Paris?"}],
    }
    assert client.post("/v1/messages", json=body).status_code == 200
    request = engine.requests[-1]
    assert isinstance(request.prompt, str)
    (offset,) = request.checkpoints
    # The fake template writes "<|role|> content\n" per turn: the user's text comes next.
    assert request.prompt[:offset] == f"<|system|> {CACHED_SYSTEM}\n<|user|> "


def test_unmarked_requests_send_no_offsets(client: TestClient[Any], engine: FakeEngine) -> None:
    """Without cache_control the engine gets no checkpoints and the template one render."""
    body = {"model": "m", "max_tokens": 4, "messages": [{"role": "user", "content": "Hi"}]}
    assert client.post("/v1/messages", json=body).status_code == 200
    assert engine.requests[-1].checkpoints == ()
    assert len(engine.chats) == 1


def test_cache_creation_tokens_are_the_engines_written_tokens(engine: FakeEngine) -> None:
    """usage.cache_creation_input_tokens: what a checkpoint save stored; input_tokens the rest."""
    engine.cached_tokens, engine.cache_written_tokens = 3, 5
    words = "one two three four five six seven eight nine ten"
    body = {"model": "m", "max_tokens": 4, "messages": [{"role": "user", "content": words}]}
    with TestClient(fake_app(engine)) as client:
        usage = client.post("/v1/messages", json=body).json()["usage"]
    assert usage["cache_read_input_tokens"] == 3
    assert usage["cache_creation_input_tokens"] == 5
    prompt = engine.generations[-1].prompt_tokens
    assert usage["input_tokens"] == prompt - 3 - 5
