"""Speculative decoding on the demo model: a prompt whose answer repeats a code block gives the
same text with n-gram drafts as without, in fewer decode steps; with a pool shared by the slots,
a request drafts from an earlier request's output."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import attrs
import pytest

from llmserve.engine.jobs import SpecCounts
from llmserve.engine.model import LlamaModel
from llmserve.engine.protocol import SamplingParams, TokenEvent, Usage
from llmserve.engine.worker import Item, Job, Sink, Worker, WorkerConfig

pytestmark = pytest.mark.e2e

CODE = '''def merge_settings(defaults, overrides):
    """Return defaults updated with overrides, refusing unknown keys."""
    merged = dict(defaults)
    for key, value in overrides.items():
        if key not in defaults:
            raise KeyError(f"unknown setting: {key}")
        merged[key] = value
    return merged
'''
PROMPT = (
    "Here is a Python function:\n\n```python\n"
    + CODE
    + "```\n\nThe same function, with type hints:\n\n```python\n"
)


class Collector:
    def __init__(self) -> None:
        self.cancelled = False
        self.text = ""
        self.usage: Usage | None = None
        self.done = threading.Event()


def deliver(items: list[tuple[Sink, Item]]) -> None:
    for sink, item in items:
        assert isinstance(sink, Collector)
        assert isinstance(item, TokenEvent), item
        sink.text += item.text
        if item.usage is not None:
            sink.usage = item.usage
            sink.done.set()


@pytest.fixture(name="model", scope="module")
def fixture_model(demo_gguf: Path) -> Iterator[LlamaModel]:
    model = LlamaModel(demo_gguf)
    yield model
    model.close()


def generate(model: LlamaModel, speculative: str, **job: Any) -> tuple[Collector, int]:
    """The answer to PROMPT, and the decode steps it took."""
    config = WorkerConfig(
        n_slots=2, n_ctx_seq=1024, n_batch=512, n_threads=2, n_gpu_layers=0, speculative=speculative
    )
    worker = Worker(model, config, deliver, max_queued=4, spec_counts=SpecCounts())
    worker.start()
    try:
        sink = Collector()
        fields: dict[str, Any] = {
            "max_tokens": 100,
            "stop": ("```",),
            "sampling": SamplingParams(temperature=0.0),
        }
        worker.submit(
            Job(tokens=model.tokenize(PROMPT, add_special=True), sink=sink, **{**fields, **job})
        )
        assert sink.done.wait(600)
        return sink, worker.steps
    finally:
        worker.stop()


def test_greedy_code_rewrite_is_identical_and_takes_fewer_steps(model: LlamaModel) -> None:
    """At temperature 0 the repeated code block is the same text with and without drafts,
    and most of its tokens come from accepted drafts."""
    off, off_steps = generate(model, "off")
    on, on_steps = generate(model, "ngram")
    assert on.text == off.text
    assert "merged[key] = value" in on.text  # the model did copy the code
    assert on.usage is not None
    assert on.usage.draft_accepted > on.usage.completion_tokens // 3
    assert on_steps < off_steps


def test_seeded_sampling_is_reproducible_with_speculation(model: LlamaModel) -> None:
    """With a seed, sampling with drafts gives the same text run after run.

    (Not the text of plain decoding: a position verified in a batch of k+1 tokens gets
    slightly other logits on this quantized model than one decoded alone, as any other batch
    shape does (see test_reproducible_output.py); greedy choices survive that, but a sample's
    draw can land on another token.)
    """
    seeded = SamplingParams(temperature=0.7, top_k=40, seed=7)
    first, _ = generate(model, "ngram", sampling=seeded)
    again, _ = generate(model, "ngram", sampling=seeded)
    assert first.usage is not None
    assert first.usage.completion_tokens > 10
    assert again.text == first.text


STORY = "Once upon a time, in a village by the sea, there lived"


def test_shared_pool_lets_a_second_request_draft_from_the_first_ones_output(
    model: LlamaModel,
) -> None:
    """ngram_shared: the second of two requests (free text that rarely repeats itself) drafts
    from the first one's answer and accepts more drafts than without the pool. The first
    request, with nothing in the pool but its own output, runs exactly as without it.

    (The second answer's text is not compared: a free-text position verified in a batch of
    several tokens may flip a near-tie, e.g. logits 24.80 against 24.76 at one position of this
    answer, as any batch shape may; see test_reproducible_output.py.)
    """
    config = WorkerConfig(
        n_slots=2, n_ctx_seq=1024, n_batch=512, n_threads=2, n_gpu_layers=0, speculative="ngram"
    )
    accepted: dict[bool, list[int]] = {}
    first: dict[bool, str] = {}
    for shared in (False, True):
        worker = Worker(model, attrs.evolve(config, ngram_shared=shared), deliver, max_queued=4)
        worker.start()
        try:
            for _ in range(2):
                sink = Collector()
                worker.submit(
                    Job(
                        tokens=model.tokenize(STORY, add_special=True),
                        max_tokens=64,
                        stop=(),
                        sampling=SamplingParams(temperature=0.0),
                        sink=sink,
                    )
                )
                assert sink.done.wait(600)
                assert sink.usage is not None
                accepted.setdefault(shared, []).append(sink.usage.draft_accepted)
                first.setdefault(shared, sink.text)
        finally:
            worker.stop()
    assert first[True] == first[False]
    assert accepted[True][0] == accepted[False][0]
    assert accepted[True][1] > accepted[False][1] + 20
