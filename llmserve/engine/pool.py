"""The replicas of one model (``[model] replicas``) and which one serves a request.

Each replica is a llama context on the one loaded model with its own worker thread, slots and
KV. A request goes, whole (its ``n`` choices share one prompt's KV, so they stay together),
to the replica whose free slots hold the longest live prefix of its prompt (a finished
request's slot keeps its KV, so a chat's next turn lands where its last turn ran), among the
replicas with a free slot for it; with no live prefix anywhere, to the least loaded (running +
waiting), the lowest index among equals. The prefix cache is shared by the replicas: a cached
prefix restores into any of them, so it does not steer the choice.

The choice is cheap: the prompt's block hashes (one per ``BLOCK`` tokens, as the prefix cache
hashes them) against each replica's published set of its free slots' block hashes, by binary
search (prefixes are chained, so the matching blocks are a run from the start). No llama.cpp.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Generic, Protocol, TypeVar

from llmserve.engine.prefix_cache import BLOCK, block_hashes
from llmserve.errors import EngineOverloaded


def at_capacity(max_queued: int) -> EngineOverloaded:
    """The 429 of a model that holds ``max_queued`` requests, running or waiting."""
    return EngineOverloaded(
        f"the server is at capacity ({max_queued} requests running or waiting); retry later"
    )


class LivePrefixes:
    """The block hashes of the prefixes one worker's free slots hold in their KV.

    Written by the worker's thread; read by routing on the event loop. Every change publishes
    a new frozenset (one reference swap), so a reader never sees a half-built one.
    """

    def __init__(self) -> None:
        self._by_slot: dict[int, list[int]] = {}
        self.blocks: frozenset[int] = frozenset()

    def hold(self, slot: int, tokens: Sequence[int]) -> None:
        """Slot ``slot`` is free and holds ``tokens`` in its KV."""
        self._by_slot[slot] = block_hashes(tokens)
        self._publish()

    def drop(self, slot: int) -> None:
        """Slot ``slot`` is taken (or emptied): its KV is no one's prefix to route by."""
        if self._by_slot.pop(slot, None):
            self._publish()

    def depth(self, hashes: Sequence[int]) -> int:
        """How many leading blocks of a prompt with these block hashes a free slot holds."""
        blocks = self.blocks
        low, high = 0, len(hashes)  # hashes[:low] are held; hashes[high:] are not
        while low < high:
            middle = (low + high + 1) // 2
            if hashes[middle - 1] in blocks:
                low = middle
            else:
                high = middle - 1
        return low

    def _publish(self) -> None:
        self.blocks = frozenset(h for hashes in self._by_slot.values() for h in hashes)


class Replica(Protocol):
    """What routing reads of a replica (a Worker)."""

    live: LivePrefixes

    @property
    def n_slots(self) -> int: ...

    def running(self) -> int: ...

    def waiting(self) -> int: ...


def choose_replica(replicas: Sequence[Replica], hashes: Sequence[int], n: int = 1) -> int:
    """The index of the replica for a prompt with block ``hashes`` and ``n`` choices."""
    loads = [r.running() + r.waiting() for r in replicas]
    roomy = [i for i, r in enumerate(replicas) if loads[i] + n <= r.n_slots]
    candidates = roomy or range(len(replicas))
    return max(candidates, key=lambda i: (replicas[i].live.depth(hashes), -loads[i], -i))


R = TypeVar("R", bound=Replica)


class ReplicaPool(Generic[R]):
    """The replicas of one model, and the bound on the requests they hold together."""

    def __init__(self, replicas: Sequence[R], *, max_queued: int) -> None:
        self.replicas = tuple(replicas)
        self._max_queued = max_queued

    def choose(self, tokens: Sequence[int], *, n: int = 1, by_prefix: bool = True) -> R:
        """The replica for a prompt; EngineOverloaded when the model holds max_queued requests.

        ``by_prefix`` false (a request that reuses no KV): by load alone.
        """
        if len(self.replicas) == 1:  # the worker bounds its own queue
            return self.replicas[0]
        if self.running() + self.waiting() >= self._max_queued:
            raise at_capacity(self._max_queued)
        hashes = block_hashes(tokens) if by_prefix and len(tokens) >= BLOCK else []
        return self.replicas[choose_replica(self.replicas, hashes, n)]

    def running(self) -> int:
        return sum(r.running() for r in self.replicas)

    def waiting(self) -> int:
        return sum(r.waiting() for r in self.replicas)
