"""N-gram drafting for speculative decoding: guess the next tokens from the sequence itself.

Text that repeats its context (code edits, quoting, JSON echoing its input) continues the way
it went the last time its most recent ``n`` tokens appeared. ``NgramDrafter`` keeps, for every
n-gram of the sequence (prompt and output), where its latest occurrence was followed, so a
lookup is one dict access and an append adds one entry: the sequence is never rescanned.

With a shared ``NgramPool`` (``ngram_shared``), the tokens a sequence generates also go into
the pool, and a tail the sequence has not seen before is looked up there.

``Backoff`` is the adaptive part: a sequence whose drafts keep being rejected stops drafting
for a growing number of steps, so free text pays almost nothing for the lookups.
"""

from __future__ import annotations

from collections.abc import Iterable

from llmserve.engine.ngrampool import NgramPool


class NgramDrafter:
    """The n-gram index of one sequence; ``draft`` proposes, ``extend`` appends tokens.

    With a ``pool``, the tokens appended after construction (the output; the prompt stays
    the sequence's own) feed the pool, and a tail without a match of its own is looked up in it.
    """

    __slots__ = ("_index", "_n", "_pool", "_tokens")

    def __init__(self, n: int, tokens: Iterable[int] = (), pool: NgramPool | None = None) -> None:
        if n < 1:
            raise ValueError("n must be at least 1")
        if pool is not None and pool.n != n:
            raise ValueError("the pool's n-grams must be of the same size")
        self._n = n
        self._tokens: list[int] = []
        # n-gram -> the position of the token that followed its latest occurrence. The n-gram
        # that ends the sequence goes in only once its follower exists, so a lookup of the
        # sequence's own tail finds an earlier occurrence, never itself.
        self._index: dict[tuple[int, ...], int] = {}
        self._pool: NgramPool | None = None
        self.extend(tokens)
        self._pool = pool

    def __len__(self) -> int:
        return len(self._tokens)

    def extend(self, tokens: Iterable[int]) -> None:
        seq, index, n, pool = self._tokens, self._index, self._n, self._pool
        for token in tokens:
            end = len(seq)
            if end >= n:
                ngram = tuple(seq[end - n : end])
                index[ngram] = end
                if pool is not None:
                    pool.add(ngram, token)
            seq.append(token)

    def draft(self, limit: int) -> list[int]:
        """Up to ``limit`` tokens that followed the latest earlier occurrence of the tail
        (in this sequence, else in the pool)."""
        seq, n = self._tokens, self._n
        if limit <= 0 or len(seq) < n:
            return []
        tail = tuple(seq[len(seq) - n :])
        start = self._index.get(tail)
        if start is None:
            return self._pool.follow(tail, limit) if self._pool is not None else []
        return seq[start : start + limit]


class Backoff:
    """When a sequence may draft: after ``misses`` rejected drafts in a row it waits
    2**misses steps (at most ``cap``); an accepted token resets it."""

    __slots__ = ("_cap", "_misses", "_wait")

    def __init__(self, cap: int = 64) -> None:
        self._cap = cap
        self._misses = 0
        self._wait = 0

    def ready(self) -> bool:
        """Whether to draft this step (a step that may not draft counts down the wait)."""
        if self._wait > 0:
            self._wait -= 1
            return False
        return True

    def record(self, accepted: int) -> None:
        if accepted:
            self._misses = 0
            return
        self._misses += 1
        self._wait = min(self._cap, 1 << self._misses) if self._misses > 1 else 0
