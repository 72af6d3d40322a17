"""Loading in the background, a failed load, draining: /readyz, /health and /v1 answers."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from litestar.testing import TestClient

from llmserve.api.lifecycle import Lifecycle, Phase
from llmserve.engine.fake import FakeEngine, FakeGeneration
from llmserve.engine.protocol import GenerationRequest
from llmserve.errors import ModelLoadError
from tests.support.doubles import fake_app

BODY = {"prompt": "hello"}


@pytest.fixture(name="gate")
def fixture_gate() -> threading.Event:
    return threading.Event()


@pytest.fixture(name="lifecycle")
def fixture_lifecycle() -> Lifecycle:
    return Lifecycle()


@pytest.fixture(name="slow_engine")
def fixture_slow_engine(gate: threading.Event) -> FakeEngine:
    return FakeEngine(start_gate=gate)


@pytest.fixture(name="loading")
def fixture_loading(
    slow_engine: FakeEngine, gate: threading.Event, lifecycle: Lifecycle
) -> Iterator[TestClient[Any]]:
    """A client of a server whose model loads until ``gate`` is set."""
    with TestClient(fake_app(slow_engine, lifecycle=lifecycle)) as client:
        try:
            yield client
        finally:
            gate.set()  # the lifespan's shutdown waits for the load to end


@pytest.fixture(name="client")
def fixture_client(lifecycle: Lifecycle) -> Iterator[TestClient[Any]]:
    with TestClient(fake_app(FakeEngine(), lifecycle=lifecycle)) as client:
        yield client


def wait_for(lifecycle: Lifecycle, phase: Phase) -> None:
    deadline = time.monotonic() + 5
    while lifecycle.phase is not phase:
        assert time.monotonic() < deadline, f"still {lifecycle.phase}"
        time.sleep(0.001)


def test_readyz_is_503_loading_while_the_model_loads(loading: TestClient[Any]) -> None:
    """The server answers before the model is loaded, and says it is not ready."""
    response = loading.get("/readyz")
    assert (response.status_code, response.json()) == (503, {"status": "loading"})


def test_livez_and_health_answer_while_the_model_loads(loading: TestClient[Any]) -> None:
    """Liveness is 200 and /health reports the loading phase as its status."""
    assert loading.get("/livez").status_code == 200
    health = loading.get("/health")
    assert (health.status_code, health.json()["status"]) == (200, "loading")


def test_v1_is_503_service_unavailable_while_the_model_loads(loading: TestClient[Any]) -> None:
    """Inference requests are refused with the OpenAI envelope until the model is there."""
    response = loading.post("/v1/completions", json=BODY)
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "service_unavailable"
    assert "loading" in response.json()["error"]["message"]


def test_server_turns_ready_when_the_load_ends(
    loading: TestClient[Any], gate: threading.Event, lifecycle: Lifecycle
) -> None:
    """Once the engine has started, /readyz is 200 and /v1 serves."""
    gate.set()
    wait_for(lifecycle, Phase.READY)
    assert loading.get("/readyz").json() == {"status": "ready"}
    assert loading.post("/v1/completions", json=BODY).status_code == 200


def test_failed_load_is_recorded_and_refused(lifecycle: Lifecycle) -> None:
    """A load that fails leaves /readyz at 503 failed, /v1 at 503, and the error recorded."""
    error = ModelLoadError("not a GGUF file: x.gguf")
    with TestClient(fake_app(FakeEngine(start_error=error), lifecycle=lifecycle)) as client:
        wait_for(lifecycle, Phase.FAILED)
        assert client.get("/readyz").json() == {"status": "failed"}
        assert client.post("/v1/completions", json=BODY).status_code == 503
    assert lifecycle.error is error


def test_draining_server_refuses_new_requests(
    client: TestClient[Any], lifecycle: Lifecycle
) -> None:
    """From drain() on, /readyz is 503 draining and /v1 is 503 service_unavailable."""
    lifecycle.drain()
    readyz = client.get("/readyz")
    assert (readyz.status_code, readyz.json()) == (503, {"status": "draining"})
    assert client.get("/health").json()["status"] == "draining"
    response = client.post("/v1/completions", json=BODY)
    assert (response.status_code, response.json()["error"]["code"]) == (
        503,
        "service_unavailable",
    )


def test_a_drain_during_the_load_is_not_undone_by_its_end(
    loading: TestClient[Any], slow_engine: FakeEngine, gate: threading.Event, lifecycle: Lifecycle
) -> None:
    """SIGTERM while loading: the finished load does not make the server ready again."""
    lifecycle.drain()
    gate.set()
    deadline = time.monotonic() + 5
    while not slow_engine.loaded:
        assert time.monotonic() < deadline
        time.sleep(0.001)
    assert loading.get("/readyz").json() == {"status": "draining"}


def test_in_flight_counts_v1_requests_while_they_run(lifecycle: Lifecycle) -> None:
    """A /v1 request is in flight while it is served, and not after."""
    seen: list[int] = []

    class Probe(FakeEngine):
        async def submit(self, request: GenerationRequest) -> FakeGeneration:
            seen.append(lifecycle.in_flight)
            return await super().submit(request)

    with TestClient(fake_app(Probe(), lifecycle=lifecycle)) as client:
        client.post("/v1/completions", json=BODY)
        client.get("/health")
        assert (seen, lifecycle.in_flight) == ([1], 0)


def test_drained_means_draining_with_nothing_in_flight() -> None:
    """drained holds only after drain() and once the last request has left."""
    lifecycle = Lifecycle(phase=Phase.READY, in_flight=1)
    assert not lifecycle.drained
    lifecycle.drain()
    assert not lifecycle.drained
    lifecycle.in_flight = 0
    assert lifecycle.drained
