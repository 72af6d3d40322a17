"""The real engine on the tiny generated GGUF: generation, limits, and batching isolation."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from llmserve.config import ModelSettings, ServerSettings, Settings
from llmserve.engine.protocol import GenerationRequest, SamplingParams, TokenEvent
from llmserve.engine.service import LlamaEngine
from llmserve.errors import (
    ContextLengthExceeded,
    EngineOverloaded,
    InvalidRequest,
    ModelLoadError,
)
from llmserve.prompt.chat import ChatTemplate

GREEDY = SamplingParams(temperature=0.0)
PROMPTS = [
    "The quick brown fox",
    "Once upon a time there was",
    "In the beginning the world",
    "1, 2, 3, 4, 5,",
    "Hello, wörld! 你好",
    "def main():",
    "A long time ago",
    "zzz yyy xxx",
]


def make_engine(path: Path, *, parallel: int = 4, max_concurrent: int = 100) -> LlamaEngine:
    settings = Settings(
        server=ServerSettings(max_concurrent_requests=max_concurrent),
        model=ModelSettings(
            model_path=str(path), parallel=parallel, max_sequence_length=512, n_batch=64
        ),
    )
    return LlamaEngine(settings, path, ChatTemplate.from_source)


@pytest.fixture(name="engine")
async def fixture_engine(tiny_gguf: Path) -> AsyncIterator[LlamaEngine]:
    engine = make_engine(tiny_gguf)
    await engine.start()
    yield engine
    await engine.stop()


async def collect(engine: LlamaEngine, request: GenerationRequest) -> list[TokenEvent]:
    generation = await engine.submit(request)
    return [event async for event in generation]


def text_of(events: list[TokenEvent]) -> str:
    return "".join(e.text for e in events)


async def test_greedy_generation_is_deterministic(engine: LlamaEngine) -> None:
    """The same greedy request twice gives the same text."""
    request = GenerationRequest(prompt=PROMPTS[0], max_tokens=20, sampling=GREEDY)
    first = await collect(engine, request)
    second = await collect(engine, request)
    assert text_of(first) == text_of(second)
    assert first[-1].finish_reason is not None


async def test_max_tokens_finishes_with_length_and_exact_usage(engine: LlamaEngine) -> None:
    """max_tokens=N yields N tokens, finish_reason 'length', usage counting them exactly."""
    events = await collect(
        engine, GenerationRequest(prompt=PROMPTS[1], max_tokens=7, sampling=GREEDY)
    )
    last = events[-1]
    if last.finish_reason == "length":
        assert last.usage is not None
        assert last.usage.completion_tokens == 7
    assert last.usage is not None
    assert sum(e.tokens for e in events) == last.usage.completion_tokens
    assert last.usage.prompt_tokens == len(engine_tokens(engine, PROMPTS[1]))


def engine_tokens(engine: LlamaEngine, text: str) -> list[int]:
    model = engine._model
    assert model is not None
    return model.tokenize(text, add_special=model.add_bos)


async def test_prompt_over_context_is_rejected_with_numbers(engine: LlamaEngine) -> None:
    """Prompt plus max_tokens over the context raises context_length_exceeded naming both."""
    with pytest.raises(ContextLengthExceeded) as info:
        await engine.submit(GenerationRequest(prompt="hello", max_tokens=10_000))
    assert "512" in info.value.message
    assert info.value.code == "context_length_exceeded"


async def test_out_of_vocabulary_token_prompt_is_rejected(engine: LlamaEngine) -> None:
    """A token-id prompt with an id outside the vocabulary is a 400, not a crash."""
    with pytest.raises(InvalidRequest):
        await engine.submit(GenerationRequest(prompt=(1, 10_000_000), max_tokens=2))


async def test_token_id_prompt_generates(engine: LlamaEngine) -> None:
    """A prompt given as token ids is generated from like its text."""
    ids = tuple(engine_tokens(engine, PROMPTS[2]))
    by_ids = await collect(engine, GenerationRequest(prompt=ids, max_tokens=8, sampling=GREEDY))
    by_text = await collect(
        engine, GenerationRequest(prompt=PROMPTS[2], max_tokens=8, sampling=GREEDY)
    )
    assert text_of(by_ids) == text_of(by_text)


def request_for(prompt: str) -> GenerationRequest:
    return GenerationRequest(prompt=prompt, max_tokens=48, sampling=GREEDY)


async def test_concurrent_requests_each_get_their_own_output(engine: LlamaEngine) -> None:
    """Eight prompts through four slots, arriving staggered, each get their solo output."""
    solo = {p: text_of(await collect(engine, request_for(p))) for p in PROMPTS}
    assert len(set(solo.values())) == len(PROMPTS), "prompts must give distinct outputs"

    async def staggered(i: int, prompt: str) -> str:
        await asyncio.sleep(0.001 * max(0, i - 3))
        return text_of(await collect(engine, request_for(prompt)))

    together = await asyncio.gather(*(staggered(i, p) for i, p in enumerate(PROMPTS)))
    (worker,) = engine.workers
    # Timing decides how many meet in one step; at least two proves they were batched.
    assert worker.peak_batch_slots >= 2, "the requests must have been decoded together"
    for prompt, text in zip(PROMPTS, together, strict=True):
        assert text == solo[prompt], f"output of {prompt!r} was corrupted or mixed"


async def test_cancelled_generation_frees_its_slot(engine: LlamaEngine) -> None:
    """Cancelling mid-stream frees the slot: running drops to 0 and the next request is served."""
    generation = await engine.submit(
        GenerationRequest(prompt=PROMPTS[3], max_tokens=400, sampling=GREEDY)
    )
    async for _ in generation:
        generation.cancel()
        break
    for _ in range(200):
        if engine.stats().running == 0:
            break
        await asyncio.sleep(0.01)
    assert engine.stats().running == 0
    events = await collect(engine, GenerationRequest(prompt=PROMPTS[4], max_tokens=3))
    assert events[-1].finish_reason is not None


async def test_overload_rejects_beyond_max_concurrent(tiny_gguf: Path) -> None:
    """Past max_concurrent_requests running+waiting, submit raises EngineOverloaded."""
    engine = make_engine(tiny_gguf, parallel=1, max_concurrent=2)
    await engine.start()
    try:
        first = await engine.submit(GenerationRequest(prompt="a", max_tokens=300))
        second = await engine.submit(GenerationRequest(prompt="b", max_tokens=300))
        with pytest.raises(EngineOverloaded):
            await engine.submit(GenerationRequest(prompt="c", max_tokens=1))
        first.cancel()
        second.cancel()
    finally:
        await engine.stop()


async def test_stop_string_ends_generation_without_the_stop(engine: LlamaEngine) -> None:
    """A stop string taken from the greedy output cuts the output just before it."""
    full = text_of(
        await collect(engine, GenerationRequest(prompt=PROMPTS[5], max_tokens=30, sampling=GREEDY))
    )
    stop = full[10:14]
    events = await collect(
        engine,
        GenerationRequest(prompt=PROMPTS[5], max_tokens=30, stop=(stop,), sampling=GREEDY),
    )
    assert text_of(events) == full[: full.index(stop)]
    assert events[-1].finish_reason == "stop"


def sampled(prompt: str, **params: float | int) -> GenerationRequest:
    return GenerationRequest(
        prompt=prompt, max_tokens=24, sampling=SamplingParams(temperature=1.5, **params)
    )


async def test_same_seed_gives_the_same_sample(engine: LlamaEngine) -> None:
    """Sampling with a fixed seed is reproducible; another seed gives another text."""
    first = text_of(await collect(engine, sampled(PROMPTS[0], seed=7)))
    again = text_of(await collect(engine, sampled(PROMPTS[0], seed=7)))
    other = text_of(await collect(engine, sampled(PROMPTS[0], seed=8)))
    assert first == again
    assert first != other


async def test_top_k_one_samples_like_greedy(engine: LlamaEngine) -> None:
    """top_k=1 leaves one candidate, so any temperature and seed give the greedy text."""
    greedy = text_of(await collect(engine, request_for(PROMPTS[1])))
    top1 = text_of(
        await collect(
            engine,
            GenerationRequest(
                prompt=PROMPTS[1],
                max_tokens=48,
                sampling=SamplingParams(temperature=2.0, top_k=1, seed=3),
            ),
        )
    )
    assert top1 == greedy


async def test_repeat_penalty_changes_greedy_output(engine: LlamaEngine) -> None:
    """A strong repetition penalty steers greedy decoding away from its repeats."""
    plain = text_of(await collect(engine, request_for(PROMPTS[3])))
    penalised = text_of(
        await collect(
            engine,
            GenerationRequest(
                prompt=PROMPTS[3],
                max_tokens=48,
                sampling=SamplingParams(temperature=0.0, repeat_penalty=3.0),
            ),
        )
    )
    assert penalised != plain


async def test_gpu_device_on_a_cpu_build_fails_with_a_clear_error(tiny_gguf: Path) -> None:
    """device=gpu on a llama.cpp build without GPU support fails at start, naming the fix."""
    import llama_cpp

    if llama_cpp.llama_supports_gpu_offload():
        pytest.skip("this llama.cpp build has GPU support")
    settings = Settings(model=ModelSettings(model_path=str(tiny_gguf), device="gpu"))
    engine = LlamaEngine(settings, tiny_gguf, ChatTemplate.from_source)
    with pytest.raises(ModelLoadError, match="no GPU support"):
        await engine.start()
