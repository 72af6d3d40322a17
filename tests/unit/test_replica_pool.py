"""Routing among the replicas of one model: live prefix first, then load; cheap and pure."""

from __future__ import annotations

import time

import pytest
from attrs import define, field

from llmserve.engine.pool import LivePrefixes, ReplicaPool, choose_replica
from llmserve.engine.prefix_cache import BLOCK, block_hashes
from llmserve.errors import EngineOverloaded

CHAT = list(range(1000, 1000 + 4 * BLOCK))  # a conversation's first turn: four blocks
OTHER = list(range(5000, 5000 + 4 * BLOCK))


@define
class FakeReplica:
    """A replica as routing sees it: slots, load and the prefixes its free slots hold."""

    n_slots: int = 2
    busy: int = 0
    queued: int = 0
    live: LivePrefixes = field(factory=LivePrefixes)

    def running(self) -> int:
        return self.busy

    def waiting(self) -> int:
        return self.queued


def holding(tokens: list[int], **load: int) -> FakeReplica:
    replica = FakeReplica(**load)
    replica.live.hold(0, tokens)
    return replica


def test_live_depth_counts_the_leading_blocks_a_free_slot_holds() -> None:
    """A prompt that continues a held prefix matches all of its blocks, and no more."""
    live = LivePrefixes()
    live.hold(0, CHAT[: 3 * BLOCK])
    assert live.depth(block_hashes(CHAT + OTHER)) == 3
    assert live.depth(block_hashes(OTHER)) == 0
    assert live.depth([]) == 0


def test_live_depth_takes_the_longest_of_several_slots() -> None:
    """Two slots holding prefixes of different lengths: the longer one counts."""
    live = LivePrefixes()
    live.hold(0, CHAT[:BLOCK])
    live.hold(1, CHAT[: 2 * BLOCK])
    assert live.depth(block_hashes(CHAT)) == 2


def test_a_taken_slot_no_longer_counts() -> None:
    """drop() (the slot got a job, its KV changes) removes its prefix from routing."""
    live = LivePrefixes()
    live.hold(0, CHAT)
    live.drop(0)
    assert live.depth(block_hashes(CHAT)) == 0


def test_the_replica_holding_the_prompts_prefix_wins_over_a_less_loaded_one() -> None:
    """The next turn of a chat goes where its last turn ran, though the other is idle."""
    replicas = [FakeReplica(), holding(CHAT, busy=1)]
    assert choose_replica(replicas, block_hashes(CHAT + OTHER)) == 1


def test_the_longest_live_prefix_wins() -> None:
    """Of two replicas holding a prefix of the prompt, the one holding more of it."""
    replicas = [holding(CHAT[: 2 * BLOCK]), holding(CHAT)]
    assert choose_replica(replicas, block_hashes(CHAT)) == 1


def test_without_a_prefix_the_least_loaded_replica_serves() -> None:
    """running + waiting decides when no replica holds the prompt."""
    replicas = [FakeReplica(n_slots=4, busy=2), FakeReplica(n_slots=4, busy=1, queued=2)]
    replicas.append(FakeReplica(n_slots=4, busy=1))
    assert choose_replica(replicas, block_hashes(OTHER)) == 2


def test_equal_load_goes_to_the_lowest_index() -> None:
    """Ties are broken the same way every time: the first replica."""
    assert choose_replica([FakeReplica(), FakeReplica()], []) == 0


def test_a_full_replica_loses_its_prefix_to_one_with_a_free_slot() -> None:
    """A prefix is worth a restore, not a wait in a queue: the full replica is passed over."""
    replicas = [holding(CHAT, busy=2), FakeReplica(busy=1)]
    assert choose_replica(replicas, block_hashes(CHAT)) == 1


def test_n_choices_need_n_free_slots_on_one_replica() -> None:
    """n=2 skips a replica with one free slot, though it holds the prefix."""
    replicas = [holding(CHAT, n_slots=2, busy=1), FakeReplica(n_slots=2)]
    assert choose_replica(replicas, block_hashes(CHAT), n=2) == 1


def test_when_every_replica_is_full_the_least_loaded_still_gets_the_job() -> None:
    """No replica has room: the job queues where the queue is shortest."""
    replicas = [FakeReplica(busy=2, queued=3), FakeReplica(busy=2, queued=1)]
    assert choose_replica(replicas, block_hashes(CHAT)) == 1


def test_the_pool_refuses_past_max_queued_over_all_replicas() -> None:
    """max_concurrent_requests bounds the model, not each replica: 429 at the sum."""
    pool = ReplicaPool([FakeReplica(busy=2, queued=1), FakeReplica(busy=1)], max_queued=4)
    with pytest.raises(EngineOverloaded):
        pool.choose(CHAT)


def test_the_pool_routes_by_load_alone_for_a_request_that_reuses_no_kv() -> None:
    """by_prefix=False (cache_prompt off): the held prefix does not attract the request."""
    pool = ReplicaPool([holding(CHAT, busy=1), FakeReplica()], max_queued=100)
    assert pool.choose(CHAT, by_prefix=True) is pool.replicas[0]
    assert pool.choose(CHAT, by_prefix=False) is pool.replicas[1]


def test_routing_a_long_prompt_takes_well_under_a_millisecond() -> None:
    """Hashing a 4096-token prompt and probing 4 replicas of 8 slots stays cheap."""
    prompt = list(range(4096))
    replicas = []
    for r in range(4):
        replica = FakeReplica(n_slots=8)
        for slot in range(8):
            replica.live.hold(slot, [10**6 + r * 10**5 + slot * 10**4 + t for t in range(4096)])
        replicas.append(replica)
    replicas[3].live.hold(7, prompt[:2048])
    pool = ReplicaPool(replicas, max_queued=100)
    started = time.perf_counter()
    for _ in range(100):
        chosen = pool.choose(prompt)
    per_call = (time.perf_counter() - started) / 100
    assert chosen is replicas[3]
    assert per_call < 1e-3
