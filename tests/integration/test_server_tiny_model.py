"""A real server on a real port with the real engine on the tiny GGUF, via the openai client."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import openai
import pytest

from llmserve.api.app import create_app
from llmserve.config import ModelSettings, ServerSettings, Settings
from tests.support.server import serve_app

KEY = "sk-tiny"
PROMPTS = ["The quick brown fox", "Once upon a time", "1, 2, 3,", "Hello, wörld", "def f(x):"]


@pytest.fixture(name="base_url", scope="module")
def fixture_base_url(tiny_gguf: Path) -> Iterator[str]:
    settings = Settings(
        server=ServerSettings(api_key=KEY),
        model=ModelSettings(
            model_path=str(tiny_gguf), name="tiny", parallel=4, max_sequence_length=256
        ),
    )
    with serve_app(create_app(settings)) as base_url:
        yield base_url


@pytest.fixture(name="client")
def fixture_client(base_url: str) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=f"{base_url}/v1", api_key=KEY, max_retries=0) as client:
        yield client


def complete(client: openai.OpenAI, prompt: str, **kwargs: object) -> openai.types.Completion:
    return client.completions.create(
        model="anything",
        prompt=prompt,
        temperature=0,
        **kwargs,  # type: ignore[arg-type]
    )


def test_completion_names_the_served_model_and_counts_usage(client: openai.OpenAI) -> None:
    """Any model name routes to the served model; usage is exact for a length finish."""
    result = complete(client, PROMPTS[0], max_tokens=9)
    assert result.model == "tiny"
    assert result.choices[0].finish_reason == "length"
    assert result.usage is not None
    assert result.usage.completion_tokens == 9
    assert result.usage.total_tokens == result.usage.prompt_tokens + 9


def test_streamed_completion_equals_whole_completion(client: openai.OpenAI) -> None:
    """Streaming gives the same greedy text as the non-streaming call, then finish_reason."""
    whole = complete(client, PROMPTS[1], max_tokens=16).choices[0].text
    chunks = list(complete(client, PROMPTS[1], max_tokens=16, stream=True))
    assert "".join(c.choices[0].text for c in chunks if c.choices) == whole
    assert chunks[-1].choices[0].finish_reason == "length"


def test_chat_completion_stream_and_not_agree(client: openai.OpenAI) -> None:
    """Chat through the template: the streamed deltas add up to the whole message."""
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}]
    whole = client.chat.completions.create(
        model="tiny",
        messages=messages,
        max_tokens=12,
        temperature=0,  # type: ignore[arg-type]
    )
    stream = client.chat.completions.create(
        model="tiny",
        messages=messages,  # type: ignore[arg-type]
        max_tokens=12,
        temperature=0,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == whole.choices[0].message.content
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == 12
    assert whole.choices[0].message.role == "assistant"


def test_stop_string_is_not_in_the_output(client: openai.OpenAI) -> None:
    """A stop string cut from the greedy output ends the text just before it, streamed too."""
    full = complete(client, PROMPTS[4], max_tokens=30).choices[0].text
    stop = full[8:11]
    cut = full[: full.index(stop)]
    result = complete(client, PROMPTS[4], max_tokens=30, stop=[stop])
    assert result.choices[0].text == cut
    assert result.choices[0].finish_reason == "stop"
    streamed = complete(client, PROMPTS[4], max_tokens=30, stop=stop, stream=True)
    assert "".join(c.choices[0].text for c in streamed if c.choices) == cut


def test_context_overflow_is_a_400_with_its_code(client: openai.OpenAI) -> None:
    """Prompt plus max_tokens over the context: 400 context_length_exceeded."""
    with pytest.raises(openai.BadRequestError) as info:
        complete(client, "hello", max_tokens=100_000)
    assert info.value.code == "context_length_exceeded"


def test_wrong_key_is_a_401(base_url: str) -> None:
    """Without the configured key, /v1 answers 401 in the OpenAI envelope."""
    with (
        openai.OpenAI(base_url=f"{base_url}/v1", api_key="wrong", max_retries=0) as client,
        pytest.raises(openai.AuthenticationError),
    ):
        client.models.list()


def test_models_lists_the_served_model(client: openai.OpenAI) -> None:
    """/v1/models lists exactly the configured name."""
    assert [m.id for m in client.models.list()] == ["tiny"]


def test_health_and_ping_stay_open(base_url: str) -> None:
    """/health gives the seed's JSON keys plus the models without a key; /ping answers."""
    health = httpx.get(f"{base_url}/health").json()
    assert set(health) == {
        "status",
        "uptime_seconds",
        "total_requests",
        "cache_hit_rate",
        "memory_usage_mb",
        "models",
    }
    assert health["status"] == "healthy"
    assert health["models"] == [
        {
            "id": "tiny",
            "loaded": True,
            "running": 0,
            "waiting": 0,
            "replicas": [{"replica": 0, "running": 0, "waiting": 0}],
        }
    ]
    assert httpx.get(f"{base_url}/ping").status_code == 200


def test_parallel_streams_over_http_each_get_their_own_text(client: openai.OpenAI) -> None:
    """Five streams at once through four slots each get their solo greedy text."""
    solo = {p: complete(client, p, max_tokens=40).choices[0].text for p in PROMPTS}

    def streamed(prompt: str) -> str:
        chunks = complete(client, prompt, max_tokens=40, stream=True)
        return "".join(c.choices[0].text for c in chunks if c.choices)

    with ThreadPoolExecutor(len(PROMPTS)) as pool:
        together = list(pool.map(streamed, PROMPTS))
    assert together == [solo[p] for p in PROMPTS]
