"""A Worker on the tiny model, driven directly (no HTTP), for the speculative-decoding tests."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from llmserve.engine.draftmodel import DraftModel
from llmserve.engine.jobs import SpecCounts
from llmserve.engine.model import LlamaModel
from llmserve.engine.protocol import SamplingParams, TokenEvent
from llmserve.engine.worker import Item, Job, Sink, Worker, WorkerConfig
from llmserve.errors import LLMServeError

GREEDY = SamplingParams(temperature=0.0)


class CollectingSink:
    """A job's events; ``cancel_after`` events, the client goes away (cancels)."""

    def __init__(self, cancel_after: int | None = None) -> None:
        self.cancelled = False
        self.cancel_after = cancel_after
        self.events: list[TokenEvent] = []
        self.error: LLMServeError | None = None
        self.done = threading.Event()

    @property
    def text(self) -> str:
        return self.text_of(0)

    def text_of(self, index: int) -> str:
        """The text of choice ``index``."""
        return "".join(e.text for e in self.events if e.index == index)


def deliver(items: list[tuple[Sink, Item]]) -> None:
    for sink, item in items:
        assert isinstance(sink, CollectingSink)
        if isinstance(item, LLMServeError):
            sink.error = item
            sink.done.set()
            continue
        sink.events.append(item)
        if sink.cancel_after is not None and len(sink.events) >= sink.cancel_after:
            sink.cancelled = True
            sink.done.set()
        if item.usage is not None:
            sink.done.set()


def config(**changes: Any) -> WorkerConfig:
    """Four slots of 512 tokens, 64-token batches, one thread; ``changes`` on top."""
    fields: dict[str, Any] = {
        "n_slots": 4,
        "n_ctx_seq": 512,
        "n_batch": 64,
        "n_threads": 1,
        "n_gpu_layers": 0,
    }
    return WorkerConfig(**{**fields, **changes})


@contextmanager
def running(
    target: Path, worker_config: WorkerConfig, draft: Path | None = None
) -> Iterator[Worker]:
    """A started Worker on the GGUF ``target`` (drafting with the GGUF ``draft``, if given)."""
    model = LlamaModel(target)
    worker: Worker | None = None
    try:
        drafter = DraftModel.open(draft, model, worker_config) if draft is not None else None
        worker = Worker(
            model, worker_config, deliver, max_queued=16, spec_counts=SpecCounts(), draft=drafter
        )
        worker.start()
        yield worker
    finally:
        if worker is not None:
            worker.stop()
        model.close()


def generate(worker: Worker, tokens: list[int], **job: Any) -> CollectingSink:
    """Run one job to its end (or its cancellation): 120 greedy tokens unless ``job`` says."""
    sink = CollectingSink(job.pop("cancel_after", None))
    fields: dict[str, Any] = {"max_tokens": 120, "stop": (), "sampling": GREEDY}
    worker.submit(Job(tokens=tokens, sink=sink, **{**fields, **job}))
    assert sink.done.wait(60)
    assert sink.error is None
    return sink
