"""Eviction policies: which cached entry goes first when a byte budget is full.

Pure Python on opaque keys; no llama_cpp import. Every policy answers the same four calls, so a
cache tier holds one policy object and never asks which it is.

- LRU: the entry used longest ago goes first (an insert counts as a use).
- LFU: the entry used fewest times goes first; ties go to the one used longest ago.
- FIFO: the entry inserted first goes first; use does not matter.

``KeepPriority`` puts two such orders in one byte budget: entries a client asked to keep
(saved at an Anthropic ``cache_control`` breakpoint) go only after every ordinary entry, unless
they hold more than their share of the budget, so they can never starve the ordinary ones.
"""

from __future__ import annotations

import collections
import heapq
import itertools
from collections.abc import Hashable
from typing import Literal, Protocol

PolicyName = Literal["lru", "lfu", "fifo"]


class EvictionPolicy(Protocol):
    def insert(self, key: Hashable) -> None:
        """A new key (not present)."""
        ...

    def touch(self, key: Hashable) -> None:
        """A present key was used."""
        ...

    def remove(self, key: Hashable) -> None:
        """A present key left the cache for a reason of its own."""
        ...

    def victim(self) -> Hashable:
        """The key to evict next; the cache must not be empty. Does not remove it."""
        ...


class LRU:
    def __init__(self) -> None:
        self._order: collections.OrderedDict[Hashable, None] = collections.OrderedDict()

    def insert(self, key: Hashable) -> None:
        self._order[key] = None

    def touch(self, key: Hashable) -> None:
        self._order.move_to_end(key)

    def remove(self, key: Hashable) -> None:
        del self._order[key]

    def victim(self) -> Hashable:
        return next(iter(self._order))


class FIFO(LRU):
    def touch(self, key: Hashable) -> None:
        pass  # use does not reorder: first in, first out


class LFU:
    """Counts uses; a lazy min-heap finds the victim in O(log n) amortised."""

    def __init__(self) -> None:
        self._counts: dict[Hashable, tuple[int, int]] = {}  # key -> (uses, last-use tick)
        self._heap: list[tuple[int, int, Hashable]] = []
        self._tick = itertools.count()

    def _push(self, key: Hashable, uses: int) -> None:
        stamp = (uses, next(self._tick))
        self._counts[key] = stamp
        heapq.heappush(self._heap, (*stamp, key))

    def insert(self, key: Hashable) -> None:
        self._push(key, 1)

    def touch(self, key: Hashable) -> None:
        self._push(key, self._counts[key][0] + 1)

    def remove(self, key: Hashable) -> None:
        del self._counts[key]

    def victim(self) -> Hashable:
        heap = self._heap
        while True:
            uses, tick, key = heap[0]
            if self._counts.get(key) == (uses, tick):
                return key
            heapq.heappop(heap)  # a stale stamp: the key was used again or removed


def make_policy(name: PolicyName) -> EvictionPolicy:
    policies: dict[str, type[LRU] | type[LFU]] = {"lru": LRU, "lfu": LFU, "fifo": FIFO}
    return policies[name]()


KEPT_SHARE = 0.5  # of a tier's budget that kept entries may hold before they are evicted first


class KeepPriority:
    """Ordinary and kept keys, each class in its own ``name`` policy's order, in one budget.

    The victim is the ordinary class's while it has keys and the kept ones hold at most
    ``kept_share`` of ``budget`` bytes; else the kept class's.
    """

    def __init__(self, name: PolicyName, budget: int, kept_share: float = KEPT_SHARE) -> None:
        self._ordinary = make_policy(name)
        self._kept = make_policy(name)
        self._kept_keys: dict[Hashable, int] = {}  # key -> size
        self._ordinary_count = 0
        self.kept_bytes = 0
        self._kept_limit = budget * kept_share

    def insert(self, key: Hashable, size: int, *, kept: bool = False) -> None:
        """A new key of ``size`` bytes (not present)."""
        if kept:
            self._kept.insert(key)
            self._kept_keys[key] = size
            self.kept_bytes += size
        else:
            self._ordinary.insert(key)
            self._ordinary_count += 1

    def touch(self, key: Hashable) -> None:
        self._class_of(key).touch(key)

    def keep(self, key: Hashable, size: int) -> None:
        """A present ordinary key is to be kept from now on (a no-op if it is already)."""
        if key not in self._kept_keys:
            self.remove(key)
            self.insert(key, size, kept=True)

    def remove(self, key: Hashable) -> None:
        size = self._kept_keys.pop(key, None)
        if size is None:
            self._ordinary.remove(key)
            self._ordinary_count -= 1
        else:
            self._kept.remove(key)
            self.kept_bytes -= size

    def victim(self) -> Hashable:
        """The key to evict next; there must be one. Does not remove it."""
        if self._ordinary_count and (not self._kept_keys or self.kept_bytes <= self._kept_limit):
            return self._ordinary.victim()
        return self._kept.victim()

    def _class_of(self, key: Hashable) -> EvictionPolicy:
        return self._kept if key in self._kept_keys else self._ordinary
