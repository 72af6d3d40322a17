"""Load and faults on the real engine (tiny GGUF, one slot): disconnects, overload, arrival order.

The tiny model is built here with a 32k context, so that a LONG generation lasts seconds even
on a fast machine: a generation that ran on after its client left would show. The engine is
handed to the app, so that a test can also look at its worker.
"""

from __future__ import annotations

import asyncio
import re
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from llmserve.api.app import create_app
from llmserve.config import ModelSettings, ServerSettings, Settings
from llmserve.engine.protocol import GenerationRequest, SamplingParams
from llmserve.engine.service import LlamaEngine
from llmserve.prompt.chat import ChatTemplate
from tests.support.server import eventually, serve_app
from tests.support.tinymodel import build_tiny_gguf

CONTEXT = 32768
LONG = 30000  # tokens: seconds of generation, never reached in these tests
MAX_CONCURRENT = 3


def settings_for(path: Path, *, max_concurrent: int = 100) -> Settings:
    model = ModelSettings(
        model_path=str(path), name="tiny", parallel=1, max_sequence_length=CONTEXT
    )
    return Settings(server=ServerSettings(max_concurrent_requests=max_concurrent), model=model)


@pytest.fixture(name="long_gguf", scope="module")
def fixture_long_gguf(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny model with a 32k trained context."""
    path = tmp_path_factory.mktemp("tiny-long") / "tiny-long.gguf"
    return build_tiny_gguf(path, context_length=CONTEXT)


@pytest.fixture(name="engine")
def fixture_engine(long_gguf: Path) -> LlamaEngine:
    """The real engine with one slot and room for MAX_CONCURRENT requests (started by the app)."""
    return LlamaEngine(
        settings_for(long_gguf, max_concurrent=MAX_CONCURRENT), long_gguf, ChatTemplate.from_source
    )


@pytest.fixture(name="base_url")
def fixture_base_url(engine: LlamaEngine, long_gguf: Path) -> Iterator[str]:
    settings = settings_for(long_gguf, max_concurrent=MAX_CONCURRENT)
    with serve_app(create_app(settings, engine=engine)) as base_url:
        yield base_url


def gauge(base_url: str, name: str) -> float:
    text = httpx.get(f"{base_url}/metrics").text
    match = re.search(rf'^{name}{{model="tiny"}} (\S+)$', text, re.MULTILINE)
    assert match, f"{name} is not on /metrics"
    return float(match.group(1))


def completion(max_tokens: int, *, stream: bool = False) -> dict[str, object]:
    return {"prompt": "hello world", "max_tokens": max_tokens, "temperature": 0, "stream": stream}


def assert_slot_freed_early(base_url: str, engine: LlamaEngine) -> None:
    """running drops to 0 long before the generation could have ended, and the slot serves."""
    assert eventually(lambda: gauge(base_url, "llm_engine_requests_running") == 0.0, 10.0)
    (worker,) = engine.workers
    assert worker.steps < LONG // 2, "the generation ran on after the disconnect"
    response = httpx.post(f"{base_url}/v1/completions", json=completion(3), timeout=30)
    assert response.json()["usage"]["completion_tokens"] == 3


def test_stream_disconnect_frees_the_slot(base_url: str, engine: LlamaEngine) -> None:
    """A streaming client that goes away stops its generation; the slot serves the next one."""
    body = completion(LONG, stream=True)
    with httpx.stream("POST", f"{base_url}/v1/completions", json=body, timeout=30) as response:
        lines = response.iter_lines()
        while not next(lines).startswith("data: "):
            pass
        assert gauge(base_url, "llm_engine_requests_running") == 1.0
    assert_slot_freed_early(base_url, engine)


def test_whole_answer_disconnect_frees_the_slot(base_url: str, engine: LlamaEngine) -> None:
    """A non-streaming client that gives up stops its generation; the slot serves the next one."""
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(f"{base_url}/v1/completions", json=completion(LONG), timeout=0.5)
    assert_slot_freed_early(base_url, engine)


def test_overload_is_a_429_and_waiting_requests_run_in_arrival_order(base_url: str) -> None:
    """With one slot and room for 3: the 4th request gets 429 + Retry-After, never a 5xx; the
    two waiting requests are served first come, first served."""
    finished: list[str] = []
    errors: list[BaseException] = []

    def waiting_request(name: str) -> None:
        try:
            response = httpx.post(f"{base_url}/v1/completions", json=completion(100), timeout=60)
            response.raise_for_status()
            finished.append(name)
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)

    body = completion(LONG, stream=True)
    with httpx.stream("POST", f"{base_url}/v1/completions", json=body, timeout=30) as holder:
        holding = holder.iter_lines()  # dropping this iterator would close the connection
        next(holding)  # the holder has the slot
        threads = []
        for n, name in enumerate(("first", "second"), start=1):
            thread = threading.Thread(target=waiting_request, args=(name,))
            thread.start()
            threads.append(thread)
            assert eventually(lambda n=n: gauge(base_url, "llm_engine_requests_waiting") == n, 10.0)
        refused = httpx.post(f"{base_url}/v1/completions", json=completion(1), timeout=30)
        assert refused.status_code == 429
        assert int(refused.headers["retry-after"]) >= 1
        assert refused.json()["error"]["code"] == "engine_overloaded"
    for thread in threads:  # leaving the stream freed the slot for the waiting two
        thread.join(60)
    assert errors == []
    assert finished == ["first", "second"]


async def test_queue_wait_is_reported_on_admission(tiny_gguf: Path) -> None:
    """Each job's first event is its admission, with queue_wait_s; a job queued behind another
    waited about as long as that one ran."""
    engine = LlamaEngine(settings_for(tiny_gguf), tiny_gguf, ChatTemplate.from_source)
    await engine.start()
    try:
        greedy = SamplingParams(temperature=0.0)
        ahead = await engine.submit(GenerationRequest(prompt="a b", max_tokens=30, sampling=greedy))
        behind = await engine.submit(GenerationRequest(prompt="c d", max_tokens=1, sampling=greedy))
        started = time.monotonic()
        ahead_events = [event async for event in ahead]
        ran_s = time.monotonic() - started
        behind_events = [event async for event in behind]
    finally:
        await engine.stop()
    waits = []
    for events in (ahead_events, behind_events):
        assert (events[0].text, events[0].tokens) == ("", 0)
        assert all(event.queue_wait_s is None for event in events[1:])
        assert events[0].queue_wait_s is not None
        waits.append(events[0].queue_wait_s)
    assert waits[1] >= max(waits[0], ran_s * 0.5)


async def test_cancel_stops_the_generation_within_one_decode_step(long_gguf: Path) -> None:
    """After cancel(), the worker decodes at most one more step before the slot is free."""
    engine = LlamaEngine(settings_for(long_gguf), long_gguf, ChatTemplate.from_source)
    await engine.start()
    try:
        (worker,) = engine.workers
        generation = await engine.submit(GenerationRequest(prompt="hello", max_tokens=LONG))
        seen = 0
        async for event in generation:
            seen += event.tokens
            if seen >= 3:
                break
        generation.cancel()
        at_cancel = worker.steps
        deadline = time.monotonic() + 5
        while engine.stats().running:
            assert time.monotonic() < deadline
            await asyncio.sleep(0.001)
        assert worker.steps - at_cancel <= 1
    finally:
        await engine.stop()


def test_kv_cache_usage_moves_with_load_and_returns_to_zero(base_url: str) -> None:
    """llm_engine_kv_cache_usage_ratio grows while a long generation runs and is 0 once it is
    gone (the KV the finished slot keeps for prefix reuse is not "in use")."""
    assert gauge(base_url, "llm_engine_kv_cache_usage_ratio") == 0.0
    body = completion(LONG, stream=True)
    with httpx.stream("POST", f"{base_url}/v1/completions", json=body, timeout=30) as response:
        lines = response.iter_lines()
        while not next(lines).startswith("data: "):
            pass
        first = gauge(base_url, "llm_engine_kv_cache_usage_ratio")
        assert 0.0 < first < 1.0
        assert eventually(lambda: gauge(base_url, "llm_engine_kv_cache_usage_ratio") > first, 10.0)
    assert eventually(lambda: gauge(base_url, "llm_engine_kv_cache_usage_ratio") == 0.0, 10.0)


def test_cache_config_info_reports_one_token_blocks_over_the_context(base_url: str) -> None:
    """llm_engine_cache_config_info: block_size 1 and num_blocks the context's KV cells."""
    text = httpx.get(f"{base_url}/metrics").text
    match = re.search(
        r"^llm_engine_cache_config_info"
        r'\{block_size="(\d+)",model="tiny",num_blocks="(\d+)"\} 1\.0$',
        text,
        re.MULTILINE,
    )
    assert match, text
    assert int(match.group(1)) == 1
    assert int(match.group(2)) >= CONTEXT  # one slot of CONTEXT tokens, llama.cpp may pad
