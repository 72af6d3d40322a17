"""The KV layout trade-off with long contexts: one stream per slot against one unified buffer.

Straight on llama.cpp (no server): a context of ``--slots`` sequences, each filled with a
distinct prompt of ``--tokens`` tokens, then decoded: one sequence alone, then all of them
together, one token each per step. With one unified buffer every token's attention spans all
slots' cells (masked, but scanned); with one stream per slot (llmserve's default, as
llama-server) only its own. The bench's workloads use short prompts, where the two are level;
this shows what the slots' contexts cost as they grow.

    python perf/kv_layout.py [--tokens 3500] [--slots 8] [--model-path PATH] [--threads 2]
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the repository root importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import llama_cpp

from llmserve.engine.model import LlamaModel
from perf.bench import demo_model_path
from perf.longprompts import long_prompt
from perf.stats import median

DECODE_STEPS = 32  # tokens decoded per measurement
N_BATCH = 512
# Decode measurements per layout, of which the median counts (prefill is measured once: filling
# the slots).
ROUNDS = 3


@dataclass(frozen=True)
class LayoutResult:
    unified: bool
    prefill_tok_s: float  # filling every slot, one prompt after another
    one_tok_s: float  # one sequence decoding, the others holding their contexts
    all_tok_s: float  # every sequence decoding, aggregate

    @property
    def name(self) -> str:
        return "unified buffer" if self.unified else "stream per slot"


def ratio_line(split: LayoutResult, unified: LayoutResult) -> str:
    """The per-slot layout's speed over the unified one's, for each measurement."""
    return (
        f"stream per slot / unified: prefill {split.prefill_tok_s / unified.prefill_tok_s:.2f}x, "
        f"one sequence {split.one_tok_s / unified.one_tok_s:.2f}x, "
        f"all sequences {split.all_tok_s / unified.all_tok_s:.2f}x"
    )


class Context:
    """A llama.cpp context of ``slots`` sequences of ``n_ctx_seq`` tokens, and its batch."""

    def __init__(
        self,
        model: llama_cpp.llama_model_p,
        slots: int,
        n_ctx_seq: int,
        threads: int,
        unified: bool,
    ) -> None:
        params = llama_cpp.llama_context_default_params()
        params.n_ctx = n_ctx_seq * slots
        params.n_seq_max = slots
        params.n_batch = params.n_ubatch = N_BATCH
        params.n_threads = params.n_threads_batch = threads
        params.kv_unified = unified
        params.swa_full = False  # as llmserve and llama-server: only the window is kept
        params.no_perf = True
        self.ctx = llama_cpp.llama_init_from_model(model, params)
        if not self.ctx:
            raise RuntimeError(f"llama.cpp could not create a context of {params.n_ctx} tokens")
        self.batch = llama_cpp.llama_batch_init(N_BATCH, 0, 1)

    def decode(self, items: Sequence[tuple[int, int, int]], last_logits_only: bool) -> None:
        """One llama_decode of (token, position, sequence) items."""
        self.batch.n_tokens = len(items)
        for i, (token, pos, seq) in enumerate(items):
            self.batch.token[i] = token
            self.batch.pos[i] = pos
            self.batch.n_seq_id[i] = 1
            self.batch.seq_id[i][0] = seq
            self.batch.logits[i] = not last_logits_only or i == len(items) - 1
        if llama_cpp.llama_decode(self.ctx, self.batch) != 0:
            raise RuntimeError("llama_decode failed")

    def close(self) -> None:
        llama_cpp.llama_batch_free(self.batch)
        llama_cpp.llama_free(self.ctx)


def measure(context: Context, prompts: list[list[int]], unified: bool) -> LayoutResult:
    positions = []
    start = time.perf_counter()
    for seq, prompt in enumerate(prompts):
        for at in range(0, len(prompt), N_BATCH):
            chunk = prompt[at : at + N_BATCH]
            context.decode([(t, at + i, seq) for i, t in enumerate(chunk)], True)
        positions.append(len(prompt))
    prefill = sum(map(len, prompts)) / (time.perf_counter() - start)
    one, every = [], []
    token = prompts[0][-1]  # any token: the speed does not depend on it
    for _ in range(ROUNDS):
        start = time.perf_counter()
        for _ in range(DECODE_STEPS):
            context.decode([(token, positions[0], 0)], False)
            positions[0] += 1
        one.append(DECODE_STEPS / (time.perf_counter() - start))
        start = time.perf_counter()
        for _ in range(DECODE_STEPS):
            context.decode([(token, positions[s], s) for s in range(len(prompts))], False)
            positions = [p + 1 for p in positions]
        every.append(DECODE_STEPS * len(prompts) / (time.perf_counter() - start))
    return LayoutResult(unified, prefill, median(one), median(every))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model-path", type=Path, help="GGUF file (default: the demo model)")
    parser.add_argument("--tokens", type=int, default=3500, help="context held by each slot")
    parser.add_argument("--slots", type=int, default=8)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    n_ctx_seq = args.tokens + 2 * DECODE_STEPS * ROUNDS + 64
    model = LlamaModel(args.model_path or demo_model_path())
    quiet = llama_cpp.llama_log_callback(lambda level, text, data: None)
    llama_cpp.llama_log_set(quiet, None)  # llama.cpp's context log would bury the three lines
    prompts = [
        model.tokenize(long_prompt(seed, args.tokens + 200), add_special=True)[: args.tokens]
        for seed in range(900, 900 + args.slots)
    ]
    results = {}
    for unified in (True, False):
        context = Context(model.ptr, args.slots, n_ctx_seq, args.threads, unified)
        try:
            result = measure(context, prompts, unified)
        finally:
            context.close()
        results[unified] = result
        print(
            f"{result.name}: {args.slots} slots x {args.tokens} tokens: prefill "
            f"{result.prefill_tok_s:.0f} tok/s, one sequence {result.one_tok_s:.1f} tok/s, "
            f"all {args.slots} {result.all_tok_s:.1f} tok/s aggregate",
            flush=True,
        )
    print(ratio_line(results[False], results[True]))
    model.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
