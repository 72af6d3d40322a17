"""The worker's continuous batching: long prompts are prefilled in chunks beside live streams,
and new jobs are placed in slots that suit the KV layout."""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from llmserve.engine.model import LlamaModel
from llmserve.engine.protocol import SamplingParams, TokenEvent
from llmserve.engine.worker import Item, Job, Sink, Worker, WorkerConfig

N_BATCH = 32
LONG_PROMPT = [1] + [300 + i % 500 for i in range(299)]  # 300 tokens
GREEDY = SamplingParams(temperature=0.0)
LAYOUTS = pytest.mark.parametrize("kv_unified", [True, False], ids=["unified", "per-slot"])


class RecordingSink:
    """Records at which decode step each of its events arrived."""

    def __init__(self) -> None:
        self.cancelled = False
        self.steps: list[int] = []
        self.finished = threading.Event()


def worker_config(**changes: Any) -> WorkerConfig:
    """Two slots of 512 tokens, n_batch N_BATCH, on one thread; ``changes`` override."""
    fields: dict[str, Any] = {
        "n_slots": 2,
        "n_ctx_seq": 512,
        "n_batch": N_BATCH,
        "n_threads": 1,
        "n_gpu_layers": 0,
    }
    return WorkerConfig(**{**fields, **changes})


@contextmanager
def running_worker(tiny_gguf: Path, config: WorkerConfig) -> Iterator[Worker]:
    """A started worker whose events land in RecordingSinks, stamped with the step count."""
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

    worker = Worker(model, config, deliver, max_queued=10)
    worker.start()
    try:
        yield worker
    finally:
        worker.stop()
        model.close()


def submit(worker: Worker, tokens: list[int], max_tokens: int) -> RecordingSink:
    sink = RecordingSink()
    worker.submit(Job(tokens=tokens, max_tokens=max_tokens, stop=(), sampling=GREEDY, sink=sink))
    return sink


def long_prompt_beside_a_live_stream(worker: Worker) -> tuple[RecordingSink, RecordingSink, int]:
    """A stream that is generating, then a long prompt arriving; both run to their end.

    Also returns the step count when the long prompt was submitted.
    """
    live = submit(worker, [1, 100, 200], max_tokens=120)
    while len(live.steps) < 3:
        time.sleep(0.001)
    submitted_at = worker.steps
    late = submit(worker, LONG_PROMPT, max_tokens=2)
    assert late.finished.wait(30)
    assert live.finished.wait(30)
    return live, late, submitted_at


@LAYOUTS
def test_long_prompt_never_stalls_a_generating_stream(tiny_gguf: Path, kv_unified: bool) -> None:
    """While a 300-token prompt is prefilled in chunks, the live stream gets a token every step."""
    config = worker_config(kv_unified=kv_unified)
    with running_worker(tiny_gguf, config) as worker:
        live, late, _ = long_prompt_beside_a_live_stream(worker)
    first_late = late.steps[0]
    # (A step may bring several tokens when speculative decoding is on: LLMSERVE_TEST_SPECULATIVE.)
    during = sorted({s for s in live.steps if s <= first_late})
    # The live stream's events come every step, with no gap while the long prompt loads.
    assert during == list(range(during[0], during[-1] + 1))
    # And the long prompt really took several chunks of at most N_BATCH - 1 tokens.
    assert first_late - during[0] >= math.ceil(300 / (N_BATCH - 1)) - 1


def test_prompt_chunks_shrink_to_prefill_chunk_while_a_stream_generates(tiny_gguf: Path) -> None:
    """Beside a generating stream, a prompt goes in prefill_chunk tokens a step, not n_batch."""
    config = worker_config(n_batch=128, prefill_chunk=16)
    with running_worker(tiny_gguf, config) as worker:
        live, late, submitted_at = long_prompt_beside_a_live_stream(worker)
    # The prompt's first token comes once its 300 tokens went in at most 16 a step (the live
    # stream generated throughout); in chunks of 128 it would have come within 4 steps.
    assert live.steps[-1] > late.steps[0]
    assert late.steps[0] - submitted_at >= math.ceil(300 / 16)


def test_a_lone_prompt_is_read_in_full_n_batch_chunks(tiny_gguf: Path) -> None:
    """With no stream generating, prefill_chunk does not apply: 300 tokens take 3 steps of 128."""
    config = worker_config(n_batch=128, prefill_chunk=16)
    with running_worker(tiny_gguf, config) as worker:
        lone = submit(worker, LONG_PROMPT, max_tokens=1)
        assert lone.finished.wait(30)
    assert lone.steps[0] == math.ceil(300 / 128)


@pytest.mark.parametrize(
    ("kv_unified", "expected"),
    [(True, [0, 3]), (False, [2, 3])],
    ids=["unified-least-recently-used", "per-slot-contiguous"],
)
def test_new_jobs_take_slots_by_kv_layout(
    tiny_gguf: Path, kv_unified: bool, expected: list[int]
) -> None:
    """Jobs that finished in slots 0, 1, 2 (in that order) and one generating in slot 3: unified
    KV gives the next job the least recently used slot (0); per-slot streams the one next to
    the busy slot (2), so that one ubatch decodes both generating sequences."""
    # No prefix reuse: every free slot serves a prompt equally well, only placement counts.
    config = worker_config(n_slots=4, reuse_prefix=False, kv_unified=kv_unified)
    with running_worker(tiny_gguf, config) as worker:
        for n in range(3):
            assert submit(worker, [1, 5 + n, 6], max_tokens=2).finished.wait(30)
        first = submit(worker, [1, 7, 8], max_tokens=400)
        while not first.steps:
            time.sleep(0.001)
        second = submit(worker, [1, 9, 10], max_tokens=400)
        while not second.steps:
            time.sleep(0.001)
        busy = worker.busy_slots()
        first.cancelled = second.cancelled = True
    assert busy == expected


def test_per_slot_streams_bring_a_conversation_back_to_its_own_slot(tiny_gguf: Path) -> None:
    """With per-slot KV and no slot busy, every slot leaves no gap: a prompt continuing an
    earlier one takes the slot holding it (its prefix is reused), not the lowest free id."""
    config = worker_config(n_slots=4, kv_unified=False)
    with running_worker(tiny_gguf, config) as worker:
        assert submit(worker, [1, 5, 6, 7], max_tokens=1).finished.wait(30)
        assert submit(worker, [2, 8, 9, 10], max_tokens=1).finished.wait(30)
        slots = {slot.seq_id: list(slot.kv_tokens) for slot in worker._slots}
        second = next(seq for seq, kv in slots.items() if kv[:1] == [2])
        again = submit(worker, [2, 8, 9, 10, 11, 12], max_tokens=1)
        assert again.finished.wait(30)
        after = {slot.seq_id: list(slot.kv_tokens) for slot in worker._slots}
    assert second != 0
    assert after[second][:6] == [2, 8, 9, 10, 11, 12]
    assert after[0][:4] == [1, 5, 6, 7]
