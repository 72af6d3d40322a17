"""Per-request observation: serving latency metrics, and the one JSON log line per request."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest
from litestar.testing import TestClient
from prometheus_client import CollectorRegistry

from llmserve.api.observe import Latencies
from llmserve.engine.fake import FakeEngine
from llmserve.engine.protocol import TokenEvent
from llmserve.ops.logs import JsonFormatter
from llmserve.ops.metrics import Metrics
from tests.support.doubles import FixedClock, fake_app

SECRET_KEY = "sk-do-not-log-me"
SECRET_PROMPT = "my-very-private-question"


class JsonLines(logging.Handler):
    """Formats every record as llmserve writes it, at emit time (the request id is set then)."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.setFormatter(JsonFormatter())
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))

    def entries(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.lines]


@pytest.fixture(name="json_lines")
def fixture_json_lines() -> Iterator[JsonLines]:
    """Every log record of the process, at debug, as JSON lines."""
    handler = JsonLines()
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    yield handler
    root.removeHandler(handler)
    root.setLevel(level)


@pytest.fixture(name="clock")
def fixture_clock() -> FixedClock:
    return FixedClock()


@pytest.fixture(name="registry")
def fixture_registry() -> CollectorRegistry:
    return CollectorRegistry()


@pytest.fixture(name="latencies")
def fixture_latencies(clock: FixedClock, registry: CollectorRegistry) -> Latencies:
    return Latencies(Metrics(registry, process_collectors=False), "m", clock, clock.mono)


def sample(registry: CollectorRegistry, name: str) -> float | None:
    return registry.get_sample_value(name, {"model": "m"})


def test_first_token_is_timed_from_arrival(
    latencies: Latencies, clock: FixedClock, registry: CollectorRegistry
) -> None:
    """The first event with a token observes the time since the request arrived."""
    clock.advance(0.3)
    latencies.on_event(TokenEvent(text="a", tokens=1))
    assert sample(registry, "llm_engine_time_to_first_token_seconds_sum") == pytest.approx(0.3)
    assert latencies.first_token_s == pytest.approx(0.3)


def test_events_without_tokens_do_not_start_the_clock(
    latencies: Latencies, clock: FixedClock, registry: CollectorRegistry
) -> None:
    """The admission event (no token) is not the first token."""
    latencies.on_event(TokenEvent(text="", queue_wait_s=0.0))
    assert sample(registry, "llm_engine_time_to_first_token_seconds_count") is None
    assert latencies.first_token_s is None


def test_inter_token_latency_is_the_gap_between_tokens(
    latencies: Latencies, clock: FixedClock, registry: CollectorRegistry
) -> None:
    """Two tokens 50 ms apart give one 50 ms inter-token observation."""
    latencies.on_event(TokenEvent(text="a", tokens=1))
    clock.advance(0.05)
    latencies.on_event(TokenEvent(text="b", tokens=1))
    assert sample(registry, "llm_engine_inter_token_latency_seconds_count") == 1.0
    assert sample(registry, "llm_engine_inter_token_latency_seconds_sum") == pytest.approx(0.05)


def test_queue_wait_comes_from_the_engine(
    latencies: Latencies, registry: CollectorRegistry
) -> None:
    """The engine's queue_wait_s is observed as it is."""
    latencies.on_event(TokenEvent(text="", queue_wait_s=1.5))
    assert sample(registry, "llm_engine_queue_wait_seconds_sum") == 1.5


def test_a_served_request_feeds_the_latency_histograms() -> None:
    """A 4-token completion: one TTFT, three inter-token gaps, one queue wait, per model."""
    with TestClient(fake_app(FakeEngine(queue_wait_s=0.2))) as client:
        client.post("/v1/completions", json={"prompt": "x"})
        text = client.get("/metrics").text
    assert 'llm_engine_time_to_first_token_seconds_count{model="fake-model"} 1.0' in text
    assert 'llm_engine_inter_token_latency_seconds_count{model="fake-model"} 3.0' in text
    assert 'llm_engine_queue_wait_seconds_sum{model="fake-model"} 0.2' in text


