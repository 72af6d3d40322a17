"""The worker's n choices: one prompt decode, its KV shared with the other choices' sequences."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from llmserve.engine.model import LlamaModel
from llmserve.engine.protocol import SamplingParams, TokenEvent
from llmserve.engine.worker import Item, Job, Sink, Worker, WorkerConfig

N_BATCH = 32
PROMPT = [1] + [300 + i % 500 for i in range(199)]  # 200 tokens: 7 chunks of 32


class CollectingSink:
    """Collects a job's events until the one with usage (the last choice's finish)."""

    def __init__(self) -> None:
        self.cancelled = False
        self.events: list[TokenEvent] = []
        self.done = threading.Event()


@pytest.fixture(name="worker", params=[True, False], ids=["unified", "per-slot"])
def fixture_worker(tiny_gguf: Path, request: pytest.FixtureRequest) -> Iterator[Worker]:
    """A worker of 4 slots, in both KV layouts: per-slot streams fork by copying a stream."""
    model = LlamaModel(tiny_gguf)

    def deliver(items: list[tuple[Sink, Item]]) -> None:
        for sink, item in items:
            assert isinstance(sink, CollectingSink)
            assert isinstance(item, TokenEvent)
            sink.events.append(item)
            if item.usage is not None:
                sink.done.set()

    # No prefix reuse: every job decodes its whole prompt, so steps count prompt decodes.
    config = WorkerConfig(
        n_slots=4,
        n_ctx_seq=512,
        n_batch=N_BATCH,
        n_threads=1,
        n_gpu_layers=0,
        reuse_prefix=False,
        kv_unified=request.param,
    )
    worker = Worker(model, config, deliver, max_queued=10)
    worker.start()
    yield worker
    worker.stop()
    model.close()


def run(worker: Worker, n: int) -> tuple[int, list[TokenEvent]]:
    """The decode steps a job of n greedy choices took, and its events."""
    sink = CollectingSink()
    before = worker.steps
    greedy = SamplingParams(temperature=0.0)
    worker.submit(Job(tokens=PROMPT, max_tokens=3, stop=(), sampling=greedy, sink=sink, n=n))
    assert sink.done.wait(30)
    return worker.steps - before, sink.events


def test_n_choices_decode_the_prompt_once(worker: Worker) -> None:
    """Four choices take as many decode steps as one: the prompt is not decoded again for the
    other three, whose sequences get its KV (llama_memory_seq_cp) and then decode beside it."""
    steps_one, _ = run(worker, 1)
    steps_four, events = run(worker, 4)
    assert steps_four == steps_one
    texts = ["".join(e.text for e in events if e.index == i) for i in range(4)]
    assert len(set(texts)) == 1  # greedy: every choice continues the shared prompt alike


def test_usage_comes_once_when_the_last_choice_ends(worker: Worker) -> None:
    """Each choice finishes on its own; only the job's last event carries usage, for all."""
    _, events = run(worker, 3)
    finishes = [e for e in events if e.finish_reason is not None]
    assert sorted(e.index for e in finishes) == [0, 1, 2]
    assert [e.usage is not None for e in events].count(True) == 1
    usage = events[-1].usage
    assert usage is not None
    assert (usage.prompt_tokens, usage.completion_tokens) == (len(PROMPT), 9)
