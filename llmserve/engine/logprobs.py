"""Log-probabilities of a sampled token from its logits row (only when a request asks).

The row is the model's raw output for that position, so these are the model's own
probabilities, before temperature, penalties, biases or a grammar reshape them (as OpenAI
reports them). One log-softmax over the vocabulary per generated token: cheap next to the
decode, and skipped entirely for requests that do not ask.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from llmserve.engine.protocol import TokenLogprob, TopLogprob


def token_logprob(
    row: np.ndarray, token: int, top: int, piece: Callable[[int], bytes]
) -> TokenLogprob:
    """The log-probability of ``token`` in ``row`` and the ``top`` most likely tokens."""
    peak = float(row.max())
    log_total = peak + float(np.log(np.exp(row - peak, dtype=np.float64).sum()))
    best: tuple[TopLogprob, ...] = ()
    if top > 0:
        k = min(top, row.shape[0])
        candidates = np.argpartition(row, -k)[-k:]
        ranked = candidates[np.argsort(-row[candidates], kind="stable")]
        best = tuple(
            TopLogprob(token=int(t), piece=piece(int(t)), logprob=float(row[t]) - log_total)
            for t in ranked
        )
    return TokenLogprob(
        token=token, piece=piece(token), logprob=float(row[token]) - log_total, top=best
    )
