"""[model] replicas = 2 on the tiny model: routing by live prefix, one prefix cache shared by
the contexts, one replica serving while the other is busy, n choices on one replica, and the
replicas on /health and /metrics.

The tiny model is built with an 8k context so that a LONG generation outlasts any short
request by far; the tests cancel it once they have seen what they look for.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from llmserve.api.app import create_app
from llmserve.config import CacheSettings, ModelSettings, Settings
from llmserve.engine.protocol import GenerationRequest, SamplingParams, TokenEvent
from llmserve.engine.service import LlamaEngine, StreamedGeneration
from llmserve.prompt.chat import ChatTemplate
from tests.support.server import serve_app
from tests.support.tinymodel import BOS_ID, build_tiny_gguf

CONTEXT = 8192
LONG = 8000  # tokens: far longer than any test waits
GREEDY = SamplingParams(temperature=0.0)


def prompt(seed: int, n: int = 100) -> tuple[int, ...]:
    """``n`` ordinary tokens after BOS, distinct for each seed (three 32-token blocks)."""
    return (BOS_ID, *(300 + (seed * 37 + i * 7) % 400 for i in range(n - 1)))


@pytest.fixture(name="long_gguf", scope="module")
def fixture_long_gguf(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("tiny-replicas") / "tiny-replicas.gguf"
    return build_tiny_gguf(path, context_length=CONTEXT)


def settings_for(path: Path, *, parallel: int) -> Settings:
    model = ModelSettings(
        model_path=str(path),
        name="tiny",
        parallel=parallel,
        replicas=2,
        n_threads=2,
        max_sequence_length=CONTEXT,
        n_batch=64,
    )
    return Settings(model=model, cache=CacheSettings(max_size_mb=64))


@pytest.fixture(name="engine", params=[1, 2], ids=["parallel1", "parallel2"])
async def fixture_engine(
    long_gguf: Path, request: pytest.FixtureRequest
) -> AsyncIterator[LlamaEngine]:
    """Two replicas of ``parallel`` slots each on the tiny model."""
    engine = LlamaEngine(
        settings_for(long_gguf, parallel=request.param), long_gguf, ChatTemplate.from_source
    )
    await engine.start()
    yield engine
    await engine.stop()


async def run(engine: LlamaEngine, request: GenerationRequest) -> list[TokenEvent]:
    generation = await engine.submit(request)
    return [event async for event in generation]


class Long:
    """A LONG generation in the background, counting its tokens; ``stop`` cancels it."""

    def __init__(self, generation: StreamedGeneration) -> None:
        self.generation = generation
        self.tokens = 0
        self.finished = False
        self._first = asyncio.Event()
        self._task = asyncio.create_task(self._drain())

    async def _drain(self) -> None:
        async for event in self.generation:
            self.tokens += event.tokens
            if self.tokens:
                self._first.set()
            if event.finish_reason is not None:
                self.finished = True

    async def generating(self) -> None:
        await asyncio.wait_for(self._first.wait(), 30)

    async def stop(self, engine: LlamaEngine) -> None:
        """Cancel it (a cancelled stream just ends) and wait until its slot is free."""
        self.generation.cancel()
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        await idle(engine)


async def idle(engine: LlamaEngine) -> None:
    """Wait until no slot runs: a worker frees a slot just after the request's last event."""
    for _ in range(3000):
        if engine.stats().running == 0:
            return
        await asyncio.sleep(0.01)
    raise AssertionError("a finished or cancelled request kept its slot")


async def start_long(engine: LlamaEngine, seed: int) -> Long:
    """A LONG generation, generating by the time this returns."""
    generation = await engine.submit(
        GenerationRequest(prompt=prompt(seed), max_tokens=LONG, sampling=GREEDY)
    )
    long = Long(generation)
    await long.generating()
    return long


def served_prompts(engine: LlamaEngine) -> list[int]:
    """Prompt tokens each replica has admitted so far."""
    return [worker.prompt_tokens for worker in engine.workers]


def text_of(events: list[TokenEvent]) -> str:
    return "".join(event.text for event in events)


@pytest.mark.parametrize("engine", [2], indirect=True)
async def test_next_turn_lands_on_the_replica_that_served_the_last(engine: LlamaEngine) -> None:
    """A chat whose first turn ran on replica 1 (replica 0 was busy) goes back to replica 1,
    though both are idle and a tie would pick replica 0."""
    long = await start_long(engine, seed=1)  # replica 0: the first at a tie
    chat = prompt(seed=2)
    first = await run(engine, GenerationRequest(prompt=chat, max_tokens=8, sampling=GREEDY))
    assert served_prompts(engine)[1] == len(chat), "replica 1 was the less loaded"
    await long.stop(engine)
    before = served_prompts(engine)
    turn = (*chat, 400, 401, 402)
    second = await run(engine, GenerationRequest(prompt=turn, max_tokens=8, sampling=GREEDY))
    assert served_prompts(engine) == [before[0], before[1] + len(turn)]
    assert first[-1].usage is not None
    assert second[-1].usage is not None
    assert second[-1].usage.cached_tokens >= len(chat) - 1


