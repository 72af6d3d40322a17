"""Greedy output with cache_prompt=False does not depend on the cache (demo model).

Measured with perf/repeatability.py: prefilling in other batch shapes (a live-slot reuse, a
cache restore, other chunk sizes) moves the demo model's logits by up to 0.89 and changes its
greedy text; a job computed from scratch in batches of its own gives identical logits.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from llmserve.engine.model import LlamaModel
from llmserve.engine.prefix_cache import PrefixCache, SwaRule
from llmserve.engine.protocol import SamplingParams, TokenEvent
from llmserve.engine.worker import Item, Job, Sink, Worker, WorkerConfig

pytestmark = pytest.mark.e2e

TEXT = (
    "The lighthouse keeper wrote in his log every evening. On Monday the sea was calm and "
    "the gulls sat on the rocks. On Tuesday a storm came from the west and the boats stayed "
    "in the harbour. On Wednesday the keeper mended the lamp and painted the door. On Sunday"
)


class Collector:
    """A job's text, first logits and cached token count."""

    def __init__(self) -> None:
        self.cancelled = False
        self.text = ""
        self.logits: Any = None
        self.cached = -1
        self.done = threading.Event()


def deliver(items: list[tuple[Sink, Item]]) -> None:
    for sink, item in items:
        if isinstance(sink, Collector) and isinstance(item, TokenEvent):
            sink.text += item.text
            if item.usage is not None:
                sink.cached = item.usage.cached_tokens
                sink.done.set()


@pytest.fixture(name="model", scope="module")
def fixture_model(demo_gguf: Path) -> Iterator[LlamaModel]:
    model = LlamaModel(demo_gguf)
    yield model
    model.close()


@pytest.fixture(name="worker")
def fixture_worker(model: LlamaModel) -> Iterator[Worker]:
    config = WorkerConfig(
        n_slots=2, n_ctx_seq=1024, n_batch=512, n_threads=2, n_gpu_layers=0, kv_unified=False
    )
    cache = PrefixCache(identity="t", ram_bytes=1 << 30, swa=SwaRule(model.facts.n_swa))
    worker = Worker(model, config, deliver, max_queued=8, cache=cache)
    worker.start()
    yield worker
    worker.stop()


def submit(worker: Worker, tokens: list[int], max_tokens: int, **job: Any) -> Collector:
    sink = Collector()
    worker.submit(
        Job(
            tokens=tokens,
            max_tokens=max_tokens,
            stop=(),
            sampling=SamplingParams(temperature=0.0),
            sink=sink,
            first_logits=lambda row: setattr(sink, "logits", row),
            **job,
        )
    )
    return sink


def run(worker: Worker, tokens: list[int], max_tokens: int = 16, **job: Any) -> Collector:
    sink = submit(worker, tokens, max_tokens, **job)
    assert sink.done.wait(300)
    return sink


def test_cache_prompt_false_repeats_greedy_output_whatever_was_cached(
    model: LlamaModel, worker: Worker
) -> None:
    """The same greedy request with cache_prompt=False, after different cache states and
    beside another generating request, gives identical logits and text, and reuses nothing."""
    prompt = model.tokenize(TEXT, add_special=True)
    first = run(worker, prompt, cache_prompt=False)
    results = [first]
    for k in (10, len(prompt) // 2):  # the slots now hold prefixes of other lengths
        run(worker, prompt[:k], 4)
        assert run(worker, prompt).cached > 0  # the default reuses them
        results.append(run(worker, prompt, cache_prompt=False))
    other = submit(worker, prompt[::-1], 48)  # generating in the same steps
    results.append(run(worker, prompt, cache_prompt=False))
    assert other.done.wait(300)
    for result in results:
        assert result.cached == 0
        assert result.text == first.text
        assert float(np.max(np.abs(result.logits - first.logits))) == 0.0
