"""Pooled embeddings of the served model, from a second llama context made on first use.

The generation worker's context computes logits, not embeddings, so embeddings get their own
context on the same weights (no second copy of the model): embeddings on, pooled by the
model's own pooling type when it has one (an embedding model's CLS or mean), else by the mean
over the tokens, as most generative models are used for embeddings. Every input must fit one
micro-batch (pooling sees the whole sequence at once), so the context's batch is its size.

Calls come from worker threads (``asyncio.to_thread``); a lock serializes them, and the context
is built under the same lock, once.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence

import llama_cpp
import numpy as np

from llmserve.engine.model import LlamaModel
from llmserve.errors import LLMServeError, ModelLoadError

# Inputs decoded together in one llama_decode, each its own sequence.
MAX_SEQUENCES = 16
_POOLINGS = {
    llama_cpp.LLAMA_POOLING_TYPE_MEAN,
    llama_cpp.LLAMA_POOLING_TYPE_CLS,
    llama_cpp.LLAMA_POOLING_TYPE_LAST,
}


class Embedder:
    """Embeds token sequences with the served model; L2-normalized, as OpenAI's are."""

    def __init__(self, model: LlamaModel, *, n_ctx: int, n_threads: int) -> None:
        self.model = model
        self.n_ctx = n_ctx
        self._n_threads = n_threads
        self._lock = threading.Lock()
        self._handles: tuple[llama_cpp.llama_context_p, llama_cpp.llama_batch] | None = None

    def _pooling(self) -> int:
        declared = self.model.meta(f"{self.model.facts.architecture}.pooling_type")
        if declared is not None and declared.isdigit() and int(declared) in _POOLINGS:
            return int(declared)
        return llama_cpp.LLAMA_POOLING_TYPE_MEAN

    def _open(self) -> tuple[llama_cpp.llama_context_p, llama_cpp.llama_batch]:
        params = llama_cpp.llama_context_default_params()
        params.n_ctx = self.n_ctx
        params.n_batch = self.n_ctx
        params.n_ubatch = self.n_ctx
        params.n_seq_max = MAX_SEQUENCES
        params.kv_unified = True
        params.n_threads = self._n_threads
        params.n_threads_batch = self._n_threads
        params.embeddings = True
        params.pooling_type = self._pooling()
        params.no_perf = True
        ctx = llama_cpp.llama_init_from_model(self.model.ptr, params)
        if not ctx:
            raise ModelLoadError("llama.cpp could not create an embeddings context")
        self._handles = ctx, llama_cpp.llama_batch_init(self.n_ctx, 0, 1)
        return self._handles

    def embed(self, inputs: Sequence[Sequence[int]]) -> list[tuple[float, ...]]:
        """One normalized vector per input; every input is non-empty and fits ``n_ctx``."""
        with self._lock:
            ctx, batch = self._handles or self._open()
            vectors: list[tuple[float, ...]] = []
            for group in _packs(inputs, self.n_ctx):
                vectors.extend(self._embed_pack(ctx, batch, group))
            return vectors

    def _embed_pack(
        self,
        ctx: llama_cpp.llama_context_p,
        batch: llama_cpp.llama_batch,
        group: Sequence[Sequence[int]],
    ) -> list[tuple[float, ...]]:
        llama_cpp.llama_memory_clear(llama_cpp.llama_get_memory(ctx), True)
        n = 0
        for seq, tokens in enumerate(group):
            for pos, token in enumerate(tokens):
                batch.token[n] = token
                batch.pos[n] = pos
                batch.n_seq_id[n] = 1
                batch.seq_id[n][0] = seq
                batch.logits[n] = True  # pooling reads every token's output
                n += 1
        batch.n_tokens = n
        rc = llama_cpp.llama_decode(ctx, batch)
        if rc != 0:
            raise LLMServeError(f"llama_decode failed with code {rc} while embedding")
        out = []
        for seq in range(len(group)):
            row = llama_cpp.llama_get_embeddings_seq(ctx, seq)
            if not row:
                raise LLMServeError("llama.cpp returned no pooled embedding")
            vector = np.ctypeslib.as_array(row, shape=(self.model.n_embd,)).astype(np.float64)
            norm = float(np.linalg.norm(vector))
            out.append(tuple((vector / norm if norm > 0 else vector).tolist()))
        return out

    def close(self) -> None:
        with self._lock:
            if self._handles is not None:
                ctx, batch = self._handles
                self._handles = None
                llama_cpp.llama_batch_free(batch)
                llama_cpp.llama_free(ctx)


def _packs(inputs: Sequence[Sequence[int]], n_tokens: int) -> list[list[Sequence[int]]]:
    """Inputs in order, grouped so that each group fits one decode."""
    packs: list[list[Sequence[int]]] = []
    used = n_tokens + 1
    for tokens in inputs:
        if used + len(tokens) > n_tokens or len(packs[-1]) >= MAX_SEQUENCES:
            packs.append([])
            used = 0
        packs[-1].append(tokens)
        used += len(tokens)
    return packs
