"""The /v1 routes over a ModelRegistry of FakeEngines: several models by name or alias."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from litestar.testing import TestClient

from llmserve.engine.fake import FakeEngine
from llmserve.engine.registry import ModelRegistry, ModelSpec
from llmserve.models.budget import GiB, MemoryGuard, ModelNeed
from llmserve.ops.memlimit import MemoryLimit
from tests.support.doubles import fake_app

USER = {"role": "user", "content": "say hello"}


@pytest.fixture(name="engines")
def fixture_engines() -> list[FakeEngine]:
    return [FakeEngine(model_id="alpha"), FakeEngine(model_id="beta", pieces=("Beta",))]


@pytest.fixture(name="client")
def fixture_client(engines: list[FakeEngine]) -> Iterator[TestClient[Any]]:
    alpha, beta = engines
    models = ModelRegistry(
        [ModelSpec(alpha, preload=True), ModelSpec(beta, aliases=("b", "org/b"))], max_loaded=1
    )
    with TestClient(fake_app(models)) as client:
        yield client


def metric_lines(client: TestClient[Any], name: str) -> list[str]:
    return [line for line in client.get("/metrics").text.splitlines() if line.startswith(name)]


def test_models_lists_every_configured_model(client: TestClient[Any]) -> None:
    """/v1/models lists all models, the lazy one not loaded yet included."""
    listed = client.get("/v1/models").json()["data"]
    assert [card["id"] for card in listed] == ["alpha", "beta"]


def test_lazy_models_do_not_hold_back_readiness(
    client: TestClient[Any], engines: list[FakeEngine]
) -> None:
    """Ready once the preloaded model is in; the lazy one loads on use."""
    assert client.get("/readyz").json() == {"status": "ready"}
    assert client.get("/health").json()["status"] == "healthy"
    assert [engine.loaded for engine in engines] == [True, False]


def test_alias_routes_to_its_model_and_the_answer_names_it(
    client: TestClient[Any], engines: list[FakeEngine]
) -> None:
    """A request by alias is served by that model, and the response carries its name."""
    answer = client.post("/v1/completions", json={"model": "org/b", "prompt": "hi"}).json()
    assert answer["model"] == "beta"
    assert answer["choices"][0]["text"] == "Beta"
    assert [len(engine.requests) for engine in engines] == [0, 1]


def test_chat_uses_the_named_models_template(
    client: TestClient[Any], engines: list[FakeEngine]
) -> None:
    """A chat is rendered with the chat template of the model it names."""
    body = {"model": "b", "messages": [USER], "stream": True}
    text = client.post("/v1/chat/completions", json=body).text
    assert '"model":"beta"' in text
    assert text.endswith("data: [DONE]\n\n")
    assert [len(engine.chats) for engine in engines] == [0, 1]


def test_unknown_model_is_a_404_model_not_found(client: TestClient[Any]) -> None:
    """With several models, a name none has is 404 model_not_found on param model."""
    response = client.post("/v1/chat/completions", json={"model": "gpt-4", "messages": [USER]})
    assert response.status_code == 404
    error = response.json()["error"]
    assert (error["type"], error["param"], error["code"]) == (
        "invalid_request_error",
        "model",
        "model_not_found",
    )
    assert "alpha, beta" in error["message"]


def test_request_metrics_carry_the_serving_models_label(client: TestClient[Any]) -> None:
    """Each request counts under the model that served it."""
    client.post("/v1/completions", json={"model": "b", "prompt": "hi"})
    client.post("/v1/completions", json={"model": "alpha", "prompt": "hi"})
    requests = metric_lines(client, "llm_engine_requests_total")
    assert any('model="beta"' in line and line.endswith(" 1.0") for line in requests)
    assert any('model="alpha"' in line and line.endswith(" 1.0") for line in requests)


def test_loads_and_unloads_show_on_metrics(client: TestClient[Any]) -> None:
    """A lazy load, and the LRU unload it caused under max_loaded_models = 1, are counted."""
    client.post("/v1/completions", json={"model": "beta", "prompt": "hi"})
    assert 'llm_engine_model_loads_total{model="beta"} 1.0' in metric_lines(
        client, "llm_engine_model_loads_total"
    )
    assert 'llm_engine_model_unloads_total{model="alpha",reason="lru"} 1.0' in metric_lines(
        client, "llm_engine_model_unloads_total"
    )
    assert metric_lines(client, "llm_engine_models_loaded ") == ["llm_engine_models_loaded 1.0"]
    assert 'llm_engine_model_loaded{model="alpha"} 0.0' in metric_lines(
        client, "llm_engine_model_loaded{"
    )


def test_model_lookup_by_alias_names_the_served_model(client: TestClient[Any]) -> None:
    """/v1/models/{alias} answers the card of the model the alias routes to."""
    for name, served in (("alpha", "alpha"), ("beta", "beta"), ("b", "beta"), ("org/b", "beta")):
        response = client.get(f"/v1/models/{name}")
        assert response.status_code == 200
        assert response.json()["id"] == served


def test_model_lookup_loads_nothing(client: TestClient[Any], engines: list[FakeEngine]) -> None:
    """Looking a lazy model up does not load it (nor unload another to make room)."""
    assert client.get("/v1/models/b").json()["id"] == "beta"
    assert [engine.loaded for engine in engines] == [True, False]


def test_model_lookup_of_an_unknown_name_is_a_404(client: TestClient[Any]) -> None:
    """With several models, a name none has is 404 model_not_found, in OpenAI's envelope."""
    response = client.get("/v1/models/gpt-3.5-turbo")
    assert response.status_code == 404
    error = response.json()["error"]
    assert (error["type"], error["param"], error["code"]) == (
        "invalid_request_error",
        "model",
        "model_not_found",
    )


def test_fresh_metrics_have_series_for_every_configured_model(client: TestClient[Any]) -> None:
    """Each configured model, the lazy one too, has its latency series at 0 from the start."""
    for model in ("alpha", "beta"):
        ttft = metric_lines(
            client, f'llm_engine_time_to_first_token_seconds_count{{model="{model}"}}'
        )
        assert ttft == [f'llm_engine_time_to_first_token_seconds_count{{model="{model}"}} 0.0']
        labels = f'endpoint="/v1/chat/completions",model="{model}"'
        duration = metric_lines(client, f"llm_engine_request_duration_ms_count{{{labels}}}")
        assert duration == [f"llm_engine_request_duration_ms_count{{{labels}}} 0.0"]


def test_model_load_that_does_not_fit_memory_is_a_503_envelope() -> None:
    """Loading a model over the memory limit answers 503 insufficient_memory, streamed or not."""
    small, huge = FakeEngine(model_id="small"), FakeEngine(model_id="huge")
    limit = MemoryLimit(4 * GiB, "test")
    models = ModelRegistry(
        [
            ModelSpec(small, preload=True, need=ModelNeed("small", GiB, 0, 0, 0)),
            ModelSpec(huge, need=ModelNeed("huge", 8 * GiB, 0, 0, 0)),
        ],
        memory=MemoryGuard(read_limit=lambda: limit, process=0),
    )
    with TestClient(fake_app(models)) as client:
        for stream in (False, True):
            body = {"model": "huge", "messages": [USER], "stream": stream}
            response = client.post("/v1/chat/completions", json=body)
            assert response.status_code == 503
            error = response.json()["error"]
            assert (error["type"], error["code"]) == ("server_error", "insufficient_memory")
            assert error["message"].startswith("Resource error: Insufficient memory: ")
    assert not huge.loaded
