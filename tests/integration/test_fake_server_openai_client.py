"""A real uvicorn server over a FakeEngine, driven by the official openai client."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx
import openai
import pytest

from llmserve.engine.fake import FakeEngine
from llmserve.errors import EngineOverloaded
from tests.support.doubles import fake_app
from tests.support.server import eventually, serve_app

KEY = "sk-integration"
USER = {"role": "user", "content": "say hello"}


@pytest.fixture(name="engine")
def fixture_engine() -> FakeEngine:
    return FakeEngine()


@pytest.fixture(name="base_url")
def fixture_base_url(engine: FakeEngine) -> Iterator[str]:
    with serve_app(fake_app(engine)) as base_url:
        yield base_url


@pytest.fixture(name="client")
def fixture_client(base_url: str) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=f"{base_url}/v1", api_key="unused", max_retries=0) as client:
        yield client


def test_chat_completion(client: openai.OpenAI) -> None:
    """client.chat.completions.create returns the scripted answer with usage."""
    completion = client.chat.completions.create(model="anything", messages=[USER])
    assert completion.choices[0].message.content == "Hello, world!"
    assert completion.choices[0].finish_reason == "stop"
    assert completion.model == "fake-model"
    assert completion.usage is not None
    assert completion.usage.total_tokens == 8


def test_chat_completion_stream(client: openai.OpenAI) -> None:
    """Streamed chat deltas join to the whole answer and the last choice says why it ended."""
    stream = client.chat.completions.create(model="m", messages=[USER], stream=True)
    chunks = list(stream)
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks)
    assert text == "Hello, world!"
    assert chunks[-1].choices[0].finish_reason == "stop"


def test_chat_stream_include_usage(client: openai.OpenAI) -> None:
    """stream_options include_usage ends the stream with a usage-only chunk."""
    stream = client.chat.completions.create(
        model="m", messages=[USER], stream=True, stream_options={"include_usage": True}
    )
    last = list(stream)[-1]
    assert last.choices == []
    assert last.usage is not None
    assert last.usage.completion_tokens == 4


def test_text_completion(client: openai.OpenAI) -> None:
    """client.completions.create honours max_tokens."""
    completion = client.completions.create(model="m", prompt="one two", max_tokens=2)
    assert completion.choices[0].text == "Hello,"
    assert completion.choices[0].finish_reason == "length"


def test_text_completion_stream(client: openai.OpenAI) -> None:
    """Streamed text completion pieces join to the whole text."""
    stream = client.completions.create(model="m", prompt="x", stream=True)
    assert "".join(c.choices[0].text for c in stream if c.choices) == "Hello, world!"


def test_models_list(client: openai.OpenAI) -> None:
    """client.models.list shows the served model; retrieve finds it by id."""
    assert [m.id for m in client.models.list()] == ["fake-model"]
    assert client.models.retrieve("fake-model").id == "fake-model"


def test_invalid_request_is_bad_request_error_with_param(client: openai.OpenAI) -> None:
    """A 400 surfaces as openai.BadRequestError carrying the param."""
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model="m", messages=[USER], temperature=5)
    assert caught.value.param == "temperature"


def test_overload_is_rate_limit_error() -> None:
    """EngineOverloaded surfaces as openai.RateLimitError."""
    engine = FakeEngine(submit_error=EngineOverloaded("busy"))
    with (
        serve_app(fake_app(engine)) as base_url,
        openai.OpenAI(base_url=f"{base_url}/v1", api_key="k", max_retries=0) as client,
        pytest.raises(openai.RateLimitError),
    ):
        client.chat.completions.create(model="m", messages=[USER])


def test_auth_refuses_a_wrong_key() -> None:
    """With server.api_key set, a wrong key raises openai.AuthenticationError."""
    with (
        serve_app(fake_app(api_key=KEY)) as base_url,
        openai.OpenAI(base_url=f"{base_url}/v1", api_key="wrong", max_retries=0) as client,
        pytest.raises(openai.AuthenticationError),
    ):
        client.models.list()


def test_auth_accepts_the_right_key() -> None:
    """With server.api_key set, the client's api_key is sent as the bearer and accepted."""
    with (
        serve_app(fake_app(api_key=KEY)) as base_url,
        openai.OpenAI(base_url=f"{base_url}/v1", api_key=KEY, max_retries=0) as client,
    ):
        assert client.chat.completions.create(model="m", messages=[USER]).choices


def test_stream_disconnect_cancels_the_generation() -> None:
    """Closing a stream early cancels the engine generation."""
    engine = FakeEngine(pieces=("tick ",) * 500, delay_s=0.01)
    with serve_app(fake_app(engine)) as base_url:
        body = {"model": "m", "messages": [USER], "stream": True}
        with httpx.stream("POST", f"{base_url}/v1/chat/completions", json=body) as response:
            next(response.iter_lines())
        assert eventually(lambda: engine.cancels == 1 and engine.generations[0].cancelled)
        assert len(engine.generations[0].pieces) == 500
        assert engine.running == 0


def test_whole_answer_disconnect_cancels_the_generation() -> None:
    """A non-streaming client that gives up frees its generation too."""
    engine = FakeEngine(pieces=("tick ",) * 500, delay_s=0.01)
    with serve_app(fake_app(engine)) as base_url:
        body = {"model": "m", "messages": [USER]}
        with pytest.raises(httpx.ReadTimeout):
            httpx.post(f"{base_url}/v1/chat/completions", json=body, timeout=0.3)
        assert eventually(lambda: engine.cancels == 1)
        assert engine.running == 0


def test_whole_answer_disconnect_is_counted_as_499() -> None:
    """The request metrics record a client that gave up as status 499."""
    engine = FakeEngine(pieces=("tick ",) * 500, delay_s=0.01)
    with serve_app(fake_app(engine)) as base_url:
        body = {"model": "m", "prompt": "x"}
        with pytest.raises(httpx.ReadTimeout):
            httpx.post(f"{base_url}/v1/completions", json=body, timeout=0.3)
        series = (
            'llm_engine_requests_total{endpoint="/v1/completions",model="fake-model",status="499"}'
            " 1.0"
        )
        assert eventually(lambda: series in httpx.get(f"{base_url}/metrics").text)


def test_shutdown_stops_the_engine(engine: FakeEngine) -> None:
    """Leaving serve_app runs the lifespan shutdown, which stops the engine."""
    with serve_app(fake_app(engine)):
        assert engine.loaded
    assert engine.stopped


def test_probes_are_answered_while_a_chat_template_renders(
    engine: FakeEngine, base_url: str
) -> None:
    """A chat template render in progress (held open here by the fake engine's gate, as a
    hostile template holds it up to the sandbox's 1 s) does not stall the event loop: /ping
    and /health answer meanwhile, and the chat is served once the render ends."""
    engine.render_gate = threading.Event()
    body = {"model": "m", "messages": [USER]}
    with ThreadPoolExecutor(1) as pool:
        try:
            chat = pool.submit(httpx.post, f"{base_url}/v1/chat/completions", json=body, timeout=60)
            assert eventually(lambda: bool(engine.chats)), "the render never started"
            assert httpx.get(f"{base_url}/ping", timeout=5).status_code == 200
            assert httpx.get(f"{base_url}/health", timeout=5).status_code == 200
            assert not chat.done(), "the render ended before the probes were answered"
        finally:
            engine.render_gate.set()
        assert chat.result().status_code == 200
