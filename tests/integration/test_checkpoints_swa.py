"""Checkpoints on a sliding-window tiny model: the worker saves the state at each checkpoint
while reading a prompt, and a new prompt sharing only that prefix continues from it, which no
longer entry can give it (a sliding-window state cannot be cut back)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from llmserve.engine.model import LlamaModel
from llmserve.engine.prefix_cache import PrefixCache, SwaRule
from llmserve.engine.protocol import SamplingParams, TokenEvent, Usage
from llmserve.engine.worker import Item, Job, Sink, Worker, WorkerConfig
from tests.support.tinymodel import build_tiny_gguf

WINDOW = 64
TEXT = "the of and to in is you that it he was for on are as with his they at be this have from "
GREEDY = SamplingParams(temperature=0.0)


class UsageSink:
    """Keeps the final usage of one job."""

    def __init__(self) -> None:
        self.cancelled = False
        self.usage: Usage | None = None
        self.done = threading.Event()


@pytest.fixture(name="swa_gguf", scope="module")
def fixture_swa_gguf(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny model in Gemma 3's architecture with a 64-position window."""
    return build_tiny_gguf(tmp_path_factory.mktemp("swa") / "swa.gguf", sliding_window=WINDOW)


@contextmanager
def swa_worker(path: Path) -> Iterator[tuple[Worker, PrefixCache, LlamaModel]]:
    model = LlamaModel(path)
    cache = PrefixCache(identity="swa", ram_bytes=256 << 20, swa=SwaRule(model.facts.n_swa))

    def deliver(items: list[tuple[Sink, Item]]) -> None:
        for sink, item in items:
            assert isinstance(sink, UsageSink)
            if isinstance(item, TokenEvent) and item.usage is not None:
                sink.usage = item.usage
                sink.done.set()

    config = WorkerConfig(n_slots=2, n_ctx_seq=512, n_batch=64, n_threads=1, n_gpu_layers=0)
    worker = Worker(model, config, deliver, max_queued=10, cache=cache)
    worker.start()
    try:
        yield worker, cache, model
    finally:
        worker.stop()
        model.close()


def run(worker: Worker, tokens: list[int], checkpoints: tuple[int, ...] = ()) -> Usage:
    sink = UsageSink()
    job = Job(
        tokens=tokens,
        max_tokens=3,
        stop=(),
        sampling=GREEDY,
        sink=sink,
        checkpoints=checkpoints,
    )
    worker.submit(job)
    assert sink.done.wait(30)
    assert sink.usage is not None
    return sink.usage


def sessions(model: LlamaModel) -> tuple[list[int], list[int], list[int]]:
    """A shared prefix, and two prompts that continue it differently; the first one long, so
    that the window of the slot it ran in has moved far past the shared prefix."""
    shared = model.tokenize(TEXT * 5, add_special=True)
    first = [*shared, *model.tokenize(" hello world" + " server cache" * 150, add_special=False)]
    second = [*shared, *model.tokenize(" model server", add_special=False)]
    return shared, first, second


def kept_lengths(cache: PrefixCache) -> list[int]:
    return sorted(len(e.tokens) for e in cache._by_key.values() if e.kept)


def test_states_are_saved_at_each_checkpoint(swa_gguf: Path) -> None:
    """The worker stores a kept entry holding exactly the prompt up to each checkpoint."""
    with swa_worker(swa_gguf) as (worker, cache, model):
        prompt = model.tokenize(TEXT * 8, add_special=True)
        usage = run(worker, prompt, checkpoints=(100, 150))
        assert kept_lengths(cache) == [100, 150]
        for length in (100, 150):
            hit = cache.lookup([*prompt[:length], 5])
            assert hit is not None
            assert hit.entry.tokens == tuple(prompt[:length])
    assert usage.cache_written_tokens == 150


def test_a_prompt_sharing_only_the_checkpoint_prefix_continues_from_it(swa_gguf: Path) -> None:
    """A second session diverging after the checkpoint reuses exactly the checkpoint's tokens."""
    with swa_worker(swa_gguf) as (worker, _, model):
        shared, first, second = sessions(model)
        run(worker, first, checkpoints=(len(shared),))
        usage = run(worker, second, checkpoints=(len(shared),))
    assert usage.cached_tokens == len(shared)
    assert usage.cache_written_tokens == 0  # it was there already


def test_without_a_checkpoint_the_window_defeats_the_shared_prefix(swa_gguf: Path) -> None:
    """The same two sessions with no checkpoint: nothing is reused, the window forbids it."""
    with swa_worker(swa_gguf) as (worker, _, model):
        _, first, second = sessions(model)
        run(worker, first)
        usage = run(worker, second)
    assert usage.cached_tokens == 0


def test_a_job_from_scratch_saves_no_checkpoint(swa_gguf: Path) -> None:
    """cache_prompt=False: the checkpoints are not saved, nothing is counted as written."""
    with swa_worker(swa_gguf) as (worker, cache, model):
        prompt = model.tokenize(TEXT * 4, add_special=True)
        sink = UsageSink()
        worker.submit(
            Job(
                tokens=prompt,
                max_tokens=2,
                stop=(),
                sampling=GREEDY,
                sink=sink,
                checkpoints=(64,),
                cache_prompt=False,
            )
        )
        assert sink.done.wait(30)
        assert kept_lengths(cache) == []
    assert sink.usage is not None
    assert sink.usage.cache_written_tokens == 0
