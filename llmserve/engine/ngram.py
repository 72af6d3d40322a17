"""N-gram drafting for speculative decoding: guess the next tokens from the sequence itself.

Text that repeats its context (code edits, quoting, JSON echoing its input) continues the way
it went the last time its most recent ``n`` tokens appeared. ``NgramDrafter`` keeps, for every
n-gram of the sequence (prompt and output), where its latest occurrence was followed, so a
lookup is one dict access and an append adds one entry: the sequence is never rescanned.

``Backoff`` is the adaptive part: a sequence whose drafts keep being rejected stops drafting
for a growing number of steps, so free text pays almost nothing for the lookups.
"""

from __future__ import annotations

from collections.abc import Iterable


class NgramDrafter:
    """The n-gram index of one sequence; ``draft`` proposes, ``extend`` appends tokens."""

    __slots__ = ("_index", "_n", "_tokens")

    def __init__(self, n: int, tokens: Iterable[int] = ()) -> None:
        if n < 1:
            raise ValueError("n must be at least 1")
        self._n = n
        self._tokens: list[int] = []
        # n-gram -> the position of the token that followed its latest occurrence. The n-gram
        # that ends the sequence goes in only once its follower exists, so a lookup of the
        # sequence's own tail finds an earlier occurrence, never itself.
        self._index: dict[tuple[int, ...], int] = {}
        self.extend(tokens)

    def __len__(self) -> int:
        return len(self._tokens)

    def extend(self, tokens: Iterable[int]) -> None:
        seq, index, n = self._tokens, self._index, self._n
        for token in tokens:
            end = len(seq)
            if end >= n:
                index[tuple(seq[end - n : end])] = end
            seq.append(token)

    def draft(self, limit: int) -> list[int]:
        """Up to ``limit`` tokens that followed the latest earlier occurrence of the tail."""
        seq, n = self._tokens, self._n
        if limit <= 0 or len(seq) < n:
            return []
        start = self._index.get(tuple(seq[len(seq) - n :]))
        if start is None:
            return []
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