@pytest.mark.parametrize("engine", [1], indirect=True)
async def test_a_state_saved_by_one_replica_restores_on_the_other(engine: LlamaEngine) -> None:
    """Replica 0 serves a prompt and saves its state; with replica 0 busy, the prompt's next
    turn goes to replica 1, which restores that state from the shared cache and answers as
    if it had computed the prompt itself."""
    chat = prompt(seed=3)
    await run(engine, GenerationRequest(prompt=chat, max_tokens=4, sampling=GREEDY))
    assert served_prompts(engine) == [len(chat), 0]
    await idle(engine)
    long = await start_long(engine, seed=4)  # replica 0's one slot: its KV goes
    turn = (*chat, 410, 411, 412)
    restored = await run(engine, GenerationRequest(prompt=turn, max_tokens=16, sampling=GREEDY))
    assert served_prompts(engine)[1] == len(turn)
    usage = restored[-1].usage
    assert usage is not None
    assert usage.cached_tokens >= len(chat) - 1
    assert engine.workers[1].reused_tokens == usage.cached_tokens
    await long.stop(engine)
    fresh = await run(
        engine,
        GenerationRequest(prompt=turn, max_tokens=16, sampling=GREEDY, cache_prompt=False),
    )
    assert fresh[-1].usage is not None
    assert fresh[-1].usage.cached_tokens == 0
    assert text_of(restored) == text_of(fresh)


@pytest.mark.parametrize("engine", [1], indirect=True)
async def test_a_long_generation_on_one_replica_does_not_block_the_other(
    engine: LlamaEngine,
) -> None:
    """With replica 0's only slot generating at length, a short request is served whole by
    replica 1 at once, while the long one is still generating."""
    long = await start_long(engine, seed=5)
    short = await run(engine, GenerationRequest(prompt=prompt(6), max_tokens=3, sampling=GREEDY))
    assert short[-1].finish_reason == "length"
    assert short[0].queue_wait_s is not None
    assert short[0].queue_wait_s < 1.0
    assert not long.finished, "the long generation must still be running"
    assert engine.stats().replicas[0].running == 1
    assert served_prompts(engine) == [len(prompt(5)), len(prompt(6))]
    await long.stop(engine)


@pytest.mark.parametrize("engine", [2], indirect=True)
async def test_n_choices_run_together_on_one_replica(engine: LlamaEngine) -> None:
    """n=2 goes whole to the replica with two free slots; both choices finish there."""
    long = await start_long(engine, seed=7)  # replica 0: one slot left
    request = GenerationRequest(prompt=prompt(8), max_tokens=5, sampling=GREEDY, n=2)
    events = await run(engine, request)
    finished = sorted(event.index for event in events if event.finish_reason is not None)
    assert finished == [0, 1]
    assert served_prompts(engine) == [len(prompt(7)), len(prompt(8))]
    assert engine.workers[1].peak_batch_slots == 2
    await long.stop(engine)


@pytest.mark.parametrize("engine", [2], indirect=True)
async def test_replicas_share_the_threads_and_report_their_load(engine: LlamaEngine) -> None:
    """Each replica gets n_threads / replicas threads; stats give each one's load, the model's
    sums, and KV utilisation over every replica's cells."""
    assert [worker.config.n_threads for worker in engine.workers] == [1, 1]
    long = await start_long(engine, seed=9)
    stats = engine.stats()
    assert [(r.index, r.running, r.waiting) for r in stats.replicas] == [(0, 1, 0), (1, 0, 0)]
    assert stats.running == 1
    assert stats.kv.cells == sum(r.kv.cells for r in stats.replicas)
    assert stats.kv.used == stats.replicas[0].kv.used > 0
    await long.stop(engine)


@pytest.fixture(name="server")
def fixture_server(long_gguf: Path) -> Iterator[str]:
    with serve_app(create_app(settings_for(long_gguf, parallel=2))) as base_url:
        yield base_url


def test_a_server_with_two_replicas_serves_a_chat_and_shows_them(server: str) -> None:
    """Over HTTP with the openai client: the second turn reuses the first's KV; /health lists
    both replicas; /metrics has a series per replica beside the model's."""
    messages: list[Any] = [
        {"role": "system", "content": "hello model " * 40},
        {"role": "user", "content": "hi"},
    ]
    with openai.OpenAI(base_url=f"{server}/v1", api_key="x", max_retries=0) as client:
        first = client.chat.completions.create(
            model="tiny",
            messages=messages,
            max_tokens=6,
            temperature=0,
        )
        messages += [
            {"role": "assistant", "content": first.choices[0].message.content or ""},
            {"role": "user", "content": "more"},
        ]
        second = client.chat.completions.create(
            model="tiny",
            messages=messages,
            max_tokens=6,
            temperature=0,
        )
    assert first.usage is not None
    assert second.usage is not None
    assert second.usage.prompt_tokens_details is not None
    assert (second.usage.prompt_tokens_details.cached_tokens or 0) >= first.usage.prompt_tokens // 2
    (model,) = httpx.get(f"{server}/health").json()["models"]
    assert [replica["replica"] for replica in model["replicas"]] == [0, 1]
    metrics = httpx.get(f"{server}/metrics").text
    assert 'llm_engine_replica_requests_running{model="tiny",replica="1"} 0.0' in metrics
    assert 'llm_engine_requests_running{model="tiny"} 0.0' in metrics
