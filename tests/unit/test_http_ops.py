"""Operational routes: /health, /ping, /livez, /readyz, /metrics."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest
from litestar.testing import TestClient

from llmserve.engine.fake import FakeEngine
from llmserve.engine.protocol import ReplicaStats
from tests.support.doubles import FixedClock, fake_app


@pytest.fixture(name="engine")
def fixture_engine() -> FakeEngine:
    return FakeEngine(cache_hit_rate=0.25)


@pytest.fixture(name="clock")
def fixture_clock() -> FixedClock:
    return FixedClock()


@pytest.fixture(name="client")
def fixture_client(engine: FakeEngine, clock: FixedClock) -> Iterator[TestClient[Any]]:
    with TestClient(fake_app(engine, clock=clock)) as client:
        yield client


def test_health_has_the_seed_shape_plus_the_models(client: TestClient[Any]) -> None:
    """/health answers 200 with the seed README's five keys, and ``models``, nothing else."""
    response = client.get("/health")
    assert response.status_code == 200
    assert set(response.json()) == {
        "status",
        "uptime_seconds",
        "total_requests",
        "cache_hit_rate",
        "memory_usage_mb",
        "models",
    }
    assert response.json()["status"] == "healthy"


def test_health_lists_each_replica_of_each_model() -> None:
    """models[] carries each model's running and waiting, and each of its replicas'."""
    engine = FakeEngine(
        replicas=(ReplicaStats(index=0, running=2, waiting=1), ReplicaStats(index=1, running=1))
    )
    with TestClient(fake_app(engine)) as client:
        (model,) = client.get("/health").json()["models"]
    assert model == {
        "id": engine.model_id,
        "loaded": True,
        "running": 3,
        "waiting": 1,
        "replicas": [
            {"replica": 0, "running": 2, "waiting": 1},
            {"replica": 1, "running": 1, "waiting": 0},
        ],
    }


def test_health_reports_engine_cache_hit_rate(client: TestClient[Any]) -> None:
    """cache_hit_rate is the engine's."""
    assert client.get("/health").json()["cache_hit_rate"] == 0.25


def test_health_uptime_follows_the_clock(client: TestClient[Any], clock: FixedClock) -> None:
    """uptime_seconds counts whole seconds since the engine started."""
    clock.advance(42.7)
    assert client.get("/health").json()["uptime_seconds"] == 42


def test_health_counts_inference_requests_only(client: TestClient[Any]) -> None:
    """total_requests counts /v1 requests, not probes."""
    client.get("/ping")
    client.get("/v1/models")
    client.post("/v1/completions", json={"prompt": "x"})
    assert client.get("/health").json()["total_requests"] == 2


def test_health_reports_memory_in_mib(client: TestClient[Any]) -> None:
    """memory_usage_mb is the process RSS in whole MiB, so positive."""
    assert client.get("/health").json()["memory_usage_mb"] > 0


def test_ping_answers(client: TestClient[Any]) -> None:
    """/ping is a plain 200."""
    assert client.get("/ping").json() == {"status": "ok"}


def test_livez_answers(client: TestClient[Any]) -> None:
    """/livez is 200 while the process serves."""
    assert client.get("/livez").status_code == 200


def test_readyz_is_200_when_the_model_is_loaded(client: TestClient[Any]) -> None:
    """/readyz says ready once the engine reports loaded."""
    response = client.get("/readyz")
    assert (response.status_code, response.json()) == (200, {"status": "ready"})


def test_readyz_is_503_while_not_loaded(client: TestClient[Any], engine: FakeEngine) -> None:
    """/readyz answers 503 loading while the engine has no model loaded."""
    engine.loaded = False
    response = client.get("/readyz")
    assert (response.status_code, response.json()) == (503, {"status": "loading"})


def test_metrics_is_prometheus_text(client: TestClient[Any]) -> None:
    """/metrics is the Prometheus text format with its own content type, once."""
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8"


def test_metrics_has_the_contract_names(client: TestClient[Any]) -> None:
    """The seed's four metric names are exposed (with the request counter's _total)."""
    client.post("/v1/completions", json={"prompt": "x"})
    text = client.get("/metrics").text
    for name in (
        "llm_engine_requests_total",
        "llm_engine_request_duration_ms_bucket",
        "llm_engine_cache_hit_rate",
        "llm_engine_memory_usage_bytes",
    ):
        assert name in text


def test_metrics_counts_requests_by_endpoint_and_status(client: TestClient[Any]) -> None:
    """A failed and a good request land in separate status series of their endpoint."""
    client.post("/v1/completions", json={"prompt": "x"})
    client.post("/v1/completions", json={"prompt": "x", "temperature": 9})
    text = client.get("/metrics").text
    assert (
        'llm_engine_requests_total{endpoint="/v1/completions",model="fake-model",status="200"} 1.0'
        in text
    )
    assert (
        'llm_engine_requests_total{endpoint="/v1/completions",model="fake-model",status="400"} 1.0'
        in text
    )


def test_metrics_counts_tokens(client: TestClient[Any]) -> None:
    """Prompt and generated tokens of a request are added to their counters."""
    client.post("/v1/completions", json={"prompt": "one two three"})
    text = client.get("/metrics").text
    assert 'llm_engine_prompt_tokens_total{model="fake-model"} 3.0' in text
    assert 'llm_engine_generation_tokens_total{model="fake-model"} 4.0' in text


def test_metrics_mirrors_the_engine_cache_hit_rate(client: TestClient[Any]) -> None:
    """The cache hit rate gauge is read from the engine at scrape time."""
    assert "llm_engine_cache_hit_rate 0.25" in client.get("/metrics").text


V1_ENDPOINTS = (
    "/v1/chat/completions",
    "/v1/completions",
    "/v1/embeddings",
    "/v1/models",
    "/v1/models/{model_id}",
)


def test_fresh_metrics_have_every_series_at_zero(client: TestClient[Any]) -> None:
    """Before any request, the labelled series exist at 0, so dashboards and absent() see them."""
    text = client.get("/metrics").text
    for endpoint in V1_ENDPOINTS:
        labels = f'endpoint="{endpoint}",model="fake-model"'
        assert f"llm_engine_request_duration_ms_count{{{labels}}} 0.0" in text
        assert f'llm_engine_requests_total{{{labels},status="200"}} 0.0' in text
    for name in (
        "llm_engine_time_to_first_token_seconds_count",
        "llm_engine_inter_token_latency_seconds_count",
        "llm_engine_queue_wait_seconds_count",
        "llm_engine_prompt_tokens_total",
        "llm_engine_generation_tokens_total",
    ):
        assert f'{name}{{model="fake-model"}} 0.0' in text


def test_ops_routes_are_not_counted_as_requests(client: TestClient[Any]) -> None:
    """Probes and scrapes do not appear in llm_engine_requests_total."""
    client.get("/health")
    client.get("/metrics")
    counted = [
        line
        for line in client.get("/metrics").text.splitlines()
        if line.startswith("llm_engine_requests_total{")
    ]
    assert counted  # the /v1 series exist from the start, at zero
    assert all('endpoint="/v1/' in line and line.endswith(" 0.0") for line in counted)


def test_building_an_app_does_not_import_llama_cpp() -> None:
    """create_app without an engine defers the llama_cpp import to the lifespan."""
    code = (
        "import sys\n"
        "from llmserve.config import Settings\n"
        "from llmserve.api.app import create_app\n"
        "create_app(Settings())\n"
        "assert 'llama_cpp' not in sys.modules, 'llama_cpp imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