def test_running_and_waiting_gauges_carry_the_model(clock: FixedClock) -> None:
    """llm_engine_requests_running and _waiting are labelled with the served model."""
    with TestClient(fake_app(FakeEngine(), clock=clock)) as client:
        text = client.get("/metrics").text
    assert 'llm_engine_requests_running{model="fake-model"} 0.0' in text
    assert 'llm_engine_requests_waiting{model="fake-model"} 0.0' in text


def test_request_log_line_has_the_seed_shape(json_lines: JsonLines, clock: FixedClock) -> None:
    """One line per /v1 request: timestamp, level, message, request_id, duration_ms, tokens."""
    with TestClient(fake_app(FakeEngine(), clock=clock)) as client:
        client.post("/v1/completions", json={"prompt": "one two three"})
    (entry,) = [e for e in json_lines.entries() if e["message"] == "POST /v1/completions 200"]
    assert {"timestamp", "level", "message", "request_id", "duration_ms", "tokens"} <= set(entry)
    assert (entry["level"], entry["request_id"], entry["tokens"]) == ("INFO", "req_1", 3 + 4)
    assert (entry["prompt_tokens"], entry["completion_tokens"]) == (3, 4)


def test_request_log_line_carries_the_accepted_draft_tokens(json_lines: JsonLines) -> None:
    """The request log line says how many completion tokens came from accepted drafts."""
    with TestClient(fake_app(FakeEngine(draft_accepted=2))) as client:
        client.post("/v1/completions", json={"prompt": "one two three"})
    (entry,) = [e for e in json_lines.entries() if e["message"] == "POST /v1/completions 200"]
    assert entry["draft_accepted"] == 2


def test_keys_and_prompts_are_never_logged(json_lines: JsonLines) -> None:
    """At debug, after good, unauthorised and failing requests, no line holds a key or prompt."""
    engine = FakeEngine()
    with TestClient(fake_app(engine, api_key=SECRET_KEY)) as client:
        auth = {"Authorization": f"Bearer {SECRET_KEY}"}
        chat = {"messages": [{"role": "user", "content": SECRET_PROMPT}]}
        client.post("/v1/chat/completions", json=chat, headers=auth)
        client.post("/v1/chat/completions", json={**chat, "stream": True}, headers=auth)
        client.post("/v1/completions", json={"prompt": SECRET_PROMPT, "top_p": 7}, headers=auth)
        wrong = {"Authorization": f"Bearer {SECRET_KEY}-wrong"}
        client.post("/v1/completions", json={"prompt": SECRET_PROMPT}, headers=wrong)
        engine.fail_after = 1
        client.post("/v1/completions", json={"prompt": SECRET_PROMPT}, headers=auth)
    assert len(json_lines.lines) >= 5
    for line in json_lines.lines:
        assert SECRET_KEY not in line
        assert SECRET_PROMPT not in line


def test_probes_are_logged_at_debug_only(json_lines: JsonLines) -> None:
    """Health checks and scrapes do not flood the info log."""
    with TestClient(fake_app()) as client:
        client.get("/readyz")
    levels = {e["level"] for e in json_lines.entries() if e.get("path") == "/readyz"}
    assert levels == {"DEBUG"}


def test_probe_log_fields_are_not_built_when_debug_is_off(
    json_lines: JsonLines, monkeypatch: pytest.MonkeyPatch
) -> None:
    """At info, a probe costs no log record: its fields are never even assembled."""
    import llmserve.api.observe as observe

    built: list[str] = []
    real = observe._log_fields
    monkeypatch.setattr(
        observe,
        "_log_fields",
        lambda scope, *rest: built.append(scope["path"]) or real(scope, *rest),
    )
    logging.getLogger().setLevel(logging.INFO)
    with TestClient(fake_app()) as client:
        client.get("/readyz")
        client.post("/v1/completions", json={"prompt": "x"})
    assert built == ["/v1/completions"]
    assert not [e for e in json_lines.entries() if e.get("path") == "/readyz"]


def test_request_id_header_matches_the_log_line(json_lines: JsonLines) -> None:
    """The X-Request-ID returned is the request_id of the request's log line."""
    with TestClient(fake_app()) as client:
        response = client.post(
            "/v1/completions", json={"prompt": "x"}, headers={"X-Request-ID": "trace-7"}
        )
    assert response.headers["x-request-id"] == "trace-7"
    (entry,) = [e for e in json_lines.entries() if e.get("path") == "/v1/completions"]
    assert entry["request_id"] == "trace-7"
