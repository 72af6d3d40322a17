"""A bounded n-gram table shared by every sequence of a model (``ngram_shared = true``).

A sequence's own n-gram index (``NgramDrafter``) only knows its own prompt and output. Requests
to one model often write what an earlier one wrote (the same JSON shape, the same code, an
agent's recurring answers): the pool remembers, for each n-gram of the sequences' generated
output, the token that followed it last, as llama.cpp's ``ngram-mod`` does across its slots. A
sequence consults it only when its own tokens have no match, and drafts by following it one
token at a time.

The table keeps the ``max_entries`` n-grams written most recently (the oldest go first), so its
memory is bounded: about 200 bytes an entry in CPython, ~13 MiB at the default 65,536.
"""

from __future__ import annotations

from collections import OrderedDict

POOL_ENTRIES = 1 << 16


class NgramPool:
    """n-gram -> the token that last followed it, in any sequence; ``add`` and ``follow``."""

    __slots__ = ("_max", "_n", "_table")

    def __init__(self, n: int, max_entries: int = POOL_ENTRIES) -> None:
        if n < 1:
            raise ValueError("n must be at least 1")
        if max_entries < 1:
            raise ValueError("max_entries must be at least 1")
        self._n = n
        self._max = max_entries
        # Ordered by last write: the first entry is the one to forget when the table is full.
        self._table: OrderedDict[tuple[int, ...], int] = OrderedDict()

    def __len__(self) -> int:
        return len(self._table)

    @property
    def n(self) -> int:
        return self._n

    def add(self, ngram: tuple[int, ...], token: int) -> None:
        """Remember that ``token`` followed ``ngram`` (``n`` tokens); the latest write wins."""
        table = self._table
        if ngram in table:
            table.move_to_end(ngram)
        table[ngram] = token
        if len(table) > self._max:
            table.popitem(last=False)

    def follow(self, tail: tuple[int, ...], limit: int) -> list[int]:
        """Up to ``limit`` tokens after ``tail`` (the last ``n`` tokens of a sequence): each
        one what followed the n-gram ending at the previous one."""
        table = self._table
        drafted: list[int] = []
        key = tail
        while len(drafted) < limit:
            token = table.get(key)
            if token is None:
                break
            drafted.append(token)
            key = (*key[1:], token)
        return drafted
