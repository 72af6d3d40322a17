"""The worker's continuous batching: long prompts are prefilled in chunks beside live streams."""

from __future__ import annotations

import math
import threading
import time
from pathlib import Path

from llmserve.engine.model import LlamaModel
from llmserve.engine.protocol import SamplingParams, TokenEvent
from llmserve.engine.worker import Item, Job, Sink, Worker, WorkerConfig

N_BATCH = 32


class RecordingSink:
    """Records at which decode step each of its events arrived."""

    def __init__(self) -> None:
        self.cancelled = False
        self.steps: list[int] = []
        self.finished = threading.Event()


def test_long_prompt_never_stalls_a_generating_stream(tiny_gguf: Path) -> None:
    """While a 300-token prompt is prefilled in chunks, the live stream gets a token every step."""
    model = LlamaModel(tiny_gguf)
    worker: Worker

    def deliver(items: list[tuple[Sink, Item]]) -> None:
        for sink, item in items:
            assert isinstance(sink, RecordingSink)
            if isinstance(item, TokenEvent) and item.queue_wait_s is not None:
                continue  # the admission event carries no token
            sink.steps.append(worker.steps)
            if getattr(item, "finish_reason", None) is not None:
                sink.finished.set()

    config = WorkerConfig(n_slots=2, n_ctx_seq=512, n_batch=N_BATCH, n_threads=1, n_gpu_layers=0)
    worker = Worker(model, config, deliver, max_queued=10)
    worker.start()
    try:
        live, late = RecordingSink(), RecordingSink()
        greedy = SamplingParams(temperature=0.0)
        worker.submit(
            Job(tokens=[1, 100, 200], max_tokens=120, stop=(), sampling=greedy, sink=live)
        )
        while len(live.steps) < 3:
            time.sleep(0.001)
        long_prompt = [1] + [300 + i % 500 for i in range(299)]
        worker.submit(Job(tokens=long_prompt, max_tokens=2, stop=(), sampling=greedy, sink=late))
        assert late.finished.wait(30)
        assert live.finished.wait(30)
    finally:
        worker.stop()
        model.close()
    first_late = late.steps[0]
    during = [s for s in live.steps if s <= first_late]
    # The live stream's events come one per step, with no gap while the long prompt loads.
    assert during == list(range(during[0], during[-1] + 1))
    # And the long prompt really took several chunks of at most N_BATCH - 1 tokens.
    assert first_late - during[0] >= math.ceil(300 / (N_BATCH - 1)) - 1
